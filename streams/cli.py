"""``millstream run faust|flink`` and ``millstream replay``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the stream job (windows, SPC, anomaly) on an engine")
    engines = p.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    f = engines.add_parser("faust", help="single-node Faust worker (default engine)")
    f.add_argument("--metrics-port", type=int, default=None, help="override MILLSTREAM_STREAM_METRICS_PORT")
    f.add_argument(
        "--loglevel",
        default="warn",
        choices=["crit", "error", "warn", "info", "debug"],
        help="the worker's log level (default warn)",
    )
    f.set_defaults(func=run_faust)

    fl = engines.add_parser(
        "flink",
        help="PyFlink job: local MiniCluster, or the cluster when started by Flink's PythonDriver",
        description="Run the stream job on PyFlink. Started directly it runs on a local MiniCluster with "
        "RocksDB state and exactly-once checkpoints, and resumes from the newest completed checkpoint in "
        "the checkpoint directory (MILLSTREAM_FLINK_RESTORE). Started by Flink's PythonDriver "
        "(application mode, `-pym infra.cli run flink`) it submits the same job to that cluster.",
    )
    fl.add_argument(
        "--parallelism", type=int, default=None, metavar="N", help="override MILLSTREAM_FLINK_PARALLELISM"
    )
    fl.add_argument("--metrics-port", type=int, default=None, help="override MILLSTREAM_STREAM_METRICS_PORT")
    fl.add_argument(
        "--checkpoint-dir", type=Path, default=None, help="override MILLSTREAM_FLINK_CHECKPOINT_DIR"
    )
    fl.add_argument(
        "--checkpoint-interval-ms",
        type=int,
        default=None,
        help="override MILLSTREAM_FLINK_CHECKPOINT_INTERVAL_MS",
    )
    fl.add_argument(
        "--restore",
        default=None,
        metavar="latest|none|PATH",
        help="override MILLSTREAM_FLINK_RESTORE: newest checkpoint, fresh start, or a checkpoint/savepoint",
    )
    fl.set_defaults(func=run_flink)

    r = sub.add_parser(
        "replay",
        help="replay a CSV of readings through the broker and an engine; write the windows as JSONL",
        description="Produce a bounded CSV of readings (machine_id, sensor, ts in epoch ms, value; optional "
        "plant, line, unit, quality, gateway_id, seq, lot_id) to fresh topics (on "
        "MILLSTREAM_KAFKA_BOOTSTRAP, "
        "or a local broker when unset), run the engine until every window has closed, and write "
        "windows.jsonl (final version of each window), spc.jsonl, anomalies.jsonl and summary.json.",
    )
    r.add_argument("--engine", choices=["faust", "flink"], required=True)
    r.add_argument("--input", type=Path, required=True, metavar="FILE.csv")
    r.add_argument("--output", type=Path, required=True, metavar="DIR")
    r.add_argument("--window", default=None, help="window spec (default MILLSTREAM_STREAM_WINDOW)")
    r.add_argument("--parallelism", type=int, default=None, metavar="N", help="Flink parallelism")
    r.add_argument("--keep-workdir", action="store_true", help="keep the temporary folder with engine logs")
    r.set_defaults(func=run_replay)


def run_faust(args: argparse.Namespace) -> int:
    from schemas.config import KafkaSettings, TopicSettings
    from sinks.metrics import add_liveness_check, add_readiness_check, broker_reachable, serve
    from streams.config import StreamSettings
    from streams.faust_app import agent_health, create_app, run_worker, state_topic
    from streams.partitions import check_copartitioned

    settings = StreamSettings()
    kafka = KafkaSettings()
    topics = TopicSettings()
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    app = create_app(settings, kafka, topics)  # reads and checks every setting the job uses
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    wait_for_broker(kafka, settings.broker_wait_s)  # Faust gives up at once, with a long traceback
    check_copartitioned(kafka, topics, state_topic(app))
    serve(port, stage="windows")
    health = agent_health(app)
    add_readiness_check("broker", broker_reachable(kafka.kafka_bootstrap))
    add_readiness_check("windows_agent", health.ok)
    add_liveness_check("windows_agent", health.ok)
    run_worker(app, loglevel=args.loglevel)
    return 0


def wait_for_broker(kafka: Any, wait_s: float) -> None:
    """Wait up to ``wait_s`` for a TCP connection to a bootstrap server; then a one-line error. With
    TLS, a broker that refuses the connection (client certificate, CA) is a one-line error too."""
    import time

    from sinks.metrics import broker_reachable
    from streams.exceptions import StreamError
    from streams.faust_app import tls_refusal

    broker = broker_reachable(kafka.kafka_bootstrap, cache_s=0.0)
    deadline = time.monotonic() + wait_s
    while not broker():
        if time.monotonic() > deadline:
            msg = (
                f"cannot reach the broker at {kafka.kafka_bootstrap} (MILLSTREAM_KAFKA_BOOTSTRAP) "
                f"within {wait_s:g} s (MILLSTREAM_STREAM_BROKER_WAIT_S)"
            )
            raise StreamError(msg)
        time.sleep(1.0)
    refusal = tls_refusal(kafka)
    if refusal is not None:
        raise StreamError(refusal)


def run_flink(args: argparse.Namespace) -> int:
    import json
    import signal
    import sys
    import threading

    from infra.stack import StackSettings
    from schemas.config import KafkaSettings, TopicSettings
    from sinks.metrics import serve
    from streams.config import StreamSettings
    from streams.flink.config import FlinkSettings
    from streams.flink.job import JobSpec, fixed_job_id, resolve_restore
    from streams.flink.runner import in_application_mode, run_application, run_local
    from streams.partitions import check_source_parallelism
    from streams.spc.config import SpcSettings

    stream = StreamSettings()
    overrides = {
        "parallelism": args.parallelism,
        "checkpoint_dir": args.checkpoint_dir,
        "checkpoint_interval_ms": args.checkpoint_interval_ms,
        "restore": args.restore,
    }
    # Only what is set (environment or flags) counts as explicit: in application mode the rest comes
    # from the cluster's configuration.
    flink = FlinkSettings(**{k: v for k, v in overrides.items() if v is not None})
    spec = JobSpec(stream, SpcSettings(), KafkaSettings(), TopicSettings(), flink)
    if in_application_mode():
        # The cluster's configuration (checkpoint folder, restore path from the operator) wins.
        spec.local = False
        spec.checkpoint_dir = flink.checkpoint_dir
        if flink.restore not in ("latest", "none"):
            spec.restore_path = resolve_restore(flink, Path("."))
        run_application(spec)
        return 0
    wait_for_broker(spec.kafka, stream.broker_wait_s)  # the local job would wait silently forever
    check_source_parallelism(spec.kafka, spec.topics, flink.parallelism or 1, flink.source_idle_timeout_ms)
    data_dir = StackSettings().data_dir
    spec.checkpoint_dir = flink.resolved_checkpoint_dir(data_dir)
    spec.restore_path = resolve_restore(flink, spec.checkpoint_dir, fixed_job_id(stream.app_id))
    port = args.metrics_port if args.metrics_port is not None else stream.metrics_port
    serve(port, stage="windows")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def started(job_id: str, rest_port: int) -> None:
        info = {
            "job_id": job_id,
            "rest_port": rest_port,
            "checkpoint_dir": str(spec.checkpoint_dir),
            "restored_from": str(spec.restore_path) if spec.restore_path else None,
        }
        print(json.dumps(info), flush=True)

    state = run_local(spec, data_dir / "flink" / "log", stop, on_start=started)
    print(f"millstream: flink job ended: {state}", file=sys.stderr)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    import json

    from streams.replay import replay

    summary = replay(args.engine, args.input, args.output, args.window, args.parallelism, args.keep_workdir)
    print(json.dumps(summary))
    return 0
