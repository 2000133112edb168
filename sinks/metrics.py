"""Pipeline metrics shared by every process, and the HTTP endpoint that serves them.

Every process (gateway, stream worker, sink) calls :func:`serve` once; Prometheus scrapes
``/metrics``; Kubernetes probes ``/healthz`` (the process runs and is not stuck: its liveness
checks) and ``/readyz`` (its broker and sink connections work: its readiness checks). Labels are
bounded: ``stage`` is a component name, ``reason`` a fixed code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000)

RECORDS_IN = Counter("millstream_records_in", "Records a stage consumed.", ["stage"])
RECORDS_OUT = Counter("millstream_records_out", "Records a stage produced or wrote.", ["stage"])
DECODE_ERRORS = Counter("millstream_decode_errors", "Values a stage could not decode.", ["stage"])
DEAD_LETTERS = Counter(
    "millstream_dead_letters",
    "Records sent to the dead-letter or late topic, by reason code.",
    ["stage", "reason"],
)
CATCH_UP_RECORDS = Counter(
    "millstream_catch_up_records",
    "Input records a stream worker's consumer did not deliver and the worker read from Kafka directly.",
    ["stage"],
)
CONSUMER_LAG = Gauge(
    "millstream_consumer_lag_records",
    "High watermark minus position, per input partition.",
    ["stage", "topic", "partition"],
)
END_TO_END_LATENCY = Histogram(
    "millstream_end_to_end_latency_ms",
    "Milliseconds from a reading's event time to the moment the stage handled its result.",
    ["stage"],
    buckets=LATENCY_BUCKETS_MS,
)
WATERMARK = Gauge("millstream_watermark_ms", "Last event-time watermark, epoch milliseconds.", ["stage"])
SPC_SIGNALS = Counter("millstream_spc_signals", "SPC run-rule signals, by chart and rule.", ["chart", "rule"])
ANOMALY_EVENTS = Counter(
    "millstream_anomaly_events", "Anomaly events opened, by detector kind (sensor or machine).", ["kind"]
)
UP_SINCE = Gauge("millstream_process_start_time_ms", "When this component started, epoch ms.", ["stage"])

HealthCheck = Callable[[], bool]

SPC_CHART_LABELS = {"imr": ("i", "mr"), "xbar-r": ("xbar", "r"), "xbar-s": ("xbar", "s"), "ewma": ("ewma",),
                    "cusum": ("cusum",), "p": ("p",), "np": ("np",), "c": ("c",), "u": ("u",)}  # fmt: skip
SPC_RULE_LABELS = {
    "we": ("WE1", "WE2", "WE3", "WE4", "LIMIT"),
    "nelson": (*(f"N{i}" for i in range(1, 9)), "LIMIT"),
    "none": ("LIMIT",),
}


def precreate(stage: str, reasons: tuple[str, ...] = (), spc: tuple[str, str] | None = None) -> None:
    """Create a stage's counters at 0, so rate()/increase() see the first event and panels show 0."""
    RECORDS_IN.labels(stage)
    RECORDS_OUT.labels(stage)
    DECODE_ERRORS.labels(stage)
    for reason in reasons:
        DEAD_LETTERS.labels(stage, reason)
    if spc is not None:
        chart, rules = spc
        for c in SPC_CHART_LABELS.get(chart, ()):
            for r in SPC_RULE_LABELS.get(rules, ()):
                SPC_SIGNALS.labels(c, r)
    for kind in ("sensor", "machine"):
        ANOMALY_EVENTS.labels(kind)


READINESS = Gauge(
    "millstream_readiness_check",
    "1 while a readiness check of the process passes, 0 while it fails (as of the last /readyz probe or "
    "the process's own run of the checks, every 10 s).",
    ["check"],
)


class _Health:
    def __init__(self) -> None:
        self.checks: dict[str, HealthCheck] = {}  # readiness: /readyz
        self.live: dict[str, HealthCheck] = {}  # liveness: /healthz
        self.lock = threading.Lock()

    def ready(self) -> tuple[bool, dict[str, bool]]:
        ok, results = self._run(self.checks)
        for name, passed in results.items():
            READINESS.labels(name).set(1.0 if passed else 0.0)
        return ok, results

    def alive(self) -> tuple[bool, dict[str, bool]]:
        return self._run(self.live)

    def _run(self, which: dict[str, HealthCheck]) -> tuple[bool, dict[str, bool]]:
        with self.lock:
            checks = dict(which)
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # a failing check means not ready
                results[name] = False
        return all(results.values()), results


HEALTH = _Health()


def add_readiness_check(name: str, check: HealthCheck) -> None:
    """Register a check that ``/readyz`` runs (e.g. broker reachable, ClickHouse reachable)."""
    with HEALTH.lock:
        HEALTH.checks[name] = check


def add_liveness_check(name: str, check: HealthCheck) -> None:
    """Register a check that ``/healthz`` runs: failing, the process is stuck and should be restarted."""
    with HEALTH.lock:
        HEALTH.live[name] = check


def broker_reachable(bootstrap: str, timeout_s: float = 1.0, cache_s: float = 5.0) -> HealthCheck:
    """A check that a TCP connection to one of the bootstrap servers opens within ``timeout_s``
    (the answer is kept ``cache_s``, so frequent probes do not become connection storms)."""
    import socket
    import time

    servers = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        servers.append((host.strip("[]") or "localhost", int(port or 9092)))
    last: list[float] = [-cache_s, 0.0]  # [when, result]

    def check() -> bool:
        now = time.monotonic()
        if now - last[0] < cache_s:
            return bool(last[1])
        ok = False
        for host, port in servers:
            try:
                with socket.create_connection((host, port), timeout=timeout_s):
                    ok = True
                    break
            except OSError:
                continue
        last[:] = [now, float(ok)]
        return ok

    return check


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, results = HEALTH.alive() if path == "/healthz" else HEALTH.ready()
            body = "".join(f"{k} {'ok' if v else 'FAIL'}\n" for k, v in sorted(results.items())) or "ok\n"
            self._send(200 if ok else 503, body.encode(), "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server API
        return


READINESS_EVERY_S = 10.0  # the process runs its readiness checks itself this often (gauge, alert)


class _Server(ThreadingHTTPServer):
    stopped: threading.Event  # set by shutdown(): the readiness thread ends

    def shutdown(self) -> None:
        self.stopped.set()
        super().shutdown()


def _check_readiness(server: _Server, every_s: float) -> None:
    """Run the readiness checks every ``every_s`` so ``millstream_readiness_check`` (and the alert
    MillstreamNotReady) is true without anything probing /readyz (a local run, Docker, systemd)."""
    while not server.stopped.is_set():
        HEALTH.ready()
        server.stopped.wait(every_s)


def serve(
    port: int,
    host: str = "0.0.0.0",  # noqa: S104
    stage: str | None = None,
    readiness_every_s: float = READINESS_EVERY_S,
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on ``host:port`` from a daemon thread; another one runs
    the readiness checks every ``readiness_every_s`` for the gauge."""
    from sinks.exceptions import SinkError

    try:
        server = _Server((host, port), _Handler)
        server.stopped = threading.Event()
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        msg = f"cannot serve metrics on port {port}: {reason} (its setting: --metrics-port or *_METRICS_PORT)"
        raise SinkError(msg) from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    threading.Thread(
        target=_check_readiness, args=(server, readiness_every_s), name="readiness-checks", daemon=True
    ).start()
    if stage:
        import time

        UP_SINCE.labels(stage).set(time.time() * 1000)
    logger.info("metrics on http://%s:%s/metrics", host, server.server_address[1])
    return server
