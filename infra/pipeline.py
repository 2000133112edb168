"""The whole pipeline on one machine: broker, Prometheus, sink, stream worker, gateway.

Used by ``millstream demo`` and by the end-to-end tests. Every component runs as its own process
(as on Kubernetes), talks to the others only through Kafka, and exposes /metrics for Prometheus.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.exceptions import StackError
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalBroker, LocalPrometheus, ScrapeTarget, create_topics
from schemas.config import KafkaSettings, TopicSettings

logger = logging.getLogger(__name__)

COMPONENTS = ("gateway", "windows", "sink")
RULES = Path(__file__).resolve().parent / "prometheus" / "rules.yml"


@dataclass
class PipelineOptions:
    """Knobs of a local run (defaults suit a demo on a laptop)."""

    data_dir: Path = Path(".millstream")
    window: str = "tumbling:10s"
    out_of_orderness_ms: int = 2000
    allowed_lateness_ms: int = 5000
    idle_timeout_ms: int = 3000
    partitions: int = 3
    scrape_interval_s: float = 1.0
    extra_env: dict[str, str] = field(default_factory=dict)


class LocalPipeline:
    """Start/stop the processes of a local run; every process is stopped on :meth:`close`."""

    def __init__(self, options: PipelineOptions | None = None) -> None:
        self.opt = options or PipelineOptions()
        self.data_dir = self.opt.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.ports = {c: free_port() for c in COMPONENTS}
        self.broker: LocalBroker | None = None
        self.prometheus: LocalPrometheus | None = None
        self.procs: dict[str, ManagedProcess] = {}
        self.topics = TopicSettings(topic_partitions=self.opt.partitions)
        self.clickhouse_path = self.data_dir / "clickhouse"
        self._lock_file: IO[str] | None = None

    # ------------------------------------------------------------------------------------- env
    @property
    def kafka(self) -> KafkaSettings:
        assert self.broker is not None, "start_stack() first"
        return KafkaSettings(kafka_bootstrap=self.broker.bootstrap)

    def env(self) -> dict[str, str]:
        assert self.broker is not None, "start_stack() first"
        env = {
            "MILLSTREAM_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "MILLSTREAM_DATA_DIR": str(self.data_dir),
            "MILLSTREAM_CLICKHOUSE_URL": f"chdb://{self.clickhouse_path}",
            "MILLSTREAM_TOPIC_PARTITIONS": str(self.opt.partitions),
            "MILLSTREAM_STREAM_WINDOW": self.opt.window,
            "MILLSTREAM_STREAM_OUT_OF_ORDERNESS_MS": str(self.opt.out_of_orderness_ms),
            "MILLSTREAM_STREAM_ALLOWED_LATENESS_MS": str(self.opt.allowed_lateness_ms),
            "MILLSTREAM_STREAM_IDLE_TIMEOUT_MS": str(self.opt.idle_timeout_ms),
            "MILLSTREAM_STREAM_STATE_DIR": str(self.data_dir / "faust"),
            "PYTHONUNBUFFERED": "1",
        }
        for name, value in self.topics:
            env[f"MILLSTREAM_{name.upper()}"] = str(value)
        env.update(self.opt.extra_env)
        return env

    @staticmethod
    def cli() -> list[str]:
        return [sys.executable, "-m", "infra.cli"]

    # ------------------------------------------------------------------------------------- start
    def start_stack(self) -> None:
        """Broker (fresh, in memory), topics, Prometheus (fresh TSDB). One run per data folder: a
        second one is refused before it touches anything (it would delete the first one's state)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self._lock()
        for stale in ("faust", "prometheus"):
            shutil.rmtree(self.data_dir / stale, ignore_errors=True)
        self.broker = LocalBroker(self.data_dir).start()
        create_topics(self.kafka, self.topics)
        self.prometheus = LocalPrometheus(
            self.data_dir,
            [ScrapeTarget(c, p) for c, p in self.ports.items()],
            scrape_interval_s=self.opt.scrape_interval_s,
            rule_files=[RULES] if RULES.exists() else [],
        ).start()

    def _start(self, name: str, args: list[str], stdout: bool = False) -> ManagedProcess:
        proc = ManagedProcess(
            name,
            self.cli() + args,
            self.logs / f"{name}.log",
            env=self.env(),
            stdout_path=(self.logs / f"{name}.out") if stdout else None,
        ).start()
        self.procs[name] = proc
        return proc

    def start_sink(self) -> ManagedProcess:
        return self._start("sink", ["sink", "--metrics-port", str(self.ports["sink"])])

    def start_worker(self) -> ManagedProcess:
        return self._start("windows", ["run", "faust", "--metrics-port", str(self.ports["windows"])])

    @property
    def metadata_path(self) -> Path:
        """The simulated plant's machine/sensor metadata, written by the simulator at start."""
        return self.data_dir / "machines.csv"

    def start_gateway(
        self, duration_s: float, machines: int, rate_hz: float, seed: int = 7
    ) -> ManagedProcess:
        return self._start(
            "gateway",
            [
                "gateway",
                "simulate",
                "--machines",
                str(machines),
                "--rate",
                str(rate_hz),
                "--duration",
                str(duration_s),
                "--seed",
                str(seed),
                "--labels",
                str(self.data_dir / "fault-labels.jsonl"),
                "--metadata",
                str(self.metadata_path),
                "--metrics-port",
                str(self.ports["gateway"]),
            ],
            stdout=True,
        )

    # ------------------------------------------------------------------------------------- observe
    def check_alive(self, *names: str) -> None:
        for n in names or tuple(self.procs):
            if n in self.procs:
                self.procs[n].check_alive()

    def gateway_summary(self) -> dict[str, Any]:
        """The JSON line the gateway printed on exit."""
        out = self.logs / "gateway.out"
        for line in reversed(out.read_text(errors="replace").splitlines() if out.exists() else []):
            line = line.strip()
            if line.startswith("{"):
                return dict(json.loads(line))
        return {}

    def end_offsets(self, topic: str) -> int:
        """Records ever written to a topic (sum of its partitions' exact end offsets)."""
        return sum(self.partition_ends(topic).values())

    def partition_ends(self, topic: str) -> dict[int, int]:
        """Per partition: the offset after its last record.

        Read from the partition itself, not taken from the reported high watermark alone: a broker may
        report the high watermark as the base offset of the last record batch + 1 (the local test
        broker does), which would end a drained-check while a worker is still inside that batch. The
        last record is read from the reported end - 1 onwards; on Apache Kafka that is one record.
        """
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(
            {**self.kafka.librdkafka(), "group.id": "millstream-inspect", "enable.auto.commit": False}
        )
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            ends: dict[int, int] = {}
            tail = []
            for p in parts:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                ends[p] = hi
                if hi > lo:
                    tail.append(TopicPartition(topic, p, max(lo, hi - 1)))
            if tail:
                c.assign(tail)
                while msgs := c.consume(500, 0.5):
                    for m in msgs:
                        part, offset = m.partition(), m.offset()
                        if not m.error() and part is not None and offset is not None:
                            ends[part] = max(ends[part], offset + 1)
            return ends
        finally:
            c.close()

    def read_topic(self, topic: str, settle_s: float = 2.0, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every record of ``topic`` from the beginning, decoded (no consumer group: partitions are
        assigned directly). Stops once nothing new has arrived for ``settle_s`` seconds."""
        from confluent_kafka import Consumer, TopicPartition

        from schemas.serde import Serde

        serde = Serde()
        conf = {**self.kafka.librdkafka(), "group.id": "millstream-inspect", "enable.auto.commit": False}
        c = Consumer(conf)
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            c.assign([TopicPartition(topic, p, 0) for p in parts])
            out: list[dict[str, Any]] = []
            last = time.monotonic()
            deadline = last + timeout
            while time.monotonic() < deadline and time.monotonic() - last < settle_s:
                for m in c.consume(500, 0.2):
                    if not m.error():
                        out.append(serde.decode(m.value()).record)
                        last = time.monotonic()
            return out
        finally:
            c.close()

    def group_lag(self, group: str, topic: str) -> int:
        """End offsets minus the group's committed offsets, summed over partitions."""
        return sum(self.partition_lags(group, topic).values())

    def partition_lags(self, group: str, topic: str) -> dict[int, int]:
        """Per partition: exact end offset (:meth:`partition_ends`) minus the group's committed offset."""
        ends = self.partition_ends(topic)
        committed = self.committed_offsets(group, topic, list(ends))
        return {p: end - committed[p] for p, end in ends.items()}

    def committed_offsets(self, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
        """Per partition: the group's committed offset (0 where it has committed none)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({**self.kafka.librdkafka(), "group.id": group, "enable.auto.commit": False})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        finally:
            c.close()
        return {tp.partition: max(0, tp.offset) for tp in tps}

    def wait_drained(self, group: str, topic: str, timeout: float) -> bool:
        """Wait until ``group`` has committed everything in ``topic``."""
        try:
            wait_until(lambda: self.group_lag(group, topic) == 0, timeout, f"{group} to drain {topic}", 0.5)
            return True
        except Exception:
            logger.warning(
                "%s did not drain %s: lag per partition %s", group, topic, self.partition_lags(group, topic)
            )
            return False

    def wait_quiet(self, topic: str, quiet_s: float, timeout: float) -> None:
        """Wait until no new record has reached ``topic`` for ``quiet_s`` seconds."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = self.end_offsets(topic)
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.5)

    # ------------------------------------------------------------------------------------- stop
    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        proc = self.procs.get(name)
        return proc.stop(timeout) if proc else None

    def _lock(self) -> None:
        import fcntl

        path = self.data_dir / ".run.lock"
        fh = path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            fh.close()
            msg = (
                f"another demo or local run (pid {owner}) is using {self.data_dir}: wait for it to end, "
                "or set MILLSTREAM_DATA_DIR to another folder"
            )
            raise StackError(msg) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_file = fh  # held (and the lock with it) until close()

    def close(self) -> None:
        """Stop everything, gateway first, broker last. Safe to call twice."""
        for name in ("gateway", "windows", "sink"):
            self.stop(name)
        for p in list(self.procs.values()):
            p.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.broker is not None:
            self.broker.stop()
        lock, self._lock_file = self._lock_file, None
        if lock is not None:
            lock.close()

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
