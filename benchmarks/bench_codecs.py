"""Column codecs of ``window_aggregates``: compressed bytes under plain LZ4 vs the chosen codecs.

    python -m benchmarks.bench_codecs [--quick]

A realistic dataset: the project's plant simulator (ingest.signals.PlantSignals: 20 machines x 8
sensors at 1 Hz, duty cycles, drift, noise, monotone counters, a machine-state signal) for 6 hours,
turned into 10 s tumbling windows with numpy (count, sum, mean, min, max, std, first/last and their
times with scan jitter, p50/p95/p99, slope, ~1 % late re-emissions with version 1, emitted_at a few
hundred ms after the window end). The same rows go into one table per codec variant, each with the
sorting key and partitioning of the real table; after OPTIMIZE FINAL the bytes come from
``system.columns`` (data_compressed_bytes).

Variants: ``lz4`` (every column LZ4, ClickHouse's default, the baseline of the same run), ``zstd``
(ZSTD(1) everywhere), ``specialised`` (DoubleDelta/Delta for times, Gorilla for floats, T64 for
integers, each followed by ZSTD(1)), ``gorilla`` (Gorilla alone for floats, DoubleDelta alone for
times) and ``chosen``: the table exactly as the migrations create it. Writes
benchmarks/results/codecs.json with per-column bytes and the best variant per column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
from sinks.migrations import migrate
from sinks.tables import WINDOW_AGGREGATES

RESULTS = Path(__file__).resolve().parent / "results" / "codecs.json"
WINDOW_S = 10
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

TIME_START = {"window_start", "window_end"}  # regular steps: DoubleDelta
TIME_OTHER = {"first_ts", "last_ts", "emitted_at", "written_at"}
INTS = {"count", "version"}


def dataset(machines: int, hours: float, seed: int = 7) -> list[list[Any]]:
    """Rows of window_aggregates (WINDOW_AGGREGATES.columns order) from simulated readings."""
    from ingest.signals import PlantSignals, sensor_specs

    specs = sensor_specs(8)
    sig = PlantSignals(machines, specs, 1.0, seed)
    ticks = int(hours * 3600) // WINDOW_S * WINDOW_S
    values = np.array([sig.step().values for _ in range(ticks)])  # (ticks, machines, sensors)
    rng = np.random.default_rng(seed)
    w = values.reshape(ticks // WINDOW_S, WINDOW_S, machines, len(specs))  # (windows, k, m, s)
    n_win = w.shape[0]
    x = np.arange(WINDOW_S, dtype=float)
    xc = x - x.mean()
    stats = {
        "sum": w.sum(axis=1),
        "mean": w.mean(axis=1),
        "min": w.min(axis=1),
        "max": w.max(axis=1),
        "std": w.std(axis=1, ddof=1),
        "first": w[:, 0],
        "last": w[:, -1],
        "p50": np.percentile(w, 50, axis=1),
        "p95": np.percentile(w, 95, axis=1),
        "p99": np.percentile(w, 99, axis=1),
        "slope": np.einsum("k,wkms->wms", xc, w) / (xc * xc).sum(),
    }
    rows: list[list[Any]] = []
    for m in range(machines):
        machine = f"m{m + 1:03d}"
        line = f"l{m // 5 + 1}"
        for s, spec in enumerate(specs):
            for i in range(n_win):
                ws = START_MS + i * WINDOW_S * 1000
                we = ws + WINDOW_S * 1000
                late = rng.random() < 0.01
                rec = {
                    "plant": "p1", "line": line, "machine_id": machine, "sensor": spec.name,
                    "unit": spec.unit,
                    "window_kind": "tumbling", "window_start": ws, "window_end": we, "count": WINDOW_S,
                    **{k: float(v[i, m, s]) for k, v in stats.items()},
                    "first_ts": ws + int(rng.integers(0, 40)),
                    "last_ts": we - 1000 + int(rng.integers(0, 40)),
                    "version": 1 if late else 0,
                    "emitted_at": we + int(rng.integers(150, 900)) + (5000 if late else 0),
                }  # fmt: skip
                rows.append(WINDOW_AGGREGATES.to_row(rec))
    return rows


def codec_for(variant: str, column: str, ch_type: str) -> str | None:
    """The CODEC clause of a column in a variant (None: keep the type's default)."""
    if variant == "lz4":
        return "LZ4"
    if variant == "zstd":
        return "ZSTD(1)"
    if "LowCardinality" in ch_type or ch_type == "String":
        return "LZ4"
    time_codec = "DoubleDelta" if column in TIME_START else "Delta"
    if variant == "specialised":
        if column in TIME_START | TIME_OTHER:
            return f"{time_codec}, ZSTD(1)"
        if column in INTS:
            return "T64, ZSTD(1)"
        return "Gorilla, ZSTD(1)"
    if variant == "gorilla":
        if column in TIME_START | TIME_OTHER:
            return time_codec
        if column in INTS:
            return "T64"
        return "Gorilla"
    msg = f"unknown variant {variant}"
    raise ValueError(msg)


def create_variant(client: Any, variant: str, columns: list[tuple[str, str, str]]) -> str:
    table = f"wa_{variant}"
    parts = []
    for name, ch_type, default in columns:
        codec = codec_for(variant, name, ch_type)
        extra = f" DEFAULT {default}" if default else ""
        parts.append(f"`{name}` {ch_type}{extra}" + (f" CODEC({codec})" if codec else ""))
    client.command(f"DROP TABLE IF EXISTS {table}")
    client.command(
        f"CREATE TABLE {table} ({', '.join(parts)}) ENGINE = ReplacingMergeTree(version) "
        "PARTITION BY toDate(window_start) "
        "ORDER BY (machine_id, sensor, window_kind, window_start, window_end) "
        "SETTINGS min_bytes_for_wide_part = 0",  # per-column sizes exist for wide parts only
        settings={"allow_suspicious_codecs": 1},  # Delta or T64 without a compressor in the 'gorilla' variant
    )
    return table


def column_bytes(client: Any, table: str) -> dict[str, dict[str, Any]]:
    rows = client.query(
        "SELECT name, data_compressed_bytes, data_uncompressed_bytes, compression_codec FROM system.columns "
        "WHERE database = currentDatabase() AND table = {t:String}",
        parameters={"t": table},
    ).result_rows
    return {str(n): {"compressed": int(c), "uncompressed": int(u), "codec": str(k)} for n, c, u, k in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller dataset (smoke run)")
    args = parser.parse_args()
    machines, hours = (5, 1.0) if args.quick else (20, 6.0)
    started = time.monotonic()
    rows = dataset(machines, hours)
    print(f"{len(rows)} windows from {machines} machines x 8 sensors x {hours} h")
    out: dict[str, Any] = {
        "benchmark": "codecs",
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "chdb": version("chdb"),
            "clickhouse_connect": version("clickhouse-connect"),
        },
        "dataset": {
            "machines": machines,
            "sensors": 8,
            "hours": hours,
            "window_s": WINDOW_S,
            "rows": len(rows),
        },
    }
    cols = list(WINDOW_AGGREGATES.columns)
    with tempfile.TemporaryDirectory(prefix="bench-codecs-") as tmp:
        client = connect(ClickHouseSettings(data_dir=Path(tmp)))
        migrate(client)
        meta = client.query(
            "SELECT name, type, default_expression FROM system.columns "
            "WHERE database = currentDatabase() AND table = 'window_aggregates' ORDER BY position"
        ).result_rows
        columns = [(str(n), str(t), str(d)) for n, t, d in meta]
        # Wide parts (as large production parts are), so system.columns has per-column sizes.
        client.command("ALTER TABLE window_aggregates MODIFY SETTING min_bytes_for_wide_part = 0")
        tables = {"chosen": "window_aggregates"}
        for variant in ("lz4", "zstd", "specialised", "gorilla"):
            tables[variant] = create_variant(client, variant, columns)
        for table in tables.values():
            for lo in range(0, len(rows), 50_000):
                client.insert(table, rows[lo : lo + 50_000], column_names=cols)
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        sizes = {variant: column_bytes(client, table) for variant, table in tables.items()}
        client.close()
    per_column: dict[str, Any] = {}
    for name, _, _ in columns:
        entry: dict[str, Any] = {v: sizes[v][name]["compressed"] for v in sizes}
        entry["best"] = min((v for v in sizes if v != "chosen"), key=lambda v: sizes[v][name]["compressed"])
        entry["chosen_codec"] = sizes["chosen"][name]["codec"]
        per_column[name] = entry
    totals = {v: sum(c["compressed"] for c in sizes[v].values()) for v in sizes}
    out["uncompressed_bytes"] = sum(c["uncompressed"] for c in sizes["lz4"].values())
    out["compressed_bytes"] = totals
    out["chosen_vs_lz4"] = round(totals["chosen"] / totals["lz4"], 3)
    out["bytes_per_row"] = {v: round(t / len(rows), 2) for v, t in totals.items()}
    out["columns"] = per_column
    out["duration_s"] = round(time.monotonic() - started, 1)
    for v, t in sorted(totals.items(), key=lambda kv: kv[1]):
        print(f"{v:>12}: {t:>12,} bytes  {t / totals['lz4']:.3f} of lz4")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS} in {out['duration_s']} s")


if __name__ == "__main__":
    main()
