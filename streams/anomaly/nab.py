"""Numenta Anomaly Benchmark (NAB v1.1) scorer.

Written from the published rules (Lavin & Ahmad 2015, "Evaluating Real-time Anomaly Detection
Algorithms - the Numenta Anomaly Benchmark"):

* a row is a detection when its ``anomaly_score`` >= the threshold; one threshold per profile,
  chosen to maximise the corpus score over every distinct score value;
* the first ``min(floor(0.15 N), 750)`` rows of a file (probationary period) are not scored;
* scaled sigmoid ``s(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` for ``y > 3``);
* a window (width ``W`` rows, right edge row ``R``) scores ``A_TP s(y) / s(-1)`` with
  ``y = -(R - i + 1) / W`` for its earliest detection ``i``, or ``-A_FN`` with none;
* a detection outside every window scores ``-A_FP`` when no window has ended before it, otherwise
  ``A_FP s(|R' - i| / (W' - 1))`` with the previous window's right edge ``R'`` and width ``W'``;
* normalised score ``100 (raw - null) / (perfect - null)``, ``null = -A_FN * windows``,
  ``perfect = A_TP * windows``.

The threshold sweep is exact and vectorised: every row becomes a score "event" (its value changes
the corpus total when the threshold passes below its anomaly score), events are sorted once and
the total at every distinct threshold is a cumulative sum.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.anomaly.exceptions import NabError

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATION_PERCENT = 0.15
PROBATION_CAP = 750  # 0.15 * 5000, as in NAB


@dataclass(frozen=True)
class CostProfile:
    name: str
    a_tp: float
    a_fp: float
    a_fn: float


@dataclass(frozen=True)
class FileGeometry:
    """Everything about one file that depends on the labels only (not on a detector)."""

    key: str  # "<category>/<name>.csv"
    n_rows: int
    probation: int
    window_of_row: Array  # int, -1 outside every window
    tp_unit: Array  # s(y)/s(-1) inside windows, 0 outside
    fp_unit: Array  # s(y) (or -1) outside windows, 0 inside
    n_windows: int


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    normalised: float
    per_file: dict[str, float]


def scaled_sigmoid(y: Array) -> Array:
    y = np.asarray(y, dtype=float)
    out = 2.0 / (1.0 + np.exp(np.clip(5.0 * y, -700, 700))) - 1.0
    return np.where(y > 3.0, -1.0, out)


def probation_rows(n_rows: int) -> int:
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_CAP))


# ----------------------------------------------------------------------------------------------- corpus


def load_profiles(nab_root: Path) -> dict[str, CostProfile]:
    path = nab_root / "config" / "profiles.json"
    try:
        raw = json.loads(path.read_text())
        return {
            name: CostProfile(
                name,
                float(raw[name]["CostMatrix"]["tpWeight"]),
                float(raw[name]["CostMatrix"]["fpWeight"]),
                float(raw[name]["CostMatrix"]["fnWeight"]),
            )
            for name in PROFILES
        }
    except (OSError, ValueError, KeyError) as exc:
        msg = f"cannot read NAB profiles {path}: {exc}"
        raise NabError(msg) from exc


def load_windows(nab_root: Path) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    path = nab_root / "labels" / "combined_windows.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        msg = f"cannot read NAB labels {path}: {exc}"
        raise NabError(msg) from exc
    return {
        key: sorted(
            (np.datetime64(a.replace(" ", "T"), "us"), np.datetime64(b.replace(" ", "T"), "us"))
            for a, b in wins
        )
        for key, wins in raw.items()
    }


def data_files(nab_root: Path) -> list[str]:
    """Keys ``<category>/<name>.csv`` of every data file, sorted."""
    root = nab_root / "data"
    keys = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.csv"))
    if not keys:
        msg = f"no NAB data files under {root}"
        raise NabError(msg)
    return keys


def read_table(path: Path) -> dict[str, list[str]]:
    """Read a (possibly gzipped) CSV with a header into columns of strings."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        text = fh.read()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        msg = f"{path} is empty"
        raise NabError(msg)
    header = [h.strip() for h in rows[0]]
    cols: dict[str, list[str]] = {h: [] for h in header}
    for row in rows[1:]:
        if not row:
            continue
        for h, v in zip(header, row, strict=False):
            cols[h].append(v)
    return cols


def parse_times(values: Iterable[str]) -> Array:
    return np.array([v.strip().replace(" ", "T") for v in values], dtype="datetime64[us]")


def file_geometry(
    key: str, timestamps: Array, windows: list[tuple[np.datetime64, np.datetime64]]
) -> FileGeometry:
    n = len(timestamps)
    window_of_row = np.full(n, -1, dtype=np.int64)
    tp_unit = np.zeros(n)
    fp_unit = np.full(n, -1.0)  # before any window has ended: -1 (i.e. -A_FP)
    idx = np.arange(n)
    sig_m1 = float(scaled_sigmoid(np.array(-1.0)))
    edges: list[tuple[int, int]] = []
    for k, (t1, t2) in enumerate(windows):
        rows = np.flatnonzero((timestamps >= t1) & (timestamps <= t2))
        if rows.size == 0:
            logger.warning("%s: window %s..%s has no rows", key, t1, t2)
            continue
        start, right = int(rows[0]), int(rows[-1])
        width = right - start + 1
        window_of_row[start : right + 1] = k
        y = -(right - idx[start : right + 1] + 1) / width
        tp_unit[start : right + 1] = scaled_sigmoid(y) / sig_m1
        edges.append((right, width))
    for right, width in edges:  # in time order: each later window overrides the rows after it
        after = idx > right
        y = np.abs(right - idx[after]) / max(width - 1, 1)
        fp_unit[after] = scaled_sigmoid(y)
    inside = window_of_row >= 0
    fp_unit[inside] = 0.0
    return FileGeometry(key, n, probation_rows(n), window_of_row, tp_unit, fp_unit, len(windows))


# ---------------------------------------------------------------------------------------------- results


def find_result_files(results_dir: Path, keys: list[str]) -> dict[str, Path]:
    """Map each data key to ``<category>/<detector>_<name>.csv[.gz]`` in a NAB-layout results folder."""
    found: dict[str, Path] = {}
    missing = []
    for key in keys:
        category, name = key.split("/")
        folder = results_dir / category
        hits = []
        if folder.is_dir():
            for p in folder.iterdir():
                stem = p.name[:-3] if p.name.endswith(".gz") else p.name
                if stem.endswith("_" + name) and len(stem) > len(name) + 1:
                    hits.append(p)
        if not hits:
            missing.append(key)
            continue
        # a shorter data name may be a suffix of a longer one: keep the file with the shortest prefix
        found[key] = min(hits, key=lambda p: (len(p.name), p.name))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        msg = f"{results_dir}: no results for {len(missing)} of {len(keys)} NAB files ({shown})"
        raise NabError(msg)
    return found


def load_results(results_dir: Path, keys: list[str]) -> dict[str, tuple[Array, Array]]:
    """(timestamps, anomaly scores) per data key."""
    out = {}
    for key, path in find_result_files(results_dir, keys).items():
        cols = read_table(path)
        if "timestamp" not in cols or "anomaly_score" not in cols:
            msg = f"{path}: needs columns timestamp and anomaly_score (has {', '.join(cols)})"
            raise NabError(msg)
        try:
            scores = np.array([float(v) for v in cols["anomaly_score"]])
            times = parse_times(cols["timestamp"])
        except ValueError as exc:
            msg = f"{path}: {exc}"
            raise NabError(msg) from exc
        out[key] = (times, scores)
    return out


# ------------------------------------------------------------------------------------------------ sweep


def sweep(geoms: list[FileGeometry], scores: list[Array], profile: CostProfile) -> tuple[float, float]:
    """Best (threshold, raw corpus score) over every distinct anomaly score value."""
    ev_score, ev_delta = [], []
    win_scores, win_values, win_ids = [], [], []
    n_windows = 0
    for g, s in zip(geoms, scores, strict=True):
        live = np.arange(g.n_rows) >= g.probation
        out = live & (g.window_of_row < 0)
        ev_score.append(s[out])
        ev_delta.append(profile.a_fp * g.fp_unit[out])
        inn = live & (g.window_of_row >= 0)
        win_scores.append(s[inn])
        win_values.append(profile.a_tp * g.tp_unit[inn])
        win_ids.append(g.window_of_row[inn] + n_windows)
        n_windows += g.n_windows
    base = -profile.a_fn * n_windows
    ws, wv, wid = np.concatenate(win_scores), np.concatenate(win_values), np.concatenate(win_ids)
    if ws.size:
        # per window, rows by descending score; the window's value is the running max of its rows' values
        order = np.lexsort((-ws, wid))
        ws, wv, wid = ws[order], wv[order], wid[order]
        offset = (wid - wid.min()).astype(float) * 10.0 * max(profile.a_tp, 1.0)
        running = np.maximum.accumulate(wv + offset) - offset
        first = np.r_[True, wid[1:] != wid[:-1]]
        prev = np.r_[0.0, running[:-1]]
        delta = np.where(first, running + profile.a_fn, running - prev)
        ev_score.append(ws)
        ev_delta.append(delta)
    all_s, all_d = np.concatenate(ev_score), np.concatenate(ev_delta)
    if all_s.size == 0:
        return math.inf, base
    order = np.argsort(-all_s, kind="stable")
    all_s, totals = all_s[order], base + np.cumsum(all_d[order])
    last_of_tie = np.r_[all_s[1:] != all_s[:-1], True]
    cand_s, cand_t = all_s[last_of_tie], totals[last_of_tie]
    best = int(np.argmax(cand_t))
    if cand_t[best] <= base:
        return math.inf, base
    return float(cand_s[best]), float(cand_t[best])


def score_file(g: FileGeometry, s: Array, threshold: float, profile: CostProfile) -> float:
    """Raw NAB score of one file at a fixed threshold (used for the per-file breakdown)."""
    live = np.arange(g.n_rows) >= g.probation
    det = live & (s >= threshold)
    total = float(np.sum(profile.a_fp * g.fp_unit[det & (g.window_of_row < 0)]))
    for k in range(g.n_windows):
        hit = det & (g.window_of_row == k)
        total += profile.a_tp * float(g.tp_unit[hit].max()) if hit.any() else -profile.a_fn
    return total


def normalise(raw: float, n_windows: int, profile: CostProfile) -> float:
    null = -profile.a_fn * n_windows
    perfect = profile.a_tp * n_windows
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(nab_root: Path, results_dir: Path) -> dict[str, ProfileResult]:
    """Score a NAB-layout results folder under every profile."""
    keys = data_files(nab_root)
    windows = load_windows(nab_root)
    profiles = load_profiles(nab_root)
    results = load_results(results_dir, keys)
    geoms, scores = [], []
    for key in keys:
        times, s = results[key]
        geoms.append(file_geometry(key, times, windows.get(key, [])))
        scores.append(np.nan_to_num(s, nan=0.0))
    n_windows = sum(g.n_windows for g in geoms)
    out = {}
    for name, prof in profiles.items():
        thr, raw = sweep(geoms, scores, prof)
        per_file = {g.key: score_file(g, s, thr, prof) for g, s in zip(geoms, scores, strict=True)}
        out[name] = ProfileResult(name, thr, raw, normalise(raw, n_windows, prof), per_file)
    return out


def published_scores(nab_root: Path) -> Mapping[str, Mapping[str, float]]:
    path = nab_root / "results" / "final_results.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]
