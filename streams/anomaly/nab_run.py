"""Run the Millstream detector over the NAB corpus and write NAB-layout results.

Each data file is one machine with one sensor, replayed in time order through a fresh
:class:`MachineMonitor` with the one global configuration. Labels are never read here: scoring is a
separate step (:func:`streams.anomaly.nab.score_corpus`) over the written files.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

from streams.anomaly.config import AnomalySettings
from streams.anomaly.exceptions import NabError
from streams.anomaly.monitor import MachineMonitor

logger = logging.getLogger(__name__)

DETECTOR = "millstream"


def to_epoch_ms(text: str) -> int:
    """NAB timestamps are naive 'YYYY-MM-DD HH:MM:SS' in UTC."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def detect_file(data_path: Path, out_path: Path, settings: AnomalySettings) -> int:
    """Replay one NAB data file; write ``timestamp,value,anomaly_score,is_anomaly``. Returns rows."""
    with data_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "timestamp" not in rows[0] or "value" not in rows[0]:
        msg = f"{data_path}: expected columns timestamp,value"
        raise NabError(msg)
    monitor = MachineMonitor(data_path.stem, settings)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "is_anomaly"])
        for row in rows:
            r = monitor.update(to_epoch_ms(row["timestamp"]), {"value": float(row["value"])})
            w.writerow([row["timestamp"], row["value"], repr(r.score), int(r.is_anomaly)])
    return len(rows)


def _job(args: tuple[str, str, dict[str, object]]) -> tuple[str, int]:
    data, out, settings = args
    return data, detect_file(Path(data), Path(out), AnomalySettings(**settings))  # type: ignore[arg-type]


def run_corpus(
    nab_root: Path,
    output: Path,
    settings: AnomalySettings | None = None,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Detect on every ``<nab_root>/data/<category>/<file>.csv``; returns the data keys written."""
    settings = settings or AnomalySettings()
    data_root = nab_root / "data"
    files = sorted(data_root.glob("*/*.csv"))
    if not files:
        msg = f"no NAB data files under {data_root}"
        raise NabError(msg)
    jobs = []
    for f in files:
        rel = f.relative_to(data_root)
        out = output / rel.parent / f"{DETECTOR}_{rel.name}"
        jobs.append((str(f), str(out), settings.model_dump()))
    # largest files first so the pool stays busy
    jobs.sort(key=lambda j: -os.path.getsize(j[0]))
    workers = workers or min(2, os.cpu_count() or 1)
    done = []
    if workers <= 1:
        for j in jobs:
            data, _ = _job(j)
            done.append(data)
            if progress:
                progress(data)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_job, j) for j in jobs]
            try:
                for fut in as_completed(futures):
                    data, _ = fut.result()
                    done.append(data)
                    if progress:
                        progress(data)
            except BaseException:  # Ctrl-C, kill, a failed file: start no other file, then stop
                pool.shutdown(cancel_futures=True)
                raise
    return sorted(Path(d).relative_to(data_root).as_posix() for d in done)
