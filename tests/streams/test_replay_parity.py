"""Engine parity through ``millstream replay``: the same CSV through the Faust job and the Flink job
(real broker, real engines) gives identical windows, SPC signals and anomaly events, and both equal a
batch recomputation: numpy for the window statistics, the SPC monitors applied to the recomputed
windows for the signals.

The input has several machines and sensors, readings out of order within the allowed
out-of-orderness, gateway retries (exact duplicates) and re-sent timestamps with a different value
(the first value counts), and a mean shift late in the stream so that SPC signals fire after a
short phase I (MILLSTREAM_SPC_PHASE1_COUNT=5).
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.stack import LocalBroker
from streams.spc.config import SpcSettings
from streams.spc.operator import SpcOperator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WINDOW_MS = 2000
OOO_MS = 1000
MACHINES = ["m-1", "m-2", "m-3", "m-4"]
SENSORS = ["temperature", "vibration_rms"]
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z: historical data
SPC_ENV = {"MILLSTREAM_SPC_PHASE1_COUNT": "5", "MILLSTREAM_SPC_CHART": "imr", "MILLSTREAM_SPC_RULES": "we"}


def _write_input(path: Path) -> list[dict[str, Any]]:
    """The CSV rows, in file order."""
    rng = random.Random(20261122)
    rows: list[dict[str, Any]] = []
    for i in range(300):  # 60 s at 5 Hz per key: 30 windows per key
        for m in MACHINES:
            for s in SENSORS:
                shift = 12.0 if (m == "m-2" and s == "temperature" and i >= 200) else 0.0
                ts = T0 + i * 200 + rng.randrange(0, 150)
                value = round(rng.gauss(50 + shift, 2), 6)
                rows.append({"machine_id": m, "sensor": s, "ts": ts, "value": value,
                             "plant": "p1", "line": "l1", "unit": "u"})  # fmt: skip
    # Out of order: sort by a jittered time, so a reading trails the newest one by < 2 x 300 ms < OOO.
    rows.sort(key=lambda r: r["ts"] + rng.randrange(-300, 300))
    out: list[dict[str, Any]] = []
    for n, r in enumerate(rows):
        out.append(r)
        if n in (100, 1000, 2000):  # not a number: dead-lettered by both engines, counted by neither
            out.append({**r, "ts": r["ts"] + 1, "value": float("nan")})
        x = rng.random()
        if x < 0.02:
            out.append(dict(r))  # a gateway retry: exact duplicate
        elif x < 0.03:
            out.append({**r, "value": r["value"] + 100.0})  # same timestamp again: ignored
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["machine_id", "sensor", "ts", "value", "plant", "line", "unit"])
        w.writeheader()
        w.writerows(out)
    return out


def _replay(
    engine: str, csv_path: Path, out: Path, bootstrap: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")}
    env.update(SPC_ENV)
    env["MILLSTREAM_STREAM_OUT_OF_ORDERNESS_MS"] = str(OOO_MS)
    env["MILLSTREAM_STREAM_ALLOWED_LATENESS_MS"] = "1000"
    env["MILLSTREAM_TOPIC_PARTITIONS"] = "3"
    # 60 s of event time: without this, the default 6-minute warm-up would leave nothing to compare
    env["MILLSTREAM_ANOMALY_WARMUP_HOURS"] = "0"
    if bootstrap:
        env["MILLSTREAM_KAFKA_BOOTSTRAP"] = bootstrap
    cmd = [sys.executable, "-m", "infra.cli", "replay", "--engine", engine, "--input", str(csv_path),
           "--output", str(out), "--window", f"tumbling:{WINDOW_MS}ms"]  # fmt: skip
    if engine == "flink":
        cmd += ["--parallelism", "2"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{engine} replay failed:\n{proc.stderr[-3000:]}"
    return proc


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory, broker: LocalBroker) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("replay")
    rows = _write_input(tmp / "readings.csv")
    # Faust on the session broker (MILLSTREAM_KAFKA_BOOTSTRAP set), Flink on a broker the replay starts.
    faust = _replay("faust", tmp / "readings.csv", tmp / "faust", broker.bootstrap)
    flink = _replay("flink", tmp / "readings.csv", tmp / "flink", None)
    yield {
        "rows": rows,
        "stderr": {"faust": faust.stderr, "flink": flink.stderr},
        **{
            e: {f: _jsonl(tmp / e / f"{f}.jsonl") for f in ("windows", "spc", "anomalies", "dead_letters")}
            | {"summary": json.loads((tmp / e / "summary.json").read_text())}
            for e in ("faust", "flink")
        },
    }


def _batch_windows(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[float]]:
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    seen: set[tuple[str, str, int]] = set()
    for r in rows:  # file order = order per machine in its partition: the first value counts
        if r["value"] != r["value"]:
            continue  # NaN: rejected before windowing
        ident = (r["machine_id"], r["sensor"], r["ts"])
        if ident in seen:
            continue
        seen.add(ident)
        groups[(r["machine_id"], r["sensor"], r["ts"] // WINDOW_MS * WINDOW_MS)].append(r["value"])
    return groups


def _assert_same(a: list[dict[str, Any]], b: list[dict[str, Any]], what: str) -> None:
    assert len(a) == len(b), f"{what}: {len(a)} vs {len(b)} rows"
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys(), what
        for k in x:
            if isinstance(x[k], float) or isinstance(y[k], float):
                assert x[k] == pytest.approx(y[k], abs=1e-9), (what, k, x, y)
            else:
                assert x[k] == y[k], (what, k, x, y)


def test_both_engines_give_identical_windows_signals_and_anomalies(replays: dict[str, Any]) -> None:
    for f in ("windows", "spc", "anomalies", "dead_letters"):
        _assert_same(replays["faust"][f], replays["flink"][f], f)
    # The comparisons above are not vacuous: the mean shift opens (and closes) an anomaly.
    assert replays["faust"]["anomalies"], "no anomaly event: the anomaly comparison compared nothing"
    assert replays["faust"]["summary"]["late"] == replays["flink"]["summary"]["late"] == 0


def test_rejected_readings_dead_lettered_with_their_partition_and_offset(replays: dict[str, Any]) -> None:
    for engine in ("faust", "flink"):
        dead = replays[engine]["dead_letters"]
        assert len(dead) == 3, engine
        for d in dead:
            assert d["reason_code"] == "invalid_record" and "nan" in d["reason"], d
            assert d["partition"] >= 0 and d["offset"] >= 0 and d["key"] in MACHINES, d


def test_windows_equal_numpy_batch_recomputation(replays: dict[str, Any]) -> None:
    groups = _batch_windows(replays["rows"])
    for engine in ("faust", "flink"):
        got = {(w["machine_id"], w["sensor"], w["window_start"]): w for w in replays[engine]["windows"]}
        assert set(got) == set(groups), f"{engine}: one window per (machine, sensor, window) with data"
        for key, values in groups.items():
            w, arr = got[key], np.array(values)
            assert w["window_end"] == key[2] + WINDOW_MS
            assert w["count"] == len(values), (engine, key)
            assert w["min"] == arr.min() and w["max"] == arr.max(), (engine, key)
            assert w["mean"] == pytest.approx(arr.mean(), abs=1e-9), (engine, key)
            assert w["std"] == pytest.approx(arr.std(ddof=1), abs=1e-9), (engine, key)


def test_spc_signals_equal_the_monitors_applied_to_the_batch_windows(replays: dict[str, Any]) -> None:
    groups = _batch_windows(replays["rows"])
    op = SpcOperator(SpcSettings(chart="imr", rules="we", phase1_count=5).monitor_config())  # = SPC_ENV
    expected = []
    for (m, s, start), values in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        arr = np.array(values)
        window = {"machine_id": m, "sensor": s, "count": len(arr), "mean": float(arr.mean()),
                  "std": float(arr.std(ddof=1)), "min": float(arr.min()), "max": float(arr.max()),
                  "window_start": start, "window_end": start + WINDOW_MS}  # fmt: skip
        for sig in op.process_window(window):
            expected.append((sig.machine, sig.sensor, sig.chart, sig.rule, sig.index, sig.window_start))
    assert expected, "the mean shift must fire SPC rules"
    assert any(e[0] == "m-2" and e[1] == "temperature" for e in expected)
    for engine in ("faust", "flink"):
        got = [(r["machine_id"], r["sensor"], r["chart"], r["rule"], r["point_index"], r["window_start"])
               for r in replays[engine]["spc"]]  # fmt: skip
        assert sorted(got) == sorted(expected), engine


def test_replay_showed_progress_on_stderr(replays: dict[str, Any]) -> None:
    for engine, err in replays["stderr"].items():
        assert "produce" in err and f"process ({engine})" in err, err[-500:]
