"""The Python functions of the Flink job (they run in PyFlink's Python workers).

They are built in the client from plain settings dicts (pickled with the function), so a worker uses
exactly the client's configuration, whatever its own environment holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.datastream.time_domain import TimeDomain

from streams.anomaly.events import opened_by_kind

logger = logging.getLogger(__name__)

# Every output is (topic, Avro bytes); one KafkaSink picks the topic from the first field.
OUTPUT_TYPE = Types.ROW([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
# (machine, value, partition, offset, key): the key may be null.
KEYED_TYPE = Types.ROW(
    [
        Types.STRING(),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.INT(),
        Types.LONG(),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
    ]
)
DEAD_LETTERS = OutputTag("dead-letters", OUTPUT_TYPE)


class Settings:
    """The settings a worker needs, as picklable dicts."""

    def __init__(
        self, stream: dict[str, Any], spc: dict[str, Any], topics: dict[str, Any], anomaly: dict[str, Any]
    ) -> None:
        self.stream, self.spc, self.topics, self.anomaly = stream, spc, topics, anomaly

    def build(self) -> tuple[Any, Any, Any, Any]:
        from schemas.config import TopicSettings
        from schemas.serde import Serde
        from streams.config import StreamSettings
        from streams.spc.config import SpcSettings

        return StreamSettings(**self.stream), SpcSettings(**self.spc), TopicSettings(**self.topics), Serde()

    def anomaly_settings(self) -> Any:
        from streams.anomaly.config import AnomalySettings

        return AnomalySettings(**self.anomaly)


class DeadLetterCounters:
    """Flink counters of dead letters by reason code (``<op>.reason.<code>.dead_letters``)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.counters: dict[str, Any] = {}

    def inc(self, code: str, n: int = 1) -> None:
        counter = self.counters.get(code)
        if counter is None:
            counter = self.counters[code] = self.group.add_group("reason", code).counter("dead_letters")
        counter.inc(n)


class KeyByMachine(ProcessFunction):  # type: ignore[misc]
    """Decode enough to key by machine; values that are not readings go to the dead-letter output."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        from streams.flink.keyed import KeyExtractor, OutputEncoder

        _, _, topics, serde = self.settings.build()
        self.extract = KeyExtractor(serde, topics.topic_readings)
        self.encoder = OutputEncoder(serde, topics)
        self.dead = DeadLetterCounters(runtime_context.get_metrics_group())

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        # A row of the readings table: key, value, partition, offset, timestamp.
        key = None if value[0] is None else bytes(value[0])
        payload = b"" if value[1] is None else bytes(value[1])
        partition, offset = int(value[2]), int(value[3])
        machine, dead = self.extract.machine_of(payload, partition, offset, key)
        if machine is not None:
            yield Row(machine, payload, partition, offset, key)
        else:
            assert dead is not None
            self.dead.inc(dead["reason_code"])
            yield DEAD_LETTERS, Row(*self.encoder.dead_letter(dead))


class WindowsFunction(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by machine: windows, SPC (and anomaly) per machine; state in Flink keyed state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        from streams.flink.keyed import MachineProcessors, OutputEncoder

        stream, spc, topics, serde = self.settings.build()
        self.machines = MachineProcessors(
            stream, spc, serde, topics.topic_readings, self.settings.anomaly_settings()
        )
        self.encoder = OutputEncoder(serde, topics)
        # Per machine: per-(machine, sensor) snapshots (JSON, the Faust changelog's format) and the
        # machine's operator watermark.
        self.keys = runtime_context.get_map_state(
            MapStateDescriptor("window-state", Types.STRING(), Types.STRING())
        )
        self.watermark = runtime_context.get_state(ValueStateDescriptor("watermark", Types.LONG()))
        group = runtime_context.get_metrics_group()
        self.m_in = group.counter("records_in")
        self.m_windows = group.counter("windows_out")
        self.m_late = group.counter("late_records")
        self.dead = DeadLetterCounters(group)
        self.m_spc = group.counter("spc_signals")
        self.m_anomalies = group.counter("anomalies")  # every event record, opening and closing
        # Events opened, by detector kind: the client mirrors them into millstream_anomaly_events{kind}.
        self.m_opened = {kind: group.counter(f"anomaly_events_{kind}") for kind in ("sensor", "machine")}
        group.gauge("machines", lambda: len(self.machines))
        self.last_watermark = -(2**63)
        group.gauge("watermark_ms", lambda: self.last_watermark)

    def _load(self) -> tuple[dict[str, Any], int | None]:
        import json

        keys = {k: json.loads(v) for k, v in self.keys.items()}
        return keys, self.watermark.value()

    def _finish(self, out: Any, delta: Any, ctx: Any) -> Iterator[Row]:
        if delta.clear:  # the machine is forgotten (MILLSTREAM_STREAM_STATE_TTL_MS)
            self.keys.clear()
            self.watermark.clear()
        for k in delta.removes:
            self.keys.remove(k)
        if delta.puts:
            # PyFlink's put_all iterates its argument as (key, value) pairs, not as a dict.
            self.keys.put_all(list(delta.puts.items()))
        if delta.watermark is not None:
            self.watermark.update(delta.watermark)
        timers = ctx.timer_service()
        for t in delta.cancel:
            timers.delete_event_time_timer(t)
        for t in delta.timers:
            timers.register_event_time_timer(t)
        if delta.idle_timer is not None:
            timers.register_processing_time_timer(delta.idle_timer)
        self.m_windows.inc(len(out.windows))
        self.m_late.inc(len(out.late))
        for d in out.dead_letters:
            self.dead.inc(d["reason_code"])
        self.m_spc.inc(len(out.spc_signals))
        self.m_anomalies.inc(len(out.anomalies))
        for kind, n in opened_by_kind(out.anomalies).items():
            self.m_opened[kind].inc(n)
        for topic, value in self.encoder.encode(out):
            yield Row(topic, value)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        self.m_in.inc()
        machine, payload, partition, offset = value[0], bytes(value[1]), value[2], value[3]
        key = None if value[4] is None else bytes(value[4])
        wm = self.last_watermark = ctx.timer_service().current_watermark()
        out, delta = self.machines.on_record(
            machine, payload, ctx.timestamp(), wm, self._load, partition=partition, offset=offset, key=key
        )
        yield from self._finish(out, delta, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        machine = ctx.get_current_key()
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            wm = self.last_watermark = ctx.timer_service().current_watermark()
            out, delta = self.machines.on_event_timer(machine, timestamp, wm, self._load)
        else:
            now = max(timestamp, int(time.time() * 1000))
            out, delta = self.machines.on_processing_timer(machine, now, self._load)
        yield from self._finish(out, delta, ctx)
