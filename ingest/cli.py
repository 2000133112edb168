"""``millstream gateway KIND``: run a device gateway that produces readings to Kafka.

Kinds: ``simulate`` (here); protocol bridges register themselves from the modules listed in
:data:`GATEWAY_MODULES`, each exposing ``register_gateway(kinds)`` and reusing
:func:`add_common_options` and :class:`GatewaySession`.

On SIGTERM, SIGINT or the end of the run a gateway flushes, prints ONE JSON line to stdout and
exits (0 when every message was acknowledged, 1 when some failed)::

    {"read": ..., "produced": ..., "acknowledged": ..., "failed": ..., "spooled": 0, "dropped": 0,
     "scans": ..., "values": ..., "duration_s": ...}

``read`` and ``values`` count sensor values; ``produced``, ``acknowledged`` and ``failed`` count
Kafka messages (one per machine scan). Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

GATEWAY_MODULES = ["ingest.opcua.cli", "ingest.mqtt.cli"]  # optional: skipped until they exist


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gateway", help="run a device gateway: machines -> Kafka readings")
    kinds = parser.add_subparsers(dest="gateway_kind", metavar="KIND", required=True)
    _register_simulate(kinds)
    for name in GATEWAY_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register_gateway(kinds)


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every gateway kind shares."""
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics, /healthz, /readyz here")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after S seconds (of event time when fast-forwarding)",
    )
    p.add_argument(
        "--max-values-per-s",
        type=float,
        default=None,
        help="rate limit in sensor values per second (MILLSTREAM_PRODUCER_MAX_VALUES_PER_S)",
    )
    p.add_argument("--topic", default=None, help="output topic (default MILLSTREAM_TOPIC_READINGS)")


def _register_simulate(kinds: Any) -> None:
    p = kinds.add_parser("simulate", help="simulated plant with injected, labelled faults")
    p.add_argument("--machines", type=int, default=None, help="number of machines (MILLSTREAM_SIM_MACHINES)")
    p.add_argument("--sensors", type=int, default=None, help="sensors per machine (MILLSTREAM_SIM_SENSORS)")
    p.add_argument("--rate", type=float, default=None, help="scans per second per machine")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same signals)")
    p.add_argument("--labels", type=Path, default=None, help="write ground-truth fault labels (JSONL) here")
    p.add_argument("--max-scans", type=int, default=None, help="stop after N scans in total")
    p.add_argument(
        "--fault-probability",
        type=float,
        default=None,
        help="chance per machine and simulated second that a fault starts",
    )
    p.add_argument(
        "--start-ms",
        type=int,
        default=None,
        help="fast-forward: event time starts here (epoch ms), no sleeping",
    )
    p.add_argument(
        "--fast-forward", action="store_true", default=None, help="no sleeping, event time starting now"
    )
    p.add_argument("--gateway-id", default=None, help="gateway id written into every scan")
    add_common_options(p)
    p.set_defaults(func=run_simulate)


class GatewaySession:
    """Signal handling, the metrics endpoint and the summary line of one gateway run."""

    def __init__(self, metrics_port: int | None) -> None:
        self.stop = threading.Event()
        self.metrics_port = metrics_port
        self._server: Any = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GatewaySession:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        if self.metrics_port is not None:
            from sinks.metrics import serve

            self._server = serve(self.metrics_port, stage="gateway")
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():  # a second signal: stop waiting for the flush
            raise KeyboardInterrupt
        logger.info("received %s: flushing and stopping", signal.Signals(signum).name)
        self.stop.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @staticmethod
    def print_summary(summary: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()


def run_simulate(args: argparse.Namespace) -> int:
    from ingest.config import ProducerSettings, SimulatorSettings
    from ingest.producer import GatewayProducer
    from ingest.simulator import PlantSimulator, RunResult, run_simulation
    from schemas.config import KafkaSettings, TopicSettings
    from schemas.exceptions import ConfigError

    overrides = {
        "machines": args.machines,
        "sensors": args.sensors,
        "rate_hz": args.rate,
        "seed": args.seed,
        "labels_path": args.labels,
        "duration_s": args.duration,
        "max_scans": args.max_scans,
        "fault_probability": args.fault_probability,
        "start_ms": args.start_ms,
        "fast_forward": args.fast_forward,
        "gateway_id": args.gateway_id,
    }
    try:
        sim_settings = SimulatorSettings(**{k: v for k, v in overrides.items() if v is not None})
        producer_settings = ProducerSettings()
        if args.max_values_per_s is not None:
            producer_settings = producer_settings.model_copy(
                update={"max_values_per_s": args.max_values_per_s}
            )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(str(exc)) from exc
    topic = args.topic or TopicSettings().topic_readings
    sim = PlantSimulator(sim_settings)
    result = RunResult()
    with GatewaySession(args.metrics_port) as session:
        producer = GatewayProducer(KafkaSettings(), topic, producer_settings)
        if args.metrics_port is not None:
            from sinks.metrics import add_readiness_check

            add_readiness_check("kafka", producer.connected)
        try:
            run_simulation(sim, producer, session.stop, result)
        finally:
            report = producer.close()
            session.print_summary(
                {
                    "read": result.values,
                    "produced": report.produced,
                    "acknowledged": report.acknowledged,
                    "failed": report.failed,
                    "spooled": 0,
                    "dropped": 0,
                    "scans": result.scans,
                    "values": result.values,
                    "duration_s": result.duration_s,
                }
            )
    if report.failed:
        logger.error(
            "%d of %d messages were not delivered: %s", report.failed, report.produced, report.errors
        )
        return 1
    return 0
