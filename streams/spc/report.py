"""The CLI's output: the JSON object of the contract, and a readable text summary."""

from __future__ import annotations

from typing import Any

from streams.spc.offline import ChartResult, headline, secondary_headline
from streams.spc.rules import RULE_DESCRIPTIONS
from streams.spc.state import json_float


def signals(result: ChartResult) -> list[dict[str, Any]]:
    chart = result.chart
    return [
        {"index": p.index, "chart": name, "rule": rule}
        for p in result.points
        for name, rule in p.signals(chart.primary, chart.secondary)
    ]


def _point(p: Any) -> dict[str, Any]:
    out = {
        "index": p.index,
        "value": json_float(p.value),
        "center": json_float(p.center),
        "lcl": json_float(p.lcl),
        "ucl": json_float(p.ucl),
    }
    if p.extra:
        out.update({k: json_float(v) for k, v in p.extra.items()})
    return out


def to_dict(result: ChartResult) -> dict[str, Any]:
    """The ``--json`` object: chart, center, lcl, ucl, secondary, points, signals, capability (+ sigma)."""
    chart = result.chart
    center, lcl, ucl = headline(result)
    secondary = None
    if chart.secondary is not None:
        s_center, s_lcl, s_ucl = secondary_headline(result)
        secondary = {
            "chart": chart.secondary,
            "center": json_float(s_center),
            "lcl": json_float(s_lcl),
            "ucl": json_float(s_ucl),
            "points": [
                {
                    "index": p.index,
                    "value": json_float(p.secondary.value),
                    "center": json_float(p.secondary.center),
                    "lcl": json_float(p.secondary.lcl),
                    "ucl": json_float(p.secondary.ucl),
                }
                for p in result.points
                if p.secondary is not None
            ],
        }
    assert chart.limits is not None
    return {
        "chart": chart.primary,
        "center": json_float(center),
        "lcl": json_float(lcl),
        "ucl": json_float(ucl),
        "secondary": secondary,
        "points": [_point(p) for p in result.points],
        "signals": signals(result),
        "capability": result.capability.to_dict(),
        "sigma": json_float(chart.limits.get("sigma")),
        "phase1": sum(result.samples.baseline),
    }


def _fmt(x: float | None, digits: int = 6) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def to_text(result: ChartResult) -> str:
    """A summary, the point table (phase I rows marked) and the list of signals."""
    chart = result.chart
    center, lcl, ucl = headline(result)
    lines = [
        f"{chart.kind} chart ({chart.primary}{' + ' + chart.secondary if chart.secondary else ''}), "
        f"{len(result.points)} samples, phase I: {sum(result.samples.baseline)}, rules: {chart.config.rules}",
        f"  {chart.primary}: center {_fmt(center)}  LCL {_fmt(lcl)}  UCL {_fmt(ucl)}"
        + ("" if center is not None and lcl is not None else "  (limits vary by point)"),
    ]
    if chart.secondary:
        s_center, s_lcl, s_ucl = secondary_headline(result)
        lines.append(f"  {chart.secondary}: center {_fmt(s_center)}  LCL {_fmt(s_lcl)}  UCL {_fmt(s_ucl)}")
    if chart.limits and "sigma" in chart.limits:
        lines.append(f"  sigma {_fmt(chart.limits['sigma'])}")
    cap = result.capability.to_dict()
    if any(v is not None for v in cap.values()):
        lines.append("  capability: " + "  ".join(f"{k.capitalize()} {_fmt(v, 4)}" for k, v in cap.items()))
    header = f"{'#':>4} {'label':>8} {'ph':>2} {'value':>12} {'center':>12} {'lcl':>12} {'ucl':>12}"
    if chart.secondary:
        header += f" {chart.secondary:>10}"
    lines += ["", header + "  signals"]
    for p, label, base in zip(result.points, result.samples.labels, result.samples.baseline, strict=True):
        row = f"{p.index:>4} {label:>8} {'I' if base else 'II':>2} {_fmt(p.value):>12} {_fmt(p.center):>12} "
        row += f"{_fmt(p.lcl):>12} {_fmt(p.ucl):>12}"
        if chart.secondary:
            row += f" {_fmt(p.secondary.value if p.secondary else None):>10}"
        flagged = p.signals(chart.primary, chart.secondary)
        if flagged:
            row += "  " + ", ".join(f"{c}:{r}" for c, r in flagged)
        lines.append(row)
    sig = signals(result)
    lines.append("")
    if not sig:
        lines.append("no signals")
    else:
        lines.append(f"{len(sig)} signals:")
        for s in sig:
            lines.append(
                f"  sample {s['index']:>4}  {s['chart']:<5} {s['rule']:<5} {RULE_DESCRIPTIONS[s['rule']]}"
            )
    return "\n".join(lines)
