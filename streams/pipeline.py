"""Engine-agnostic handling of one input partition: decode, validate, window, route.

Both engine adapters (Faust, PyFlink) feed raw Kafka values here and publish what comes out; they
only move bytes and store the state this class snapshots. Nothing here imports an engine.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.exceptions import INVALID_RECORD, TOO_LATE, UNKNOWN_SCHEMA, DecodeError
from schemas.serde import Serde, explode_scan
from sinks.domain_metrics import DomainMetrics
from sinks.metrics import (
    ANOMALY_EVENTS,
    DEAD_LETTERS,
    DECODE_ERRORS,
    END_TO_END_LATENCY,
    RECORDS_IN,
    RECORDS_OUT,
    SPC_SIGNALS,
)
from sinks.tables import TS_MAX_MS, TS_MIN_MS
from streams.config import StreamSettings
from streams.exceptions import InvalidRecord
from streams.spc.config import SpcSettings
from streams.spc.monitor import SpcSignal
from streams.spc.operator import SpcOperator
from streams.windows import LateRecord, WindowedAggregator, WindowResult, WindowSpec

logger = logging.getLogger(__name__)

STAGE = "windows"
KEY_SEP = "\x1f"  # unit separator: cannot occur in a sane machine id or sensor name
ANOMALY_PREFIX = f"__anomaly__{KEY_SEP}"  # state key of a machine's anomaly monitor
ANOMALY_PACKED = "anomaly_z"  # its snapshot, packed (streams.anomaly.state.pack)
READING_NAMES = {"millstream.Reading", "millstream.MachineScan"}
DEAD_LETTER_PAYLOAD_MAX = 512 * 1024  # bytes of the original value a dead letter keeps
DEAD_LETTER_KEY_MAX = 1024  # bytes of the original key a dead letter keeps
DEAD_LETTER_REASON_MAX = 4096  # bytes of reason text (a reason may quote a field of any size)
ID_MAX = 1024  # bytes of plant, line, machine_id, sensor, unit: identifiers, not payloads
SEEN = "seen"  # in a key's snapshot: the newest event time of its readings
EXPIRY_STEP_MS = 60_000  # event time between two searches for machines past MILLSTREAM_STREAM_STATE_TTL_MS
MIN_TS = -(2**63)


def now_ms() -> int:
    return int(time.time() * 1000)


def op_key(machine_id: str, sensor: str) -> str:
    return f"{machine_id}{KEY_SEP}{sensor}"


@dataclass
class Outputs:
    """What one input record (or a watermark step) produced, as records ready to encode."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    spc_signals: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Outputs) -> None:
        self.windows.extend(other.windows)
        self.dead_letters.extend(other.dead_letters)
        self.late.extend(other.late)
        self.spc_signals.extend(other.spc_signals)
        self.anomalies.extend(other.anomalies)


def dead_letter(
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes,
    code: str,
    reason: str,
) -> dict[str, Any]:
    """A DeadLetter record (schema millstream.DeadLetter).

    The original bytes are kept up to :data:`DEAD_LETTER_PAYLOAD_MAX` (key: :data:`DEAD_LETTER_KEY_MAX`,
    reason text: :data:`DEAD_LETTER_REASON_MAX`):
    a dead letter must fit in one produce request (Faust's default limit is 1,000,000 bytes), or the
    record that was too big to process could not be dead-lettered either and would block its partition.
    Beyond that the reason says so; topic, partition and offset still point at the whole original.
    """
    cut = []
    if len(payload) > DEAD_LETTER_PAYLOAD_MAX:
        cut.append(f"payload truncated to its first {DEAD_LETTER_PAYLOAD_MAX} of {len(payload)} bytes")
        payload = payload[:DEAD_LETTER_PAYLOAD_MAX]
    if key is not None and len(key) > DEAD_LETTER_KEY_MAX:
        cut.append(f"key truncated to its first {DEAD_LETTER_KEY_MAX} of {len(key)} bytes")
        key = key[:DEAD_LETTER_KEY_MAX]
    if cut:
        reason = f"{reason} [{'; '.join(cut)}]"
    raw = reason.encode()
    if len(raw) > DEAD_LETTER_REASON_MAX:  # keep its head and its tail (the notes on what was cut)
        note = f" [... reason of {len(raw)} bytes cut here ...] "
        head = raw[: DEAD_LETTER_REASON_MAX - 512 - len(note)].decode(errors="ignore")
        reason = head + note + raw[-512:].decode(errors="ignore")
    return {
        "stage": stage,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "payload": payload,
        "reason_code": code,
        "reason": reason,
        "failed_at": now_ms(),
    }


def validate(reading: dict[str, Any], wall_ms: int, max_future_ms: int) -> None:
    """Raise InvalidRecord when a decoded reading cannot be aggregated."""
    for name in ("plant", "line", "machine_id", "sensor", "unit"):
        # its window (the reading's strings + ~110 bytes) must fit one produce request, like any output
        if len(reading[name].encode()) > ID_MAX:
            raise InvalidRecord(INVALID_RECORD, f"{name} is longer than {ID_MAX} bytes")
    v = reading["value"]
    if not math.isfinite(v) and reading["quality"] != "BAD":  # a BAD reading may carry no value (OPC UA)
        raise InvalidRecord(INVALID_RECORD, f"{reading['machine_id']}/{reading['sensor']}: value is {v}")
    if not reading["machine_id"] or not reading["sensor"]:
        raise InvalidRecord(INVALID_RECORD, "empty machine_id or sensor")
    if KEY_SEP in reading["machine_id"] or KEY_SEP in reading["sensor"]:
        # the state key joins them with it: "a\x1f" + "b" and "a" + "\x1f" + "b" would be one series
        raise InvalidRecord(INVALID_RECORD, "machine_id or sensor contains the control character U+001F")
    ts = reading["event_time"]
    if not TS_MIN_MS <= ts <= TS_MAX_MS:
        # a window outside the years 1900-2299 can neither be encoded nor stored (DateTime64)
        raise InvalidRecord(
            INVALID_RECORD,
            f"{reading['machine_id']}/{reading['sensor']}: event time {ts} is outside the years 1900-2299",
        )
    ahead = ts - wall_ms
    if max_future_ms and ahead > max_future_ms:
        raise InvalidRecord(
            INVALID_RECORD,
            f"{reading['machine_id']}/{reading['sensor']}: event time is {ahead / 1000:.0f}s ahead of the "
            f"wall clock (limit {max_future_ms / 1000:.0f}s); device clock wrong?",
        )


class PartitionProcessor:
    """State and logic of one input partition: a WindowedAggregator plus per-key metadata."""

    def __init__(
        self,
        settings: StreamSettings,
        serde: Serde,
        partition: int,
        topic: str,
        spc: SpcSettings | None = None,
        anomaly: Any = None,
        anomaly_checkpoint_ms: int = 10_000,
        domain: DomainMetrics | None = None,
        anomaly_state_max_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.serde = serde
        self.partition = partition
        self.topic = topic
        self.spec = WindowSpec.parse(settings.window)
        self.op = WindowedAggregator(
            self.spec,
            out_of_orderness_ms=settings.out_of_orderness_ms,
            allowed_lateness_ms=settings.allowed_lateness_ms,
            idle_timeout_ms=settings.idle_timeout_ms or None,
        )
        self.meta: dict[str, tuple[str, str, str]] = {}  # op key -> (plant, line, unit)
        self.bad_quality = 0
        spc = spc or SpcSettings()
        self.spc = SpcOperator(spc.monitor_config())
        self.spc_sensors = spc.charted  # None: every sensor gets a chart
        self.spc_idle_sensor, self.spc_idle_value = spc.idle_sensor, spc.idle_value
        self._state_start: dict[str, int] = {}  # machine -> start of its last state window
        self._idle_at: dict[str, int] = {}  # machine -> start of its last state window that read idle
        self._spc_waiting: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # machine -> windows awaiting it
        self._analytics_dirty: set[str] = set()
        self.domain = domain or DomainMetrics()  # share one per process: one cardinality guard
        from streams.anomaly.config import AnomalySettings

        self.anomaly_settings = anomaly or AnomalySettings()
        self.anomaly: dict[str, Any] = {}  # machine_id -> MachineMonitor
        self._anomaly_last_ts: dict[str, int] = {}
        self._anomaly_saved: dict[str, int] = {}  # machine_id -> wall ms of the last state write
        self._anomaly_changed: set[str] = set()  # machines whose monitor learnt since its last write
        self._unsaved_from: dict[str, int] = {}  # those machines -> input offset of the first such reading
        self.anomaly_checkpoint_ms = anomaly_checkpoint_ms
        # A checkpoint larger than this is not written (logged once): a record the state store's
        # producer would refuse (Faust's changelog) must not stop the job. None: no limit (Flink).
        self.anomaly_state_max_bytes = anomaly_state_max_bytes
        self._anomaly_too_large: set[str] = set()
        # Forgetting machines that stopped reporting (MILLSTREAM_STREAM_STATE_TTL_MS, see _expire).
        self.state_ttl_ms = settings.state_ttl_ms
        self._seen: dict[str, int] = {}  # machine -> newest event time of its readings
        self._key_seen: dict[str, int] = {}  # op key -> newest event time of its readings
        self._next_expiry = MIN_TS  # watermark at which the next search for silent machines runs
        self._anomaly_gone: set[str] = set()  # machines whose anomaly checkpoint is to be deleted

    def machine_ids(self) -> set[str]:
        """The machines whose readings this partition has seen (and whose state it holds)."""
        return {k.split(KEY_SEP, 1)[0] for k in self.meta} | set(self.anomaly)

    # -------------------------------------------------------------------------------- records
    def handle(
        self, value: bytes | None, offset: int, key: bytes | None, wall_ms: int | None = None
    ) -> Outputs:
        """Process one Kafka value of the readings topic."""
        wall = wall_ms if wall_ms is not None else now_ms()
        out = Outputs()
        RECORDS_IN.labels(STAGE).inc()
        try:
            decoded = self.serde.decode(value)
            if decoded.name not in READING_NAMES:
                raise DecodeError(UNKNOWN_SCHEMA, f"{decoded.name} is not a reading schema")
            readings = explode_scan(decoded.record)
            for r in readings:
                validate(r, wall, self.settings.max_future_ms)
        except (DecodeError, InvalidRecord) as exc:
            if isinstance(exc, DecodeError):
                DECODE_ERRORS.labels(STAGE).inc()
            DEAD_LETTERS.labels(STAGE, exc.code).inc()
            out.dead_letters.append(
                dead_letter(
                    STAGE, self.topic, self.partition, offset, key, value or b"", exc.code, exc.reason
                )
            )
            return out
        if readings:
            r0 = readings[0]
            self.domain.reading(r0["plant"], r0["line"], r0["machine_id"], r0["event_time"])
            newest = max(r["event_time"] for r in readings)
            if newest > self._seen.get(r0["machine_id"], MIN_TS):
                self._seen[r0["machine_id"]] = newest
        good = [r for r in readings if r["quality"] != "BAD"]
        # BAD readings are excluded from statistics; the raw reading stays in the readings topic.
        self.bad_quality += len(readings) - len(good)
        if good:
            self._score(good, out, wall, offset)
        for r in good:
            k = op_key(r["machine_id"], r["sensor"])
            self.meta[k] = (r["plant"], r["line"], r["unit"])
            if r["event_time"] > self._key_seen.get(k, MIN_TS):
                self._key_seen[k] = r["event_time"]
            for e in self.op.process(k, r["event_time"], r["value"], now_ms=wall):
                self._route(e, out, wall, r, offset)
        self._expire()
        return out

    def learn(
        self, value: bytes | None, offset: int, since: Mapping[str, int], wall_ms: int | None = None
    ) -> None:
        """Give one input record the partition's state has already handled to its machine's anomaly
        model, if that model's checkpoint has not seen it (``offset >= since[machine]``; a machine not
        in ``since`` has no checkpoint: always); what it makes is discarded (it was published then).

        A model is checkpointed less often than the window state (``anomaly_checkpoint_ms``): after a
        crash the engine restores it from a checkpoint older than the state and gives it the records
        in between, in input order, here. Same path as :meth:`handle`: a record it dead-lettered or
        whose scan is at or before the machine's last scored time teaches nothing here either.
        """
        wall = wall_ms if wall_ms is not None else now_ms()
        try:
            decoded = self.serde.decode(value)
            if decoded.name not in READING_NAMES:
                return
            readings = explode_scan(decoded.record)
            for r in readings:
                validate(r, wall, self.settings.max_future_ms)
        except (DecodeError, InvalidRecord):
            return
        good = [r for r in readings if r["quality"] != "BAD"]
        if good and offset >= since.get(good[0]["machine_id"], offset):
            self._score(good, Outputs(), wall, offset, metrics=False)

    def models_from(self, next_offset: int) -> int:
        """The lowest input offset whose readings some anomaly model learnt and no checkpoint (a
        :meth:`dirty_state` written before) holds yet; ``next_offset`` when every model is saved.
        Restored after a crash, the models :meth:`learn` the records from there again."""
        return min(self._unsaved_from.values(), default=next_offset)

    def on_idle(self, wall_ms: int | None = None) -> Outputs:
        """Processing-time tick: idle partitions advance their watermark so last windows close."""
        wall = wall_ms if wall_ms is not None else now_ms()
        out = Outputs()
        for e in self.op.on_idle(wall):
            self._route(e, out, wall, None)
        self._expire()
        return out

    def _expire(self, force: bool = False) -> None:
        """Forget the sensors and machines that stopped reporting (MILLSTREAM_STREAM_STATE_TTL_MS).

        A (machine, sensor) key goes when its newest reading is ``state_ttl_ms`` behind the watermark and
        it has no window state left (all emitted and purged, so no result can change): its SPC monitor
        and metadata are dropped and the key written as deleted (``dirty_state`` returns None for it: a
        tombstone in the changelog). That also clears a renamed sensor of a machine that goes on
        reporting. A machine goes when its newest reading is that old and none of its keys is left: its
        anomaly models, bookkeeping and metric series too. Runs once per :data:`EXPIRY_STEP_MS` (or a
        tenth of the TTL) of watermark progress, or now with ``force`` (the Flink job's expiry timers).
        """
        wm = self.op.watermark
        if not self.state_ttl_ms or (wm < self._next_expiry and not force):
            return
        self._next_expiry = wm + max(1, min(EXPIRY_STEP_MS, self.state_ttl_ms // 10))
        cutoff = wm - self.state_ttl_ms
        for k in self.meta.keys() - self._key_seen.keys():  # restored without its time: its clock starts now
            self._key_seen[k] = wm
            self._analytics_dirty.add(k)  # written with it from now on
        stale = [k for k, ts in self._key_seen.items() if ts <= cutoff and not self.op.has_state(k)]
        for k in stale:
            machine, sensor = k.split(KEY_SEP, 1)
            del self._key_seen[k]
            self.meta.pop(k, None)
            self.spc.forget(machine, sensor)
            self._analytics_dirty.add(k)  # no window, no chart: deleted from the state store
        live = {k.split(KEY_SEP, 1)[0] for k in self.meta}
        for machine in (live | self.anomaly.keys()) - self._seen.keys():
            self._seen[machine] = wm
        gone = {m for m, ts in self._seen.items() if ts <= cutoff and m not in live}
        if not gone:
            return
        for machine in gone:
            self.anomaly.pop(machine, None)
            self._anomaly_gone.add(machine)  # also a checkpoint that was not restored (unreadable)
            for times in (self._anomaly_last_ts, self._anomaly_saved, self._state_start, self._idle_at):
                times.pop(machine, None)
            self._spc_waiting.pop(machine, None)
            self._seen.pop(machine, None)
            self._anomaly_changed.discard(machine)
            self._unsaved_from.pop(machine, None)
            self._anomaly_too_large.discard(machine)
        self.domain.forget(gone)
        logger.info(
            "partition %s: forgot %d machines without a reading for %.1f days (MILLSTREAM_STREAM_STATE_TTL_MS"
            ")", self.partition, len(gone), self.state_ttl_ms / 86_400_000,
        )  # fmt: skip

    def close_all(self) -> Outputs:
        """End of a bounded input: close every open window (replay, tests)."""
        out = Outputs()
        wall = now_ms()
        for e in self.op.advance_watermark(2**62):
            self._route(e, out, wall, None)
        return out

    def _route(
        self,
        e: WindowResult | LateRecord,
        out: Outputs,
        wall: int,
        reading: dict[str, Any] | None,
        offset: int = -1,
    ) -> None:
        """Turn an operator emission into output records; ``offset``: the input record's (late ones)."""
        if isinstance(e, WindowResult):
            record = self.window_record(e, wall)
            out.windows.append(record)
            RECORDS_OUT.labels(STAGE).inc()
            END_TO_END_LATENCY.labels(STAGE).observe(max(0, wall - e.end))
            if e.version == 0:
                self.domain.window(
                    record["plant"], record["line"], record["machine_id"], record["sensor"], e.mean
                )
            self._analyse(e.key, record, out, wall)
        else:
            DEAD_LETTERS.labels(STAGE, "too_late").inc()
            machine_id, sensor = e.key.split(KEY_SEP, 1)
            plant, line, unit = self.meta.get(e.key, ("", "", ""))
            payload = self.serde.encode(
                "Reading",
                self.topic,
                {
                    "plant": plant,
                    "line": line,
                    "machine_id": machine_id,
                    "sensor": sensor,
                    "unit": unit,
                    "event_time": e.ts_ms,
                    "value": e.value,
                    "quality": "GOOD",
                    "gateway_id": (reading or {}).get("gateway_id", ""),
                    "seq": (reading or {}).get("seq", -1),
                    "lot_id": (reading or {}).get("lot_id"),
                },
            )
            key = machine_id.encode()
            out.late.append(
                dead_letter(STAGE, self.topic, self.partition, offset, key, payload, TOO_LATE, e.reason)
            )

    def _score(
        self, readings: list[dict[str, Any]], out: Outputs, wall: int, offset: int, metrics: bool = True
    ) -> None:
        """Anomaly scoring of one scan (readings of one machine at one instant), in event-time order;
        ``offset``: the input record's; without ``metrics`` (:meth:`learn`) no metric is updated.

        A reading at or before the machine's last scored time (out of order or a retry's duplicate)
        is not scored again: each machine's model sees a strictly increasing time series.
        """
        from streams.anomaly.events import MACHINE
        from streams.anomaly.monitor import MachineMonitor

        first = readings[0]
        machine, ts = first["machine_id"], first["event_time"]
        if ts <= self._anomaly_last_ts.get(machine, -(2**63)):
            return
        self._anomaly_last_ts[machine] = ts
        monitor = self.anomaly.get(machine)
        if monitor is None:
            monitor = self.anomaly[machine] = MachineMonitor(machine, self.anomaly_settings)
        values = {r["sensor"]: r["value"] for r in readings if r["event_time"] == ts}
        try:
            scored = monitor.update(ts, values)
        except Exception:  # a state the monitor cannot go on from: start afresh rather than crash-loop
            logger.exception("machine %s: its anomaly monitor failed; its models start afresh", machine)
            monitor = self.anomaly[machine] = MachineMonitor(machine, self.anomaly_settings)
            scored = monitor.update(ts, values)
        self._anomaly_changed.add(machine)
        self._unsaved_from.setdefault(machine, offset)
        for detector, score in scored.scores.items() if metrics else ():
            self.domain.anomaly_score(first["plant"], first["line"], machine, detector, score)
        ev = scored.event
        if ev is None:
            return
        if ev.is_open and metrics:
            ANOMALY_EVENTS.labels("machine" if ev.sensor == MACHINE else "sensor").inc()
        out.anomalies.append({
            "plant": first["plant"], "line": first["line"], "machine_id": machine, "sensor": ev.sensor,
            "state": "open" if ev.is_open else "close", "event_time": ts, "started_at": ev.start_ms,
            "score": float(ev.score), "threshold": float(ev.threshold), "model_id": ev.model_id,
            "features": {k: float(v) for k, v in ev.features.items()}, "emitted_at": wall,
        })  # fmt: skip
        self._anomaly_saved.pop(machine, None)  # an event changes state worth keeping: save it now

    def _restore_monitor(self, machine: str, state: dict[str, Any]) -> Any:
        """A machine's anomaly monitor from its checkpoint, or None (it starts afresh, with a warning)
        when the checkpoint is unreadable or was written with other MILLSTREAM_ANOMALY_* settings:
        changed settings take effect, at the price of a new warm-up."""
        from streams.anomaly.exceptions import SnapshotError
        from streams.anomaly.monitor import MachineMonitor, model_id
        from streams.anomaly.state import unpack

        try:
            # packed since this version; a plain "anomaly" object in checkpoints written before
            raw = unpack(state[ANOMALY_PACKED]) if ANOMALY_PACKED in state else state.get("anomaly")
            if not isinstance(raw, dict):
                raise SnapshotError("the checkpoint holds no anomaly state")  # noqa: EM101
            monitor = MachineMonitor.restore(raw)
        except (SnapshotError, AttributeError) as exc:
            logger.warning(
                "machine %s: its anomaly checkpoint is unreadable (%s): its models start afresh", machine, exc
            )
            return None
        wanted = model_id(self.anomaly_settings)
        if monitor.model_id != wanted:
            logger.warning(
                "machine %s: the anomaly settings changed since its checkpoint (model %s, now %s): its "
                "models start afresh, with a new warm-up",
                machine, monitor.model_id, wanted,
            )  # fmt: skip
            return None
        return monitor

    def _analyse(self, key: str, window: dict[str, Any], out: Outputs, wall: int) -> None:
        """Run the per-window analytics (SPC) on a window the operator emitted.

        With an idle sensor (MILLSTREAM_SPC_IDLE_SENSOR) a window is charted only when the machine's
        state window with the same start did not read the idle value: a stopped machine is another
        process (pressure 0.6 bar instead of 6), and a chart of the mixture only signals. The windows of
        one machine that end together close in one watermark step, in no set order, so a window waits
        (within that step) for its state window; one whose state window never comes (no state reading
        in it) is charted when the machine's next window arrives.
        """
        idle_sensor = self.spc_idle_sensor
        if idle_sensor and window["version"] == 0:
            machine, start = window["machine_id"], window["window_start"]
            if window["sensor"] == idle_sensor:
                if window["min"] <= self.spc_idle_value <= window["max"]:
                    self._idle_at[machine] = start
                self._state_start[machine] = start
                for k, w in self._spc_waiting.pop(machine, []):
                    if w["window_start"] != self._idle_at.get(machine):
                        self._chart(k, w, out, wall)
            elif op_key(machine, idle_sensor) in self.meta and self._charted(window):
                waiting = self._spc_waiting.get(machine, [])
                while waiting and waiting[0][1]["window_start"] < start:  # their state window never came
                    self._chart(*waiting.pop(0), out, wall)
                if self._state_start.get(machine, start - 1) < start:
                    self._spc_waiting.setdefault(machine, []).append((key, window))
                    return
                if start == self._idle_at.get(machine):
                    return  # the machine stood still in this window
        self._chart(key, window, out, wall)

    def _charted(self, window: dict[str, Any]) -> bool:
        return self.spc_sensors is None or window["sensor"] in self.spc_sensors

    def _chart(self, key: str, window: dict[str, Any], out: Outputs, wall: int) -> None:
        if not self._charted(window):
            return
        signals = self.spc.process_window(window)
        for sig in signals:
            SPC_SIGNALS.labels(sig.chart, sig.rule).inc()
            out.spc_signals.append(self.signal_record(sig, window, wall))
        self._analytics_dirty.add(key)  # every charted window changes the monitor's state

    @staticmethod
    def signal_record(sig: SpcSignal, window: dict[str, Any], wall: int) -> dict[str, Any]:
        return {
            "plant": window["plant"], "line": window["line"], "machine_id": sig.machine, "sensor": sig.sensor,
            "chart": sig.chart, "rule": sig.rule, "point_index": sig.index, "value": sig.value,
            "center": sig.center, "lcl": sig.lcl, "ucl": sig.ucl, "window_start": sig.window_start,
            "window_end": sig.window_end, "emitted_at": wall,
        }  # fmt: skip

    def window_record(self, w: WindowResult, wall: int) -> dict[str, Any]:
        machine_id, sensor = w.key.split(KEY_SEP, 1)
        plant, line, unit = self.meta.get(w.key, ("", "", ""))
        return {
            "plant": plant,
            "line": line,
            "machine_id": machine_id,
            "sensor": sensor,
            "unit": unit,
            "window_kind": w.kind,
            "window_start": w.start,
            "window_end": w.end,
            "count": w.count,
            "sum": w.sum,
            "mean": w.mean,
            "min": w.min,
            "max": w.max,
            "std": w.std,
            "first_ts": w.first_ts,
            "last_ts": w.last_ts,
            "first": w.first,
            "last": w.last,
            "p50": w.p50,
            "p95": w.p95,
            "p99": w.p99,
            "slope": w.slope,
            "version": w.version,
            "emitted_at": wall,
        }

    # -------------------------------------------------------------------------------- state
    def dirty_state(self) -> dict[str, Any]:
        """Per-key snapshots changed since the last call (None = deleted), plus partition metadata."""
        changed: dict[str, Any] = {}
        keys = self.op.drain_dirty_keys() | self._analytics_dirty
        self._analytics_dirty = set()
        for k in keys:
            snap = self.op.snapshot_key(k)
            machine_id, sensor = k.split(KEY_SEP, 1)
            spc = self.spc.snapshot_key(machine_id, sensor)
            if snap is None and spc is None:
                changed[k] = None
            else:
                changed[k] = {
                    "op": snap, "meta": list(self.meta.get(k, ("", "", ""))), "spc": spc,
                    SEEN: self._key_seen.get(k),
                }  # fmt: skip
        # Anomaly models are larger (~16 KB of JSON a sensor, ~5 KB packed): checkpointed per machine
        # every anomaly_checkpoint_ms while it learns, and whenever an event opens or closes. After a
        # crash a model resumes from its checkpoint. A monitor that learnt nothing since its last write
        # (a machine that stopped reporting) is not written again: its checkpoint is current.
        from streams.anomaly.state import pack

        for machine in self._anomaly_gone:  # forgotten (a machine back since then is written below)
            changed[ANOMALY_PREFIX + machine] = None
        self._anomaly_gone = set()
        wall = now_ms()
        for machine in sorted(self._anomaly_changed):
            monitor = self.anomaly[machine]
            if wall - self._anomaly_saved.get(machine, -(2**62)) >= self.anomaly_checkpoint_ms:
                self._anomaly_saved[machine] = wall
                self._anomaly_changed.discard(machine)
                self._unsaved_from.pop(machine, None)  # saved (or never: too large, see below)
                packed = pack(monitor.snapshot())
                if self.anomaly_state_max_bytes is not None and len(packed) > self.anomaly_state_max_bytes:
                    self._state_too_large(machine, len(packed))
                    continue
                changed[ANOMALY_PREFIX + machine] = {
                    ANOMALY_PACKED: packed,
                    "last_ts": self._anomaly_last_ts.get(machine),
                }
        return changed

    def save_models(self) -> None:
        """Make the next :meth:`dirty_state` checkpoint every machine's anomaly model, however recently
        it was saved: the partition is handed to another owner, which resumes from that checkpoint."""
        self._anomaly_saved.clear()

    def _state_too_large(self, machine: str, size: int) -> None:
        """Logged once per machine: its checkpoint would not fit a state-store record."""
        if machine in self._anomaly_too_large:
            return
        self._anomaly_too_large.add(machine)
        logger.error(
            "machine %s: its anomaly checkpoint is %d bytes, more than the %d a state record may hold: "
            "not saved, so after a restart its models start afresh. Give fewer sensors to one machine id, "
            "or raise the state store's record limit",
            machine, size, self.anomaly_state_max_bytes,
        )  # fmt: skip

    def meta_state(self) -> dict[str, Any]:
        return {"watermark": self.op.watermark}

    def restore(self, keys: dict[str, Any], meta: dict[str, Any] | None) -> Outputs:
        """Load snapshots; returns windows that the saved watermark closes (re-emitted, idempotent)."""
        for k, snap in keys.items():
            if snap is None:
                continue
            if k.startswith(ANOMALY_PREFIX):
                machine = k[len(ANOMALY_PREFIX) :]
                monitor = self._restore_monitor(machine, snap)
                if monitor is not None:
                    self.anomaly[machine] = monitor
                if snap.get("last_ts") is not None:
                    self._anomaly_last_ts[machine] = int(snap["last_ts"])
                    self._seen[machine] = max(self._seen.get(machine, MIN_TS), int(snap["last_ts"]))
                self._anomaly_saved[machine] = now_ms()
                continue
            if snap.get("op") is not None:
                self.op.restore_key(k, snap["op"])
            if snap.get("spc") is not None:
                self.spc.restore_key(snap["spc"])
            self.meta[k] = tuple(snap["meta"])
            if snap.get(SEEN) is not None:
                machine = k.split(KEY_SEP, 1)[0]
                self._key_seen[k] = int(snap[SEEN])
                self._seen[machine] = max(self._seen.get(machine, MIN_TS), int(snap[SEEN]))
        self.op.drain_dirty_keys()
        if meta and meta.get("watermark") is not None and meta["watermark"] > self.op.watermark:
            # Windows already closed before the restart come out again with the same version:
            # downstream replaces them with identical rows.
            wall = now_ms()
            out = Outputs()
            for e in self.op.advance_watermark(int(meta["watermark"])):
                self._route(e, out, wall, None)
            return out
        return Outputs()
