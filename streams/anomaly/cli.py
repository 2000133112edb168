"""``millstream detect``, ``millstream backtest`` and ``millstream nab score|run``.

Cheap to import: work happens in the commands."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from infra.progress import progress_bar

DEFAULT_NAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def register(sub: Any) -> None:
    d = sub.add_parser("detect", help="replay a CSV file through the streaming anomaly detector")
    d.add_argument("--input", required=True, type=Path, help="CSV file (comma, semicolon or tab separated)")
    d.add_argument("--timestamp-column", required=True, help="column with ISO 8601 times or epoch s/ms/µs/ns")
    d.add_argument(
        "--columns",
        default=None,
        help="comma-separated sensor columns (default: every numeric one but a row-number column and "
        "columns named like labels, such as 'anomaly' or 'changepoint')",
    )
    d.add_argument(
        "--output", required=True, type=Path, help="CSV to write (input columns + scores, comma-separated)"
    )
    d.add_argument("--machine-id", default=None, help="machine id in events (default: the file name)")
    d.add_argument("--events", default=None, type=Path, help="also write anomaly events as JSON lines here")
    d.add_argument(
        "--timestamp-format",
        default=None,
        help="strptime format of the timestamps, e.g. '%%d/%%m/%%Y %%H:%%M:%%S' (default: ISO 8601 or epoch "
        "s/ms/µs/ns); times without a zone are UTC",
    )
    d.add_argument(
        "--labels",
        default=None,
        metavar="COLUMN",
        help="0/1 column of known anomalies: never shown to the detector; the backtest is judged "
        "against it (faults found, false events, precision/recall/F1, FAR/MAR) and printed as JSON",
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_detect)

    b = sub.add_parser(
        "backtest",
        help="replay a folder of labelled runs (one CSV each) through the detector and judge it",
        description="Replays every .csv/.tsv file under --input-dir (hidden ones aside) like `millstream "
        "detect` (each file its own run, fresh models), writes the scored copies under --output-dir and "
        "judges each against its --labels column (never shown to the detector); a file without that "
        "column is judged as a fault-free run. Prints a table per file and the total, or JSON with --json.",
    )
    b.add_argument("--input-dir", required=True, type=Path, help="folder of CSV files (searched recursively)")
    b.add_argument("--timestamp-column", required=True, help="column with ISO 8601 times or epoch s/ms/µs/ns")
    b.add_argument("--labels", required=True, metavar="COLUMN", help="0/1 column of known anomalies")
    b.add_argument("--output-dir", required=True, type=Path, help="folder for the scored copies")
    b.add_argument("--columns", default=None, help="comma-separated sensor columns (default: as detect)")
    b.add_argument("--timestamp-format", default=None, help="strptime format of the timestamps (as detect)")
    b.add_argument("--json", action="store_true", help="print {files: {name: metrics}, total: metrics}")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=run_backtest)

    n = sub.add_parser("nab", help="Numenta Anomaly Benchmark: score a results folder or run our detector")
    nsub = n.add_subparsers(dest="nab_command", metavar="SUBCOMMAND", required=True)
    s = nsub.add_parser("score", help="score a NAB-layout results folder (NAB v1.1 rules)")
    s.add_argument("--nab-root", type=Path, default=DEFAULT_NAB, help="NAB corpus (data/, labels/, config/)")
    s.add_argument("--results", required=True, type=Path, help="<category>/<detector>_<file>.csv[.gz] folder")
    s.add_argument("--json", action="store_true", help="print the three normalised scores as JSON")
    s.set_defaults(func=run_nab_score)
    r = nsub.add_parser("run", help="run the Millstream detector over the NAB corpus and score it")
    r.add_argument("--nab-root", type=Path, default=DEFAULT_NAB, help="NAB corpus (data/, labels/, config/)")
    r.add_argument("--output", type=Path, default=None, help="results folder to write (default: temporary)")
    r.add_argument("--json", action="store_true", help="print the three normalised scores as JSON")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--workers", type=int, default=None, help="processes (default: min(2, cores))")
    r.set_defaults(func=run_nab_run)


def _columns(text: str | None) -> list[str] | None:
    """--columns 'a, b,c' as a list; None when not given."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def run_detect(args: argparse.Namespace) -> int:
    from streams.anomaly.config import AnomalySettings
    from streams.anomaly.detect import detect_file

    columns = _columns(args.columns)
    with progress_bar("detect", not args.quiet and sys.stderr.isatty()) as advance:
        counts = detect_file(
            args.input,
            args.output,
            args.timestamp_column,
            columns,
            AnomalySettings(),
            args.machine_id,
            args.events,
            advance,
            args.timestamp_format,
            args.labels,
        )
    print(
        f"{counts['rows']} rows, {counts['sensors']} sensor(s), {counts['events']} event(s) -> {args.output}",
        file=sys.stderr,
    )
    if "backtest" in counts:
        print(f"against {args.labels!r}: {counts['backtest'].summary()}", file=sys.stderr)
        print(json.dumps(counts["backtest"].to_dict()))
    return 0


def run_backtest(args: argparse.Namespace) -> int:
    import functools

    from streams.anomaly.backtest import Backtest, backtest_folder, rate_text
    from streams.anomaly.config import AnomalySettings

    columns = _columns(args.columns)
    with progress_bar("backtest", not args.quiet and sys.stderr.isatty()) as advance:
        results = backtest_folder(
            args.input_dir,
            args.output_dir,
            args.timestamp_column,
            args.labels,
            columns,
            AnomalySettings(),
            args.timestamp_format,
            advance,
        )
    total = functools.reduce(Backtest.merge, results.values(), Backtest())
    if args.json:
        print(json.dumps({"files": {k: v.to_dict() for k, v in results.items()}, "total": total.to_dict()}))
        return 0
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"Backtest against {args.labels!r} ({len(results)} files -> {args.output_dir})",
    )
    table.add_column("file", overflow="fold")
    for head in ("found", "false", "delay s", "prec.", "recall", "F1", "FAR"):
        table.add_column(head, justify="right")

    def row(name: str, b: Backtest) -> list[str]:
        delay = "" if b.median_delay_s is None else f"{b.median_delay_s:g}"
        rates = b.rates()  # undefined ones (nothing flagged, nothing labelled) as a dash
        shown = (rate_text(rates[k]) for k in ("precision", "recall", "f1", "far"))
        return [name, f"{b.found}/{b.faults}", str(b.false_events), delay, *shown]

    for name, b in results.items():
        table.add_row(*row(name, b))
    table.add_row(*row("[bold]total[/bold]", total), end_section=True)
    Console().print(table)
    return 0


def _print_scores(results: dict[str, Any], nab_root: Path, as_json: bool, detector: str) -> None:
    if as_json:
        print(json.dumps({p: results[p].normalised for p in PROFILES}))
        return
    from rich.console import Console
    from rich.table import Table

    from streams.anomaly.nab import published_scores

    try:
        published = published_scores(nab_root)
    except (OSError, ValueError):
        published = {}
    table = Table(title="NAB v1.1 normalised scores")
    table.add_column("detector")
    for p in PROFILES:
        table.add_column(p, justify="right")
    table.add_row(
        f"[bold]{detector} (scored here)[/bold]", *(f"{results[p].normalised:.1f}" for p in PROFILES)
    )
    for name, scores in sorted(published.items(), key=lambda kv: -kv[1].get("standard", 0.0)):
        table.add_row(name, *(f"{scores.get(p, float('nan')):.1f}" for p in PROFILES))
    Console().print(table)


def run_nab_score(args: argparse.Namespace) -> int:
    from streams.anomaly.nab import score_corpus

    results = score_corpus(args.nab_root, args.results)
    _print_scores(results, args.nab_root, args.json, args.results.name)
    return 0


def run_nab_run(args: argparse.Namespace) -> int:
    from streams.anomaly.config import AnomalySettings
    from streams.anomaly.nab import data_files, score_corpus
    from streams.anomaly.nab_run import DETECTOR, run_corpus

    with tempfile.TemporaryDirectory(prefix="millstream-nab-") as tmp:
        output = args.output or Path(tmp)
        total = len(data_files(args.nab_root))
        with progress_bar("NAB", not args.quiet and sys.stderr.isatty()) as advance:
            done = 0

            def on_file(name: str) -> None:
                nonlocal done
                done += 1
                if advance is not None:
                    advance(done, total, Path(name).name[:40].ljust(40))

            run_corpus(args.nab_root, output, AnomalySettings(), args.workers, on_file)
        results = score_corpus(args.nab_root, output)
    _print_scores(results, args.nab_root, args.json, DETECTOR)
    return 0
