"""The Faust engine adapter: moves records between Kafka and :class:`PartitionProcessor`.

* One processor per assigned input partition; windows are keyed by (machine, sensor) and a machine
  always lands in one partition (the gateway keys by machine), so watermarks are per partition.
* State: each key's snapshot lives in a Faust table (in memory, backed by a changelog topic). It is
  written right after the record that changed it, before Faust commits that record's offset. After a
  crash the records since the last commit are replayed; the window operator counts a (machine,
  sensor, event time) once, so replays do not double-count.
* Every value written to the table also records the next input offset the partition's state has
  fully seen, and every record is checked against it. An earlier offset (the group's committed offset
  lags the changelog after a crash) is already in the state and is skipped: handled again, a reading
  whose window was purged since would be reported late although it was counted. If the consumer
  delivers a later offset (a restarted worker whose last state writes before a crash never reached
  the changelog; a consumer that skipped a record, which we have seen at start-up), the records in
  between are read from Kafka directly and processed first.
* Anomaly models are checkpointed less often (at most every 10 s per machine, see
  :meth:`PartitionProcessor.dirty_state`). Every value written also records the lowest input offset
  whose readings a model learnt that no checkpoint holds yet; a restored partition whose models lag
  its state (a worker killed with SIGKILL, a failed delivery) reads the records from there up to the
  state's position from Kafka and gives each machine's model those after its own checkpoint, outputs
  discarded (they were published before that state was written), so the models go on as if
  uninterrupted.
* Delivery: at-least-once to the output topics; a window re-emitted after a crash carries the same
  identity and version, and ClickHouse's ReplacingMergeTree keeps one row. The outputs of a record
  are acknowledged by the brokers before the state that records them is written (else a crash could
  keep the state and lose the outputs: the record would then be skipped as already seen). When a
  delivery fails, the partition's processor is dropped and restored from the state last written,
  and the record is read again from Kafka (catch-up), which makes its outputs again.
* Rebalance and stop: before a partition is given up (revoked, also when the same worker gets it
  back, and on SIGTERM) its anomaly models are checkpointed and the brokers' acks awaited, so the next
  owner resumes them where they were (they are otherwise checkpointed at most every 10 s, and the
  readings in between would be lost to the models). A record or idle tick that was waiting while its
  partition was given up is not handled: the partition's owner reads it again from its state's
  position.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import struct
import time
import weakref
from typing import Any

import faust

from schemas.config import KafkaSettings, TopicSettings
from schemas.exceptions import DECODE_ERROR, INVALID_RECORD, TOO_LATE, UNKNOWN_SCHEMA
from schemas.log_repeats import RepeatFilter
from schemas.serde import Serde
from sinks.domain_metrics import DomainMetrics
from sinks.metrics import CATCH_UP_RECORDS, CONSUMER_LAG, WATERMARK, precreate
from streams.anomaly.config import AnomalySettings
from streams.config import StreamSettings
from streams.exceptions import StreamError
from streams.pipeline import ANOMALY_PREFIX, STAGE, Outputs, PartitionProcessor, now_ms
from streams.spc.config import SpcSettings

logger = logging.getLogger(__name__)

TABLE_SEP = "\x1e"  # partition <RS> key
STATE_TABLE = "window-state"  # its changelog is co-partitioned with the readings topic (streams.partitions)
META = "__meta__"
NEXT = "next_offset"  # in every value written: the next input offset the partition's state has not seen
# In every value written: the lowest input offset whose readings an anomaly model learnt that no
# checkpoint written before holds (PartitionProcessor.models_from): after a crash, the models learn
# the records from there to the state's position again.
MODELS = "models_from"
LEARN_YIELD = 200  # records a model catch-up learns between two yields to the event loop
# A larger gap between the restored state and the consumer's position is an operator's offset reset
# (skipping a backlog on purpose), not records lost on the way: it is logged and not read back.
CATCH_UP_MAX = 100_000
# A machine's packed anomaly checkpoint larger than this is not written to the changelog (logged):
# Faust's producer refuses records over producer_max_request_size (1,000,000 bytes by default), and a
# refused state write would crash the agent on every later record.
CHANGELOG_STATE_MAX = 900_000
CONSUMER_STOP_TIMEOUT_S = 15.0  # the longest the worker waits for its Kafka consumer to stop
HAND_OVER_TIMEOUT_S = 10.0  # the longest a rebalance or a stop waits for the handed-over state's acks


class AgentHealth:
    """Whether the windows agent works: it crashed (an exception escaped it; Faust restarts it) and
    has not handled a record since. The stream job's /healthz fails while that is so."""

    def __init__(self) -> None:
        self.crash: BaseException | None = None

    def ok(self) -> bool:
        return self.crash is None


_HEALTH: weakref.WeakKeyDictionary[faust.App, AgentHealth] = weakref.WeakKeyDictionary()


def agent_health(app: faust.App) -> AgentHealth:
    """The health of ``app``'s windows agent (see :class:`AgentHealth`)."""
    return _HEALTH[app]


def _broker_url(kafka: KafkaSettings) -> str:
    return ";".join(f"kafka://{hp.strip()}" for hp in kafka.kafka_bootstrap.split(",") if hp.strip())


def _credentials(kafka: KafkaSettings) -> Any:
    kafka.require_credentials()
    if kafka.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.kafka_username,
            password=kafka.kafka_password.get_secret_value() if kafka.kafka_password else None,
            mechanism=kafka.kafka_sasl_mechanism,
            ssl_context=kafka.ssl_context(),
        )
    if kafka.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(kafka.ssl_context())
    return None


def tls_refusal(kafka: KafkaSettings, timeout_s: float = 5.0) -> str | None:
    """Why a TLS connection to the first bootstrap server fails with these settings (our client
    certificate refused, or its certificate not trusted), or None (no TLS, accepted, unreachable).

    aiokafka reports a refused client certificate as "Connection ... closed" only: with TLS 1.3 the
    broker refuses it after the client's side of the handshake, on the first read. One ApiVersions
    request (v0, which any listener answers before authentication) reads that refusal here."""
    context = kafka.ssl_context()
    if context is None:
        return None
    host, _, port = kafka.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    client_id = b"millstream-tls-check"
    request = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id  # ApiVersions v0
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(struct.pack(">i", len(request)) + request)
            tls.recv(4)
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):  # closed without a word: not known to be TLS
        return None
    except ssl.SSLError as exc:  # an alert from the broker, or its certificate not trusted
        return (
            f"the TLS connection to the broker at {host}:{port} failed: {exc} (client certificate: "
            "MILLSTREAM_KAFKA_SSL_CERT_FILE and MILLSTREAM_KAFKA_SSL_KEY_FILE; the brokers' CA: "
            "MILLSTREAM_KAFKA_SSL_CA_FILE)"
        )
    except OSError:  # unreachable or timed out: not a TLS problem
        return None
    return None


def create_app(
    stream: StreamSettings | None = None,
    kafka: KafkaSettings | None = None,
    topics: TopicSettings | None = None,
    serde: Serde | None = None,
) -> faust.App:
    """Build the Faust app of the windows job."""
    stream = stream or StreamSettings()
    kafka = kafka or KafkaSettings()
    topics = topics or TopicSettings()
    serde = serde or Serde()

    app = faust.App(
        stream.app_id,
        broker=_broker_url(kafka),
        broker_credentials=_credentials(kafka),
        datadir=stream.state_dir,
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=topics.topic_partitions,
        topic_replication_factor=topics.topic_replication,
        topic_allow_declare=True,  # internal changelog topic only; pipeline topics are created by ops
        broker_session_timeout=kafka.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        stream_wait_empty=False,
    )
    readings = app.topic(
        topics.topic_readings, key_type=bytes, value_type=bytes, partitions=topics.topic_partitions
    )
    windows_topic = app.topic(topics.topic_windows, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(topics.topic_dead_letters, key_type=bytes, value_type=bytes)
    late_topic = app.topic(topics.topic_late, key_type=bytes, value_type=bytes)
    spc_topic = app.topic(topics.topic_spc_signals, key_type=bytes, value_type=bytes)
    anomaly_topic = app.topic(topics.topic_anomalies, key_type=bytes, value_type=bytes)
    # Keys and values are bytes we encode ourselves (JSON), so the changelog is readable by any tool.
    state = app.Table(STATE_TABLE, key_type=bytes, value_type=bytes, partitions=topics.topic_partitions)
    enc_window = serde.encoder("WindowAggregate", topics.topic_windows)
    enc_dlq = serde.encoder("DeadLetter", topics.topic_dead_letters)
    enc_late = serde.encoder("DeadLetter", topics.topic_late)
    enc_spc = serde.encoder("SpcSignal", topics.topic_spc_signals)
    enc_anomaly = serde.encoder("AnomalyEvent", topics.topic_anomalies)
    processors: dict[int, PartitionProcessor] = {}
    # Every setting the processors use is read here, at start-up: a bad one stops the command with a
    # clear error instead of crashing the agent at the first record.
    spc = SpcSettings()
    spc.monitor_config()
    anomaly = AnomalySettings()
    domain = DomainMetrics()  # one cardinality guard for the process, not one per partition
    health = _HEALTH[app] = AgentHealth()
    precreate(STAGE, (DECODE_ERROR, UNKNOWN_SCHEMA, INVALID_RECORD, TOO_LATE), (spc.chart, spc.rules))
    CATCH_UP_RECORDS.labels(STAGE)
    positions: dict[int, int] = {}
    # partition -> (first offset, end offset, machine -> next offset its checkpoint has not seen) of
    # the records its restored anomaly models have still to learn (see relearn)
    lagging: dict[int, tuple[int, int, dict[str, int]]] = {}

    async def publish(out: Outputs) -> None:
        """Send the outputs and wait until the brokers have them all (acks=all).

        The state written next says these outputs were made; on a cluster the output partitions and
        the changelog partition have different leaders, so without the wait a crash could leave the
        state in the changelog and lose the outputs, which a restart would then not make again."""
        sent: list[Any] = []
        for w in out.windows:
            sent.append(await windows_topic.send(key=w["machine_id"].encode(), value=enc_window(w)))
        for d in out.dead_letters:
            sent.append(await dlq_topic.send(key=d["key"], value=enc_dlq(d)))
        for d in out.late:
            sent.append(await late_topic.send(key=d["key"], value=enc_late(d)))
        for sig in out.spc_signals:
            sent.append(await spc_topic.send(key=sig["machine_id"].encode(), value=enc_spc(sig)))
        for a in out.anomalies:
            sent.append(await anomaly_topic.send(key=a["machine_id"].encode(), value=enc_anomaly(a)))
        if sent:  # one wait per batch: windows close together when the watermark passes their end
            await asyncio.gather(*sent)

    def processor_for(partition: int) -> tuple[PartitionProcessor, Outputs]:
        proc = processors.get(partition)
        if proc is not None:
            return proc, Outputs()
        proc = PartitionProcessor(
            stream, serde, partition, topics.topic_readings, spc, anomaly, domain=domain,
            anomaly_state_max_bytes=CHANGELOG_STATE_MAX,
        )  # fmt: skip
        prefix = f"{partition}{TABLE_SEP}"
        keys: dict[str, Any] = {}
        meta = None
        for k, v in list(state.data.items()):
            if isinstance(k, bytes):
                k = k.decode()
            if not k.startswith(prefix):
                continue
            name = k[len(prefix) :]
            v = json.loads(v)
            if name == META:
                meta = v
            else:
                keys[name] = v
        out = proc.restore(keys, meta)
        # The changelog is written in input order and a crash can only cut off its end, so the highest
        # mark restored is the state's true position.
        values = [v for v in (*keys.values(), meta) if isinstance(v, dict)]
        marks = [v[NEXT] for v in values if v.get(NEXT) is not None]
        if marks:
            positions[partition] = int(max(marks))
        # Every value's MODELS mark is true of what was written before it, so the highest restored holds.
        learnt = max((int(v[MODELS]) for v in values if v.get(MODELS) is not None), default=None)
        lagging.pop(partition, None)
        if learnt is not None and marks and learnt < positions[partition]:
            since = {
                name[len(ANOMALY_PREFIX) :]: int(v[NEXT])  # the model has seen every record before it
                for name, v in keys.items()
                if name.startswith(ANOMALY_PREFIX) and isinstance(v, dict) and v.get(NEXT) is not None
            }
            lagging[partition] = (learnt, positions[partition], since)
        if keys:
            logger.info(
                "partition %s: restored %d keys, watermark %s", partition, len(keys), proc.op.watermark
            )
        processors[partition] = proc
        return proc, out

    def put(partition: int, key: bytes, value: bytes | None) -> Any:
        """Write one key; returns the changelog write (a future: done when the brokers have it)."""
        # Explicit partition: also valid outside an event (the idle timer), where Faust's
        # table[key] = value cannot tell which changelog partition the key belongs to.
        if value is None:
            if key in state.data:
                del state.data[key]
                return state.send_changelog(partition, key, None)
            return None
        state.data[key] = value
        return state.send_changelog(partition, key, value)

    def persist(proc: PartitionProcessor, last_wm: int, offset: int | None) -> list[Any]:
        """Write what changed; ``offset`` is the input record just handled (None on the timer).
        Returns the changelog writes (futures).

        Every value written carries the next input offset the state has fully seen: the last write
        of a record carries offset + 1, the ones before it still carry offset (a crash between them
        re-reads the record, which is counted once)."""
        prefix = f"{proc.partition}{TABLE_SEP}"
        done = positions.get(proc.partition)
        learnt = None if done is None else models_mark(proc, done)
        writes = list(proc.dirty_state().items())
        if proc.op.watermark != last_wm:
            writes.append((META, proc.meta_state()))
        last = len(writes) - 1
        sent = []
        for i, (k, snap) in enumerate(writes):
            if snap is not None and done is not None:
                snap[NEXT] = offset if offset is not None and i < last else done
                # until the last write, the checkpoints this call writes may be cut off by a crash
                snap[MODELS] = learnt if i < last else models_mark(proc, done)
            value = None if snap is None else json.dumps(snap, separators=(",", ":")).encode()
            sent.append(put(proc.partition, (prefix + k).encode(), value))
        return [f for f in sent if f is not None]

    def models_mark(proc: PartitionProcessor, done: int) -> int:
        """The MODELS mark of a value written now; ``done``: the state's position."""
        waiting = lagging.get(proc.partition)
        return waiting[0] if waiting is not None else proc.models_from(done)

    # One record (or one idle tick) at a time from handling to its state write: the timer must not
    # write a state whose outputs are still waiting for the brokers (a crash would lose them).
    step = asyncio.Lock()
    stopping = asyncio.Event()  # set when the worker stops: records and ticks after that are not handled

    async def handle(proc: PartitionProcessor, value: bytes | None, offset: int, key: bytes | None) -> None:
        async with step:
            if stopping.is_set() or processors.get(proc.partition) is not proc:
                return  # given up while waiting: the partition's owner reads it again (see hand_over)
            last_wm = proc.op.watermark
            out = proc.handle(value, offset, key)
            try:
                await publish(out)
            except Exception:
                undelivered(proc)
                raise
            if processors.get(proc.partition) is not proc:
                return  # given up while publishing (see hand_over): the next owner makes them again
            positions[proc.partition] = offset + 1
            persist(proc, last_wm, offset)

    def undelivered(proc: PartitionProcessor) -> None:
        """Outputs the brokers did not take: the processor's memory already counts the record that
        made them, so it is dropped. The next record restores the state last written (before that
        record) and reads the record from Kafka again (catch-up), which makes the outputs again."""
        logger.error(
            "partition %s: outputs not delivered; the partition resumes from its last written state",
            proc.partition,
        )
        if processors.get(proc.partition) is proc:
            del processors[proc.partition]
            positions.pop(proc.partition, None)
            lagging.pop(proc.partition, None)

    async def catch_up(proc: PartitionProcessor, start: int, end: int) -> None:
        """Process input offsets [start, end) read from Kafka directly (see the module docstring)."""
        if end - start > CATCH_UP_MAX:
            logger.warning(
                "partition %s: the consumer delivered offset %s, %s records after the state's next"
                " offset %s; more than %s, so taken as a deliberate offset reset: not read",
                proc.partition, end, end - start, start, CATCH_UP_MAX,
            )  # fmt: skip
            return
        topic, partition = topics.topic_readings, proc.partition
        # strict: records it cannot read now are read again before the next record, never skipped
        records = await asyncio.to_thread(read_range, kafka, topic, partition, start, end, strict=True)
        if records:
            CATCH_UP_RECORDS.labels(STAGE).inc(len(records))
            logger.warning(
                "partition %s: the consumer delivered offset %s but the state has not seen offsets %s..%s;"
                " read %s records of them from Kafka directly",
                partition, end, start, end - 1, len(records),
            )  # fmt: skip
        else:  # offsets of transaction markers or aborted records: nothing to process
            logger.debug("partition %s: offsets %s..%s hold no records", partition, start, end - 1)
        for offset, key, value in records:
            await handle(proc, value, offset, key)

    async def relearn(proc: PartitionProcessor) -> None:
        """Give the restored anomaly models of a partition the records they missed, if they lag its
        state (see the module docstring): offsets [first, end) read from Kafka, each to the machines
        whose checkpoint had not seen it, before any later record. No model is checkpointed until all
        are learnt."""
        partition = proc.partition
        waiting = lagging.get(partition)
        if waiting is None or processors.get(partition) is not proc:
            return  # given up meanwhile: the next owner does it
        start, end, since = waiting
        if end - start > CATCH_UP_MAX:
            logger.warning(
                "partition %s: the anomaly models' checkpoints are %s records behind the state, more than"
                " %s: not read again; the models resume from their checkpoints",
                partition, end - start, CATCH_UP_MAX,
            )  # fmt: skip
            del lagging[partition]
            return
        records = await asyncio.to_thread(
            read_range, kafka, topics.topic_readings, partition, start, end, strict=True
        )
        async with step:  # held throughout: a model half way through must not be checkpointed
            if stopping.is_set() or processors.get(partition) is not proc:
                return  # given up meanwhile: the next owner does it
            for i, (offset, _key, value) in enumerate(records):
                proc.learn(value, offset, since)
                if i % LEARN_YIELD == LEARN_YIELD - 1:
                    await asyncio.sleep(0)  # the consumer and timers go on meanwhile
            if processors.get(partition) is proc:
                del lagging[partition]
        logger.warning(
            "partition %s: the anomaly models were restored from checkpoints that missed offsets %s..%s of"
            " the state; learnt the %s records in between again (read from Kafka)",
            partition, start, end - 1, len(records),
        )  # fmt: skip

    skipping: set[int] = set()  # partitions whose replay of already-seen records was logged

    def skipped(partition: int, offset: int, expected: int) -> None:
        if partition not in skipping:
            skipping.add(partition)
            logger.info(
                "partition %s: offsets %s..%s are already in the restored state; not processed again",
                partition, offset, expected - 1,
            )  # fmt: skip

    @app.agent(readings, name="windows")
    async def windows_agent(events: Any) -> None:
        try:
            async for event in events.events():
                msg = event.message
                proc, restored = processor_for(msg.partition)
                await publish(restored)
                await relearn(proc)
                expected = positions.get(msg.partition)
                if expected is not None and msg.offset < expected:
                    # Already in the restored state (the committed offset lags the changelog after a
                    # crash): handled again it would count nothing, but a reading whose window is
                    # purged by now would be reported late although it was counted.
                    skipped(msg.partition, msg.offset, expected)
                    continue
                if expected is not None and msg.offset > expected:
                    await catch_up(proc, expected, msg.offset)
                await handle(proc, event.value, msg.offset, msg.key)
                health.crash = None
        except asyncio.CancelledError:  # stopping or rebalancing
            raise
        except Exception as exc:
            health.crash = exc
            raise

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # Faust's decorators are untyped
    async def tick() -> None:
        wall = now_ms()
        for proc in list(processors.values()):
            async with step:
                if stopping.is_set() or processors.get(proc.partition) is not proc:
                    continue  # given up meanwhile
                last_wm = proc.op.watermark
                try:
                    await publish(proc.on_idle(wall))
                except Exception:  # noqa: BLE001 - logged; the next record restores the partition
                    undelivered(proc)
                    logger.exception("partition %s: idle window close", proc.partition)
                    continue
                persist(proc, last_wm, None)
        started = [p.op.watermark for p in processors.values() if p.op.watermark > 0]
        if started:  # the slowest partition is the job's watermark
            WATERMARK.labels(STAGE).set(min(started))
        for tp in app.consumer.assignment():
            if tp.topic != topics.topic_readings:
                continue
            try:
                hw = app.consumer.highwater(tp)
            except AssertionError:  # revoked meanwhile (a rebalance during the await below): aiokafka
                continue  # asserts the assignment, and the timer's exception would crash the worker
            pos = positions.get(tp.partition)
            if pos is None:  # no record handled yet: the consumer's position (the committed offset)
                try:
                    pos = await app.consumer.position(tp)
                except Exception:  # noqa: BLE001 - not positioned yet: no lag to tell
                    pos = None
            if hw is not None and pos is not None:
                CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(max(0, hw - pos))

    async def hand_over(partitions: list[int], *, drop: bool) -> None:
        """Checkpoint the anomaly models of these partitions and wait until the brokers have them;
        with ``drop``, forget the partitions' processors.

        Called before the partitions are given up (revoked, or the worker stops): their next owner,
        this worker after an eager rebalance or another one, restores them from the changelog. Waits
        for the record or tick in progress first (its state is written whole), but not longer than
        HAND_OVER_TIMEOUT_S: a record whose outputs wait for unreachable brokers is made again by the
        next owner, whose models then resume from their previous checkpoint."""
        try:
            await asyncio.wait_for(step.acquire(), HAND_OVER_TIMEOUT_S)
        except TimeoutError:
            logger.warning(
                "partitions %s: handed over without their latest anomaly models", sorted(partitions)
            )
            locked = False
        else:
            locked = True
        try:
            if locked:
                try:
                    await asyncio.wait_for(write_models(partitions), HAND_OVER_TIMEOUT_S)
                except Exception:  # noqa: BLE001 - the next owner resumes from the previous checkpoint
                    logger.warning(
                        "partitions %s: the state written at hand-over was not acknowledged within %.0f s;"
                        " their anomaly models may resume from an older checkpoint",
                        sorted(partitions), HAND_OVER_TIMEOUT_S, exc_info=True,
                    )  # fmt: skip
            if drop:
                forget(partitions)
        finally:
            if locked:
                step.release()

    async def write_models(partitions: list[int]) -> None:
        """Checkpoint every anomaly model of these partitions; return once the brokers have it (the
        writes' own futures: Faust's producer.flush() may return before its buffer is sent)."""
        procs = [proc for proc in map(processors.get, partitions) if proc is not None]
        sent = []
        for proc in procs:
            proc.save_models()
            sent += persist(proc, proc.op.watermark, None)
        await asyncio.gather(*sent)
        # A broker may report a partition's high watermark as the base offset of its last record
        # batch + 1 (the local broker does), and Faust's restore stops there: the rest of that batch
        # is not restored. One more write per partition, sent after the others were acknowledged,
        # starts a batch of its own: the partition's metadata again, unchanged.
        marks = []
        for proc in procs:
            meta = proc.meta_state()
            if (done := positions.get(proc.partition)) is not None:
                meta[NEXT] = done
                meta[MODELS] = models_mark(proc, done)
            value = json.dumps(meta, separators=(",", ":")).encode()
            marks.append(put(proc.partition, f"{proc.partition}{TABLE_SEP}{META}".encode(), value))
        await asyncio.gather(*marks)

    def forget(partitions: list[int]) -> None:
        for partition in partitions:
            proc = processors.pop(partition, None)
            positions.pop(partition, None)
            lagging.pop(partition, None)
            skipping.discard(partition)
            if proc is not None:  # the new owner exports its machines' series from now on
                domain.forget(proc.machine_ids())
            try:
                CONSUMER_LAG.remove(STAGE, topics.topic_readings, str(partition))
            except KeyError:  # never set
                pass

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust types receivers too narrowly
    async def on_shutdown(app_: Any, **kwargs: Any) -> None:
        stopping.set()
        await hand_over(list(processors), drop=False)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust types receivers too narrowly
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        await hand_over([tp.partition for tp in revoked if tp.topic == topics.topic_readings], drop=True)

    return app


def state_topic(app: faust.App) -> str:
    """The changelog topic of ``app``'s window state (``<app id>-window-state-changelog``)."""
    return str(app.tables[STATE_TABLE].changelog_topic.get_topic_name())


def read_range(
    kafka: KafkaSettings,
    topic: str,
    partition: int,
    start: int,
    end: int,
    timeout_s: float = 60.0,
    *,
    strict: bool = False,
) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of the records of one partition in [start, end), read without a group.

    When the end is not reached within ``timeout_s``: what was read, with an error logged; with
    ``strict``, :class:`StreamError` instead (the caller must not go on past records it did not see).
    """
    from confluent_kafka import Consumer, TopicPartition

    conf = {
        **kafka.librdkafka(),
        "group.id": "millstream-catch-up",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",  # records already deleted by retention: from the oldest kept
        "isolation.level": "read_uncommitted",  # what the Faust consumer reads
    }
    c = Consumer(conf)
    out: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                logger.warning("partition %s: reading offsets %s..%s: %s", partition, start, end, msg.error())
                continue
            offset = msg.offset()
            if offset is None or offset >= end:
                return out
            out.append((offset, msg.key(), msg.value()))
            if offset == end - 1:
                return out
        if strict:
            text = (
                f"partition {partition}: read {len(out)} of the records in offsets {start}..{end - 1} within "
                f"{timeout_s:.0f} s; not going on past them (retried with the next record)"
            )
            raise StreamError(text)
        logger.error(
            "partition %s: read %s of the records in offsets %s..%s within %.0f s; the rest are skipped",
            partition, len(out), start, end - 1, timeout_s,
        )  # fmt: skip
        return out
    finally:
        c.close()


class _Worker(faust.Worker):
    """Faust's worker, whose log passes a repeated warning or error once per 30 s (aiokafka logs one
    per connection attempt while the broker is unreachable: dozens a second)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:
            handler.addFilter(RepeatFilter(("aiokafka", "faust", "mode")))


def run_worker(app: faust.App, loglevel: str = "warn") -> None:
    """Run the worker until SIGTERM/SIGINT; Faust commits offsets and stops cleanly."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    # With the broker gone, stopping the consumer waits out mode's 60 s default: as long as
    # Kubernetes' grace period, so the pod was killed. The state is written before offsets are
    # committed, so giving up on the consumer sooner loses nothing.
    AIOKafkaConsumerThread.shutdown_timeout = CONSUMER_STOP_TIMEOUT_S
    worker = _Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
