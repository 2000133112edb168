"""OPC UA gateway: subscribe to configured nodes and turn data changes into Readings.

Configuration (YAML or JSON, ``millstream gateway opcua --config FILE``)::

    gateway_id: opcua-press-hall
    endpoint: opc.tcp://10.0.0.5:4840/
    namespaces: {plant: "urn:acme:plc"}       # aliases usable as {plant} in node ids / browse paths
    publishing_interval_ms: 100
    queue_size: 1000                          # per monitored item, on the server
    nodes:
      - node_id: "ns={plant};s=Press1.Temperature"
        plant: p1
        line: l1
        machine: m001
        sensor: temperature
        unit: degF                            # normalised to Cel by edge validation
      - browse_path: "0:Objects/plant:Press1/plant:Vibration"
        plant: p1
        line: l1
        machine: m001
        sensor: vibration_rms
        unit: mm/s
    security: {...}                           # policy, mode, certificates: see ingest.opcua_security
    validation: {...}                         # see ingest.validation
    spool: {...}                              # see ingest.config.SpoolSettings

Every monitored item asks for a ``DataChangeFilter`` with trigger STATUS_VALUE_TIMESTAMP, so a
repeated value with a new source timestamp (a counter that did not move) is still reported, and a
server-side queue so nothing is lost between publish cycles. A notification becomes a Reading with
the value's ``SourceTimestamp`` as event time (ServerTimestamp, then gateway time, when missing)
and its StatusCode's severity as quality (Good -> GOOD, Uncertain -> UNCERTAIN, Bad -> BAD).

On connection loss (server restart, network) the gateway drops the client, reconnects with
exponential backoff (``reconnect_initial_s`` doubling up to ``reconnect_max_s``, +-20 % jitter),
resolves the nodes again and re-subscribes. The server then sends each node's current value again;
that value is a duplicate of one already sent (same machine, sensor and event time) and the
downstream dedup removes it. Changes made while disconnected are not recoverable from a
subscription: the gap is reported (``millstream_gateway_source_gap_seconds`` and a log line).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.bridge import SOURCE_CONNECTED, Emitter, report_gap
from ingest.exceptions import GatewayError
from ingest.opcua_config import NodeMapping, OpcUaConfig
from ingest.opcua_security import POLICY_CLASSES, POLICY_URI, describe
from ingest.validation import Sample

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG",
    "GATEWAY",
    "NamespaceNotFound",
    "NodeMapping",
    "OpcUaConfig",
    "OpcUaGateway",
    "SecurityMismatch",
]

QUALITY_BY_SEVERITY = ("GOOD", "UNCERTAIN", "BAD", "BAD")  # StatusCode bits 31..30
# The server sends a keep-alive publish response after this long without data (OPC UA Part 4,
# 5.13.1: MaxKeepAliveCount publishing intervals). No publish response at all (data or keep-alive)
# for STALE_KEEPALIVES of them means the server no longer has our subscription (it expired, or the
# server dropped it) although the connection is up: the gateway then re-subscribes.
KEEPALIVE_S = 5.0
STALE_KEEPALIVES = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class NamespaceNotFound(GatewayError):  # noqa: N818 - reads better at the raise
    """A namespace URI of the configuration is not in the server's NamespaceArray."""


class SecurityMismatch(GatewayError):
    """The server offers no endpoint with the configured security, or its certificate is not trusted."""


@dataclass(frozen=True, slots=True)
class Binding:
    source: str
    plant: str
    line: str
    machine: str
    sensor: str
    unit: str


def to_epoch_ms(t: datetime) -> int:
    if t.tzinfo is None:  # OPC UA DateTime is UTC
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MS


class OpcUaGateway:
    """Subscribes, maps, reconnects. Run with :meth:`run_blocking` (its own event loop)."""

    protocol = "opcua"

    def __init__(self, config: OpcUaConfig, emitter: Emitter) -> None:
        self.config = config
        self.emitter = emitter
        self.subscribed = threading.Event()  # set while subscribed
        self.messages = 0
        self.reconnects = 0
        self.gaps: list[float] = []
        self.missing_source_time = 0
        self.ever_subscribed = False
        self._bindings: dict[int, Binding] = {}

    def run_blocking(self, stop: threading.Event) -> None:
        asyncio.run(self.run(stop))

    def close(self) -> None:
        """Nothing to release after run() returned (the client is closed there)."""

    async def run(self, stop: threading.Event) -> None:
        from asyncua.client.client import Client
        from asyncua.ua.uaerrors import UaError

        cfg = self.config
        attempt = 0
        lost_at: float | None = None  # monotonic time the connection was lost
        errors = (OSError, asyncio.TimeoutError, ConnectionError, UaError)
        while not stop.is_set():
            client = Client(
                cfg.endpoint, timeout=cfg.request_timeout_s, watchdog_intervall=cfg.watchdog_interval_s
            )
            if cfg.username:
                client.set_user(cfg.username)
                if cfg.password is not None:
                    client.set_password(cfg.password.get_secret_value())
            lost = asyncio.Event()

            async def on_lost(exc: Exception, lost: asyncio.Event = lost) -> None:
                logger.warning("OPC UA connection to %s lost: %r", cfg.endpoint, exc)
                lost.set()

            client.connection_lost_callback = on_lost
            try:
                await self._secure(client)
                await client.connect()
                try:
                    sub = await self._subscribe(client)
                    attempt = 0
                    if lost_at is not None:
                        gap = time.monotonic() - lost_at
                        self._report_gap(gap, f"{len(self._bindings)} nodes re-subscribed")
                    self.subscribed.set()
                    self.ever_subscribed = True
                    SOURCE_CONNECTED.labels(cfg.gateway_id, self.protocol).set(1)
                    await self._pump(sub, lost, stop)
                finally:
                    self.subscribed.clear()
                    SOURCE_CONNECTED.labels(cfg.gateway_id, self.protocol).set(0)
                    if not stop.is_set():
                        lost_at = time.monotonic()
                    await _quiet_disconnect(client)
            except (NamespaceNotFound, SecurityMismatch) as exc:
                if not self.ever_subscribed:
                    raise  # a wrong URI in the configuration: fatal at the first connection
                if lost_at is None:  # the server changed after a restart: it may come back
                    lost_at = time.monotonic()
                logger.error("%s; retrying", exc)
            except errors as exc:
                if lost_at is None:
                    lost_at = time.monotonic()
                refused = self._refused(exc)
                if refused is not None:
                    logger.error("OPC UA %s: %s; retrying", cfg.endpoint, refused)
                else:
                    logger.warning("OPC UA %s: %s: %s", cfg.endpoint, type(exc).__name__, exc)
                await _quiet_disconnect(client)
            if stop.is_set():
                break
            delay = min(cfg.reconnect_max_s, cfg.reconnect_initial_s * 2**attempt) * random.uniform(0.8, 1.2)
            attempt += 1
            logger.info("OPC UA %s: reconnecting in %.1f s", cfg.endpoint, delay)
            await _sleep_unless(stop, delay)

    async def _secure(self, client: Any) -> None:
        """Check that the server offers an endpoint with the configured security policy and mode
        (else every attempt would fail with a time-out or "No matching endpoints") and, with a
        policy, that its certificate is trusted; then give the client the gateway's certificate."""
        from asyncua import ua
        from asyncua.crypto import security_policies
        from asyncua.crypto.uacrypto import CertProperties

        cfg = self.config
        sec = cfg.security
        mode = getattr(ua.MessageSecurityMode, sec.message_mode if sec.enabled else "None_")
        endpoints = await client.connect_and_get_server_endpoints()
        uri = POLICY_URI + sec.policy
        match = [e for e in endpoints if e.SecurityPolicyUri == uri and e.SecurityMode == mode]
        if not match:
            offered = sorted(
                {
                    f"{e.SecurityPolicyUri.rpartition('#')[2]} {e.SecurityMode.name.rstrip('_')}"
                    for e in endpoints
                }
            )
            msg = (
                f"OPC UA {cfg.endpoint}: the server offers no endpoint with security policy {sec.policy}, "
                f"mode {sec.message_mode}; it offers {', '.join(offered) or 'none'} (set security.policy "
                "and security.mode, see docs/gateways.md)"
            )
            raise SecurityMismatch(msg)
        if not sec.enabled:
            return
        server_der = _first_certificate(match[0].ServerCertificate or b"")
        if not server_der:
            msg = f"OPC UA {cfg.endpoint}: the server's {sec.policy} endpoint has no certificate"
            raise SecurityMismatch(msg)
        problem = sec.trust_problem(server_der)
        if problem is not None:
            msg = f"OPC UA {cfg.endpoint}: {problem}"
            raise SecurityMismatch(msg)
        cert_der, key_der = sec.client_credentials()
        client.application_uri = sec.application_uri_of(sec.certificate())
        policy = getattr(security_policies, f"SecurityPolicy{POLICY_CLASSES[sec.policy]}")
        await client.set_security(
            policy,
            CertProperties(cert_der, "der"),
            CertProperties(key_der, "der"),
            server_certificate=CertProperties(server_der, "der"),
            mode=mode,
        )

    def _refused(self, exc: Exception) -> str | None:
        """A readable line when the server refused the gateway's certificate (or security); None otherwise."""
        from asyncua import ua
        from asyncua.ua.uaerrors import UaStatusCodeError

        if not isinstance(exc, UaStatusCodeError):
            return None
        text = _status_text(ua.StatusCode(exc.code))
        name = text.split(" ", 1)[0]
        if not (name.startswith("BadCertificate") or name in _SECURITY_REFUSALS):
            return None
        sec = self.config.security
        if not sec.enabled:
            return f"the server refused the connection: {text}"
        return (
            f"the server refused the gateway's certificate: {text}: make the server trust cert_file "
            f"{sec.cert_file} ({describe(sec.certificate())}); many servers keep a refused certificate in a "
            "'rejected' list until it is moved to 'trusted'"
        )

    def _report_gap(self, gap: float, detail: str) -> None:
        self.reconnects += 1
        self.gaps.append(gap)
        report_gap(self.config.gateway_id, self.protocol, gap, detail)

    async def _subscribe(self, client: Any) -> Any:
        from asyncua import ua
        from asyncua.common.subscription import OverflowPolicy
        from asyncua.ua.attribute_ids import AttributeIds
        from asyncua.ua.uaerrors import UaError

        cfg = self.config
        aliases = await self._namespace_indexes(client)
        requests: list[Any] = []
        bindings: dict[int, Binding] = {}
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        for i, m in enumerate(cfg.nodes, start=1):
            try:
                node = await self._node(client, m, aliases)
            except UaError as exc:
                logger.error("OPC UA node %s not found: %s", m.node_id or m.browse_path, exc)
                continue
            params = ua.MonitoringParameters(
                ClientHandle=i,
                SamplingInterval=cfg.sampling_interval_ms,
                QueueSize=cfg.queue_size,
                DiscardOldest=True,
                Filter=trigger,
            )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=params,
                )
            )
            bindings[i] = Binding(
                node.nodeid.to_string(),
                m.plant or cfg.plant or "",
                m.line or cfg.line or "",
                m.machine,
                m.sensor,
                m.unit,
            )
        if not requests:
            msg = f"none of the {len(cfg.nodes)} configured nodes exists on {cfg.endpoint}"
            raise ConnectionError(msg)
        self._bindings = bindings
        keepalive = max(1, round(KEEPALIVE_S * 1000 / cfg.publishing_interval_ms))
        sub_params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_interval_ms,
            RequestedLifetimeCount=max(10000, 3 * keepalive),  # Part 4: at least 3 keep-alives
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=10000,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = await client.create_subscription(
            sub_params,
            None,
            queue_maxsize=cfg.client_queue,
            overflow=OverflowPolicy.DISCONNECT,
        )
        results = await sub.create_monitored_items(requests)
        failed = [(r, req) for r, req in zip(results, requests, strict=True) if isinstance(r, ua.StatusCode)]
        for code, req in failed:
            b = bindings[req.RequestedParameters.ClientHandle]
            logger.error(
                "OPC UA: cannot monitor %s (%s/%s): %s (%s)",
                b.source,
                b.machine,
                b.sensor,
                code.name,
                code.doc,
            )
        if len(failed) == len(requests):
            msg = f"no node of {cfg.endpoint} could be monitored"
            raise ConnectionError(msg)
        logger.info("OPC UA %s: subscribed to %d nodes", cfg.endpoint, len(requests) - len(failed))
        return sub

    async def _namespace_indexes(self, client: Any) -> dict[str, str]:
        """alias -> the index of its URI on this server (indexes may change when the server restarts)."""
        cfg = self.config
        uris: list[str] = list(await client.get_namespace_array())
        missing = [f"{uri!r} (alias {alias})" for alias, uri in cfg.namespaces.items() if uri not in uris]
        if missing:
            has = ", ".join(f"{i}: {u}" for i, u in enumerate(uris))
            msg = f"OPC UA {cfg.endpoint}: the server has no namespace {', '.join(missing)}; it has {has}"
            raise NamespaceNotFound(msg)
        return {alias: str(uris.index(uri)) for alias, uri in cfg.namespaces.items()}

    @staticmethod
    async def _node(client: Any, m: NodeMapping, aliases: dict[str, str]) -> Any:
        if m.node_id is not None:  # {alias} placeholders, {{ and }} for literal braces
            return client.get_node(m.node_id.format_map(aliases) if "{" in m.node_id else m.node_id)
        path = []
        for element in (m.browse_path or "").strip("/").split("/"):
            ns, sep, name = element.partition(":")
            path.append(f"{aliases.get(ns, ns)}:{name}" if sep else element)
        return await client.nodes.root.get_child(path)

    async def _pump(self, sub: Any, lost: asyncio.Event, stop: threading.Event) -> None:
        from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent

        q: asyncio.Queue[Any] | None = getattr(sub, "_event_queue", None)
        subscribed_at = last_publish = time.monotonic()
        next_check = subscribed_at + 1.0
        recreated = getattr(sub, "_recreate_count", 0)
        while not stop.is_set() and not lost.is_set():
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 1.0
                if getattr(sub, "_recreate_count", 0) != recreated:
                    # asyncua's own watchdog found the subscription stale and re-created it in place
                    recreated = getattr(sub, "_recreate_count", 0)
                    self._report_gap(now - last_publish, "the server had lost the subscription; re-created")
                last_publish = getattr(sub, "last_publish_at", None) or last_publish
                silent = now - last_publish
                if silent > _stale_after(sub):
                    logger.warning(
                        "OPC UA %s: no data and no keep-alive for %.0f s: the server lost the "
                        "subscription; re-subscribing",
                        self.config.endpoint,
                        silent,
                    )
                    return
            try:  # the iterator queue directly: next_event() costs a wait_for per value
                ev = q.get_nowait() if q is not None else await sub.next_event(timeout=0.2)
            except asyncio.QueueEmpty:
                try:
                    ev = await asyncio.wait_for(q.get(), 0.2) if q is not None else None
                except TimeoutError:
                    continue
            if ev is None:
                if q is not None:
                    return  # the subscription was closed
                continue
            if isinstance(ev, DataChangeEvent):
                await self._on_data(ev)
            elif isinstance(ev, StatusChangeEvent):
                status = ev.notification.Status
                if not status.is_good():
                    logger.warning("OPC UA subscription status %s", _status_text(status))
                    return

    async def _on_data(self, ev: Any) -> None:
        item = ev.data.monitored_item
        b = self._bindings.get(item.ClientHandle)
        if b is None:
            return
        self.messages += 1
        dv = item.Value
        now = time.time_ns() // 1_000_000
        status = dv.StatusCode.value if dv.StatusCode is not None else 0
        ts = dv.SourceTimestamp or dv.ServerTimestamp
        if ts is None:
            self.missing_source_time += 1
        event_time = to_epoch_ms(ts) if ts is not None else now
        value = dv.Value.Value if dv.Value is not None else None

        def payload() -> bytes:  # only built for a dead letter
            return json.dumps(
                {"node": b.source, "value": repr(value), "status": status, "ts": event_time}
            ).encode()

        sample = Sample(
            b.source,
            payload,
            b.plant,
            b.line,
            b.machine,
            b.sensor,
            b.unit,
            value,
            event_time,
            QUALITY_BY_SEVERITY[(status >> 30) & 3],
        )
        kind, key, encoded = self.emitter.prepare(sample, now)
        submit = self.emitter.forwarder.submit
        while not submit(kind, key, encoded, 1, None, timeout=0):
            if self.emitter.forwarder.closing:
                return
            await asyncio.sleep(0.005)  # backpressure without blocking the event loop


def _status_text(status: Any) -> str:
    """``BadShutdown (The operation was cancelled ...)`` rather than ``StatusCode(value=2148270080)``."""
    from asyncua import ua

    try:
        name, doc = ua.status_codes.get_name_and_doc(int(status.value))
    except Exception:  # not a status code at all
        return str(status)
    if doc.startswith("Unknown StatusCode"):  # its number is all there is
        return f"status code 0x{int(status.value):08X}"
    return f"{name} ({doc.rstrip('.')})" if doc else name


_SECURITY_REFUSALS = frozenset(
    {
        "BadSecurityChecksFailed",
        "BadSecurityPolicyRejected",
        "BadSecurityModeRejected",
        "BadNoValidCertificates",
    }
)


def _first_certificate(der: bytes) -> bytes:
    """The first certificate of a DER chain (servers may send their chain concatenated)."""
    if len(der) < 2:
        return b""
    n = der[1]
    if n < 0x80:
        return der[: 2 + n]
    k = n & 0x7F
    return der[: 2 + k + int.from_bytes(der[2 : 2 + k], "big")]


def _stale_after(sub: Any) -> float:
    """Seconds without any publish response after which a subscription counts as gone (the
    parameters as the server revised them, when the client updated them)."""
    p = sub.parameters
    keepalive_s = float(p.RequestedPublishingInterval) / 1000 * max(int(p.RequestedMaxKeepAliveCount or 1), 1)
    return max(STALE_KEEPALIVES * keepalive_s, 2 * KEEPALIVE_S)


async def _quiet_disconnect(client: Any) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception as exc:  # the connection is gone already, most of the time
        logger.debug("OPC UA disconnect: %r", exc)


async def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(min(0.1, deadline - time.monotonic()))


CONFIG = OpcUaConfig
GATEWAY = OpcUaGateway
