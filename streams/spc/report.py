"""The CLI's output: the JSON object of the contract, and a readable text summary."""

from __future__ import annotations

from typing import Any

from streams.spc.capability import capability_samples, intervals, overall_stats
from streams.spc.offline import ChartResult, headline, secondary_headline
from streams.spc.rules import RULE_DESCRIPTIONS
from streams.spc.state import json_float

CI_LEVEL = 0.95  # confidence level of the capability intervals


def signals(result: ChartResult) -> list[dict[str, Any]]:
    chart = result.chart
    return [
        {"index": p.index, "chart": name, "rule": rule}
        for p in result.points
        for name, rule in p.signals(chart.primary, chart.secondary)
    ]


def _point(p: Any, label: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": p.index,
        "label": label,
        "value": json_float(p.value),
        "center": json_float(p.center),
        "lcl": json_float(p.lcl),
        "ucl": json_float(p.ucl),
    }
    if p.extra:
        out.update({k: json_float(v) for k, v in p.extra.items()})
    return out


def _capability_n(result: ChartResult) -> int:
    """Observations behind the capability indices: the phase I ones."""
    base = [s for s, b in zip(result.samples.samples, result.samples.baseline, strict=True) if b]
    return overall_stats(capability_samples(result.chart, base))[0]


def _intervals(result: ChartResult) -> dict[str, Any] | None:
    cap = result.capability
    if all(v is None for v in cap.to_dict().values()):
        return None
    n = _capability_n(result)
    found = intervals(cap, n, CI_LEVEL)
    return {
        "level": CI_LEVEL,
        "n": n,
        **{k: None if v is None else [json_float(v[0]), json_float(v[1])] for k, v in found.items()},
    }


def to_dict(result: ChartResult) -> dict[str, Any]:
    """The ``--json`` object: chart, center, lcl, ucl, secondary, points, signals, capability (+ sigma,
    phase1, and ``missing``/``dropped``: missing values left out, labels of samples with none left).
    ``capability_ci``: level, n and a [lower, upper] interval per index (None without spec limits).

    Every point carries its ``index`` (1-based sample number, which signals refer to) and its
    ``label`` (the file's sample id: ``--label-column`` or the subgroup value, else the number).
    """
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
        "points": [_point(p, label) for p, label in zip(result.points, result.samples.labels, strict=True)],
        "signals": signals(result),
        "capability": result.capability.to_dict(),
        "capability_ci": _intervals(result),
        "sigma": json_float(chart.limits.get("sigma")),
        "phase1": sum(result.samples.baseline),
        "missing": result.samples.missing,
        "dropped": list(result.samples.dropped),
    }


def _fmt(x: float | None, digits: int = 6) -> str:
    return "-" if x is None else f"{x + 0.0:.{digits}g}"  # + 0.0: never "-0"


def _cusum_summary(result: ChartResult) -> str:
    chart = result.chart
    assert chart.limits is not None
    sigma = chart.limits["sigma"]
    k, h = chart.config.k, chart.config.h
    return (
        f"  in-control mean {_fmt(chart.limits['center'])}  K = k*sigma {_fmt(k * sigma)}  "
        f"H = h*sigma {_fmt(h * sigma)}: a signal when C+ or C- exceeds H"
    )


def _notes(result: ChartResult) -> list[str]:
    """Phase I samples that signal, and the missing data left out."""
    chart, samples = result.chart, result.samples
    out = []
    flagged = [
        label
        for p, label, base in zip(result.points, samples.labels, samples.baseline, strict=True)
        if base and p.signals(chart.primary, chart.secondary)
    ]
    if flagged:
        out.append(f"  phase I samples with signals: {', '.join(flagged)}")
        out.append(
            "  (the baseline is not shown to be in control: leave out the samples with an assignable cause, "
            "e.g. with --phase1-column, and chart again)"
        )
    if samples.missing or samples.dropped:
        out.append(
            f"  {samples.missing} missing values left out"
            + (
                f"; samples without any value, not charted: {', '.join(samples.dropped)}"
                if samples.dropped
                else ""
            )
            + ("; no moving range spans them" if chart.secondary == "mr" and samples.gaps else "")
        )
    return out


def to_text(result: ChartResult) -> str:
    """A summary, the point table (phase I rows marked) and the list of signals.

    The CUSUM table shows the observation and the sums C+ and C- (both >= 0, in data units) beside
    the decision interval H, the quantity they are judged against.
    """
    chart = result.chart
    cusum = chart.primary == "cusum"
    center, lcl, ucl = headline(result)
    rules = chart.config.rules if chart.uses_rules else "none (limits only)"
    lines = [
        f"{chart.kind} chart ({chart.primary}{' + ' + chart.secondary if chart.secondary else ''}), "
        f"{len(result.points)} samples, phase I: {sum(result.samples.baseline)}, rules: {rules}",
        f"  {chart.primary}: center {_fmt(center)}  LCL {_fmt(lcl)}  UCL {_fmt(ucl)}"
        + ("" if center is not None and lcl is not None else "  (limits vary by point)"),
    ]
    if cusum:
        lines.append(_cusum_summary(result))
    if chart.secondary:
        s_center, s_lcl, s_ucl = secondary_headline(result)
        lines.append(f"  {chart.secondary}: center {_fmt(s_center)}  LCL {_fmt(s_lcl)}  UCL {_fmt(s_ucl)}")
    if chart.limits and "sigma" in chart.limits:
        lines.append(f"  sigma {_fmt(chart.limits['sigma'])}")
    cap = result.capability.to_dict()
    ci = _intervals(result)
    if ci is not None:
        shown = []
        for k, v in cap.items():
            cell = f"{k.capitalize()} {_fmt(v, 4)}"
            if ci[k] is not None:
                cell += f" [{_fmt(ci[k][0], 3)}, {_fmt(ci[k][1], 3)}]"
            shown.append(cell)
        lines.append("  capability: " + "  ".join(shown))
        lines.append(
            f"  ({CI_LEVEL:.0%} confidence intervals from n = {ci['n']} phase I observations; they assume "
            "normal data from an in-control process)"
        )
    lines += _notes(result)
    width = max([8, *(len(label) for label in result.samples.labels)])
    columns = ("value", "C+", "C-", "H") if cusum else ("value", "center", "lcl", "ucl")
    header = f"{'#':>4} {'label':>{width}} {'ph':>2} " + " ".join(f"{c:>12}" for c in columns)
    if chart.secondary:
        header += f" {chart.secondary:>10}"
    lines += ["", header + "  signals"]
    for p, label, base in zip(result.points, result.samples.labels, result.samples.baseline, strict=True):
        cells: tuple[float | None, ...]
        if cusum and p.extra:
            cells = (p.value, p.extra["upper"], -p.extra["lower"], p.ucl)
        else:
            cells = (p.value, p.center, p.lcl, p.ucl)
        row = f"{p.index:>4} {label:>{width}} {'I' if base else 'II':>2} " + " ".join(
            f"{_fmt(json_float(c)):>12}" for c in cells
        )
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
        labels = result.samples.labels
        for s in sig:
            label = labels[s["index"] - 1]
            where = label if label == str(s["index"]) else f"{label} (#{s['index']})"
            lines.append(
                f"  sample {where:>4}  {s['chart']:<5} {s['rule']:<5} {RULE_DESCRIPTIONS[s['rule']]}"
            )
    return "\n".join(lines)
