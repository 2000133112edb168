"""Streaming SPC: one :class:`SpcMonitor` per (machine, sensor).

A monitor takes individual readings (``update_value``), window aggregates (``update_window``: count,
mean, std, min, max → one subgroup; the I-MR chart charts the window means; a window re-emitted by a
late update is skipped, since a judged point is never re-judged) or attribute counts (``update_count``).
It buffers the first ``phase1_count`` samples, estimates the limits from them with
:meth:`Chart.fit` (phase I), judges the buffered samples and then every new one with
:meth:`Chart.judge` (phase II) and emits an :class:`SpcSignal` per rule that fires. That is the same
core the offline CLI runs, so replaying a file through a monitor gives the CLI's signals.

``snapshot()``/``restore()`` carry everything (buffer, frozen limits, EWMA/CUSUM sums, run-rule
counters) as JSON types; a restored monitor continues exactly as one that never stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from streams.spc.capability import Capability, capability, capability_samples
from streams.spc.charts import Chart, ChartConfig, Count, Point, Sample, Subgroup, make_chart
from streams.spc.exceptions import SpcConfigError, SpcInputError, SpcStateError
from streams.spc.state import Stateful, json_float

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    """What one monitor charts and how. ``subgroup_size`` groups individual readings into subgroups."""

    chart: str = "imr"
    rules: str = "we"
    phase1_count: int = 25  # samples (values, subgroups or windows) that form the phase I baseline
    subgroup_size: int | None = None
    target: float | None = None
    sigma: float | None = None
    lam: float = 0.2
    width: float = 3.0
    k: float = 0.5
    h: float = 5.0
    lsl: float | None = None
    usl: float | None = None

    def __post_init__(self) -> None:
        kind_cls = type(make_chart(self.chart))
        self.chart_config()  # validates the chart settings
        if self.phase1_count < 0:
            msg = f"phase1_count must be >= 0, got {self.phase1_count}"
            raise SpcConfigError(msg)
        needed = kind_cls.baseline_needed(self.chart_config())
        if self.phase1_count < needed:
            # Refused here, at start-up, rather than by the first sample of every key in a running job.
            msg = (
                f"phase1_count {self.phase1_count} is too small for the {self.chart} chart: phase I needs "
                f"{needed}+ samples to estimate its limits (or give the known standards target and sigma)"
            )
            raise SpcConfigError(msg)
        if self.subgroup_size is not None and (self.subgroup_size < 1 or kind_cls.data != "variables"):
            msg = (
                f"subgroup_size must be >= 1 and only applies to measurement charts, got {self.subgroup_size}"
            )
            raise SpcConfigError(msg)
        if self.lsl is not None and self.usl is not None and not self.lsl < self.usl:
            msg = f"lsl ({self.lsl}) must be below usl ({self.usl})"
            raise SpcConfigError(msg)

    def chart_config(self) -> ChartConfig:
        return ChartConfig(self.rules, self.target, self.sigma, self.lam, self.width, self.k, self.h)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class SpcSignal:
    """One rule that fired on one point of one chart of one (machine, sensor)."""

    machine: str
    sensor: str
    chart: str  # xbar, r, s, i, mr, ewma, cusum, p, np, c, u
    rule: str  # WE1..WE4, N1..N8, LIMIT
    index: int  # 1-based sample number since the key was first charted (continues across a re-baseline)
    value: float
    center: float
    lcl: float | None
    ucl: float | None
    window_start: int | None = None  # epoch ms, inclusive
    window_end: int | None = None  # epoch ms, exclusive (last reading time for subgroups of readings)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "center", "lcl", "ucl"):
            out[key] = json_float(out[key])
        return out


def _encode(sample: Sample) -> list[float]:
    return list(sample)


def _decode(chart: Chart, row: list[Any]) -> Sample:
    if chart.data == "variables":
        return Subgroup(int(row[0]), float(row[1]), float(row[2]), float(row[3]))
    return Count(float(row[0]), float(row[1]))


class SpcMonitor(Stateful):
    """Phase I then phase II SPC for one (machine, sensor)."""

    state_type = "monitor"

    def __init__(self, machine: str, sensor: str, config: MonitorConfig | None = None) -> None:
        self.machine = machine
        self.sensor = sensor
        self.config = config or MonitorConfig()
        self.chart = make_chart(self.config.chart, self.config.chart_config())
        self._phase1: list[list[Any]] = []  # [sample fields..., window_start, window_end]
        self._partial: list[float] = []  # readings of the subgroup being filled
        self._partial_times: list[int | None] = [None, None]
        self.skipped = 0  # windows too small for the chart (n < 2 on X̄ charts) or seen before
        self._last_window: int | None = None  # window_start of the last window taken
        self._index_offset = 0  # samples judged by earlier charts of this key (see continue_from)
        self._warned_small = False  # a window too small for the chart was logged as a warning
        self.capability: Capability | None = None

    @property
    def phase(self) -> int:
        return 2 if self.chart.fitted else 1

    @property
    def limits(self) -> dict[str, float] | None:
        return self.chart.limits

    # -- input ------------------------------------------------------------------------------------
    def update_value(self, value: float, event_time: int | None = None) -> list[SpcSignal]:
        """One reading. Grouped into subgroups of ``subgroup_size`` when set, else one point each."""
        if self.chart.data != "variables":
            msg = f"the {self.chart.kind} chart takes counts: use update_count()"
            raise SpcConfigError(msg)
        value = float(value)
        if not math.isfinite(value):
            msg = f"{self.machine}/{self.sensor}: reading {value!r} is not finite"
            raise SpcInputError(msg)
        size = self.config.subgroup_size
        if size is None or size == 1:
            return self.update(Subgroup(1, value), event_time, event_time)
        if not self._partial:
            self._partial_times[0] = event_time
        self._partial.append(value)
        self._partial_times[1] = event_time
        if len(self._partial) < size:
            return []
        sample = Subgroup.of(self._partial)
        start, end = self._partial_times
        self._partial = []
        self._partial_times = [None, None]
        return self.update(sample, start, end)

    def update_window(self, record: Mapping[str, Any]) -> list[SpcSignal]:
        """One window aggregate (``count``, ``mean``, ``std``, ``min``, ``max``, window times)."""
        if self.chart.data != "variables":
            msg = f"the {self.chart.kind} chart takes counts: use update_count()"
            raise SpcConfigError(msg)
        try:
            n = int(record["count"])
            sample = Subgroup(
                n, float(record["mean"]), float(record["std"]), float(record["max"]) - float(record["min"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"window aggregate needs count, mean, std, min and max: {exc}"
            raise SpcInputError(msg) from exc
        start = record.get("window_start")
        if start is not None and self._last_window is not None and start <= self._last_window:
            # A late update re-emits a window with a higher version: a judged point is never re-judged.
            self.skipped += 1
            logger.debug("%s/%s: window %s seen before, skipped", self.machine, self.sensor, start)
            return []
        if start is not None:
            self._last_window = int(start)
        if self.chart.kind in ("imr", "mcewma"):  # charts of individual values: the window mean is one
            sample = Subgroup(1, sample.mean)
        elif n < self.chart.min_n:
            self.skipped += 1
            # Once per monitor (not persisted): a window spec that gives single-reading windows would
            # otherwise keep the key in phase I for ever without a word.
            log = logger.debug if self._warned_small else logger.warning
            self._warned_small = True
            log(
                "%s/%s: window of %d reading(s) skipped: the %s chart needs subgroups of %d+ (a longer "
                "window, or the imr chart of window means)",
                self.machine,
                self.sensor,
                n,
                self.chart.kind,
                self.chart.min_n,
            )
            return []
        return self.update(sample, start, record.get("window_end"))

    def update_count(
        self, x: float, n: float = 1.0, window_start: int | None = None, window_end: int | None = None
    ) -> list[SpcSignal]:
        """Nonconforming units / nonconformities ``x`` in a sample of ``n`` (p, np, c, u charts)."""
        return self.update(Count(float(x), float(n)), window_start, window_end)

    def update(
        self, sample: Sample, window_start: int | None = None, window_end: int | None = None
    ) -> list[SpcSignal]:
        """One sample: buffered during phase I, judged in phase II."""
        chart = self.chart
        if chart.limits is not None:
            return self._signals(chart.judge(sample), window_start, window_end)
        chart.validate(sample)
        self._phase1.append([*_encode(sample), window_start, window_end])
        if len(self._phase1) >= self.config.phase1_count:
            return self._freeze()
        return []

    def _freeze(self) -> list[SpcSignal]:
        chart = self.chart
        width = 4 if chart.data == "variables" else 2
        buffered = [(_decode(chart, row[:width]), row[width], row[width + 1]) for row in self._phase1]
        samples = [s for s, _, _ in buffered]
        chart.fit(samples)
        cfg = self.config
        if (cfg.lsl is not None or cfg.usl is not None) and chart.data == "variables":
            self.capability = capability(
                capability_samples(chart, samples), chart.within_sigma(), cfg.lsl, cfg.usl
            )
        logger.info(
            "%s/%s: %s limits frozen after %d samples: %s",
            self.machine,
            self.sensor,
            chart.kind,
            len(samples),
            chart.limits,
        )
        self._phase1 = []
        out: list[SpcSignal] = []
        for sample, start, end in buffered:
            out.extend(self._signals(chart.judge(sample), start, end))
        return out

    def _signals(self, point: Point, start: int | None, end: int | None) -> list[SpcSignal]:
        if not point.rules and (point.secondary is None or not point.secondary.beyond):
            return []
        chart = self.chart
        out = []
        value = point.value
        if point.extra is not None and "upper" in point.extra:  # CUSUM: report the sum that crossed
            up, down = point.extra["upper"], point.extra["lower"]
            value = up if point.ucl is not None and up > point.ucl else down
            center = 0.0
        else:
            center = point.center
        for rule in point.rules:
            out.append(
                SpcSignal(
                    self.machine,
                    self.sensor,
                    chart.primary,
                    rule,
                    point.index + self._index_offset,
                    value,
                    center,
                    point.lcl,
                    point.ucl,
                    start,
                    end,
                )
            )
        sec = point.secondary
        if sec is not None and sec.beyond and chart.secondary:
            out.append(
                SpcSignal(
                    self.machine,
                    self.sensor,
                    chart.secondary,
                    "LIMIT",
                    point.index + self._index_offset,
                    sec.value,
                    sec.center,
                    sec.lcl,
                    sec.ucl,
                    start,
                    end,
                )
            )
        return out

    # -- state ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        state = self._header()
        state["machine"], state["sensor"] = self.machine, self.sensor
        state["config"] = self.config.to_dict()
        chart_state = self.chart.snapshot()
        del chart_state["config"]  # follows from the monitor config
        state["chart"] = chart_state
        state["phase1"] = [list(row) for row in self._phase1]
        state["partial"] = list(self._partial)
        state["partial_times"] = list(self._partial_times)
        state["skipped"] = self.skipped
        state["last_window"] = self._last_window
        state["index_offset"] = self._index_offset
        state["capability"] = None if self.capability is None else self.capability.to_dict()
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        self._check_header(state)
        try:
            config = MonitorConfig.from_dict(state["config"])
            chart = make_chart(config.chart, config.chart_config())
            chart_state = dict(state["chart"])
            chart_state["config"] = config.chart_config().to_dict()
            chart.restore(chart_state)
            phase1 = [list(row) for row in state["phase1"]]
            partial = [float(v) for v in state["partial"]]
            times = list(state["partial_times"])
            skipped = int(state["skipped"])
            last_window = None if state["last_window"] is None else int(state["last_window"])
            index_offset = int(state.get("index_offset", 0))  # absent from snapshots of earlier versions
            cap = state["capability"]
            capability_ = None if cap is None else Capability(cap["cp"], cap["cpk"], cap["pp"], cap["ppk"])
            machine, sensor = str(state["machine"]), str(state["sensor"])
        except (KeyError, TypeError, ValueError, AttributeError, SpcConfigError) as exc:
            msg = f"corrupt monitor snapshot: {exc}"
            raise SpcStateError(msg) from exc
        self.machine, self.sensor, self.config, self.chart = machine, sensor, config, chart
        self._phase1, self._partial, self._partial_times = phase1, partial, times
        self.skipped, self.capability, self._last_window = skipped, capability_, last_window
        self._index_offset = index_offset

    def continue_from(self, other: SpcMonitor) -> None:
        """Take over from ``other``, an earlier monitor of the same key: windows it already took
        (re-emitted after a restart) are not taken again, and sample numbers continue after its last
        judged one, so signals stay distinct (spc_signals is keyed by the sample number)."""
        self._last_window = other._last_window
        self._index_offset = other._index_offset + other.chart.count

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any]) -> SpcMonitor:
        monitor = cls(str(state.get("machine", "")), str(state.get("sensor", "")))
        monitor.restore(state)
        return monitor
