"""``millstream replay``: a bounded CSV of readings through the real broker and a real engine.

    millstream replay --engine faust|flink --input readings.csv --output out/ [--window tumbling:10s]

1. Read the CSV (columns ``machine_id, sensor, ts`` (epoch ms), ``value``; optional ``plant, line,
   unit, quality, gateway_id, seq, lot_id``) into Reading records, in file order.
2. Use the broker at MILLSTREAM_KAFKA_BOOTSTRAP, or start a local one when it is unset; create fresh
   topics (unique names) either way.
3. Produce every reading (key = machine id, Kafka timestamp = event time), counting the offsets the
   broker acknowledges per partition: the exact end of the input (the broker's reported high
   watermark is not trusted, see ``streams.replay_engines``).
4. Run the engine until every record is consumed and every window has closed (the engines differ in
   how the end of the input is made explicit; see ``streams.replay_engines``).
5. Read the output topics back and write, in ``--output``: ``windows.jsonl`` (the final version of
   each window), ``spc.jsonl`` (SPC signals), ``anomalies.jsonl`` (anomaly events),
   ``dead_letters.jsonl`` (rejected readings, by partition and offset) and ``summary.json``.
   Wall-clock fields (``emitted_at``, ``failed_at``), window versions and the per-run topic names are
   left out, so two engines given the same input write identical files.

Duplicates by (machine_id, sensor, ts) count once (the window operator keeps the first value).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streams.exceptions import StreamError

logger = logging.getLogger(__name__)

QUALITIES = {"GOOD", "UNCERTAIN", "BAD"}
WINDOW_FIELDS = ["machine_id", "sensor", "window_start", "window_end", "count", "mean", "min", "max", "std"]
WINDOW_EXTRA = ["plant", "line", "unit", "window_kind", "sum", "first_ts", "last_ts", "first", "last"]
WINDOW_EXTRA += ["p50", "p95", "p99", "slope"]
WALL_CLOCK_FIELDS = {"emitted_at"}


class ReplayError(StreamError):
    """The replay cannot run: bad input file, broker or engine failure."""


# ---------------------------------------------------------------------------------------------- input
def _int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            f = float("nan")
        if f != f or f != int(f):
            msg = f"{where}: {text!r} is not an integer epoch-millisecond timestamp"
            raise ReplayError(msg) from None
        return int(f)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Reading records from a CSV file, in file order."""
    if not path.is_file():
        msg = f"input file {path} not found"
        raise ReplayError(msg)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"machine_id", "sensor", "ts", "value"} - set(reader.fieldnames or [])
        if missing:
            msg = (
                f"{path}: missing column(s) {', '.join(sorted(missing))} (need machine_id, sensor, ts, value)"
            )
            raise ReplayError(msg)
        out = []
        for n, row in enumerate(reader, start=2):
            where = f"{path}:{n}"
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                msg = f"{where}: value {row['value']!r} is not a number"
                raise ReplayError(msg) from None
            quality = (row.get("quality") or "GOOD").strip().upper()
            if quality not in QUALITIES:
                msg = f"{where}: quality {quality!r} is not one of {', '.join(sorted(QUALITIES))}"
                raise ReplayError(msg)
            out.append(
                {
                    "plant": row.get("plant") or "",
                    "line": row.get("line") or "",
                    "machine_id": row["machine_id"],
                    "sensor": row["sensor"],
                    "unit": row.get("unit") or "",
                    "event_time": _int(row["ts"], where),
                    "value": value,
                    "quality": quality,
                    "gateway_id": row.get("gateway_id") or "replay",
                    "seq": _int(row["seq"], where) if row.get("seq") else n - 2,
                    "lot_id": row.get("lot_id") or None,
                }
            )
    if not out:
        msg = f"{path}: no readings"
        raise ReplayError(msg)
    return out


# ---------------------------------------------------------------------------------------------- output
def final_windows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The highest version of each window identity (machine, sensor, kind, start), without wall-clock
    fields."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        ident = (r["machine_id"], r["sensor"], r["window_kind"], r["window_start"])
        if ident not in best or r["version"] >= best[ident]["version"]:
            best[ident] = r
    rows = [{k: r[k] for k in WINDOW_FIELDS + WINDOW_EXTRA} for r in best.values()]
    return sorted(rows, key=lambda r: (r["machine_id"], r["sensor"], r["window_start"], r["window_end"]))


def events(records: Iterable[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """Records without wall-clock fields, duplicates (a re-emission) dropped, in a stable order."""
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        row = {k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS}
        seen.setdefault(json.dumps(row, sort_keys=True, default=str), row)
    return sorted(seen.values(), key=lambda r: tuple(_sortable(r.get(k)) for k in order))


def _sortable(v: Any) -> tuple[int, Any]:
    return (0, 0) if v is None else (1, v)


def dead_letters(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dead letters by input position, without the (fresh, per-run) topic name, payload or wall clock."""
    rows = {
        (r["partition"], r["offset"], r["stage"]): {
            "stage": r["stage"],
            "partition": r["partition"],
            "offset": r["offset"],
            "key": None if r["key"] is None else bytes(r["key"]).decode("utf-8", "replace"),
            "reason_code": r["reason_code"],
            "reason": r["reason"],
        }
        for r in records
    }
    return [rows[k] for k in sorted(rows)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


# ---------------------------------------------------------------------------------------------- command
def replay(
    engine: str,
    input_path: Path,
    output: Path,
    window: str | None = None,
    parallelism: int | None = None,
    keep_workdir: bool = False,
) -> dict[str, Any]:
    """Run the whole replay; returns the summary written to ``output/summary.json``."""
    import shutil
    import tempfile

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.config import StreamSettings
    from streams.replay_engines import FaustReplay, FlinkReplay, ReplayRun, new_app_id
    from streams.replay_kafka import broker, collect, delete_topics, fresh_topics

    records = read_csv(input_path)
    base = StreamSettings()
    stream = StreamSettings(
        **{
            **base.model_dump(),
            "window": window or base.window,
            "app_id": new_app_id(),
            "idle_timeout_ms": 0,  # the end of the input is explicit (see streams.replay_engines)
        }
    )
    runner: Any = FlinkReplay(parallelism) if engine == "flink" else FaustReplay()
    output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"millstream-replay-{engine}-"))
    started = time.monotonic()
    ok = False
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    try:
        with progress, broker(workdir) as kafka:
            topics = fresh_topics(kafka)
            run = ReplayRun(kafka, topics, stream, records, workdir, progress)
            try:
                runner.run(run)
                task = progress.add_task("collect outputs", total=None)
                outputs = collect(
                    kafka,
                    [
                        topics.topic_windows,
                        topics.topic_spc_signals,
                        topics.topic_anomalies,
                        topics.topic_dead_letters,
                        topics.topic_late,
                    ],
                )
                progress.update(task, total=1, completed=1)
            finally:
                runner.close()
                if "MILLSTREAM_KAFKA_BOOTSTRAP" in __import__("os").environ:
                    delete_topics(kafka, topics, run.extra_topics)
        windows = final_windows(outputs[topics.topic_windows])
        windows = [w for w in windows if w["machine_id"] != "__millstream_end_of_input__"]
        spc = events(
            outputs[topics.topic_spc_signals],
            ["machine_id", "sensor", "window_start", "point_index", "chart", "rule"],
        )
        anomalies = events(outputs[topics.topic_anomalies], ["machine_id", "sensor", "event_time", "state"])
        dead = dead_letters(outputs[topics.topic_dead_letters])
        write_jsonl(output / "windows.jsonl", windows)
        write_jsonl(output / "spc.jsonl", spc)
        write_jsonl(output / "anomalies.jsonl", anomalies)
        write_jsonl(output / "dead_letters.jsonl", dead)
        summary = {
            "engine": engine,
            "input": str(input_path),
            "readings": len(records),
            "produced": run.produced.count,
            "window": stream.window,
            "windows": len(windows),
            "window_rows": len(outputs[topics.topic_windows]),
            "spc_signals": len(spc),
            "anomalies": len(anomalies),
            "dead_letters": len(dead),
            "late": len(outputs[topics.topic_late]),
            "seconds": round(time.monotonic() - started, 1),
        }
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        ok = True
        return summary
    finally:
        if ok and not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            logger.warning("replay work folder (logs) kept at %s", workdir)
