"""The NAB scorer against the published scoreboard and against hand-worked rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from infra.cli import main
from streams.anomaly.exceptions import NabError
from streams.anomaly.nab import (
    CostProfile,
    file_geometry,
    normalise,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    sweep,
)

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def sigma(y: float) -> float:
    """Scaled sigmoid of Lavin & Ahmad (2015), eq. (1), written out independently here."""
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_scaled_sigmoid_matches_the_values_quoted_by_nab() -> None:
    # NAB's scorer docstring (nab/scorer.py): -1.0 -> 0.98661, -0.5 -> 0.84828, 0 -> 0, 1.0 -> -0.98661
    got = scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 3.5]))
    assert got == pytest.approx([0.98661, 0.84828, 0.0, -0.98661, -1.0], abs=1e-5)


def test_probationary_period() -> None:
    assert probation_rows(1000) == 150  # floor(0.15 * N)
    assert probation_rows(4032) == 604
    assert probation_rows(22695) == 750  # capped at 0.15 * 5000


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian"])
def test_reproduces_published_scores(shared_dir: Path, detector: str) -> None:
    nab = shared_dir / "datasets" / "nab"
    # published: NAB v1.1 results/final_results.json (numenta 70.1, windowedGaussian 39.6 standard)
    published = json.loads((nab / "results" / "final_results.json").read_text())[detector]
    results = score_corpus(nab, nab / "results" / detector)
    for profile in PROFILES:
        assert results[profile].normalised == pytest.approx(published[profile], abs=0.5), profile


@pytest.mark.slow
def test_score_command_prints_the_three_profiles(
    shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nab = shared_dir / "datasets" / "nab"
    rc = main(
        ["nab", "score", "--nab-root", str(nab), "--results", str(nab / "results" / "numenta"), "--json"]
    )
    assert rc == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == set(PROFILES)
    assert scores["standard"] == pytest.approx(70.1, abs=0.5)  # published numenta score


def test_one_file_scored_by_hand() -> None:
    """20 rows (probation 3), one window on rows 10..13; detections worked out from the rules."""
    t0 = np.datetime64("2020-01-01T00:00", "us")
    times = t0 + np.arange(20) * np.timedelta64(5, "m")
    windows = [(times[10], times[13])]
    g = file_geometry("cat/f.csv", times, windows)
    std = CostProfile("standard", 1.0, 0.11, 1.0)
    scores = np.zeros(20)
    scores[[1, 5, 11, 12, 16]] = (
        1.0  # 1: probation (ignored); 5: FP before any window; 11, 12: in window; 16: FP
    )
    thr, raw = sweep([g], [scores], std)
    w, right = 4, 13
    tp = sigma(-(right - 11 + 1) / w) / sigma(-1.0)  # earliest detection in the window counts
    fp_before = -0.11
    fp_after = 0.11 * sigma(abs(right - 16) / (w - 1))
    assert thr == 1.0
    assert raw == pytest.approx(tp + fp_before + fp_after)
    assert normalise(raw, 1, std) == pytest.approx(100 * (raw + 1) / 2)


def naive_total(geoms, scores, profile: CostProfile, threshold: float) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for g, s in zip(geoms, scores, strict=True):
        best: dict[int, float] = {}
        for i in range(g.probation, g.n_rows):
            if s[i] < threshold:
                continue
            k = int(g.window_of_row[i])
            if k >= 0:
                best[k] = max(best.get(k, -math.inf), profile.a_tp * g.tp_unit[i])
            else:
                total += profile.a_fp * g.fp_unit[i]
        total += sum(best.get(k, -profile.a_fn) for k in range(g.n_windows))
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_sweep_finds_the_best_threshold_of_a_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2020-01-01T00:00", "us")
    geoms, scores = [], []
    for f in range(4):
        n = int(rng.integers(40, 120))
        times = t0 + np.arange(n) * np.timedelta64(1, "m")
        starts = sorted(rng.choice(np.arange(n // 4, n - 10), size=2, replace=False))
        wins = [(times[a], times[min(a + 6, n - 1)]) for a in starts]
        if wins[1][0] <= wins[0][1]:
            wins = wins[:1]
        geoms.append(file_geometry(f"c/{f}.csv", times, wins))
        scores.append(np.round(rng.random(n), 2))  # ties on purpose
    for profile in (CostProfile("standard", 1, 0.11, 1), CostProfile("fn", 1, 0.11, 2)):
        candidates = sorted({float(v) for s in scores for v in s} | {math.inf})
        brute = max(naive_total(geoms, scores, profile, c) for c in candidates)
        thr, raw = sweep(geoms, scores, profile)
        assert raw == pytest.approx(brute)
        assert naive_total(geoms, scores, profile, thr) == pytest.approx(raw)


def test_missing_results_are_named(shared_dir: Path, tmp_path: Path) -> None:
    nab = shared_dir / "datasets" / "nab"
    with pytest.raises(NabError, match="no results for 58 of 58 NAB files"):
        score_corpus(nab, tmp_path)
