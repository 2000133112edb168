"""MillstreamAnomalyBurst at fleet size, checked with promtool.

The threshold scales with the machines the stream job knows (more than 5 events and more than 3% of
the machines in 10 minutes), so the case needs hundreds of machine series: this test writes them into
a promtool unit-test file instead of keeping a file of 400 near-identical lines in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "rules.yml"

MACHINES = 400  # 3% of them: 12 events in 10 minutes


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed: sudo apt-get install -y prometheus")
    return found


def _fleet_case(events_per_minute: dict[str, float]) -> dict[str, Any]:
    """MACHINES machines reporting every minute; anomaly events per kind at a steady rate."""
    series = [
        {
            "series": (
                'millstream_last_reading_timestamp_seconds{job="millstream",component="windows",'
                f'instance="w1:9101",plant="p1",line="l{i % 20:02d}",machine_id="m{i:04d}"}}'
            ),
            "values": "0+60x30",
        }
        for i in range(MACHINES)
    ]
    series += [
        {
            "series": (
                'millstream_anomaly_events_total{job="millstream",component="windows",'
                f'instance="w1:9101",kind="{kind}"}}'
            ),
            "values": f"0+{rate}x30",
        }
        for kind, rate in events_per_minute.items()
    ]
    return {"interval": "1m", "input_series": series}


def _annotations(events: int, kind: str) -> dict[str, str]:
    return {
        "summary": f"{events} {kind} anomaly events in 10 minutes",
        "description": (
            f"The anomaly detectors opened {events} {kind} events in the last 10 minutes, more than 5 and "
            "more than 3% of the machines reporting: several machines may share a cause (power, material "
            "lot, ambient conditions)."
        ),
        "runbook": (
            "Open the Anomalies dashboard; the ClickHouse anomalies table ranks events by score and machine. "
            "See docs/observability.md#millstreamanomalyburst."
        ),
        "dashboard": "/d/millstream-anomalies",
    }


def _run(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "anomaly-fleet.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run(
        [_promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=300, check=False
    )


def test_anomaly_burst_threshold_scales_with_the_fleet(tmp_path: Path) -> None:
    # 8 sensor events in 10 minutes among 400 machines is chance (the detectors' measured false-event
    # rate, docs/anomaly.md, is 0.4-1 per machine and day: 1.1-2.8 per 10 minutes here), and a fixed
    # threshold of 5 fires on it. 15 machine events (more than 3% of 400 = 12) is a burst.
    case = _fleet_case({"sensor": 0.8, "machine": 1.5})
    case["promql_expr_test"] = [
        {
            "expr": "job:millstream_machines:count",
            "eval_time": "12m",
            "exp_samples": [{"labels": 'job:millstream_machines:count{job="millstream"}', "value": MACHINES}],
        }
    ]
    case["alert_rule_test"] = [
        {
            "eval_time": "12m",
            "alertname": "MillstreamAnomalyBurst",
            "exp_alerts": [
                {
                    "exp_labels": {"job": "millstream", "kind": "machine", "severity": "warning"},
                    "exp_annotations": _annotations(15, "machine"),
                }
            ],
        }
    ]
    proc = _run(tmp_path, [case])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_anomaly_burst_fires_just_above_its_threshold(tmp_path: Path) -> None:
    # 3% of 400 machines = 12: 11 events in 10 minutes stay silent, 13 fire.
    silent = _fleet_case({"sensor": 1.1})
    silent["alert_rule_test"] = [
        {"eval_time": "12m", "alertname": "MillstreamAnomalyBurst", "exp_alerts": []}
    ]
    firing = _fleet_case({"sensor": 1.3})
    firing["alert_rule_test"] = [
        {
            "eval_time": "12m",
            "alertname": "MillstreamAnomalyBurst",
            "exp_alerts": [
                {
                    "exp_labels": {"job": "millstream", "kind": "sensor", "severity": "warning"},
                    "exp_annotations": _annotations(13, "sensor"),
                }
            ],
        }
    ]
    proc = _run(tmp_path, [silent, firing])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
