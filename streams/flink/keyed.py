"""Per-machine processing for the PyFlink adapter. No Flink import: the Flink functions only move data
between Flink (state, timers, collectors) and the classes here, and these are unit-tested without Flink.

Shape
    The job keys readings by ``machine_id``. Each machine gets its own :class:`MachineProcessor` (a
    :class:`~streams.pipeline.PartitionProcessor` holding that machine's windows, SPC monitors and
    anomaly models), so the analytics are exactly the Faust job's. Its per-key snapshots
    (``dirty_state()``, the same JSON the Faust changelog holds) go to Flink keyed state after every
    element or timer, before anything later can be checkpointed. The processor writes a machine's
    anomaly model (tens of KB) only every ``anomaly_checkpoint_ms`` of wall time and on each anomaly
    event, as in the Faust job; a restore therefore resumes windows and SPC exactly and the anomaly
    model from its last save (it misses what it learnt since, at most that interval).

Watermark
    Flink's watermark drives the window operator: the operator's own out-of-orderness is set to
    "infinite" so that records never move it, and :meth:`MachineProcessor.advance_to_flink` applies
    Flink's watermark + 1 (Flink's bounded-out-of-orderness generator emits ``max - delay - 1``, the
    operator's rule is ``max - delay``; with the +1 both engines close a window at the same event time).
    Flink's watermark is the minimum over the input partitions, never ahead of a partition's own one, so
    Flink closes windows at the same time as Faust or later, never earlier.

Timers
    After each step the machine's windows give the next watermarks at which something happens: a
    pending window closes at its end, an emitted one is purged at ``end + extra``. Each becomes an
    event-time timer at ``deadline - 1`` (fires when Flink's watermark + 1 reaches the deadline).

Idleness
    When every input partition goes quiet, Flink's watermark stops and the last windows would stay
    open. ``idle_timeout_ms`` > 0 adds processing-time timers that do what the Faust job's 1 s tick
    does for a partition, per machine: after ``idle_timeout_ms`` without a record of the machine, its
    watermark follows the wall clock from where the machine's own data put it at its last record
    (``max(watermark, newest event time - out_of_orderness)``). The newest event time is the Kafka
    record timestamp, which the producers set to the event time (see ``streams.flink.job``). The clock
    starts at the machine's first record after a (re)load, never during a restart's catch-up.

Forgetting (MILLSTREAM_STREAM_STATE_TTL_MS)
    The Faust job's rule, per machine: once a machine has no window left (all emitted and purged) it
    gets one more event-time timer, at its newest event time + the TTL. If it fires and the machine
    has read nothing newer, its processor forgets it (SPC charts, anomaly models, metric series), its
    keyed state is cleared and its cache entry dropped: a machine that comes back starts afresh. A
    machine that reports again just gets a later timer when its windows are purged again, so a
    reporting machine costs nothing per record. Flink's watermark is the minimum over the input
    partitions, so a silent machine is forgotten only while some input still advances it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.config import TopicSettings
from schemas.exceptions import UNKNOWN_SCHEMA, DecodeError
from schemas.serde import Serde
from sinks.domain_metrics import DomainMetrics
from sinks.metrics import DEAD_LETTERS, DECODE_ERRORS, RECORDS_IN
from streams.config import StreamSettings
from streams.pipeline import READING_NAMES, STAGE, Outputs, PartitionProcessor, dead_letter, now_ms
from streams.spc.config import SpcSettings
from streams.windows import MIN_WATERMARK, WindowSpec

logger = logging.getLogger(__name__)

NO_OUT_OF_ORDERNESS_WATERMARK = 2**62  # records never move the operator's watermark: Flink's does
MAX_WATERMARK = 2**63 - 1  # Flink's end-of-event-time watermark
IDLE_TICK_MS = 1000  # after the first idle timer, check every second (the Faust job's tick)
Loader = Callable[[], tuple[dict[str, Any], int | None]]


def purge_extra_ms(spec: WindowSpec, allowed_lateness_ms: int) -> int:
    """Time after an emitted window's end at which the operator drops its state (operator docstring)."""
    extra = {"sliding": spec.size_ms or 0, "session": spec.gap_ms or 0}.get(spec.kind, 0)
    return allowed_lateness_ms + extra


class MachineProcessor(PartitionProcessor):
    """A PartitionProcessor for one machine whose watermark follows Flink's."""

    def advance_to_flink(self, flink_watermark: int, wall_ms: int | None = None) -> Outputs:
        """Apply Flink's watermark; returns the windows (and their analytics) it closes."""
        if flink_watermark <= MIN_WATERMARK:
            return Outputs()
        return self.advance_to(flink_watermark + 1, wall_ms)

    def expire(self) -> None:
        """Forget now what MILLSTREAM_STREAM_STATE_TTL_MS says is gone at the current watermark."""
        self._expire(force=True)

    def newest_event_time(self) -> int | None:
        """The newest event time of the machine's readings (None before any)."""
        return max(self._seen.values(), default=None)

    def forgotten(self) -> bool:
        """Nothing left to keep: no window, chart, model or reading time (the TTL removed it all)."""
        return not (self.meta or self.anomaly or self._seen or self.op.keys())

    def advance_to(self, watermark: int, wall_ms: int | None = None) -> Outputs:
        """Move the operator's watermark (never back); returns the windows it closes."""
        out = Outputs()
        # End of input is Long.MAX_VALUE: stay inside a Java long (state and timers are longs).
        emitted = self.op.advance_watermark(min(watermark, MAX_WATERMARK))
        if emitted:
            wall = wall_ms if wall_ms is not None else now_ms()
            for e in emitted:
                self._route(e, out, wall, None)
        return out


@dataclass
class StateDelta:
    """What to write to Flink state and which timers to add after one step of one machine."""

    puts: dict[str, str] = field(default_factory=dict)
    removes: list[str] = field(default_factory=list)
    clear: bool = False  # the machine is forgotten: clear all its keyed state (then nothing else)
    watermark: int | None = None  # new value of the watermark state; None = unchanged
    timers: list[int] = field(default_factory=list)  # event-time timers to register
    cancel: list[int] = field(default_factory=list)  # event-time timers to delete (superseded expiry)
    idle_timer: int | None = None  # processing-time timer to register


@dataclass
class _Slot:
    proc: MachineProcessor
    watermark: int
    timers: set[int] = field(default_factory=set)  # registered event-time timers not yet fired
    unregistered: set[int] = field(default_factory=set)  # deadlines of restored windows
    idle_timer: bool = False
    expiry_timer: int | None = None  # the registered TTL timer (MILLSTREAM_STREAM_STATE_TTL_MS)
    max_ts: int = MIN_WATERMARK  # newest event time of the machine (since the cache loaded it)
    anchor_wall: int | None = None  # wall clock of the last record (or first idle check)
    anchor_wm: int = MIN_WATERMARK  # the watermark the machine's data implied then


class MachineProcessors:
    """The machines of one Flink subtask: processors cached in memory, snapshots in Flink state.

    The cache is only a shortcut: every change is written to Flink state in the same step, and a
    machine missing from the cache (first record, after a restore or a rescale) is loaded from it.
    """

    def __init__(
        self, stream: StreamSettings, spc: SpcSettings, serde: Serde, topic: str, anomaly: Any = None
    ) -> None:
        # Records never move the operator's watermark and its own idle logic stays off: Flink's
        # watermark and the idle timers below drive it.
        self.stream = stream.model_copy(
            update={"out_of_orderness_ms": NO_OUT_OF_ORDERNESS_WATERMARK, "idle_timeout_ms": 0}
        )
        self.out_of_orderness_ms = stream.out_of_orderness_ms
        self.spc = spc
        self.anomaly = anomaly
        self.serde = serde
        self.topic = topic
        self.extra = purge_extra_ms(WindowSpec.parse(stream.window), stream.allowed_lateness_ms)
        self.idle_timeout_ms = stream.idle_timeout_ms
        self.state_ttl_ms = stream.state_ttl_ms
        self.domain = DomainMetrics()
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    # -------------------------------------------------------------------------------- steps
    def _slot(self, machine: str, load: Loader) -> tuple[_Slot, Outputs]:
        slot = self._slots.get(machine)
        if slot is not None:
            return slot, Outputs()
        proc = MachineProcessor(self.stream, self.serde, -1, self.topic, self.spc, self.anomaly)
        proc.domain = self.domain  # one cardinality guard per process, not per machine
        keys, watermark = load()
        out = proc.restore(keys, None if watermark is None else {"watermark": watermark})
        slot = self._slots[machine] = _Slot(proc, proc.op.watermark)
        # Restored timers are in Flink state already; registering them again is harmless (Flink keeps
        # one timer per key and timestamp) and does not depend on that.
        slot.unregistered = self._deadlines(keys.values())
        return slot, out

    def on_record(
        self,
        machine: str,
        value: bytes,
        event_ts: int | None,
        flink_watermark: int,
        load: Loader,
        wall_ms: int | None = None,
        partition: int = -1,
        offset: int = -1,
        key: bytes | None = None,
    ) -> tuple[Outputs, StateDelta]:
        """One readings-topic value of ``machine`` (already known to decode as a reading) and where
        it came from; ``event_ts`` is its Kafka record timestamp."""
        wall = wall_ms if wall_ms is not None else now_ms()
        slot, out = self._slot(machine, load)
        out.extend(slot.proc.advance_to_flink(flink_watermark, wall))
        slot.proc.partition = partition  # named by the dead letters the record may cause
        out.extend(slot.proc.handle(value, offset, key, wall))
        if event_ts is not None and event_ts > slot.max_ts:
            slot.max_ts = event_ts
        slot.anchor_wall = wall
        slot.anchor_wm = max(slot.proc.op.watermark, slot.max_ts - self.out_of_orderness_ms)
        return out, self._delta(machine, slot, wall, idle=True)

    def on_event_timer(
        self, machine: str, timestamp: int, flink_watermark: int, load: Loader
    ) -> tuple[Outputs, StateDelta]:
        slot, out = self._slot(machine, load)
        slot.timers.discard(timestamp)
        out.extend(slot.proc.advance_to_flink(max(flink_watermark, timestamp)))
        slot.proc.expire()
        return out, self._delta(machine, slot, None, idle=False)

    def on_processing_timer(self, machine: str, now: int, load: Loader) -> tuple[Outputs, StateDelta]:
        """The idle check (processing time), then the next tick while the machine has windows."""
        slot, out = self._slot(machine, load)
        slot.idle_timer = False
        if slot.anchor_wall is None:
            # No record of the machine since this subtask loaded it (a timer restored from a
            # checkpoint): its backlog may not have been read yet, so the clock starts with its next
            # record (the Faust job also starts a partition's idle clock at its first record).
            return out, self._delta(machine, slot, None, idle=False)
        if now - slot.anchor_wall >= self.idle_timeout_ms:
            out.extend(slot.proc.advance_to(slot.anchor_wm + (now - slot.anchor_wall), now))
            slot.proc.expire()
        delta = self._delta(machine, slot, None, idle=False)
        if slot.proc.op.keys():
            slot.idle_timer = True
            delta.idle_timer = now + IDLE_TICK_MS
        return out, delta

    # -------------------------------------------------------------------------------- state
    def _deadlines(self, snaps: Iterable[Any]) -> set[int]:
        """Event-time timers (deadline - 1) for the windows in per-key snapshots."""
        timers: set[int] = set()
        for snap in snaps:
            op = snap.get("op") if snap else None
            if not op:
                continue
            for row in op["w"]:  # [start, end, version, pending, emitted_end, ...]
                deadline = row[1] if row[3] else row[4] + self.extra
                timers.add(deadline - 1)
        return timers

    def _delta(self, machine: str, slot: _Slot, wall: int | None, idle: bool) -> StateDelta:
        delta = StateDelta()
        if self.state_ttl_ms and slot.proc.forgotten():
            # Forgotten (or never more than a rejected record): nothing in the cache, nothing in state.
            # A timer of the machine that fires later finds it empty again and does the same.
            del self._slots[machine]
            delta.clear = True
            return delta
        changed = slot.proc.dirty_state()
        for key, snap in changed.items():
            if snap is None:
                delta.removes.append(key)
            else:
                delta.puts[key] = json.dumps(snap, separators=(",", ":"))
        wm = slot.proc.op.watermark
        if wm != slot.watermark:
            slot.watermark = delta.watermark = wm
        new = (self._deadlines(changed.values()) | slot.unregistered) - slot.timers
        slot.unregistered = set()
        if new:
            slot.timers |= new
            delta.timers = sorted(new)
        newest = slot.proc.newest_event_time()
        if self.state_ttl_ms and newest is not None and not slot.proc.op.keys():
            expiry = min(newest + self.state_ttl_ms, MAX_WATERMARK) - 1  # fires when watermark + 1 = it
            if expiry != slot.expiry_timer:
                if slot.expiry_timer is not None:  # one pending per machine, also one reporting rarely
                    delta.cancel.append(slot.expiry_timer)
                slot.expiry_timer = expiry
                delta.timers.append(expiry)
        if idle and self.idle_timeout_ms and not slot.idle_timer and wall is not None:
            slot.idle_timer = True
            delta.idle_timer = wall + self.idle_timeout_ms
        return delta


class KeyExtractor:
    """The step before ``key_by``: find a value's machine, or turn it into a dead letter."""

    def __init__(self, serde: Serde, topic: str) -> None:
        self.serde = serde
        self.topic = topic

    def machine_of(
        self, value: bytes | None, partition: int = -1, offset: int = -1, key: bytes | None = None
    ) -> tuple[str | None, dict[str, Any] | None]:
        """``(machine_id, None)`` for a reading or scan, ``(None, dead letter)`` otherwise.

        Validation (finite values, clock skew) happens after keying, in the processor, exactly as in
        the Faust job; only values that do not decode as a reading stop here.
        """
        try:
            decoded = self.serde.decode(value)
            if decoded.name not in READING_NAMES:
                raise DecodeError(UNKNOWN_SCHEMA, f"{decoded.name} is not a reading schema")
            return str(decoded.record["machine_id"]), None
        except DecodeError as exc:
            RECORDS_IN.labels(STAGE).inc()
            DECODE_ERRORS.labels(STAGE).inc()
            DEAD_LETTERS.labels(STAGE, exc.code).inc()
            return None, dead_letter(
                STAGE, self.topic, partition, offset, key, value or b"", exc.code, exc.reason
            )


class OutputEncoder:
    """Outputs -> (topic, Avro bytes) pairs, encoded exactly as the Faust job encodes them."""

    def __init__(self, serde: Serde, topics: TopicSettings) -> None:
        self.routes = [
            ("windows", topics.topic_windows, serde.encoder("WindowAggregate", topics.topic_windows)),
            (
                "dead_letters",
                topics.topic_dead_letters,
                serde.encoder("DeadLetter", topics.topic_dead_letters),
            ),
            ("late", topics.topic_late, serde.encoder("DeadLetter", topics.topic_late)),
            ("spc_signals", topics.topic_spc_signals, serde.encoder("SpcSignal", topics.topic_spc_signals)),
            ("anomalies", topics.topic_anomalies, serde.encoder("AnomalyEvent", topics.topic_anomalies)),
        ]
        self.dead_letter_topic = topics.topic_dead_letters
        self._encode_dead_letter = self.routes[1][2]

    def encode(self, out: Outputs) -> list[tuple[str, bytes]]:
        rows: list[tuple[str, bytes]] = []
        for attr, topic, enc in self.routes:
            for record in getattr(out, attr):
                rows.append((topic, enc(record)))
        return rows

    def dead_letter(self, record: dict[str, Any]) -> tuple[str, bytes]:
        return self.dead_letter_topic, self._encode_dead_letter(record)
