"""The Millstream dashboards, written as JSON to ``infra/grafana/dashboards/``.

``python -m infra.grafana.dashboards`` regenerates the files; ``--check`` exits 1 when a committed
file differs from what the code builds (CI runs the same comparison as a test). Import a file in
Grafana (Dashboards > New > Import) and pick a Prometheus and a ClickHouse
(grafana-clickhouse-datasource) datasource in the two datasource variables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.grafana.analytics import anomalies, spc
from infra.grafana.pipeline import pipeline_health
from infra.grafana.plant import machine_detail, plant_overview

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "plant-overview": plant_overview,
    "machine-detail": machine_detail,
    "spc": spc,
    "anomalies": anomalies,
    "pipeline-health": pipeline_health,
}


def render(name: str) -> str:
    """The JSON text of one dashboard, byte-stable (sorted keys, trailing newline)."""
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def path_of(name: str, out_dir: Path = OUT_DIR) -> Path:
    return out_dir / f"{name}.json"


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Names whose file is missing or differs from the generated JSON."""
    out = []
    for name in DASHBOARDS:
        p = path_of(name, out_dir)
        if not p.exists() or p.read_text() != render(name):
            out.append(name)
    return out


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DASHBOARDS:
        p = path_of(name, out_dir)
        p.write_text(render(name))
        written.append(p)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.grafana.dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard is stale")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for n in bad:
            print(f"stale: {path_of(n, args.out)} (run python -m infra.grafana.dashboards)", file=sys.stderr)
        return 1 if bad else 0
    for p in write_all(args.out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
