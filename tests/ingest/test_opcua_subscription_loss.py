"""The OPC UA server loses the gateway's subscription while the connection stays up (its lifetime
expired, the server's subscription engine was reset). The gateway used to ask for a keep-alive only
every 75 % of the session timeout (45 minutes) and so noticed nothing: "subscribed", no data, no
gap, for up to an hour. Real asyncua server, real broker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua

from infra.procs import free_port, wait_until
from ingest.bridge import SOURCE_GAP
from ingest.config import SpoolSettings
from ingest.opcua import OpcUaConfig, OpcUaGateway
from schemas.config import KafkaSettings, TopicSettings

NS = "urn:millstream:test-subscription-loss"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="opcua-server", daemon=True)
        self._thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture()
def server() -> Iterator[tuple[LoopThread, Server, Any, int]]:
    port = free_port()
    lt = LoopThread()

    async def start() -> tuple[Server, Any]:
        s = Server()
        await s.init()
        s.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
        idx = await s.register_namespace(NS)
        machine = await s.nodes.objects.add_object(idx, "M1")
        var = await machine.add_variable(ua.NodeId("M1.pressure", idx), "pressure", 0.0)
        await s.start()
        return s, var

    s, var = lt.call(start())
    try:
        yield lt, s, var, port
    finally:
        lt.call(s.stop())
        lt.stop()


@pytest.mark.integration
def test_a_subscription_the_server_lost_is_noticed_recreated_and_reported(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    server: tuple[LoopThread, Server, Any, int],
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    lt, s, var, port = server
    config = OpcUaConfig.model_validate(
        {
            "gateway_id": "opcua-subloss",
            "endpoint": f"opc.tcp://127.0.0.1:{port}/",
            "namespaces": {"t": NS},
            "plant": "p1",
            "line": "l1",
            "publishing_interval_ms": 100,
            "nodes": [
                {"node_id": "ns={t};s=M1.pressure", "machine": "m1", "sensor": "pressure", "unit": "bar"}
            ],
        }
    )
    run = gateway_run(OpcUaGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.subscribed.wait(20)
    run.wait_read(1)  # the initial value

    async def drop_subscriptions() -> None:  # what the server does when a subscription's lifetime ends
        service = s.iserver.subscription_service
        await service.delete_subscriptions(list(service.subscriptions))

    lt.call(drop_subscriptions())
    lt.call(var.write_value(42.0))  # written while the gateway has no subscription: lost, reported as gap
    # The keep-alive (5 s) stops coming; after a few missed ones the subscription is re-created.
    wait_until(lambda: run.gateway.reconnects == 1, 45, "the lost subscription to be noticed")
    assert run.gateway.subscribed.is_set()
    assert SOURCE_GAP.labels("opcua-subloss", "opcua")._value.get() > 0
    lt.call(var.write_value(43.0))
    wait_until(lambda: run.emitter.readings >= 3, 30, "values after the re-subscription")
    report = run.close()
    assert report.lost == 0

    values = [r["value"] for r in read_topic(kafka, topics.topic_readings, 3)]
    # 0.0 initial; 42.0 again as the current value sent on re-subscribing; 43.0 live
    assert values[0] == 0.0 and values[-1] == 43.0 and 42.0 in values
