"""``millstream``: one command line for every component.

Each subcommand lives beside the code it drives and exposes ``register(subparsers)``; the module
must stay cheap to import (heavy imports go inside the command function). This file only wires
them together and configures logging, which nothing else does.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import SettingsError

from infra.procs import interrupted_by_signals
from schemas.exceptions import MillstreamError

# (module, what it registers). Order is the order in --help.
COMMAND_MODULES = [
    "infra.commands",  # config, up, demo
    "schemas.cli",  # schemas check|list
    "ingest.cli",  # gateway simulate|opcua|mqtt
    "streams.cli",  # run faust|flink, replay
    "streams.spc.cli",  # spc
    "streams.anomaly.cli",  # detect, backtest, nab score|run
    "sinks.cli",  # sink, dead-letters, sql, migrate, metadata, rollups
]


def _settings_classes() -> dict[str, type]:
    from pydantic_settings import BaseSettings

    found: dict[str, type] = {}
    stack: list[type] = [BaseSettings]
    while stack:
        cls = stack.pop()
        sub: type
        for sub in cls.__subclasses__():
            found[sub.__name__] = sub
            stack.append(sub)
    return found


def format_settings_error(exc: ValidationError) -> str:
    """One line per bad setting, naming the environment variable to fix (secrets in the value masked)."""
    from infra.settings import env_name, masked

    cls = _settings_classes().get(exc.title)
    prefix = str(getattr(cls, "model_config", {}).get("env_prefix", "")) if cls else ""
    fields = getattr(cls, "model_fields", {})
    lines: list[str] = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        if not field:  # a check of several settings together: its message names them, one per line
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.extend(f"  {line}" for line in msg.splitlines())
            continue
        if cls is not None and field in fields:
            var = env_name(cls, field, fields[field])
        else:
            var = f"{prefix}{field}".upper() if prefix else field
        lines.append(f"  {var}={masked(err.get('input'), field)!r}: {err['msg']}")
    return "\n".join(lines)


def settings_source_error(exc: Exception) -> str:
    """One line for a setting that could not even be parsed (a dict-typed setting that is not JSON),
    naming its environment variable."""
    import re

    from infra.settings import env_name, settings_classes

    m = re.search(r'field "(\w+)"', str(exc))
    for cls in settings_classes():
        for name, info in cls.model_fields.items():
            var = env_name(cls, name, info)
            if m and name == m.group(1) and var in {k.upper() for k in os.environ}:
                return f"  {var}: not valid JSON (expected an object such as '{{\"key\": \"value\"}}')"
    return f"  {exc}"


def warn_unknown_settings() -> None:
    """A warning for each MILLSTREAM_* variable no setting reads: a typo otherwise keeps a default."""
    if not any(k.upper().startswith("MILLSTREAM_") for k in os.environ):
        return
    from infra.settings import unknown_env_names

    for var, close in unknown_env_names(os.environ):
        hint = f" (did you mean {close}?)" if close else ""
        logging.getLogger(__name__).warning("%s is not a Millstream setting and is ignored%s", var, hint)


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
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):  # not installed/built
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not getattr(args, "checks_unknown_settings", False):  # `config` reports them as errors
        warn_unknown_settings()
    try:
        # `kill`, `timeout`, a closed terminal: like Ctrl-C, so that the finally blocks run and stop
        # the child processes a command started (in sessions of their own, no signal reaches them).
        # Commands that stop gracefully on SIGTERM (sink, gateways, workers) install their own handlers.
        with interrupted_by_signals():
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at the interpreter's exit
        return code
    except ValidationError as exc:
        print(f"millstream: error: invalid configuration:\n{format_settings_error(exc)}", file=sys.stderr)
        return 1
    except SettingsError as exc:
        print(f"millstream: error: invalid configuration:\n{settings_source_error(exc)}", file=sys.stderr)
        return 1
    except MillstreamError as exc:
        print(f"millstream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("millstream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`millstream sql ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush cannot fail again
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe
    except OSError as exc:  # a file that cannot be read or written: one line, the traceback with -vv
        logging.getLogger(__name__).debug("%s", exc, exc_info=True)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"millstream: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
