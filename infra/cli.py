"""``millstream``: one command line for every component.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``; the module
must stay cheap to import (heavy imports go inside the command function). This file only wires
them together and configures logging, which nothing else does.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from schemas.exceptions import MillstreamError

# (module, what it registers). Order is the order in --help.
COMMAND_MODULES = [
    "infra.commands",  # config, up, demo, topics
    "schemas.cli",  # schemas check|list
    "ingest.cli",  # gateway simulate|opcua|mqtt
    "streams.cli",  # run faust|flink, replay
    "streams.spc.cli",  # spc
    "streams.anomaly.cli",  # detect, nab score|run
    "sinks.cli",  # sink, sql, migrate
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="millstream",
        description="Stream processing for factory sensor data: windows, SPC and anomaly detection.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that component is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MillstreamError as exc:
        print(f"millstream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("millstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
