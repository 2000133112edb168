"""Control-chart pictures (matplotlib, Agg canvas; no global backend switch).

The primary chart on top, the R/S/MR chart below it when there is one. Center line solid, control
limits dashed (stepped where they vary with the sample size or, for EWMA, with time), the phase I
baseline shaded, and every flagged point marked red and labelled with the rules it broke.

docs/spc-example.png is made with::

    millstream spc xbar-r --input ../shared/datasets/qcc/pistonrings.txt --value-column diameter \\
        --subgroup-column sample --phase1-column trial --lsl 73.95 --usl 74.05 --plot docs/spc-example.png
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.spc.charts import Subgroup
from streams.spc.exceptions import SpcConfigError, SpcInputError
from streams.spc.offline import ChartResult
from streams.spc.state import json_float

logger = logging.getLogger(__name__)

SIGNAL_RED = "#e00000"
_LINE = "#1f4e79"
_CENTER = "#2e7d32"
_LIMIT = "#404040"
_TITLES = {
    "i": ("Individuals chart", "Individual value"),
    "xbar": (r"$\bar{X}$ chart", "Subgroup mean"),
    "ewma": ("EWMA chart", "EWMA statistic"),
    "cusum": ("Tabular CUSUM chart", "Cumulative sum"),
    "mcewma": ("Moving-centerline EWMA chart", "Individual value"),
    "p": ("p chart", "Fraction nonconforming"),
    "np": ("np chart", "Number nonconforming"),
    "c": ("c chart", "Nonconformities"),
    "u": ("u chart", "Nonconformities per unit"),
}
_SECONDARY = {
    "r": ("R chart", "Subgroup range"),
    "s": ("S chart", "Subgroup std. dev."),
    "mr": ("MR chart", "Moving range"),
}


PLOT_FORMATS = ("png", "pdf", "svg")


def plot_format(out: str | Path) -> str:
    """The picture format named by ``out``'s extension; anything but .png, .pdf or .svg is refused."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        allowed = ", ".join("." + f for f in PLOT_FORMATS[:-1]) + " or ." + PLOT_FORMATS[-1]
        got = "." + suffix if suffix else "no extension"
        msg = f"--plot {out}: the file name must end in {allowed} (the picture format), got {got}"
        raise SpcConfigError(msg)
    return suffix


@dataclass
class PlotInfo:
    """Where the picture went and, in image pixels (origin top-left), where the flagged points are."""

    path: Path
    width: int
    height: int
    flagged: list[tuple[float, float]] = field(default_factory=list)


def _limit_line(ax: Any, xs: list[int], ys: list[float | None], label: str) -> None:
    vals = [json_float(y) for y in ys]
    if not any(v is not None for v in vals):
        return
    if all(v == vals[0] for v in vals):
        ax.axhline(vals[0], color=_LIMIT, linestyle="--", linewidth=1.0)
        ax.annotate(
            f"{label} {vals[0]:.5g}",
            xy=(1.0, vals[0]),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=_LIMIT,
        )
    else:
        ax.step(
            xs,
            [float("nan") if v is None else v for v in vals],
            where="mid",
            color=_LIMIT,
            linestyle="--",
            linewidth=1.0,
        )
        ax.annotate(
            label,
            xy=(1.0, vals[-1]),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=_LIMIT,
        )


def _center_line(ax: Any, xs: list[int], ys: list[float], label: str = "CL") -> None:
    if all(y == ys[0] for y in ys):
        ax.axhline(ys[0], color=_CENTER, linewidth=1.2)
        ax.annotate(
            f"{label} {ys[0]:.5g}",
            xy=(1.0, ys[0]),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=_CENTER,
        )
    else:
        ax.step(xs, ys, where="mid", color=_CENTER, linewidth=1.2)


def _shade_baseline(ax: Any, xs: list[int], baseline: list[bool]) -> None:
    start = None
    labelled = False
    for x, base in [*zip(xs, baseline, strict=True), (xs[-1] + 1, False)]:
        if base and start is None:
            start = x
        elif not base and start is not None:
            ax.axvspan(
                start - 0.5,
                x - 0.5,
                color="#dfe7f0",
                alpha=0.6,
                linewidth=0,
                label=None if labelled else "phase I (baseline)",
            )
            labelled, start = True, None


def render(result: ChartResult, out: str | Path, title_hint: str | None = None) -> PlotInfo:
    """Draw ``result`` to ``out`` (PNG, PDF or SVG by its extension).

    Returns the flagged points' positions in the pixels of the PNG rendering.
    """
    fmt = plot_format(out)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chart, points = result.chart, result.points
    xs = [p.index for p in points]
    has_secondary = chart.secondary is not None and any(p.secondary is not None for p in points)
    fig = Figure(figsize=(11, 7 if has_secondary else 4.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2]) if has_secondary else [fig.subplots()]
    ax = axes[0]
    title, ylabel = _TITLES[chart.primary]
    _shade_baseline(ax, xs, result.samples.baseline)
    flagged: list[tuple[Any, float, float]] = []
    if chart.primary == "cusum":
        upper = [p.extra["upper"] for p in points if p.extra]
        lower = [p.extra["lower"] for p in points if p.extra]
        ax.plot(xs, upper, marker="o", markersize=3.5, color=_LINE, linewidth=1, label="C+ (upper)")
        ax.plot(xs, lower, marker="s", markersize=3.5, color="#5b8fc7", linewidth=1, label="−C− (lower)")
        for p, up, low in zip(points, upper, lower, strict=True):
            if p.rules:
                flagged.append((ax, p.index, up if p.ucl is not None and up > p.ucl else low))
    else:
        ax.plot(xs, [p.value for p in points], marker="o", markersize=3.5, color=_LINE, linewidth=1)
        flagged += [(ax, p.index, p.value) for p in points if p.rules]
    _center_line(ax, xs, [p.center for p in points])
    _limit_line(ax, xs, [p.ucl for p in points], "UCL")
    _limit_line(ax, xs, [p.lcl for p in points], "LCL")
    for p in points:
        if p.rules:
            y = next(y for a, x, y in flagged if a is ax and x == p.index)
            # Vertical labels: neighbouring flagged points never collide.
            ax.annotate(",".join(p.rules), xy=(p.index, y), xytext=(0, 7), textcoords="offset points",
                        rotation=90, ha="center", va="bottom", fontsize=7, color=SIGNAL_RED)  # fmt: skip
    parts = [f"{chart.kind} chart", f"{len(points)} samples", f"phase I: {sum(result.samples.baseline)}"]
    cap = result.capability
    if cap.cpk is not None:
        parts.append(
            "  ".join(
                f"{k} {v:.3g}"
                for k, v in (("Cp", cap.cp), ("Cpk", cap.cpk), ("Pp", cap.pp), ("Ppk", cap.ppk))
                if v is not None
            )
        )
    n_signals = sum(len(p.signals(chart.primary, chart.secondary)) for p in points)
    parts.append(f"{n_signals} signals ({chart.config.rules if chart.uses_rules else 'limits'})")
    ax.set_title(f"{title}{' — ' + title_hint if title_hint else ''}", loc="left", fontsize=12)
    ax.set_title("   ".join(parts), loc="right", fontsize=8, color="#555555")
    ax.set_ylabel(ylabel)
    if any(result.samples.baseline):
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    if has_secondary:
        ax2 = axes[1]
        sec_points = [p for p in points if p.secondary is not None]
        sx = [p.index for p in sec_points]
        sec = [p.secondary for p in sec_points if p.secondary is not None]
        s_title, s_label = _SECONDARY[chart.secondary or ""]
        _shade_baseline(ax2, sx, [result.samples.baseline[p.index - 1] for p in sec_points])
        ax2.plot(sx, [s.value for s in sec], marker="o", markersize=3.5, color=_LINE, linewidth=1)
        _center_line(ax2, sx, [s.center for s in sec])
        _limit_line(ax2, sx, [s.ucl for s in sec], "UCL")
        _limit_line(ax2, sx, [s.lcl for s in sec], "LCL")
        for x, s in zip(sx, sec, strict=True):
            if s.beyond:
                flagged.append((ax2, x, s.value))
                ax2.annotate(
                    "LIMIT",
                    rotation=90,
                    va="bottom",
                    xy=(x, s.value),
                    xytext=(0, 7),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color=SIGNAL_RED,
                )
        ax2.set_title(s_title, loc="left", fontsize=10)
        ax2.set_ylabel(s_label)
    grouped = chart.min_n > 1 or any(s.n > 1 for s in result.samples.samples if isinstance(s, Subgroup))
    axes[-1].set_xlabel("Subgroup" if grouped else "Sample")
    for a, fx, fy in flagged:
        a.plot([fx], [fy], linestyle="none", marker="o", markersize=7, color=SIGNAL_RED, zorder=5)
    for a in axes:
        a.margins(y=0.1)
        lo, hi = a.get_ylim()
        a.set_ylim(lo, hi + 0.28 * (hi - lo))  # headroom for the vertical rule labels
    for a in axes:
        a.grid(True, color="#e6e6e6", linewidth=0.6)
        a.set_axisbelow(True)
        a.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt)
    except OSError as exc:
        msg = f"cannot write the plot to {path}: {exc}"
        raise SpcInputError(msg) from exc
    width, height = (int(v) for v in fig.canvas.get_width_height())
    pixels = []
    for a, fx, fy in flagged:
        px, py = a.transData.transform((fx, fy))
        pixels.append((float(px), float(height - py)))
    logger.debug("plot %s: %dx%d, %d flagged points", path, width, height, len(pixels))
    return PlotInfo(path, width, height, pixels)
