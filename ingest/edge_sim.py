"""Simulated devices that speak the real protocols, for tests, demos and benchmarks.

* :class:`OpcUaSimServer`: an asyncua server with one variable per machine and sensor
  (``ns=<urn:millstream:edge-sim>;s=<plant>/<line>/<machine>/<sensor>``, also browsable as
  ``Objects/<plant>/<line>/<machine>/<sensor>``); each scan writes every variable with the scan's
  time as SourceTimestamp and the signal's quality as StatusCode.
* :class:`MqttSimPublisher`: a paho client publishing one JSON message per machine, sensor and
  scan (``{"value", "ts", "unit", "quality"}``, QoS 1) to ``plant/<p>/line/<l>/machine/<m>/<sensor>``,
  optionally in other units (``{"temperature": "[degF]"}``) to exercise unit normalisation.

Values come from :class:`ingest.simulator.PlantSimulator` (:mod:`ingest.signals`). Both record
what they sent (:class:`Sent`), so a test can compare it with what reached Kafka.

    python -m ingest.edge_sim opcua --port 4840 --machines 10 --write-config gw-opcua.yaml
    python -m ingest.edge_sim mqtt --port 1883 --machines 10 --rate 5 --write-config gw-mqtt.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ingest.config import SimulatorSettings
from ingest.simulator import PlantSimulator
from ingest.validation import ALIASES, CONVERSIONS

logger = logging.getLogger(__name__)

NAMESPACE = "urn:millstream:edge-sim"
QUALITIES = ("GOOD", "UNCERTAIN", "BAD")
STATUS_NAMES = ("Good", "UncertainLastUsableValue", "BadSensorFailure")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sent:
    """One value a simulator sent, in canonical units."""

    machine_id: str
    sensor: str
    event_time: int
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class SimSecurity:
    """A simulator that accepts only secured channels, from clients whose certificate is in
    ``trusted`` (a folder of .der/.pem files), like a PLC configured for Basic256Sha256."""

    cert_file: Path
    key_file: Path
    trusted: Path
    policies: tuple[str, ...] = ("Basic256Sha256_SignAndEncrypt",)  # ua.SecurityPolicyType names


def _scan_time(sim: PlantSimulator, k: int, start_ms: int | None) -> int:
    if start_ms is None:
        return time.time_ns() // 1_000_000
    return start_ms + round(k * 1000 / sim.settings.rate_hz)


class OpcUaSimServer:
    """An OPC UA server exposing simulated machines. Async API; see :class:`OpcUaSimThread`."""

    def __init__(
        self,
        port: int,
        settings: SimulatorSettings,
        host: str = "127.0.0.1",
        security: SimSecurity | None = None,
    ) -> None:
        self.port, self.host = port, host
        self.security = security
        self.sim = PlantSimulator(settings)
        self.endpoint = f"opc.tcp://{host}:{port}/millstream/"
        self.sent: list[Sent] = []
        self.record = True
        self.ticks = 0
        self._server: Any = None
        self._nodes: list[list[Any]] = []  # [machine][sensor] -> NodeId
        self._last: dict[Any, Any] = {}  # NodeId -> last DataValue (kept across restarts)

    async def start(self) -> None:
        """Start serving; the first scan (or, after a restart, the last values) is the initial value."""
        from asyncua import ua
        from asyncua.server.server import Server

        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Millstream edge simulator")
        if self.security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await self._secure(server)
        idx = await server.register_namespace(NAMESPACE)
        self._nodes = []
        plants: dict[str, Any] = {}
        lines: dict[tuple[str, str], Any] = {}
        for m in self.sim.machines:
            if m.plant not in plants:
                plants[m.plant] = await server.nodes.objects.add_object(
                    _node_id(idx, m.plant), ua.QualifiedName(m.plant, idx)
                )
            if (m.plant, m.line) not in lines:
                lines[(m.plant, m.line)] = await plants[m.plant].add_object(
                    _node_id(idx, f"{m.plant}/{m.line}"), ua.QualifiedName(m.line, idx)
                )
            machine = await lines[(m.plant, m.line)].add_object(
                _node_id(idx, f"{m.plant}/{m.line}/{m.machine_id}"), ua.QualifiedName(m.machine_id, idx)
            )
            row = []
            for s in self.sim.sensors:
                nid = _node_id(idx, f"{m.plant}/{m.line}/{m.machine_id}/{s.name}")
                await machine.add_variable(nid, ua.QualifiedName(s.name, idx), 0.0, ua.VariantType.Double)
                row.append(nid)
            self._nodes.append(row)
        self._server = server
        if self._last:
            for nid, dv in self._last.items():
                await server.write_attribute_value(nid, dv)
        else:
            await self.write_tick(record=True)
        await server.start()

    async def _secure(self, server: Any) -> None:
        from asyncua import ua
        from asyncua.crypto.truststore import TrustStore
        from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

        sec = self.security
        assert sec is not None
        server.set_security_policy([getattr(ua.SecurityPolicyType, p) for p in sec.policies])
        await server.load_certificate(str(sec.cert_file))
        await server.load_private_key(str(sec.key_file))
        store = TrustStore([sec.trusted], [])
        await store.load()
        options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        server.set_certificate_validator(CertificateValidator(options, store))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def write_tick(self, event_time: int | None = None, record: bool | None = None) -> int:
        """One scan of every machine; returns its event time."""
        from asyncua import ua
        from asyncua.ua.status_codes import StatusCodes

        t = event_time if event_time is not None else time.time_ns() // 1_000_000
        tick = self.sim.tick(t)
        self.ticks += 1
        stamp: Any = _EPOCH + timedelta(milliseconds=t)  # asyncua types it as its DateTime subclass
        codes = [ua.StatusCode(getattr(StatusCodes, n)) for n in STATUS_NAMES]
        write = self._server.write_attribute_value
        keep = self.record if record is None else record
        for i, m in enumerate(self.sim.machines):
            qualities = tick.qualities[i]
            for j, nid in enumerate(self._nodes[i]):
                q = qualities[j] if qualities is not None else 0
                v = tick.values[i][j]
                dv = ua.DataValue(
                    ua.Variant(v, ua.VariantType.Double),
                    codes[q],
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                self._last[nid] = dv
                await write(nid, dv)
                if keep:
                    self.sent.append(Sent(m.machine_id, self.sim.sensors[j].name, t, v, QUALITIES[q]))
        return t

    async def run(self, stop: threading.Event, ticks: int | None = None, start_ms: int | None = None) -> None:
        """Scan at the simulator's rate (live) until ``stop`` or ``ticks`` scans."""
        period = 1.0 / self.sim.settings.rate_hz
        t0 = time.monotonic()
        k = 0
        while not stop.is_set() and (ticks is None or k < ticks):
            await self.write_tick(_scan_time(self.sim, self.ticks, start_ms))
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * period - time.monotonic()))

    def gateway_config(self, gateway_id: str = "opcua-sim", browse_paths: bool = False) -> dict[str, Any]:
        """A gateway configuration subscribing to every variable of this server."""
        nodes = []
        for m in self.sim.machines:
            for s in self.sim.sensors:
                address = (
                    {"browse_path": f"0:Objects/sim:{m.plant}/sim:{m.line}/sim:{m.machine_id}/sim:{s.name}"}
                    if browse_paths
                    else {"node_id": f"ns={{sim}};s={m.plant}/{m.line}/{m.machine_id}/{s.name}"}
                )
                nodes.append(
                    {
                        **address,
                        "plant": m.plant,
                        "line": m.line,
                        "machine": m.machine_id,
                        "sensor": s.name,
                        "unit": s.unit,
                    }
                )
        return {
            "gateway_id": gateway_id,
            "endpoint": self.endpoint,
            "namespaces": {"sim": NAMESPACE},
            "publishing_interval_ms": 50,
            "nodes": nodes,
        }


class OpcUaSimThread:
    """:class:`OpcUaSimServer` on its own event loop thread, with blocking calls (for tests)."""

    def __init__(self, server: OpcUaSimServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="opcua-sim", daemon=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> OpcUaSimThread:
        self._thread.start()
        self.call(self.server.start())
        return self

    def ticks(self, n: int, start_ms: int | None = None, pause_s: float = 0.0) -> None:
        for _ in range(n):
            self.call(self.server.write_tick(_scan_time(self.server.sim, self.server.ticks, start_ms)))
            if pause_s:
                time.sleep(pause_s)

    def restart(self, down_s: float) -> None:
        self.call(self.server.stop())
        time.sleep(down_s)
        self.call(self.server.start())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self.server.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


class MqttSimPublisher:
    """Publishes simulated machines' values as JSON over MQTT (QoS 1 by default)."""

    def __init__(
        self,
        host: str,
        port: int,
        settings: SimulatorSettings,
        client_id: str = "millstream-edge-sim",
        qos: int = 1,
        units: dict[str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.sim = PlantSimulator(settings)
        self.qos = qos
        self.units = units or {}
        self.sent: list[Sent] = []
        self.record = True
        self.ticks = 0
        self.acked: set[int] = set()
        self.mids: list[int] = []  # mid of each entry of sent
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.on_publish = self._on_publish
        self.host, self.port = host, port

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.acked.add(mid)

    def connect(self, timeout: float = 10.0) -> MqttSimPublisher:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            msg = f"no MQTT connection to {self.host}:{self.port}"
            raise ConnectionError(msg)
        return self

    def topic(self, plant: str, line: str, machine_id: str, sensor: str) -> str:
        return f"plant/{plant}/line/{line}/machine/{machine_id}/{sensor}"

    def publish_tick(self, event_time: int | None = None) -> int:
        t = event_time if event_time is not None else time.time_ns() // 1_000_000
        tick = self.sim.tick(t)
        self.ticks += 1
        for i, m in enumerate(self.sim.machines):
            qualities = tick.qualities[i]
            for j, spec in enumerate(self.sim.sensors):
                q = QUALITIES[qualities[j] if qualities is not None else 0]
                v = tick.values[i][j]
                unit = self.units.get(spec.name, spec.unit)
                payload = {"value": from_canonical(v, unit), "ts": t, "unit": unit, "quality": q}
                info = self.client.publish(
                    self.topic(m.plant, m.line, m.machine_id, spec.name), json.dumps(payload), qos=self.qos
                )
                if self.record:
                    self.sent.append(Sent(m.machine_id, spec.name, t, v, q))
                    self.mids.append(info.mid)
        return t

    def publish_raw(self, topic: str, payload: bytes | str) -> int:
        return int(self.client.publish(topic, payload, qos=self.qos).mid)

    def run(self, stop: threading.Event, ticks: int | None = None, start_ms: int | None = None) -> None:
        period = 1.0 / self.sim.settings.rate_hz
        t0 = time.monotonic()
        k = 0
        while not stop.is_set() and (ticks is None or k < ticks):
            self.publish_tick(_scan_time(self.sim, self.ticks, start_ms))
            k += 1
            stop.wait(max(0.0, t0 + k * period - time.monotonic()))

    def acknowledged(self) -> list[Sent]:
        """What the broker acknowledged (PUBACK received)."""
        with self._lock:
            return [s for s, mid in zip(self.sent, self.mids, strict=True) if mid in self.acked]

    def wait_acked(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(mid in self.acked for mid in self.mids):
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def gateway_config(self, gateway_id: str = "mqtt-sim", client_id: str | None = None) -> dict[str, Any]:
        return {
            "gateway_id": gateway_id,
            "host": self.host,
            "port": self.port,
            "client_id": client_id or f"millstream-{gateway_id}",
            "topics": [{"pattern": "plant/{plant}/line/{line}/machine/{machine}/{sensor}"}],
        }


def _node_id(ns: int, name: str) -> Any:
    from asyncua import ua

    return ua.NodeId.from_string(f"ns={ns};s={name}")


def from_canonical(value: float, unit: str) -> float:
    """A canonical value expressed in ``unit`` (the inverse of the validation table)."""
    conv = CONVERSIONS.get(ALIASES.get(unit, unit))
    return value if conv is None else (value - conv.offset) / conv.scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.edge_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("protocol", choices=["opcua", "mqtt"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1.0, help="scans per second per machine")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument(
        "--write-config", type=Path, default=None, help="write a matching gateway config (JSON)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = SimulatorSettings(
        machines=args.machines, sensors=args.sensors, rate_hz=args.rate, seed=args.seed
    )
    stop = threading.Event()
    if args.duration is not None:
        threading.Timer(args.duration, stop.set).start()
    if args.protocol == "opcua":
        server = OpcUaSimServer(args.port, settings, args.host)
        server.record = False

        async def serve() -> None:
            await server.start()
            _ready(args.write_config, server.gateway_config())
            try:
                await server.run(stop)
            finally:
                await server.stop()

        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass
        return 0
    publisher = MqttSimPublisher(args.host, args.port, settings)
    publisher.record = False
    publisher.connect()
    _ready(args.write_config, publisher.gateway_config())
    try:
        publisher.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
    return 0


def _ready(path: Path | None, config: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(config, indent=2))
    sys.stdout.write("ready\n")  # the line a parent process waits for
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
