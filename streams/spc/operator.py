"""Keyed SPC operator: routes readings and window aggregates to one monitor per (machine, sensor).

Engine adapters (Faust, PyFlink) hold one of these per task, or keep only the per-key snapshots in
their state store and use :meth:`SpcOperator.snapshot_key` / :meth:`SpcOperator.restore_key`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from streams.spc.exceptions import SpcConfigError, SpcStateError
from streams.spc.monitor import MonitorConfig, SpcMonitor, SpcSignal
from streams.spc.state import Stateful

logger = logging.getLogger(__name__)

Key = tuple[str, str]


class SpcOperator(Stateful):
    """Monitors by (machine_id, sensor); ``overrides`` gives a sensor its own chart configuration."""

    state_type = "operator"

    def __init__(
        self, default: MonitorConfig | None = None, overrides: Mapping[str, MonitorConfig] | None = None
    ):
        self.default = default or MonitorConfig()
        self.overrides = dict(overrides or {})
        self.monitors: dict[Key, SpcMonitor] = {}

    def monitor(self, machine: str, sensor: str) -> SpcMonitor:
        key = (machine, sensor)
        found = self.monitors.get(key)
        if found is None:
            found = self.monitors[key] = SpcMonitor(machine, sensor, self.overrides.get(sensor, self.default))
        return found

    def process_reading(self, record: Mapping[str, Any]) -> list[SpcSignal]:
        """A ``Reading`` record (machine_id, sensor, value, event_time)."""
        monitor = self.monitor(record["machine_id"], record["sensor"])
        return monitor.update_value(record["value"], record.get("event_time"))

    def process_window(self, record: Mapping[str, Any]) -> list[SpcSignal]:
        """A ``WindowAggregate`` record (machine_id, sensor, count, mean, std, min, max, window times)."""
        return self.monitor(record["machine_id"], record["sensor"]).update_window(record)

    def forget(self, machine: str, sensor: str) -> None:
        """Drop the monitor of one key (a machine that no longer reports)."""
        self.monitors.pop((machine, sensor), None)

    def snapshot_key(self, machine: str, sensor: str) -> dict[str, Any] | None:
        found = self.monitors.get((machine, sensor))
        return None if found is None else found.snapshot()

    def restore_key(self, state: Mapping[str, Any]) -> SpcMonitor:
        """Load one key's snapshot. Its frozen limits carry on only under the same settings: when the
        configuration for its sensor changed since the checkpoint (another chart, rule set, standards,
        spec limits, ...), the key starts afresh with a new phase I under the new settings, with a
        warning, rather than keeping the old settings without a word."""
        monitor = SpcMonitor.from_snapshot(state)
        wanted = self.overrides.get(monitor.sensor, self.default)
        if monitor.config != wanted:
            before, after = monitor.config.to_dict(), wanted.to_dict()
            changed = {k: (v, after[k]) for k, v in before.items() if after[k] != v}
            logger.warning(
                "%s/%s: the SPC settings changed since the checkpoint (%s): the chart starts afresh with a "
                "new phase I of %d samples",
                monitor.machine,
                monitor.sensor,
                ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()),
                wanted.phase1_count,
            )
            fresh = SpcMonitor(monitor.machine, monitor.sensor, wanted)
            fresh.continue_from(monitor)
            monitor = fresh
        self.monitors[(monitor.machine, monitor.sensor)] = monitor
        return monitor

    def snapshot(self) -> dict[str, Any]:
        state = self._header()
        state["default"] = self.default.to_dict()
        state["overrides"] = {k: v.to_dict() for k, v in self.overrides.items()}
        state["monitors"] = [m.snapshot() for m in self.monitors.values()]
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        self._check_header(state)
        try:
            default = MonitorConfig.from_dict(state["default"])
            overrides = {k: MonitorConfig.from_dict(v) for k, v in state["overrides"].items()}
            monitors = [SpcMonitor.from_snapshot(m) for m in state["monitors"]]
        except (KeyError, TypeError, ValueError, AttributeError, SpcConfigError) as exc:
            msg = f"corrupt operator snapshot: {exc}"
            raise SpcStateError(msg) from exc
        self.default, self.overrides = default, overrides
        self.monitors = {(m.machine, m.sensor): m for m in monitors}
