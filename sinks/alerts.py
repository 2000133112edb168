"""Alert history: Alertmanager's webhook notifications written into the ``alerts`` table.

Alertmanager POSTs a JSON notification (webhook format version 4, see
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config) to
``http://<sink>:<MILLSTREAM_SINK_METRICS_PORT>/alertmanager``; the sink's HTTP endpoint (the same
port as /metrics, /healthz and /readyz) writes one row per alert: fingerprint, status, labels,
annotations, startsAt, endsAt, plus the receiver and group key of the notification.

Answers: 200 with ``{"written": n}`` once the rows are in ClickHouse; 400 for a body that is not a
version-4 notification (Alertmanager does not retry it); 503 when ClickHouse cannot be written
(Alertmanager retries). An alert whose fields are unusable goes to ``dead_letters`` (topic
``alertmanager``) with the notification as payload; the others are written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from sinks.exceptions import SinkError
from sinks.metrics import UP_SINCE, _Handler
from sinks.sink_metrics import SINK_ALERTS
from sinks.tables import TS_MIN_MS, Source, TableSpec
from sinks.writer import BatchWriter

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from sinks.config import ClickHouseSettings

logger = logging.getLogger(__name__)

PATH = "/alertmanager"
SOURCE_TOPIC = "alertmanager"
MAX_BODY_BYTES = 8 * 1024 * 1024
STATUSES = frozenset({"firing", "resolved"})


def parse_time(text: Any, name: str) -> int | None:
    """RFC 3339 time → epoch ms; None for Go's zero time (``0001-01-01T00:00:00Z``: no end yet)."""
    if not isinstance(text, str):
        msg = f"{name} must be an RFC 3339 string, got {type(text).__name__}"
        raise TypeError(msg)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"{name}={text!r} is not an RFC 3339 time"
        raise ValueError(msg) from exc
    if when.tzinfo is None:
        msg = f"{name}={text!r} has no time zone"
        raise ValueError(msg)
    if when.year < 1900:
        return None
    ms = int(when.timestamp() * 1000)
    return ms if ms >= TS_MIN_MS else None


def _text_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        msg = f"{name} must be an object of strings"
        raise TypeError(msg)
    return dict(value)


def alert_row(r: dict[str, Any]) -> list[Any]:
    """One alert of a notification (plus the notification's fields) as an ``alerts`` row."""
    status = r.get("status")
    if status not in STATUSES:
        msg = f"status={status!r} is not firing or resolved"
        raise ValueError(msg)
    labels = _text_map(r.get("labels"), "labels")
    annotations = _text_map(r.get("annotations"), "annotations")
    starts_at = parse_time(r.get("startsAt"), "startsAt")
    if starts_at is None:
        msg = "startsAt is missing or before 1900"
        raise ValueError(msg)
    ends_at = parse_time(r["endsAt"], "endsAt") if r.get("endsAt") else None
    fingerprint = r.get("fingerprint") or label_fingerprint(labels)
    if not isinstance(fingerprint, str):
        msg = "fingerprint must be a string"
        raise TypeError(msg)
    return [
        fingerprint,
        status,
        labels.get("alertname", ""),
        labels.get("severity", ""),
        labels,
        annotations,
        starts_at,
        ends_at,
        str(r.get("generatorURL") or ""),
        str(r.get("_receiver") or ""),
        str(r.get("_group_key") or ""),
        int(r["_received_at"]),
    ]


ALERTS = TableSpec(
    "alerts",
    (
        "fingerprint",
        "status",
        "alertname",
        "severity",
        "labels",
        "annotations",
        "starts_at",
        "ends_at",
        "generator_url",
        "receiver",
        "group_key",
        "received_at",
    ),
    alert_row,
)


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable id for an alert without Alertmanager's fingerprint (older versions): its label set."""
    text = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert_records(body: bytes, received_at_ms: int) -> list[dict[str, Any]]:
    """The alerts of a notification, each with the notification's receiver, group key and receive time.

    Raises ValueError when the body is not a version-4 Alertmanager notification.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"not JSON: {exc}"
        raise ValueError(msg) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        msg = "not an Alertmanager notification: no 'alerts' list"
        raise ValueError(msg)
    if str(payload.get("version")) != "4":
        msg = f"webhook format version {payload.get('version')!r} is not supported (expected '4')"
        raise ValueError(msg)
    common = {
        "_receiver": payload.get("receiver"),
        "_group_key": payload.get("groupKey"),
        "_received_at": received_at_ms,
    }
    return [{**a, **common} if isinstance(a, dict) else {"alert": a, **common} for a in payload["alerts"]]


class AlertReceiver:
    """Writes notifications into ``alerts`` (thread-safe: one write at a time)."""

    def __init__(self, client: Client, settings: ClickHouseSettings) -> None:
        self.writer = BatchWriter(client, settings)
        self._lock = threading.Lock()

    def receive(self, body: bytes) -> int:
        """Write a notification's alerts; returns the rows written. ValueError: bad body; SinkError."""
        now = int(time.time() * 1000)
        records = alert_records(body, now)
        with self._lock:
            written = 0
            for i, record in enumerate(records):
                # A distinct position per alert: dead letters are keyed on (topic, partition, offset).
                source = Source(SOURCE_TOPIC, 0, now * 1000 + i, None, body)
                if self.writer.add(ALERTS, record, source):
                    written += 1
                    SINK_ALERTS.labels(record["status"]).inc()
            self.writer.flush()
        return written


class SinkHTTPHandler(_Handler):
    """/metrics, /healthz, /readyz (as every component) plus POST /alertmanager."""

    receiver: AlertReceiver | None = None

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        if self.path.split("?", 1)[0] != PATH or self.receiver is None:
            self._send(404, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            self._send(400, b"a JSON body of at most 8 MiB is required\n", "text/plain")
            return
        body = self.rfile.read(length)
        try:
            written = self.receiver.receive(body)
        except ValueError as exc:
            self._send(400, f"{exc}\n".encode(), "text/plain")
            return
        except SinkError as exc:
            logger.error("alert notification not written: %s", exc)
            self._send(503, f"{exc}\n".encode(), "text/plain")
            return
        self._send(200, json.dumps({"written": written}).encode(), "application/json")


def serve(port: int, receiver: AlertReceiver | None, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    """The sink's HTTP endpoint on ``host:port`` from a daemon thread."""
    handler = type("BoundSinkHTTPHandler", (SinkHTTPHandler,), {"receiver": receiver})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sink-http", daemon=True).start()
    UP_SINCE.labels("sink").set(time.time() * 1000)
    logger.info("sink HTTP on http://%s:%s (/metrics, POST %s)", host, server.server_address[1], PATH)
    return server
