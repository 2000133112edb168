"""``millstream gateway KIND``: run a device gateway that produces readings to Kafka.

Kinds: ``simulate`` (the plant simulator), ``opcua`` and ``mqtt`` (protocol bridges in
:mod:`ingest.opcua` and :mod:`ingest.mqtt`, each exposing ``CONFIG`` (its configuration model) and
``GATEWAY`` (``GATEWAY(config, emitter)`` with ``run_blocking(stop)`` and ``close()``)). Further
bridges can register from :data:`GATEWAY_MODULES` (``register_gateway(kinds)``), reusing
:func:`add_bridge_options`, :func:`run_bridge` and :class:`GatewaySession`.

The bridges always run through store-and-forward (:mod:`ingest.forwarder`, spool in
``--spool-dir``); ``simulate`` does when a spool folder is given (``--spool-dir``, a ``spool:``
section in ``--config`` or ``MILLSTREAM_SPOOL_DIR``).

On SIGTERM, SIGINT or the end of the run a gateway flushes, prints ONE JSON line to stdout and
exits (0 when nothing was lost, 1 when some messages failed and were not kept)::

    {"read": ..., "produced": ..., "acknowledged": ..., "failed": ..., "spooled": 0, "dropped": 0,
     "scans": ..., "values": ..., "duration_s": ...}

``read`` and ``values`` count sensor values (read from devices; turned into readings);
``produced``, ``acknowledged`` and ``failed`` count Kafka messages (one per machine scan, or per
reading for the bridges; ``failed``: neither acknowledged nor kept in the spool); ``spooled`` and
``dropped`` count spool records (``dropped``: by the overflow policy or damage). ``scans`` counts
source messages (simulated scans, OPC UA notifications, MQTT messages). The bridges add
``replayed``, ``dead_letters``, ``spool_pending`` (left for the next start), ``delivery_failures``
and ``outages``. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.settings_sources import Problems

logger = logging.getLogger(__name__)

GATEWAY_MODULES: list[str] = []  # further bridges with register_gateway(kinds); missing ones are skipped
BRIDGES = {
    "opcua": "OPC UA client: subscribe to PLC nodes, produce readings",
    "mqtt": "MQTT subscriber: device topics -> readings (QoS 1, persistent session)",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gateway", help="run a device gateway: machines -> Kafka readings")
    kinds = parser.add_subparsers(dest="gateway_kind", metavar="KIND", required=True)
    _register_simulate(kinds)
    for kind, text in BRIDGES.items():
        p = kinds.add_parser(kind, help=text)
        add_bridge_options(p)
        p.set_defaults(func=run_bridge)
    for name in GATEWAY_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register_gateway(kinds)


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        msg = f"must be a number greater than 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every gateway kind shares."""
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics, /healthz, /readyz here")
    p.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        help="stop after S seconds (of event time when fast-forwarding)",
    )
    p.add_argument(
        "--max-values-per-s",
        type=positive_float,
        default=None,
        help="rate limit in sensor values per second (MILLSTREAM_PRODUCER_MAX_VALUES_PER_S)",
    )
    p.add_argument("--topic", default=None, help="output topic (default MILLSTREAM_TOPIC_READINGS)")


def add_spool_options(p: argparse.ArgumentParser) -> None:
    """Store-and-forward options (override the file's ``spool:`` section and MILLSTREAM_SPOOL_*).
    For ``simulate`` the flags other than --spool-dir need a spool folder (an error otherwise)."""
    p.add_argument("--spool-dir", type=Path, default=None, help="spool folder (MILLSTREAM_SPOOL_DIR)")
    p.add_argument(
        "--fsync", choices=["always", "interval", "never"], default=None, help="spool fsync policy"
    )
    p.add_argument("--spool-max-bytes", type=int, default=None, help="spool size bound in bytes")
    p.add_argument(
        "--overflow",
        choices=["drop-oldest", "block", "drop-newest"],
        default=None,
        help="what a full spool does",
    )


def add_bridge_options(p: argparse.ArgumentParser) -> None:
    """Options of a protocol bridge: its configuration file, the spool, the common ones."""
    p.add_argument("--config", type=Path, required=True, help="gateway configuration (YAML or JSON)")
    add_spool_options(p)
    add_common_options(p)


def _register_simulate(kinds: Any) -> None:
    p = kinds.add_parser("simulate", help="simulated plant with injected, labelled faults")
    p.add_argument("--machines", type=int, default=None, help="number of machines (MILLSTREAM_SIM_MACHINES)")
    p.add_argument("--sensors", type=int, default=None, help="sensors per machine (MILLSTREAM_SIM_SENSORS)")
    p.add_argument("--rate", type=float, default=None, help="scans per second per machine")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same signals)")
    p.add_argument("--labels", type=Path, default=None, help="write ground-truth fault labels (JSONL) here")
    p.add_argument(
        "--metadata",
        type=Path,
        default=None,
        help="write the plant's machines, sensors and spec limits (CSV for `millstream metadata load`)",
    )
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
    p.add_argument(
        "--quiet-machines", default=None, help="comma-separated machine ids without random faults (m002,m005)"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=None,
        metavar="MACHINE:KIND:START_S:DURATION_S[:MAGNITUDE|SENSOR]",
        help="a scheduled fault (repeatable), e.g. m001:pressure_leak:90000:3600:2.0",
    )
    p.add_argument("--gateway-id", default=None, help="gateway id written into every scan")
    p.add_argument(
        "--config", type=Path, default=None, help="YAML/JSON: simulator settings (+ spool/producer sections)"
    )
    add_spool_options(p)
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


def _start_forwarder(args: argparse.Namespace, spool: Any, producer: Any, forwarder: Any) -> Any:
    from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
    from schemas.config import KafkaSettings, TopicSettings

    topics = TopicSettings()
    kinds = {READINGS: args.topic or topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters}
    return Forwarder(KafkaSettings(), kinds, spool, producer, forwarder).start()


def _ready_when_online(args: argparse.Namespace, forwarder: Any) -> None:
    if args.metrics_port is not None:
        from sinks.metrics import add_readiness_check

        add_readiness_check("broker", lambda: bool(forwarder.online))


def _stop_after(stop: threading.Event, seconds: float | None) -> None:
    if seconds is not None:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()


def run_bridge(args: argparse.Namespace) -> int:
    """``millstream gateway opcua|mqtt --config FILE``: the bridge, validation, store-and-forward."""
    from ingest.bridge import Emitter
    from ingest.settings_sources import Problems, forwarding_settings, spool_for
    from ingest.validation import Validator

    module = importlib.import_module(f"ingest.{args.gateway_kind}")
    problems = Problems(args.config)
    data, sections = problems.read_file()
    config = problems.model(module.CONFIG, data)
    spool, producer, forward = forwarding_settings(args, sections, problems)
    problems.check()
    assert config is not None and spool is not None  # problems.check() raised otherwise
    settings = (spool_for(spool, config.gateway_id), producer, forward)
    t0 = time.monotonic()
    with GatewaySession(args.metrics_port) as session:
        forwarder = _start_forwarder(args, *settings)
        _ready_when_online(args, forwarder)
        emitter = Emitter(forwarder, Validator(config.validation, config.gateway_id))
        gateway = None
        try:
            gateway = module.GATEWAY(config, emitter)
            _stop_after(session.stop, args.duration)
            gateway.run_blocking(session.stop)
        finally:
            try:
                forwarder.close()  # raises when the forwarder failed (e.g. the spool's disk is full)
            finally:  # ... and the summary line still goes out before that error
                if gateway is not None:
                    gateway.close()
                report = forwarder.report()
                _bridge_summary(session, emitter, gateway, report, t0)
    if report.lost:
        logger.error("%d messages were neither delivered nor spooled", report.lost)
        return 1
    return 0


def _bridge_summary(session: GatewaySession, emitter: Any, gateway: Any, report: Any, t0: float) -> None:
    session.print_summary(
        {
            "read": emitter.read,
            "produced": report.produced,
            "acknowledged": report.acknowledged,
            "failed": report.lost,
            "spooled": report.spooled,
            "dropped": report.dropped,
            "scans": getattr(gateway, "messages", 0),
            "values": emitter.readings,
            "duration_s": round(time.monotonic() - t0, 3),
            "replayed": report.replayed,
            "dead_letters": emitter.dead_letters,
            "spool_pending": report.pending,
            "delivery_failures": report.delivery_failures,
            "outages": report.outages,
        }
    )


def _check_fault_plan(settings: Any) -> None:
    """Quiet machines and scheduled faults name machines of this plant (ValueError otherwise)."""
    from ingest.signals import fault_plan
    from ingest.simulator import plant_layout

    machines = plant_layout(settings.plant, settings.machines, settings.machines_per_line)
    fault_plan([m.machine_id for m in machines], settings.quiet, settings.fault_schedule)


def run_simulate(args: argparse.Namespace) -> int:
    from ingest.config import ProducerSettings, SimulatorSettings
    from ingest.producer import GatewayProducer
    from ingest.settings_sources import (
        PRODUCER_FLAGS,
        SIMULATOR_FLAGS,
        Problems,
        forwarding_settings,
        given_flags,
        spool_for,
    )
    from ingest.simulator import PlantSimulator, RunResult, run_simulation
    from schemas.config import KafkaSettings, TopicSettings
    from schemas.exceptions import ConfigError

    problems = Problems(args.config)
    data, sections = problems.read_file()
    forwarding = bool(args.spool_dir or sections["spool"] or "MILLSTREAM_SPOOL_DIR" in os.environ)
    if not forwarding:
        _spool_options_need_a_folder(args, sections, problems)
    sim_settings = problems.settings(SimulatorSettings, None, data, given_flags(args, SIMULATOR_FLAGS))
    spool = forward = None
    if forwarding:
        spool, producer_settings, forward = forwarding_settings(args, sections, problems)
    else:
        flags = given_flags(args, PRODUCER_FLAGS)
        producer_settings = problems.settings(ProducerSettings, "producer", sections["producer"], flags)
    problems.check()
    assert sim_settings is not None and producer_settings is not None  # check() raised otherwise
    try:
        _check_fault_plan(sim_settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if spool is not None:
        settings = (spool_for(spool, sim_settings.gateway_id), producer_settings, forward)
        return _simulate_forwarding(args, sim_settings, settings)
    topic = args.topic or TopicSettings().topic_readings
    sim = PlantSimulator(sim_settings)
    result = RunResult()
    with GatewaySession(args.metrics_port) as session:
        producer = GatewayProducer(KafkaSettings(), topic, producer_settings)
        if args.metrics_port is not None:
            from sinks.metrics import add_readiness_check

            add_readiness_check("broker", producer.connected)
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


def _spool_options_need_a_folder(
    args: argparse.Namespace, sections: dict[str, Any], problems: Problems
) -> None:
    """Without a spool folder ``simulate`` produces straight to Kafka: spool options would do nothing."""
    given = [
        flag
        for flag, value in (
            ("--fsync", args.fsync),
            ("--spool-max-bytes", args.spool_max_bytes),
            ("--overflow", args.overflow),
        )
        if value is not None
    ]
    if sections["forwarder"]:
        given.append(f"the forwarder: section of {args.config}")
    if given:
        problems.add(
            f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --spool-dir (or a spool: section in "
            "--config, or MILLSTREAM_SPOOL_DIR): without a spool folder simulate produces straight to Kafka"
        )


def _simulate_forwarding(args: argparse.Namespace, sim_settings: Any, settings: Any) -> int:
    """The simulator through store-and-forward: same summary, with spooled/dropped filled in."""
    from ingest.bridge import ForwardingScanSink
    from ingest.simulator import PlantSimulator, RunResult, run_simulation

    sim = PlantSimulator(sim_settings)
    result = RunResult()
    with GatewaySession(args.metrics_port) as session:
        forwarder = _start_forwarder(args, *settings)
        _ready_when_online(args, forwarder)
        try:
            run_simulation(sim, ForwardingScanSink(forwarder), session.stop, result)
        finally:
            report = forwarder.close()
            session.print_summary(
                {
                    "read": result.values,
                    "produced": report.produced,
                    "acknowledged": report.acknowledged,
                    "failed": report.lost,
                    "spooled": report.spooled,
                    "dropped": report.dropped,
                    "scans": result.scans,
                    "values": result.values,
                    "duration_s": result.duration_s,
                }
            )
    return 1 if report.lost else 0
