"""Stack-level commands: ``config``, ``up``, ``demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(sub: Any) -> None:
    c = sub.add_parser("config", help="print and check the effective configuration (secrets masked)")
    c.add_argument("--json", action="store_true", help="print the values as one JSON object")
    c.set_defaults(func=cmd_config, checks_unknown_settings=True)

    u = sub.add_parser("up", help="start the embedded stack (broker, Prometheus) and keep it up until Ctrl-C")
    u.set_defaults(func=cmd_up)

    d = sub.add_parser(
        "demo", help="run the whole pipeline on the embedded stack for a while, then summarise"
    )
    d.add_argument("--duration", type=float, default=120.0, help="seconds the plant runs (default 120)")
    d.add_argument("--machines", type=int, default=10, help="simulated machines (default 10)")
    d.add_argument("--rate", type=float, default=2.0, help="scans per second per machine")
    d.add_argument("--json", action="store_true", help="print one JSON object instead of the human summary")
    d.set_defaults(func=cmd_demo)


def effective_config() -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every settings group's values by environment variable, secrets masked, and one line per bad
    setting (``MILLSTREAM_X='value': why``; a bad group is left out of the values) and per
    ``MILLSTREAM_*`` variable that no setting reads (a typo: the setting it meant keeps its default)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from infra.cli import format_settings_error, settings_source_error
    from infra.settings import env_name, masked, settings_classes, unknown_env_names

    out: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for cls in settings_classes():
        try:
            inst = cls()
        except ValidationError as exc:
            errors.append(format_settings_error(exc))
            continue
        except SettingsError as exc:
            errors.append(settings_source_error(exc))
            continue
        values = {}
        for name, field in cls.model_fields.items():
            v = masked(getattr(inst, name), name)
            values[env_name(cls, name, field)] = v if v is None or isinstance(v, dict) else str(v)
        out[cls.__name__] = values
        problem = getattr(inst, "credentials_problem", lambda: None)()
        if problem is not None:
            errors.append(f"  {problem}")
    for var, close in unknown_env_names(os.environ):
        hint = f" (did you mean {close}?)" if close else ""
        errors.append(f"  {var} is not a Millstream setting{hint}")
    return out, errors


def cmd_config(args: argparse.Namespace) -> int:
    """Print every setting; exit 1 if any is invalid or a ``MILLSTREAM_*`` variable is no setting (a
    pre-flight check for a deployment's env, as strict as ``infra.k8s_validate``)."""
    cfg, errors = effective_config()
    if args.json:
        print(json.dumps(cfg, indent=2))
    else:
        for section, values in cfg.items():
            print(f"[{section}]")
            for k, v in values.items():
                print(f"  {k} = {v}")
    if errors:
        print("millstream: error: invalid configuration:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Broker + topics + Prometheus (scraping the default component ports), until interrupted."""
    import signal
    import threading

    from infra.stack import LocalBroker, LocalPrometheus, ScrapeTarget, StackSettings, create_topics
    from schemas.config import KafkaSettings, TopicSettings
    from streams.config import StreamSettings

    st = StackSettings()
    broker = LocalBroker(st.data_dir.resolve(), st.broker_port or 9092).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # kill, or the terminal closed: stop what was started
        signal.signal(sig, lambda *_: stop.set())
    prom = None
    try:
        topics = TopicSettings()
        created = create_topics(KafkaSettings(kafka_bootstrap=broker.bootstrap), topics)
        targets = [
            ScrapeTarget("gateway", 9100),
            ScrapeTarget("windows", StreamSettings().metrics_port),
            ScrapeTarget("sink", 9102),
        ]
        prom = LocalPrometheus(
            st.data_dir.resolve(), targets, st.prometheus_port or 9090, st.scrape_interval_s
        ).start()
        print(
            f"broker      {broker.bootstrap}  (topics created: {', '.join(created) or 'none, all existed'})"
        )
        print(f"prometheus  {prom.url}")
        print(f"export MILLSTREAM_KAFKA_BOOTSTRAP={broker.bootstrap}")
        print(
            "Prometheus scrapes the components' metrics ports: start them with "
            "`millstream gateway … --metrics-port 9100`, "
            f"`millstream run faust` (serves :{targets[1].port}), "
            "`MILLSTREAM_SINK_METRICS_PORT=9102 millstream sink`."
        )
        print("Ctrl-C stops the stack.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if prom is not None:
            prom.stop()
        broker.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from infra.demo import run_demo

    return run_demo(duration_s=args.duration, machines=args.machines, rate_hz=args.rate, as_json=args.json)
