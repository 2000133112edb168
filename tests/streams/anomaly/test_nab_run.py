"""``millstream nab run`` end to end on a few NAB files, and proof that detection never reads labels."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from infra.cli import main

FILES = [
    "realAdExchange/exchange-2_cpc_results.csv",
    "realTraffic/speed_7578.csv",
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
]


def mini_corpus(shared_dir: Path, root: Path, labels: bool = True) -> Path:
    nab = shared_dir / "datasets" / "nab"
    for key in FILES:
        (root / "data" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nab / "data" / key, root / "data" / key)
    (root / "config").mkdir(parents=True)
    shutil.copy(nab / "config" / "profiles.json", root / "config" / "profiles.json")
    if labels:
        windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
        (root / "labels").mkdir()
        (root / "labels" / "combined_windows.json").write_text(json.dumps({k: windows[k] for k in FILES}))
    return root


Capture = pytest.CaptureFixture[str]


def test_run_writes_nab_layout_and_scores_it(shared_dir: Path, tmp_path: Path, capsys: Capture) -> None:
    root = mini_corpus(shared_dir, tmp_path / "nab")
    out = tmp_path / "results"
    assert main(["nab", "run", "--nab-root", str(root), "--output", str(out), "--json", "--quiet"]) == 0
    run_scores = json.loads(capsys.readouterr().out)
    assert set(run_scores) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert all(math.isfinite(v) and v <= 100 for v in run_scores.values())
    for key in FILES:
        category, name = key.split("/")
        written = out / category / f"millstream_{name}"
        with written.open() as fh:
            rows = list(csv.DictReader(fh))
        with (root / "data" / key).open() as fh:
            data = list(csv.DictReader(fh))
        assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "is_anomaly"]
        assert [r["timestamp"] for r in rows] == [d["timestamp"] for d in data]
        assert [r["value"] for r in rows] == [d["value"] for d in data]
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    # the scorer reads the same folder to the same numbers
    assert main(["nab", "score", "--nab-root", str(root), "--results", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == run_scores


def test_detection_does_not_read_labels(shared_dir: Path, tmp_path: Path, capsys: Capture) -> None:
    with_labels = mini_corpus(shared_dir, tmp_path / "with")
    without = mini_corpus(shared_dir, tmp_path / "without", labels=False)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["nab", "run", "--nab-root", str(with_labels), "--output", str(a), "--quiet", "--json"]) == 0
    # without labels the run still writes every result; only the scoring step after it fails
    assert main(["nab", "run", "--nab-root", str(without), "--output", str(b), "--quiet", "--json"]) == 1
    assert "combined_windows.json" in capsys.readouterr().err
    for key in FILES:
        category, name = key.split("/")
        assert (a / category / f"millstream_{name}").read_bytes() == (
            b / category / f"millstream_{name}"
        ).read_bytes()
