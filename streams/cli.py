"""``millstream run faust|flink``: run the stream job against the configured broker."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the stream job (windows, SPC, anomaly) on an engine")
    engines = p.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    f = engines.add_parser("faust", help="single-node Faust worker (default engine)")
    f.add_argument("--metrics-port", type=int, default=None, help="override MILLSTREAM_STREAM_METRICS_PORT")
    f.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    f.set_defaults(func=run_faust)


def run_faust(args: argparse.Namespace) -> int:
    from sinks.metrics import serve
    from streams.config import StreamSettings
    from streams.faust_app import create_app, run_worker

    settings = StreamSettings()
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    serve(port, stage="windows")
    app = create_app(settings)
    run_worker(app, loglevel=args.loglevel)
    return 0
