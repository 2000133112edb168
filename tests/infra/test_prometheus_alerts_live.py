"""Alerts fire on real failures of the real processes, and resolve when the failure ends.

Real broker, sink, Faust worker and plant simulator; a real Prometheus scrapes them every second and
evaluates a copy of infra/prometheus/rules.yml that differs only in time: every ``for:`` is 5 s,
``[1m]`` ranges are 10 s and the longer ones 30 s (:func:`shortened`), so the run takes about a
minute. Expressions, labels and annotations are the shipped ones. (rules.test.yml checks the
thresholds and durations on synthetic series; this checks that the series the rules read are the
ones the processes export when things go wrong.)

1. The sink reads another windows topic than the stream job writes to: it is up, ready, not paused
   and has no lag, and it writes nothing into window_aggregates: MillstreamSinkStalled fires.
   Restarted on the right topic, the alert resolves.
2. The stream worker stops: MillstreamComponentDown (windows) and MillstreamPipelineStalled fire
   (the gateway's messages are acknowledged, nobody reads them); MillstreamSinkStalled does not (no
   windows are emitted). Started again, both resolve.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infra.pipeline
from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, wait_until
from infra.stack import LocalPrometheus, create_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "rules.yml"
FIRING_S = 45.0  # from the failure to a firing alert: scrape, rate window, `for:`, process start


def shortened(rules: str) -> str:
    """rules.yml with every `for:` at 5 s and its ranges shortened; nothing else changes."""
    out = re.sub(r"for: \d+[smh]", "for: 5s", rules)
    out = out.replace("[1m]", "[10s]")
    return re.sub(r"\[(5|10|15)m\]", "[30s]", out)


def test_shortened_rules_change_durations_only() -> None:
    text = RULES.read_text()
    short = shortened(text)
    assert "for: 5s" in short
    assert not re.search(r"for: \d+m|\[\d+m\]", short)
    unchanged = re.sub(r"for: \S+|\[\d+[sm]\]", "", text)
    assert re.sub(r"for: \S+|\[\d+[sm]\]", "", short) == unchanged


def alerts(prom: LocalPrometheus) -> dict[str, dict[str, Any]]:
    """alertname -> the alert (the first of its name) for alerts pending or firing."""
    out: dict[str, dict[str, Any]] = {}
    for r in prom.query("ALERTS"):
        out.setdefault(r["metric"]["alertname"], r["metric"])
    return out


def firing(prom: LocalPrometheus, **labels: str) -> dict[str, dict[str, str]]:
    """alertname -> labels of the firing alerts that carry ``labels``."""
    out: dict[str, dict[str, str]] = {}
    for r in prom.query('ALERTS{alertstate="firing"}'):
        m = r["metric"]
        if all(m.get(k) == v for k, v in labels.items()):
            out[m["alertname"]] = m
    return out


def annotations_of(prom: LocalPrometheus, name: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{prom.url}/api/v1/alerts", timeout=10) as r:  # noqa: S310 - loopback
        found = [a for a in json.loads(r.read())["data"]["alerts"] if a["labels"]["alertname"] == name]
    assert found, name
    return dict(found[0]["annotations"])


@pytest.fixture()
def pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalPipeline]:
    short = tmp_path / "rules.short.yml"
    short.write_text(shortened(RULES.read_text()))
    monkeypatch.setattr(infra.pipeline, "RULES", short)
    opts = PipelineOptions(
        data_dir=tmp_path / "run",
        window="tumbling:1s",
        out_of_orderness_ms=200,
        allowed_lateness_ms=500,
        idle_timeout_ms=1000,
        scrape_interval_s=1.0,
    )
    with LocalPipeline(opts) as p:
        p.start_stack()
        yield p


def start_sink(pipe: LocalPipeline, windows_topic: str) -> None:
    env = {**pipe.env(), "MILLSTREAM_TOPIC_WINDOWS": windows_topic}
    pipe.procs["sink"] = ManagedProcess(
        "sink",
        [*pipe.cli(), "sink", "--metrics-port", str(pipe.ports["sink"])],
        pipe.logs / "sink.log",
        env=env,
    ).start()


def test_alerts_fire_on_real_failures_and_resolve(pipe: LocalPipeline) -> None:
    prom = pipe.prometheus
    assert prom is not None
    elsewhere = f"{pipe.topics.topic_windows}-old"
    create_topics(pipe.kafka, pipe.topics.model_copy(update={"topic_windows": elsewhere}))

    # 1. The sink on another windows topic.
    start_sink(pipe, elsewhere)
    pipe.start_worker()
    pipe.start_gateway(duration_s=600, machines=2, rate_hz=2)
    wait_until(lambda: "MillstreamSinkStalled" in firing(prom), FIRING_S, "MillstreamSinkStalled to fire")
    assert firing(prom)["MillstreamSinkStalled"]["severity"] == "critical"
    notes = annotations_of(prom, "MillstreamSinkStalled")
    assert "(millstream)" in notes["summary"]
    assert notes["runbook"].startswith("Compare MILLSTREAM_TOPIC_WINDOWS")  # this cause, checked first
    assert "MillstreamComponentDown" not in alerts(prom)  # the sink is up: nothing else says so
    pipe.check_alive("sink", "windows", "gateway")

    pipe.stop("sink")
    pipe.start_sink()
    wait_until(
        lambda: "MillstreamSinkStalled" not in alerts(prom), FIRING_S, "MillstreamSinkStalled to resolve"
    )

    # 2. The stream worker stops.
    assert pipe.stop("windows") == 0
    wait_until(
        lambda: {"MillstreamComponentDown", "MillstreamPipelineStalled"} <= set(firing(prom)),
        FIRING_S,
        "MillstreamComponentDown and MillstreamPipelineStalled to fire",
    )
    assert "MillstreamComponentDown" in firing(prom, component="windows")
    assert "MillstreamSinkStalled" not in alerts(prom)
    pipe.start_worker()
    wait_until(
        lambda: not {"MillstreamComponentDown", "MillstreamPipelineStalled"} & set(alerts(prom)),
        FIRING_S + 30,  # the worker rejoins its group first
        "MillstreamComponentDown and MillstreamPipelineStalled to resolve",
    )
    pipe.check_alive("sink", "windows", "gateway")
