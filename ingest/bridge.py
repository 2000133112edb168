"""What every protocol bridge shares: validate-encode-submit (:class:`Emitter`), the health of the
device connection (metrics, :func:`report_gap`), and the simulator's way through store-and-forward
(:class:`ForwardingScanSink`)."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge

from ingest.exceptions import GatewayError
from ingest.forwarder import DEAD_LETTERS, READINGS, Done, Forwarder
from ingest.validation import Invalid, Sample, Validator
from schemas.exceptions import INVALID_RECORD, EncodeError
from schemas.serde import Serde
from sinks.metrics import DEAD_LETTERS as DEAD_LETTER_COUNT

logger = logging.getLogger(__name__)

# A dead letter keeps at most this much of the original payload (a device may send megabytes; Kafka
# refuses messages over ``message.max.bytes``, 1 MB by default, and one refused message must not
# stall the gateway). A Reading is normally ~100 bytes: one this large has an absurd field.
MAX_DEAD_LETTER_PAYLOAD = 64 * 1024
MAX_REASON_CHARS = 1000
MAX_READING_BYTES = 64 * 1024

SOURCE_RECONNECTS = Counter(
    "millstream_gateway_source_reconnects",
    "Times a protocol bridge got its device connection back after losing it.",
    ["gateway", "protocol"],
)
SOURCE_GAP = Gauge(
    "millstream_gateway_source_gap_seconds",
    "The last gap in device data: from losing the device connection to being subscribed again.",
    ["gateway", "protocol"],
)
SOURCE_DOWNTIME = Counter(
    "millstream_gateway_source_downtime_seconds",
    "Seconds without a device connection, summed over all gaps.",
    ["gateway", "protocol"],
)
SOURCE_CONNECTED = Gauge(
    "millstream_gateway_source_connected",
    "1 while a protocol bridge is connected (and subscribed) to its devices.",
    ["gateway", "protocol"],
)


def report_gap(gateway_id: str, protocol: str, seconds: float, detail: str) -> None:
    """After a reconnect: one metric update and one log line naming the gap."""
    SOURCE_RECONNECTS.labels(gateway_id, protocol).inc()
    SOURCE_GAP.labels(gateway_id, protocol).set(seconds)
    SOURCE_DOWNTIME.labels(gateway_id, protocol).inc(seconds)
    logger.warning(
        "%s %s: reconnected after a gap of %.1f s in device data (%s)", protocol, gateway_id, seconds, detail
    )


def dead_letter(source: str, key: bytes | None, payload: bytes, code: str, reason: str) -> dict[str, Any]:
    """A DeadLetter of the gateway stage (no Kafka position yet: partition and offset are -1).

    The payload is cut to :data:`MAX_DEAD_LETTER_PAYLOAD` bytes (the reason says so) and the reason
    to :data:`MAX_REASON_CHARS` characters, so a dead letter always fits in a Kafka message."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    if len(payload) > MAX_DEAD_LETTER_PAYLOAD:
        reason += f" (payload of {len(payload)} bytes cut to its first {MAX_DEAD_LETTER_PAYLOAD})"
        payload = payload[:MAX_DEAD_LETTER_PAYLOAD]
    return {
        "stage": "gateway",
        "topic": source,
        "partition": -1,
        "offset": -1,
        "key": key,
        "payload": payload,
        "reason_code": code,
        "reason": reason,
        "failed_at": time.time_ns() // 1_000_000,
    }


class Emitter:
    """Validate, encode and hand over: Readings to the readings topic, rejects as dead letters.

    ``seq`` starts at the wall clock in microseconds, so it keeps growing across restarts."""

    def __init__(
        self,
        forwarder: Forwarder,
        validator: Validator,
        serde: Serde | None = None,
        seq_start: int | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.validator = validator
        serde = serde or Serde()
        self._reading = serde.encoder("Reading", forwarder.topics[READINGS])
        self._dead_letter = serde.encoder("DeadLetter", forwarder.topics[DEAD_LETTERS])
        self._seq = itertools.count(seq_start if seq_start is not None else time.time_ns() // 1000)
        self.read = 0
        self.readings = 0
        self.dead_letters = 0

    def prepare(self, s: Sample, now_ms: int | None = None) -> tuple[int, bytes | None, bytes]:
        """(kind, key, encoded value) of one sample: a Reading, or a DeadLetter."""
        self.read += 1
        now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        try:
            record = self.validator.check(s, now)
            record["seq"] = next(self._seq)
            value = self._reading(record)
        except Invalid as exc:
            return self.reject(s.source, s.machine_id, _payload(s), exc.code, exc.reason)
        except EncodeError as exc:
            return self.reject(s.source, s.machine_id, _payload(s), INVALID_RECORD, str(exc))
        if len(value) > MAX_READING_BYTES:
            reason = (
                f"the encoded reading has {len(value)} bytes (limit {MAX_READING_BYTES}): a field is too long"
            )
            return self.reject(s.source, s.machine_id, _payload(s), INVALID_RECORD, reason)
        self.readings += 1
        return READINGS, record["machine_id"].encode("utf-8"), value

    def reject(
        self, source: str, machine_id: Any, payload: bytes, code: str, reason: str
    ) -> tuple[int, bytes | None, bytes]:
        """A dead letter, also for what did not even become a sample (e.g. unparsable JSON)."""
        key = machine_id.encode("utf-8") if isinstance(machine_id, str) and machine_id else None
        self.dead_letters += 1
        DEAD_LETTER_COUNT.labels("gateway", code).inc()
        return DEAD_LETTERS, key, self._dead_letter(dead_letter(source, key, payload, code, reason))

    def emit(self, s: Sample, done: Done | None = None, now_ms: int | None = None) -> bool:
        """prepare() and submit (blocking while the forwarder's queue is full)."""
        kind, key, value = self.prepare(s, now_ms)
        return self.forwarder.submit(kind, key, value, 1, done)


def _payload(s: Sample) -> bytes:
    return s.payload() if callable(s.payload) else s.payload


class ForwardingScanSink:
    """The simulator's scan sink (:class:`ingest.simulator.ScanSink`) through store-and-forward."""

    def __init__(self, forwarder: Forwarder, serde: Serde | None = None) -> None:
        from ingest.encoding import ScanEncoder

        self.forwarder = forwarder
        self.encoder = ScanEncoder(serde or Serde(), forwarder.topics[READINGS])

    def machine(self, plant: str, line: str, machine_id: str, gateway_id: str, sensors: Any) -> Any:
        return self.encoder.machine(plant, line, machine_id, gateway_id, sensors)

    def send_scan(
        self, m: Any, event_time: int, seq: int, lot_id: str | None, values: Any, qualities: Any = None
    ) -> None:
        value = self.encoder.encode_scan(m, event_time, seq, lot_id, values, qualities)
        if not self.forwarder.submit(READINGS, m.key, value, m.n_values):
            msg = "the forwarder is closing"
            raise GatewayError(msg)

    def tick_encoder(self, layouts: Any) -> Any:
        from ingest.tick_encoding import TickEncoder

        return TickEncoder(self.encoder, layouts)

    def send_scans(
        self, tick: Any, event_time: int, first_seq: int, lots: Any, values: Any, qualities: Any = None
    ) -> None:
        messages = tick.encode(event_time, first_seq, lots, values, qualities)
        for key, value, n in zip(tick.keys, messages, tick.n_values, strict=True):
            if not self.forwarder.submit(READINGS, key, value, n):
                msg = "the forwarder is closing"
                raise GatewayError(msg)

    def poll(self, timeout: float = 0.0) -> None:
        """Delivery reports are served by the forwarder thread."""
