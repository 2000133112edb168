"""Values per second from OPC UA and from MQTT through the gateway to the broker, on one core.

    python -m benchmarks.bench_gateways [--seconds S] [--machines N] [--sensors M]

Starts the local broker and Mosquitto itself. The simulated devices (``ingest.edge_sim``) run as
separate processes on the other core(s); the gateway (protocol client, validation, Avro encoding,
store-and-forward, producer) runs in this process, pinned to ONE core. The devices write as fast as
they can, so the slower of device and gateway sets the pace: the result reports both the
end-to-end rate (values acknowledged by the broker per wall-clock second) and the gateway's cost
(values per CPU-second of this process, librdkafka threads included), which is what one gateway
core can carry.

Baseline, measured in the same run against the same device process: a bare protocol client that
only counts what it receives (asyncua subscription; paho subscriber with automatic QoS 1
acknowledgement). ``gateway / baseline`` is the share of the raw protocol rate the gateway keeps.
Results go to ``benchmarks/results/gateways.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from infra.procs import ManagedProcess, free_port, port_open, wait_until
from infra.stack import LocalBroker, create_topics
from ingest.bridge import Emitter
from ingest.config import ProducerSettings, SpoolSettings
from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
from ingest.mqtt import MqttConfig, MqttGateway
from ingest.opcua import OpcUaConfig, OpcUaGateway
from ingest.validation import Validator
from schemas.config import KafkaSettings, TopicSettings

RESULTS = Path(__file__).resolve().parent / "results" / "gateways.json"
REPO = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"
WARMUP_S = 2.0


def cores() -> tuple[set[int], set[int]]:
    """(the gateway's core, the others) from this process's affinity."""
    mine = sorted(os.sched_getaffinity(0))
    return {mine[0]}, set(mine[1:]) or {mine[0]}


def device(
    protocol: str, port: int, args: argparse.Namespace, cfg: Path, cpus: set[int]
) -> subprocess.Popen[str]:
    """An edge simulator process writing as fast as it can; returns once it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.edge_sim", protocol, "--port", str(port)]
        + ["--machines", str(args.machines), "--sensors", str(args.sensors), "--rate", "1000"]
        + ["--write-config", str(cfg)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),  # noqa: PLW1509 - no threads yet here
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        msg = f"the {protocol} simulator did not start"
        raise RuntimeError(msg)
    return proc


def measure(count: Callable[[], int], seconds: float) -> dict[str, Any]:
    """Rate of ``count()`` over ``seconds`` after a warm-up, with this process's CPU time."""
    time.sleep(WARMUP_S)
    c0, t0, cpu0 = count(), time.monotonic(), time.process_time()
    time.sleep(seconds)
    c1, t1, cpu1 = count(), time.monotonic(), time.process_time()
    values, wall, cpu = c1 - c0, t1 - t0, cpu1 - cpu0
    return {
        "values": values,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "values_per_s": round(values / wall),
        "values_per_cpu_s": round(values / cpu) if cpu > 0 else 0,
        "cpu_share_of_one_core": round(cpu / wall, 3),
    }


def run_gateway(
    gateway_cls: Any, config: Any, kafka: KafkaSettings, topics: TopicSettings, spool: Path, seconds: float
) -> dict[str, Any]:
    kinds = {READINGS: topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters}
    forwarder = Forwarder(kafka, kinds, SpoolSettings(dir=spool), ProducerSettings(linger_ms=5)).start()
    emitter = Emitter(forwarder, Validator(config.validation, config.gateway_id))
    gateway = gateway_cls(config, emitter)
    stop = threading.Event()
    thread = threading.Thread(target=gateway.run_blocking, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: emitter.read > 0, 60, "the first value")
        res = measure(lambda: forwarder.report().acknowledged, seconds)
    finally:
        stop.set()
        thread.join(30)
        report = forwarder.close()
        gateway.close()
    res["after_close"] = {
        "read": emitter.read,
        "readings": emitter.readings,
        "dead_letters": emitter.dead_letters,
        "acknowledged": report.acknowledged,
        "spooled": report.spooled,
        "lost": report.lost,
    }
    return res


def baseline_opcua(config: OpcUaConfig, seconds: float) -> dict[str, Any]:
    """The same asyncua subscription, only counting notifications."""
    from asyncua.client.client import Client
    from asyncua.common.subscription import DataChangeEvent

    counter = [0]

    async def run(stop: threading.Event) -> None:
        async with Client(config.endpoint) as client:
            # the gateway's own subscription code (same filter, queue sizes): only the handling differs
            sub = await OpcUaGateway(config, cast(Any, None))._subscribe(client)
            q = sub._event_queue  # drained the way the gateway does
            while not stop.is_set():
                try:
                    ev = q.get_nowait()
                except asyncio.QueueEmpty:
                    try:
                        ev = await asyncio.wait_for(q.get(), 0.2)
                    except TimeoutError:
                        continue
                if isinstance(ev, DataChangeEvent):
                    counter[0] += 1

    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(run(stop)), daemon=True)
    thread.start()
    try:
        wait_until(lambda: counter[0] > 0, 60, "the first notification")
        return measure(lambda: counter[0], seconds)
    finally:
        stop.set()
        thread.join(30)


def baseline_mqtt(config: MqttConfig, seconds: float) -> dict[str, Any]:
    """A bare paho subscriber (QoS 1, automatic acknowledgement), counting messages."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    counter = [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline")

    def on_message(c: Any, u: Any, msg: Any) -> None:
        counter[0] += 1

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("plant/+/line/+/machine/+/+", qos=1)
    client.connect(config.host, config.port)
    client.loop_start()
    try:
        wait_until(lambda: counter[0] > 0, 60, "the first message")
        return measure(lambda: counter[0], seconds)
    finally:
        client.disconnect()
        client.loop_stop()


def _pin(process: ManagedProcess | None, cpus: set[int]) -> None:
    if process is not None and process.pid is not None:
        os.sched_setaffinity(process.pid, cpus)


def start_mosquitto(data_dir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    conf = data_dir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\n"
        "max_queued_messages 1000000\n"
    )
    proc = ManagedProcess("mosquitto", [MOSQUITTO, "-c", str(conf)], data_dir / "mosquitto.log").start()
    wait_until(lambda: port_open(port), 15, "mosquitto")
    return proc, port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="timed window per side (default 10)")
    ap.add_argument("--machines", type=int, default=20)
    ap.add_argument("--sensors", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    gateway_core, device_cores = cores()
    sides: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="millstream-bench-gw-") as tmp_dir:
        tmp = Path(tmp_dir)
        broker = LocalBroker(tmp / "broker").start()
        mosquitto: ManagedProcess | None = None
        _pin(broker.process, device_cores)  # the broker is "elsewhere": not on the gateway's core
        os.sched_setaffinity(0, gateway_core)
        try:
            kafka = KafkaSettings(kafka_bootstrap=broker.bootstrap)

            def topics(name: str) -> TopicSettings:
                t = TopicSettings(
                    topic_readings=f"readings-{name}",
                    topic_windows=f"windows-{name}",
                    topic_dead_letters=f"dead-letters-{name}",
                    topic_late=f"late-{name}",
                    topic_spc_signals=f"spc-{name}",
                    topic_anomalies=f"anomalies-{name}",
                    topic_partitions=6,
                )
                create_topics(kafka, t)
                return t

            cfg = tmp / "opcua.json"
            sim = device("opcua", free_port(), args, cfg, device_cores)
            try:
                config = OpcUaConfig.model_validate(json.loads(cfg.read_text()))
                print("opcua baseline ...", file=sys.stderr)
                sides["opcua_baseline"] = baseline_opcua(config, args.seconds)
                print("opcua gateway ...", file=sys.stderr)
                sides["opcua_gateway"] = run_gateway(
                    OpcUaGateway, config, kafka, topics("opcua"), tmp / "spool-opcua", args.seconds
                )
            finally:
                sim.kill()
                sim.wait()
            mosquitto, mqtt_port = start_mosquitto(tmp)
            _pin(mosquitto, device_cores)
            cfg = tmp / "mqtt.json"
            sim = device("mqtt", mqtt_port, args, cfg, device_cores)
            try:
                config_m = MqttConfig.model_validate(json.loads(cfg.read_text()))
                print("mqtt baseline ...", file=sys.stderr)
                sides["mqtt_baseline"] = baseline_mqtt(config_m, args.seconds)
                print("mqtt gateway ...", file=sys.stderr)
                sides["mqtt_gateway"] = run_gateway(
                    MqttGateway, config_m, kafka, topics("mqtt"), tmp / "spool-mqtt", args.seconds
                )
            finally:
                sim.kill()
                sim.wait()
        finally:
            if mosquitto is not None:
                mosquitto.stop()
            broker.stop()

    def ratio(a: str, b: str) -> float:
        return round(float(sides[a]["values_per_s"]) / max(1.0, float(sides[b]["values_per_s"])), 3)

    result = {
        "benchmark": "gateways",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_gateways "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "headline": {
            "opcua_values_per_s": sides["opcua_gateway"]["values_per_s"],
            "opcua_values_per_gateway_cpu_s": sides["opcua_gateway"]["values_per_cpu_s"],
            "opcua_baseline_values_per_s": sides["opcua_baseline"]["values_per_s"],
            "opcua_gateway_over_baseline": ratio("opcua_gateway", "opcua_baseline"),
            "mqtt_values_per_s": sides["mqtt_gateway"]["values_per_s"],
            "mqtt_values_per_gateway_cpu_s": sides["mqtt_gateway"]["values_per_cpu_s"],
            "mqtt_baseline_values_per_s": sides["mqtt_baseline"]["values_per_s"],
            "mqtt_gateway_over_baseline": ratio("mqtt_gateway", "mqtt_baseline"),
            "measured": f"values acknowledged by the broker per wall-clock second over {args.seconds:g} s "
            f"after {WARMUP_S:g} s warm-up; the gateway pinned to one core",
        },
        "sides": sides,
        "notes": [
            "values_per_s is end to end: device process -> protocol -> gateway -> broker acknowledgement. "
            "When cpu_share_of_one_core is well below 1 the device simulator (Python, the other core) "
            "set the pace, not the gateway; values_per_cpu_s is then the better measure of gateway cost.",
            "baseline: a bare client of the same protocol that only counts (no validation, no Avro, no "
            "Kafka); for MQTT with paho's automatic QoS 1 acknowledgement, while the gateway acknowledges "
            "only after Kafka did (window: mosquitto max_inflight_messages 1000).",
            "each MQTT message carries one value; each OPC UA notification one value.",
            "the machine is shared with other jobs (load_average_1m_at_end): compare sides within one run; "
            "the device simulators, the broker and Mosquitto share the non-gateway core(s).",
        ],
        "workload": {"machines": args.machines, "sensors": args.sensors, "device_rate_hz": "unthrottled"},
        "config": {
            "producer": "ProducerSettings(linger_ms=5), delivery_reports=all (store-and-forward)",
            "spool": "fsync=always (used only while the broker is away: unused here)",
            "broker": "local single-node in-memory Kafka-protocol broker (infra.stack.LocalBroker)",
            "gateway_core": sorted(gateway_core),
            "device_cores": sorted(device_cores),
            "broker_and_mosquitto_cores": sorted(device_cores),
        },
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["headline"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
