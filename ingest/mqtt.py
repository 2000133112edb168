"""MQTT gateway: topics -> (plant, line, machine, sensor), JSON payloads -> Readings.

Configuration (YAML or JSON, ``millstream gateway mqtt --config FILE``)::

    gateway_id: mqtt-hall-2
    host: 10.0.0.7
    port: 1883
    client_id: millstream-mqtt-hall-2     # fixed: the broker keeps our session under it
    protocol: "3.1.1"                     # or "5" (clean_start False + session expiry)
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
import math
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ingest.bridge import SOURCE_CONNECTED, Emitter, report_gap
from ingest.forwarder import Outcome
from ingest.validation import Sample, ValidationConfig
from schemas.exceptions import DECODE_ERROR, INVALID_RECORD

logger = logging.getLogger(__name__)

FIELDS = ("plant", "line", "machine", "sensor")
_MISSING = object()


class PayloadFormat(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["json"] = "json"
    value_field: str = "value"
    time_field: str | None = "ts"
    time_format: Literal["epoch_ms", "epoch_s", "iso8601"] = "epoch_ms"
    missing_time: Literal["gateway", "reject"] = "gateway"
    unit_field: str | None = "unit"
    quality_field: str | None = "quality"
    lot_field: str | None = "lot_id"


class TopicMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str
    plant: str | None = None
    line: str | None = None
    machine: str | None = None
    sensor: str | None = None
    unit: str | None = None
    units: dict[str, str] = Field(default_factory=dict)
    payload: PayloadFormat | None = None

    @model_validator(mode="after")
    def _pattern(self) -> TopicMapping:
        parse_pattern(self)  # raises ValueError naming the pattern and what is wrong with it
        return self


def parse_pattern(mapping: TopicMapping) -> list[tuple[str, str]]:
    """The levels of a topic pattern: ("lit", text) | ("var", field) | ("any", "")."""
    pattern = mapping.pattern
    levels: list[tuple[str, str]] = []
    for level in pattern.split("/"):
        if level.startswith("{") and level.endswith("}"):
            name = level[1:-1]
            if name not in FIELDS:
                use = ", ".join(f"{{{f}}}" for f in FIELDS)
                msg = f"pattern {pattern!r}: unknown placeholder {{{name}}} (use {use})"
                raise ValueError(msg)
            if ("var", name) in levels:
                msg = f"pattern {pattern!r}: placeholder {{{name}}} appears twice"
                raise ValueError(msg)
            levels.append(("var", name))
        elif level == "+":
            levels.append(("any", ""))
        elif level == "#":
            msg = (
                f"pattern {pattern!r}: '#' (multi-level wildcard) is not supported; give every level: "
                "a literal, one placeholder or '+' (a level that is ignored)"
            )
            raise ValueError(msg)
        elif "+" in level or "#" in level or "{" in level:
            msg = (
                f"pattern {pattern!r}: level {level!r} mixes text with a placeholder or wildcard; "
                "a placeholder or '+' must be a whole level"
            )
            raise ValueError(msg)
        else:
            levels.append(("lit", level))
    captured = {v for k, v in levels if k == "var"}
    for name in FIELDS:
        if name not in captured and getattr(mapping, name) is None:
            msg = f"pattern {pattern!r} captures no {{{name}}} and the mapping sets no {name}"
            raise ValueError(msg)
    return levels


class MqttConfig(BaseModel):
    """The configuration file of an MQTT gateway (without the spool/producer sections)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_id: str = "mqtt-1"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    qos: Literal[0, 1] = 1
    keepalive_s: int = Field(30, ge=5)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    reconnect_min_s: int = Field(1, ge=1)
    reconnect_max_s: int = Field(30, ge=1)
    username: str | None = None
    password: SecretStr | None = None
    topics: list[TopicMapping] = Field(min_length=1)
    payload: PayloadFormat = Field(default_factory=PayloadFormat)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @model_validator(mode="after")
    def _static_units(self) -> MqttConfig:
        """Units fixed in the mapping (used when a payload carries none) must pass validation."""
        problems = []
        for i, m in enumerate(self.topics):
            fixed = [(m.sensor, m.unit, "unit")] if m.unit is not None else []
            fixed += [(sensor, unit, f"units.{sensor}") for sensor, unit in m.units.items()]
            for sensor, unit, key in fixed:
                problem = self.validation.static_unit_problem(unit, sensor)
                if problem is not None:
                    problems.append(f"topics[{i}].{key}: {problem}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class TopicPattern:
    """``plant/{plant}/line/{line}/machine/{machine}/{sensor}`` -> subscription filter and matcher."""

    def __init__(self, mapping: TopicMapping) -> None:
        self.mapping = mapping
        self.levels = parse_pattern(mapping)
        self.filter = "/".join(text if kind == "lit" else "+" for kind, text in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return None
        out = {name: getattr(self.mapping, name) for name in FIELDS}
        for (kind, text), part in zip(self.levels, parts, strict=True):
            if kind == "lit" and part != text:
                return None
            if kind == "var":
                out[text] = part
        return out


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
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return raw
    return round(raw * 1000) if fmt == "epoch_s" else int(raw)


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
        self.client.reconnect_delay_set(c.reconnect_min_s, c.reconnect_max_s)
        self.client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._sub_mid = -1
        self.acks = OrderedAcks(self.client.ack)

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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------------------------ callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("MQTT %s:%s refused the connection: %s", self.config.host, self.config.port, reason)
            return
        self.acks.reset()
        _, self._sub_mid = client.subscribe([(p.filter, self.config.qos) for p in self.patterns])
        if self._lost_at is not None:
            self.reconnects += 1
            kept = (
                "session kept" if flags.session_present else "NEW session: messages sent meanwhile are lost"
            )
            report_gap(self.config.gateway_id, self.protocol, time.monotonic() - self._lost_at, kept)
            self._lost_at = None
        elif not flags.session_present:
            logger.info("MQTT %s: new session for client %s", self.config.host, client._client_id.decode())

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._sub_mid:
            return
        failed = [p.filter for p, r in zip(self.patterns, reasons, strict=False) if r.is_failure]
        if failed:
            logger.error("MQTT %s refused the subscriptions %s", self.config.host, failed)
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
        kind, key, value = self.prepare(msg.topic, msg.payload)
        while not forwarder.submit(kind, key, value, 1, done, timeout=0.5):
            if forwarder.closing:
                return

    def prepare(self, topic: str, payload: bytes) -> tuple[int, bytes | None, bytes]:
        """One MQTT message -> (kind, key, encoded Reading or DeadLetter)."""
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


CONFIG = MqttConfig
GATEWAY = MqttGateway
