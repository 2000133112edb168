"""``millstream spc CHART --input FILE --value-column COL ...``: offline control charts.

Cheap to import: the chart code loads inside :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

logger = logging.getLogger(__name__)

CHARTS = ("imr", "xbar-r", "xbar-s", "ewma", "cusum", "mcewma", "p", "np", "c", "u")

_EPILOG = """\
examples (qcc data sets):
  millstream spc xbar-r --input pistonrings.txt --value-column diameter --subgroup-column sample \\
      --phase1-column trial --lsl 73.95 --usl 74.05 --plot xbar-r.png
  millstream spc p --input orangejuice.txt --value-column D --size-column size --phase1-column trial --json
  millstream spc p --input orangejuice2.txt --value-column D --size-column size --label-column sample
  millstream spc cusum --input x.csv --value-column x --target 10 --sigma 1 --k 0.5 --h 5

Phase I uses the rows flagged in --phase1-column (or the first --phase1-count samples, or all samples);
every sample is then judged against the frozen limits. Signals name the rule: WE1-WE4, N1-N8, or LIMIT
(beyond a limit with --rules none, on EWMA/CUSUM, and on the R, S and MR charts).
The CUSUM table shows the sums C+ and C- beside the decision interval H they are judged against.
Semicolon-separated files (Excel in locales with a decimal comma) may write numbers as 55,5.
Missing values (empty, NA, N/A, NaN, NULL) are left out of their subgroup, and no moving range spans
them. --lsl/--usl print Cp, Cpk, Pp and Ppk with 95% confidence intervals. For phase II against
limits found earlier, give that run's center and sigma as --target/--sigma with --phase1-count 0.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "spc",
        help="statistical process control chart of a data file",
        description="Control chart of a comma-, tab-, semicolon- or whitespace-separated file with a header.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("chart", choices=CHARTS, metavar="CHART", help="one of: " + ", ".join(CHARTS))
    p.add_argument("--input", required=True, metavar="FILE", help="data file with a header row")
    p.add_argument(
        "--value-column", required=True, metavar="COL", help="measurements, or counts for p/np/c/u"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--subgroup-column", metavar="COL", help="rows with the same value form a subgroup")
    group.add_argument(
        "--subgroup-size",
        type=int,
        metavar="N",
        help="consecutive rows in subgroups of N (p/np/u: constant sample size)",
    )
    p.add_argument("--size-column", metavar="COL", help="sample sizes for p, np and u charts")
    p.add_argument(
        "--label-column",
        metavar="COL",
        help="sample ids to print and report (first row of a subgroup); default: the subgroup value, "
        "else the sample number",
    )
    phase = p.add_mutually_exclusive_group()
    phase.add_argument("--phase1-column", metavar="COL", help="boolean column: rows that form the baseline")
    phase.add_argument("--phase1-count", type=int, metavar="N", help="the first N samples form the baseline")
    p.add_argument(
        "--target", type=float, metavar="MU", help="known center (mean, or p/c/u) instead of an estimate"
    )
    p.add_argument("--sigma", type=float, metavar="S", help="known process sigma instead of an estimate")
    p.add_argument(
        "--lambda", dest="lam", type=float, default=0.2, metavar="L", help="EWMA weight (default 0.2)"
    )
    p.add_argument(
        "--L",
        dest="width",
        type=float,
        default=3.0,
        metavar="WIDTH",
        help="EWMA limit width in standard errors (default 3)",
    )
    p.add_argument(
        "--k", type=float, default=0.5, metavar="K", help="CUSUM reference value in sigma (default 0.5)"
    )
    p.add_argument(
        "--h", type=float, default=5.0, metavar="H", help="CUSUM decision interval in sigma (default 5)"
    )
    p.add_argument(
        "--rules",
        choices=("we", "nelson", "none"),
        default="we",
        help="run rules: Western Electric (default), Nelson, or none (limits only)",
    )
    p.add_argument(
        "--lsl",
        type=float,
        metavar="X",
        help="lower specification limit (capability; measurement charts only)",
    )
    p.add_argument(
        "--usl",
        type=float,
        metavar="Y",
        help="upper specification limit (capability; measurement charts only)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--plot", metavar="OUT", help="write a control chart picture; the format follows .png, .pdf or .svg"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.spc.charts import ChartConfig
    from streams.spc.io import read_table
    from streams.spc.offline import analyse, build_samples
    from streams.spc.report import to_dict, to_text

    config = ChartConfig(
        rules=args.rules,
        target=args.target,
        sigma=args.sigma,
        lam=args.lam,
        width=args.width,
        k=args.k,
        h=args.h,
    )
    if args.plot:
        from streams.spc.plot import plot_format

        plot_format(args.plot)  # a bad extension fails before any work
    table = read_table(args.input)
    samples = build_samples(
        table,
        args.chart,
        args.value_column,
        subgroup_column=args.subgroup_column,
        subgroup_size=args.subgroup_size,
        size_column=args.size_column,
        phase1_column=args.phase1_column,
        phase1_count=args.phase1_count,
        label_column=args.label_column,
    )
    result = analyse(args.chart, samples, config, lsl=args.lsl, usl=args.usl)
    if args.plot:
        from streams.spc.plot import render

        render(result, args.plot, title_hint=f"{args.value_column} ({table.path.rsplit('/', 1)[-1]})")
        logger.info("wrote %s", args.plot)
    if args.json:
        text = json.dumps(to_dict(result), allow_nan=False)
    else:
        text = to_text(result) + (f"\n\nplot written to {args.plot}" if args.plot else "")
    return _write(text + "\n")


def _write(text: str) -> int:
    """Print ``text``; a reader that went away (``millstream spc ... | head``) ends the command quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's recipe (docs: signal, "Note on SIGPIPE"): point stdout at devnull so that the
        # interpreter's final flush does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe
    return 0
