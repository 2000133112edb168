"""The Flink job graph and its configuration.

    Kafka table source (key, raw value, partition, offset, record timestamp; per-partition event-time
    watermarks pushed into the source: bounded out-of-orderness + idleness of empty partitions)
      -> to_data_stream
      -> KeyByMachine (Python: decode enough to key; non-readings -> dead-letter side output)
      -> key_by(machine_id)
      -> WindowsFunction (Python, keyed: windows, SPC, anomaly; state in RocksDB; event-time timers)
      -> union(dead letters) -> KafkaSink (topic from each record; transactions with checkpoints)

Event time for watermarks is the Kafka record timestamp, read by the source per partition (Flink
combines partitions by taking the minimum, so a fast partition never closes a slow one's windows).
Producers must set it to the reading's event time: the replay and ``GatewayProducer`` do
(docs/scaling-out.md). Window assignment always uses the event time inside the Avro record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.config import KafkaSettings, TopicSettings
from streams.config import StreamSettings
from streams.exceptions import StreamError
from streams.flink.config import FlinkSettings
from streams.spc.config import SpcSettings

logger = logging.getLogger(__name__)

UIDS = ("key-by-machine", "windows", "kafka-sink")


@dataclass
class JobSpec:
    """Everything that defines one run of the job."""

    stream: StreamSettings
    spc: SpcSettings
    kafka: KafkaSettings
    topics: TopicSettings
    flink: FlinkSettings
    local: bool = True  # local MiniCluster (vs application mode on a cluster)
    restore_path: Path | None = None
    checkpoint_dir: Path | None = None
    stop_offsets: dict[int, int] | None = None  # bounded run (replay, benchmarks)
    rest_port: int | None = None
    name: str = "millstream-windows"
    anomaly: Any = None  # AnomalySettings; None = from the environment

    @property
    def exactly_once(self) -> bool:
        return self.flink.delivery == "exactly-once" and self.flink.checkpoint_interval_ms > 0


def fixed_job_id(app_id: str) -> str:
    """A stable job id per app id, so a restarted local job keeps checkpointing into the same folder."""
    return hashlib.md5(app_id.encode(), usedforsecurity=False).hexdigest()


def latest_checkpoint(root: Path, job_id: str = "*") -> Path | None:
    """The newest completed checkpoint under ``root`` (``<job id>/chk-N/_metadata``; of one job's if
    ``job_id`` is given), or None.

    Flink writes ``_metadata`` last (to a temporary name, then renamed), so a folder without it is a
    checkpoint in progress or an aborted one and is skipped.
    """
    if not root.is_dir():
        return None
    found = [
        p.parent
        for p in root.glob(f"{job_id}/chk-*/_metadata")
        if p.is_file() and p.stat().st_size > 0 and p.parent.name.split("-", 1)[1].isdigit()
    ]
    if not found:
        return None
    return max(found, key=lambda d: (d.joinpath("_metadata").stat().st_mtime_ns, int(d.name.split("-")[1])))


def resolve_restore(flink: FlinkSettings, checkpoint_dir: Path, job_id: str = "*") -> Path | None:
    """What MILLSTREAM_FLINK_RESTORE asks for: the latest checkpoint (of the job ``job_id``, whose
    folder it is: another app id's checkpoints are not this job's), nothing, or a given path."""
    mode = flink.restore.strip()
    if mode == "none":
        return None
    if mode == "latest":
        return latest_checkpoint(checkpoint_dir, job_id)
    path = Path(mode).expanduser().resolve()
    if path.name == "_metadata":
        path = path.parent
    if not (path / "_metadata").is_file():
        msg = f"MILLSTREAM_FLINK_RESTORE={mode}: no _metadata there; give a chk-N or savepoint folder"
        raise StreamError(msg)
    return path


def configuration(spec: JobSpec) -> dict[str, str]:
    """Flink configuration of the job (string values, as in config.yaml).

    In application mode the cluster's configuration (the FlinkDeployment's flinkConfiguration) wins:
    only settings given explicitly through MILLSTREAM_FLINK_* are applied on top of it.
    """
    explicit = spec.flink.model_fields_set
    conf: dict[str, str] = {
        "state.backend.type": "rocksdb",
        "pipeline.name": spec.name,
        # Smaller Python bundles: outputs leave the Python worker at least every 200 ms.
        "python.fn-execution.bundle.time": "200",
    }
    if spec.local or "python_mode" in explicit:
        conf["python.execution-mode"] = "thread" if spec.flink.python_mode == "thread" else "process"
    if spec.flink.checkpoint_interval_ms > 0 and (spec.local or "checkpoint_interval_ms" in explicit):
        conf["execution.checkpointing.incremental"] = "true"
        conf.update(
            {
                "execution.checkpointing.interval": f"{spec.flink.checkpoint_interval_ms} ms",
                "execution.checkpointing.mode": "EXACTLY_ONCE",
                "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
                "execution.checkpointing.num-retained": "3",
                "execution.checkpointing.min-pause": f"{min(500, spec.flink.checkpoint_interval_ms // 2)} ms",
            }
        )
    if spec.checkpoint_dir is not None:
        conf["execution.checkpointing.dir"] = spec.checkpoint_dir.resolve().as_uri()
    if spec.restore_path is not None:
        conf["execution.state-recovery.path"] = spec.restore_path.resolve().as_uri()
    if spec.flink.parallelism is not None:
        conf["parallelism.default"] = str(spec.flink.parallelism)
    if spec.local:
        from infra.flink_jars import jar_paths

        conf["pipeline.jars"] = ";".join(p.resolve().as_uri() for p in jar_paths())
        conf["python.executable"] = sys.executable
        conf["python.client.executable"] = sys.executable
        conf["$internal.pipeline.job-id"] = fixed_job_id(spec.stream.app_id)
        conf["rest.port"] = str(spec.rest_port or 8081)
        conf["rest.address"] = "127.0.0.1"
        conf["rest.bind-address"] = "127.0.0.1"
        conf["metrics.fetcher.update-interval"] = "1000"
        if spec.flink.parallelism is None:
            conf["parallelism.default"] = "1"
    if spec.flink.prometheus_port is not None:
        conf["metrics.reporter.prom.factory.class"] = (
            "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
        )
        conf["metrics.reporter.prom.port"] = str(spec.flink.prometheus_port)
    conf.update(spec.flink.extra_conf())
    return conf


def prepare_local_process(log_dir: Path, python_mode: str) -> None:
    """Before the first PyFlink call: where the MiniCluster logs, where Python functions run, and
    what the workers import."""
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    # The log file is named after this; one file per start (a restart must not overwrite the old log).
    os.environ.setdefault(
        "FLINK_IDENT_STRING", f"millstream-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
    )
    # PyFlink runs the Python functions of a local job inside this process ("loopback") unless told
    # otherwise: one GIL for every subtask, so parallelism would not scale.
    os.environ["_python_worker_execution_mode"] = "loopback" if python_mode == "loopback" else "process"
    # Worker processes and thread mode's embedded CPython must see this interpreter's packages and the
    # project.
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def environment(spec: JobSpec) -> Any:
    """A StreamExecutionEnvironment configured for ``spec`` (local MiniCluster or the cluster's)."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    for k, v in configuration(spec).items():
        conf.set_string(k, v)
    return StreamExecutionEnvironment.get_execution_environment(conf)


def build(env: Any, spec: JobSpec) -> None:
    """Add the job graph to ``env``."""
    from pyflink.common.typeinfo import Types
    from pyflink.table import StreamTableEnvironment

    from streams.anomaly.config import AnomalySettings
    from streams.flink import functions as fn
    from streams.flink.kafka import READINGS_TABLE, readings_table_ddl, topic_sink

    anomaly = spec.anomaly or AnomalySettings()
    settings = fn.Settings(
        spec.stream.model_dump(), spec.spc.model_dump(), spec.topics.model_dump(), anomaly.model_dump()
    )
    t_env = StreamTableEnvironment.create(env)
    if spec.flink.source_idle_timeout_ms and spec.stop_offsets is None:
        t_env.get_config().set("table.exec.source.idle-timeout", f"{spec.flink.source_idle_timeout_ms} ms")
    t_env.execute_sql(
        readings_table_ddl(
            spec.kafka,
            spec.topics.topic_readings,
            spec.stream.app_id,
            spec.stream.out_of_orderness_ms,
            spec.stop_offsets,
        )
    )
    raw = t_env.to_data_stream(t_env.from_path(READINGS_TABLE))
    keyed = raw.process(fn.KeyByMachine(settings), output_type=fn.KEYED_TYPE).name("key-by-machine")
    keyed.uid(UIDS[0])
    dead = keyed.get_side_output(fn.DEAD_LETTERS)
    results = (
        keyed.key_by(lambda r: r[0], key_type=Types.STRING())
        .process(fn.WindowsFunction(settings), output_type=fn.OUTPUT_TYPE)
        .name("windows")
    )
    results.uid(UIDS[1])
    sink = topic_sink(
        spec.kafka,
        exactly_once=spec.exactly_once,
        transactional_id_prefix=f"{spec.stream.app_id}-flink",
        transaction_timeout_ms=spec.flink.transaction_timeout_ms,
    )
    results.union(dead).sink_to(sink).name("kafka-sink").uid(UIDS[2])
