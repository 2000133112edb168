"""The stream job's liveness: an exception that escapes the windows agent marks it crashed (/healthz
503) until it handles a record again.

Faust restarts a crashed agent inside a running worker; provoking a real crash there needs a bug.
Here the agent's own function runs on a stand-in for Faust's event stream (the only mock) whose
second event is malformed, and the real HTTP endpoint serves the resulting check.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.procs import wait_until
from schemas.config import KafkaSettings
from sinks import metrics
from streams.faust_app import agent_health, create_app


class Broken:
    @property
    def message(self) -> Any:
        msg = "a malformed event"
        raise RuntimeError(msg)


class Stream:
    async def events(self) -> AsyncIterator[Any]:
        yield Broken()


def status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_crashed_agent_fails_the_liveness_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "HEALTH", metrics._Health())  # this test's checks only
    app = create_app(kafka=KafkaSettings(kafka_bootstrap="127.0.0.1:1"))  # never connects
    health = agent_health(app)
    server = metrics.serve(0, host="127.0.0.1")
    try:
        port = server.server_address[1]
        metrics.add_liveness_check("windows_agent", health.ok)
        assert status(port, "/healthz") == (200, "windows_agent ok\n")
        with pytest.raises(RuntimeError, match="a malformed event"):
            asyncio.run(app.agents["windows"].fun(Stream()))
        assert isinstance(health.crash, RuntimeError)
        assert status(port, "/healthz") == (503, "windows_agent FAIL\n")
    finally:
        server.shutdown()


def test_the_broker_check_follows_the_broker() -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    check = metrics.broker_reachable(f"127.0.0.1:1,127.0.0.1:{port}", timeout_s=0.5, cache_s=0.0)
    assert check()  # one of the bootstrap servers answers
    listener.close()
    assert not check()


def test_the_readiness_gauge_follows_its_checks_without_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    # MillstreamNotReady reads the gauge; where nothing probes /readyz (a local run, Docker,
    # systemd), the process runs its checks itself. Only /metrics is scraped here.
    monkeypatch.setattr(metrics, "HEALTH", metrics._Health())
    passing = [True]
    metrics.add_readiness_check("self_run", lambda: passing[0])
    server = metrics.serve(0, host="127.0.0.1", readiness_every_s=0.1)
    try:
        port = server.server_address[1]

        def gauge() -> str:
            text = status(port, "/metrics")[1]
            name = 'millstream_readiness_check{check="self_run"}'
            return next((line for line in text.splitlines() if line.startswith(name)), "")

        wait_until(lambda: gauge().endswith(" 1.0"), 5, "the gauge to say ready", 0.1)
        passing[0] = False
        wait_until(lambda: gauge().endswith(" 0.0"), 5, "the gauge to say not ready", 0.1)
    finally:
        server.shutdown()
