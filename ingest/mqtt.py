"""MQTT gateway: topics -> (plant, line, machine, sensor), JSON payloads -> Readings.

Configuration (YAML or JSON, ``millstream gateway mqtt --config FILE``)::

    gateway_id: mqtt-hall-2
    host: 10.0.0.7
    port: 1883
    client_id: millstream-mqtt-hall-2     # fixed: the broker keeps our session under it
    protocol: "3.1.1"                     # or "5" (clean_start False + session expiry)
    tls: {ca_file: ca.crt, cert_file: gw.crt, key_file: gw.key}   # optional (port 8883)
    topics:
      - pattern: "plant/{plant}/line/{line}/machine/{machine}/{sensor}"
        units: {temperature: Cel}         # when the payload carries no unit
    payload:
      value_field: value
      time_field: ts
      time_format: epoch_ms               # epoch_ms | epoch_s | iso8601 (with offset)
      unit_field: unit
      quality_field: quality
    validation: {...}

A pattern level is a literal, ``{plant}``/``{line}``/``{machine}``/``{sensor}`` (captured) or ``+``
(ignored); the subscription replaces placeholders with ``+``. Fields a pattern does not capture
come from the mapping (``plant: p1``). The payload is a JSON object (field names configurable) or a
bare JSON number. Anything that does not parse or validate becomes a dead letter.

Delivery: QoS 1, persistent session (``clean_session``/``clean_start`` False, fixed client id) and
manual acknowledgement (paho ``manual_ack``): a PUBACK is sent only once the reading was
acknowledged by Kafka or is durable in the spool (per its fsync policy), and PUBACKs go out in the
order the messages arrived (MQTT 3.1.1 section 4.6). A gateway crash therefore loses nothing: the
broker redelivers what was not acknowledged (at-least-once; the downstream dedup by machine,
sensor and event time removes the repeats). The broker caps unacknowledged messages per client
(mosquitto ``max_inflight_messages``, default 20): raise it for throughput, and raise
``max_queued_messages`` (default 1000) so a long gateway outage does not overflow the session.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from ingest.bridge import SOURCE_CONNECTED, Emitter, report_gap
from ingest.exceptions import GatewayError
from ingest.forwarder import Outcome
from ingest.mqtt_config import FIELDS, MqttConfig, PayloadFormat, TopicMapping, TopicPattern, parse_pattern
from ingest.validation import Sample
from schemas.exceptions import DECODE_ERROR, INVALID_RECORD
from schemas.log_repeats import RepeatFilter

logger = logging.getLogger(__name__)
# paho's own log: while the broker is down it logs an ERROR per reconnect attempt; each distinct line
# passes once per 30 s (the gateway logs the outage itself).
PAHO_LOG = logging.getLogger(f"{__name__}.paho")
PAHO_LOG.addFilter(RepeatFilter((PAHO_LOG.name,)))

__all__ = [  # the configuration models live in ingest.mqtt_config; importable from here as before
    "CONFIG",
    "FIELDS",
    "GATEWAY",
    "MqttConfig",
    "MqttGateway",
    "OrderedAcks",
    "PayloadFormat",
    "TopicMapping",
    "TopicPattern",
    "parse_pattern",
    "parse_time",
]

_MISSING = object()


def parse_time(raw: Any, fmt: str) -> Any:
    """Epoch ms from a payload's time field; the raw value when it cannot be read (validation
    then rejects it with a reason)."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            return raw
        try:
            t = datetime.fromisoformat(raw)
        except ValueError:
            return raw
        return round(t.timestamp() * 1000) if t.tzinfo is not None else f"{raw} (no UTC offset)"
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return raw
    try:
        return round(raw * 1000) if fmt == "epoch_s" else int(raw)
    except (OverflowError, ValueError):  # inf/nan, or a float too large (1e306 s is inf ms)
        return raw


class OrderedAcks:
    """PUBACKs in arrival order, each once its message's outcome is known. Thread-safe."""

    def __init__(self, ack: Any) -> None:
        self._ack = ack
        self._lock = threading.Lock()
        self._queue: deque[list[Any]] = deque()  # [mid, qos, done]
        self.acked = 0

    def expect(self, mid: int, qos: int) -> Any:
        entry = [mid, qos, False]
        with self._lock:
            self._queue.append(entry)

        def done(outcome: Outcome, entry: list[Any] = entry) -> None:
            ready = []
            with self._lock:
                entry[2] = True
                q = self._queue
                while q and q[0][2]:
                    ready.append(q.popleft())
            for mid, qos, _ in ready:  # one caller thread (the forwarder): order kept outside the lock
                self._ack(mid, qos)
                self.acked += 1

        return done

    def reset(self) -> None:
        """A new connection: message ids of the old one mean nothing (the broker redelivers)."""
        with self._lock:
            self._queue.clear()


class MqttGateway:
    """paho-mqtt client feeding an :class:`Emitter`. ``run`` blocks until ``stop``; ``close`` after
    the forwarder closed (so the last acknowledgements still go out)."""

    protocol = "mqtt"

    def __init__(self, config: MqttConfig, emitter: Emitter) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.config = c = config
        self.emitter = emitter
        self.patterns = [TopicPattern(m) for m in c.topics]
        self.connected = threading.Event()  # connected and subscribed
        self.messages = 0
        self.reconnects = 0
        self._lost_at: float | None = None
        v5 = c.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=c.client_id or f"millstream-{c.gateway_id}",
            clean_session=None if v5 else False,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            manual_ack=True,
        )
        if c.username:
            self.client.username_pw_set(c.username, c.password.get_secret_value() if c.password else None)
        self._tls_error: str | None = None  # the last TLS failure logged (repeats go to DEBUG)
        if c.tls is not None:
            self.client.tls_set_context(self._tls_context())
        self.client.reconnect_delay_set(c.reconnect_min_s, c.reconnect_max_s)
        self.client.enable_logger(PAHO_LOG)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._sub_mid = -1
        self._subscribed_once = False
        self.acks = OrderedAcks(self.client.ack)

    def _tls_context(self) -> ssl.SSLContext:
        """The configured context, with sockets that report why a TLS connection failed: paho drops
        a failed handshake silently and logs a failed read without saying what to change."""
        assert self.config.tls is not None
        ctx = self.config.tls.context()
        failed = self._tls_failed

        class ReportingSocket(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                try:
                    super().do_handshake(block)
                except OSError as exc:  # SSLError, or a reset: e.g. a plain MQTT port
                    failed(exc)
                    raise

            def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
                try:
                    return super().recv(buflen, flags)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    raise
                except ssl.SSLError as exc:  # TLS 1.3: a refused client certificate shows up here
                    failed(exc)
                    raise

        ctx.sslsocket_class = ReportingSocket
        return ctx

    def _tls_failed(self, exc: OSError) -> None:
        text = tls_problem(exc, self.config)
        level = logging.DEBUG if text == self._tls_error else logging.ERROR
        self._tls_error = text
        logger.log(level, "MQTT %s:%s: TLS: %s", self.config.host, self.config.port, text)

    def run_blocking(self, stop: threading.Event) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = self.config
        if c.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = c.session_expiry_s
            self.client.connect_async(c.host, c.port, c.keepalive_s, clean_start=False, properties=props)
        else:
            self.client.connect_async(c.host, c.port, c.keepalive_s)
        self.client.loop_start()
        while not stop.wait(1.0):
            self.emitter.forwarder.check()  # a dead forwarder ends the run (acks would stall)
            thread = self.client._thread  # paho has no public way to ask whether its loop still runs
            if thread is None or not thread.is_alive():
                msg = f"MQTT {c.host}:{c.port}: the MQTT client's network loop stopped (see the log above)"
                raise GatewayError(msg)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------------------------ callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("MQTT %s:%s refused the connection: %s", self.config.host, self.config.port, reason)
            return
        self.acks.reset()
        self._tls_error = None
        if flags.session_present and self._subscribed_once:
            # The broker kept our subscriptions. Subscribing again would make it re-send every
            # retained message (MQTT 3.1.1 section 3.8.4): old values, read again on every reconnect.
            self._subscribed()
        else:
            self._subscribe(client)
        if self._lost_at is not None:
            self.reconnects += 1
            kept = (
                "session kept" if flags.session_present else "NEW session: messages sent meanwhile are lost"
            )
            report_gap(self.config.gateway_id, self.protocol, time.monotonic() - self._lost_at, kept)
            self._lost_at = None
        elif not flags.session_present:
            logger.info("MQTT %s: new session for client %s", self.config.host, client._client_id.decode())

    def _subscribe(self, client: Any) -> None:
        qos = self.config.qos
        if self.config.protocol == "5":  # retained messages only for a subscription the broker did not have
            from paho.mqtt.subscribeoptions import SubscribeOptions

            opts: Any = SubscribeOptions(qos=qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            _, self._sub_mid = client.subscribe([(p.filter, opts) for p in self.patterns])
        else:
            _, self._sub_mid = client.subscribe([(p.filter, qos) for p in self.patterns])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._sub_mid:
            return
        failed = [p.filter for p, r in zip(self.patterns, reasons, strict=False) if r.is_failure]
        if failed:
            logger.error("MQTT %s refused the subscriptions %s", self.config.host, failed)
        self._subscribed_once = True
        self._subscribed()

    def _subscribed(self) -> None:
        self.connected.set()  # subscribed: from now on nothing published is missed
        SOURCE_CONNECTED.labels(self.config.gateway_id, self.protocol).set(1)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        SOURCE_CONNECTED.labels(self.config.gateway_id, self.protocol).set(0)
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        logger.warning("MQTT %s:%s disconnected: %s", self.config.host, self.config.port, reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages += 1
        forwarder = self.emitter.forwarder
        if forwarder.closing:
            return  # not acknowledged: the broker delivers it again to the next session
        done = self.acks.expect(msg.mid, msg.qos) if msg.qos > 0 else None
        try:
            kind, key, value = self.prepare(msg.topic, msg.payload, bool(msg.retain))
        except Exception as exc:  # an exception here would end paho's network thread: nothing read again
            logger.exception("MQTT message on %s could not be processed", msg.topic)
            reason = f"the gateway could not process the message: {type(exc).__name__}: {exc}"
            kind, key, value = self.emitter.reject(msg.topic, None, msg.payload, INVALID_RECORD, reason)
        try:
            while not forwarder.submit(kind, key, value, 1, done, timeout=0.5):
                if forwarder.closing:
                    return
        except GatewayError:
            return  # the forwarder stopped: run_blocking raises its error; the message stays unacknowledged

    def prepare(self, topic: str, payload: bytes, retained: bool = False) -> tuple[int, bytes | None, bytes]:
        """One MQTT message -> (kind, key, encoded Reading or DeadLetter). ``retained``: the broker
        stored it earlier and sends it because we subscribed; without a time field its age is unknown,
        so it becomes a dead letter rather than a reading stamped with the gateway's clock."""
        emitter = self.emitter
        for p in self.patterns:
            ids = p.match(topic)
            if ids is not None:
                break
        else:
            emitter.read += 1
            return emitter.reject(topic, None, payload, INVALID_RECORD, "the topic matches no mapping")
        fmt = p.mapping.payload or self.config.payload
        try:
            data = json.loads(payload)
        except RecursionError:
            emitter.read += 1
            reason = "payload is not JSON this gateway reads: nested too deeply"
            return emitter.reject(topic, ids["machine"], payload, DECODE_ERROR, reason)
        except (ValueError, UnicodeDecodeError) as exc:
            emitter.read += 1
            return emitter.reject(topic, ids["machine"], payload, DECODE_ERROR, f"payload is not JSON: {exc}")
        now = time.time_ns() // 1_000_000
        if isinstance(data, dict):
            value = data.get(fmt.value_field, _MISSING)
            raw_time = data.get(fmt.time_field) if fmt.time_field else None
            unit = data.get(fmt.unit_field) if fmt.unit_field else None
            quality = data.get(fmt.quality_field, "GOOD") if fmt.quality_field else "GOOD"
            lot = data.get(fmt.lot_field) if fmt.lot_field else None
        elif isinstance(data, int | float) and not isinstance(data, bool):
            value, raw_time, unit, quality, lot = data, None, None, "GOOD", None
        else:
            emitter.read += 1
            return emitter.reject(
                topic, ids["machine"], payload, DECODE_ERROR, "payload is neither a JSON object nor a number"
            )
        if value is _MISSING:
            value = f"no {fmt.value_field!r} field"
        if raw_time is None and retained:
            emitter.read += 1
            reason = "a retained message without a time field: when its value was measured is unknown"
            return emitter.reject(topic, ids["machine"], payload, INVALID_RECORD, reason)
        if raw_time is None:
            event_time: Any = now if fmt.missing_time == "gateway" else "missing"
        else:
            event_time = parse_time(raw_time, fmt.time_format)
        sensor = ids["sensor"]
        if unit is None:
            unit = p.mapping.units.get(sensor, p.mapping.unit) if isinstance(sensor, str) else None
        sample = Sample(
            topic,
            payload,
            ids["plant"],
            ids["line"],
            ids["machine"],
            sensor,
            unit,
            value,
            event_time,
            quality,
            lot,
        )
        return emitter.prepare(sample, now)


_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING")  # a plain MQTT port, mostly


def tls_problem(exc: OSError, config: MqttConfig) -> str:
    """What a TLS failure means for the gateway's settings, in one line."""
    tls = config.tls
    assert tls is not None
    reason = str(getattr(exc, "reason", None) or "")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        if "mismatch" in detail:  # Hostname mismatch, IP address mismatch
            return (
                f"the broker's certificate is not for {config.host} ({detail}): set host to a name in its "
                "subjectAltName (tls.insecure_skip_hostname_check: true skips this check; for tests only)"
            )
        anchors = f"tls.ca_file {tls.ca_file}" if tls.ca_file else "the system's CAs (no tls.ca_file)"
        return (
            f"the broker's certificate is not trusted ({detail}) by {anchors}: "
            "set tls.ca_file to the CA that issued it"
        )
    if not isinstance(exc, ssl.SSLError) or reason in _NOT_TLS:
        return (
            f"the TLS handshake failed ({exc}): is port {config.port} a TLS listener? MQTT over TLS is "
            "usually on port 8883"
        )
    if "CERTIFICATE_REQUIRED" in reason or (
        reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and tls.cert_file is None
    ):
        return f"the broker requires a client certificate ({exc}): set tls.cert_file and tls.key_file"
    if tls.cert_file is not None and (
        "ALERT" in reason and "CERTIFICATE" in reason or "UNKNOWN_CA" in reason
    ):
        return (
            f"the broker refused the gateway's certificate tls.cert_file {tls.cert_file} ({exc}): the "
            "broker must trust the CA that issued it (mosquitto: cafile of the listener)"
        )
    return str(exc)


CONFIG = MqttConfig
GATEWAY = MqttGateway
