"""Offline charting of a table: turn rows into samples, run phase I on the baseline, judge every sample.

This is the batch side of the same core the streaming monitor uses: :meth:`Chart.fit` on the
baseline samples, then :meth:`Chart.judge` on every sample in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streams.spc.capability import NO_CAPABILITY, Capability, capability, capability_samples
from streams.spc.charts import Chart, ChartConfig, Count, Point, Sample, Subgroup, make_chart
from streams.spc.exceptions import SpcConfigError, SpcInputError
from streams.spc.io import Table
from streams.spc.memory import EwmaChart


@dataclass(frozen=True)
class SampleSet:
    """Samples in file order, which of them form the phase I baseline, and their labels."""

    samples: list[Sample]
    baseline: list[bool]
    labels: list[str]
    lines: list[int]  # first file line of each sample
    missing: int = 0  # missing values (empty, NA, NaN, ...) left out, as qcc does
    dropped: tuple[str, ...] = ()  # labels of the samples left out because they had no value at all
    gaps: frozenset[int] = frozenset()  # positions of samples that follow a sample left out


def _validate(chart: Chart, sample: Sample, where: str) -> None:
    try:
        chart.validate(sample)
    except SpcInputError as exc:
        msg = f"{where}: {exc}"
        raise SpcInputError(msg) from exc


def _group_flags(flags: list[bool], groups: list[list[int]], table: Table, column: str) -> list[bool]:
    out = []
    for rows in groups:
        values = {flags[i] for i in rows}
        if len(values) > 1:
            msg = (
                f"{table.path}: the subgroup starting at line {table.lines[rows[0]]} mixes TRUE and FALSE "
                f"in {column!r}; phase I is chosen per subgroup"
            )
            raise SpcInputError(msg)
        out.append(values.pop())
    return out


def build_samples(
    table: Table,
    kind: str,
    value_column: str,
    *,
    subgroup_column: str | None = None,
    subgroup_size: int | None = None,
    size_column: str | None = None,
    phase1_column: str | None = None,
    phase1_count: int | None = None,
    label_column: str | None = None,
) -> SampleSet:
    """Rows → samples for chart ``kind``; raises :class:`SpcInputError` naming the line and column.

    A sample's label is the value of ``label_column`` in its first row; without one, the subgroup value
    (``subgroup_column``) or the sample number.
    """
    chart = make_chart(kind)
    if subgroup_column and subgroup_size:
        msg = "give --subgroup-column or --subgroup-size, not both"
        raise SpcConfigError(msg)
    if phase1_column and phase1_count is not None:
        msg = "give --phase1-column or --phase1-count, not both"
        raise SpcConfigError(msg)
    if subgroup_size is not None and subgroup_size < 1:
        msg = f"--subgroup-size must be >= 1, got {subgroup_size}"
        raise SpcConfigError(msg)
    values = table.numbers_or_missing(value_column)
    names = table.text(label_column) if label_column else None
    flags = table.flags(phase1_column) if phase1_column else None
    samples: list[Sample] = []
    labels: list[str] = []
    dropped: list[str] = []
    gaps: set[int] = set()
    if chart.data == "variables":
        if size_column:
            msg = f"--size-column applies to p, np and u charts, not {kind}"
            raise SpcConfigError(msg)
        if subgroup_column:
            keys = table.text(subgroup_column)
            order: dict[str, list[int]] = {}
            for i, key in enumerate(keys):
                order.setdefault(key, []).append(i)
            groups, labels = list(order.values()), list(order)
        elif subgroup_size:
            groups = [
                list(range(i, min(i + subgroup_size, len(values))))
                for i in range(0, len(values), subgroup_size)
            ]
            labels = [str(j + 1) for j in range(len(groups))]
        else:
            if chart.min_n > 1:
                msg = f"the {kind} chart needs subgroups: give --subgroup-column or --subgroup-size"
                raise SpcConfigError(msg)
            groups = [[i] for i in range(len(values))]
            labels = [str(i + 1) for i in range(len(values))]
        group_flags = _group_flags(flags, groups, table, phase1_column or "") if flags is not None else None
        if names is not None:
            labels = [names[rows[0]] for rows in groups]
        kept: list[int] = []
        for j, (rows, label) in enumerate(zip(groups, labels, strict=True)):
            present = [v for i in rows if (v := values[i]) is not None]
            if not present:  # every value of the sample is missing: nothing to chart
                dropped.append(label)
                continue
            sample: Sample = Subgroup.of(present)
            where = f"{table.path}: subgroup {label!r} (line {table.lines[rows[0]]})"
            _validate(chart, sample, where)
            samples.append(sample)
            if j > 0 and (not kept or kept[-1] != j - 1):
                gaps.add(len(samples) - 1)
            kept.append(j)
        baseline = None if group_flags is None else [group_flags[j] for j in kept]
        lines = [table.lines[groups[j][0]] for j in kept]
        labels = [labels[j] for j in kept]
    else:
        if subgroup_column:
            msg = f"--subgroup-column does not apply to the {kind} chart (one row is one sample)"
            raise SpcConfigError(msg)
        sizes: list[float | None]
        if size_column:
            sizes = table.numbers_or_missing(size_column)
        elif subgroup_size:
            sizes = [float(subgroup_size)] * len(values)
        elif kind == "c":
            sizes = [1.0] * len(values)
        else:
            msg = f"the {kind} chart needs sample sizes: give --size-column or --subgroup-size"
            raise SpcConfigError(msg)
        all_labels = list(names) if names is not None else [str(i + 1) for i in range(len(values))]
        rows_kept: list[int] = []
        for i, (x, n) in enumerate(zip(values, sizes, strict=True)):
            if x is None or n is None:
                dropped.append(all_labels[i])
                continue
            sample = Count(x, n)
            _validate(chart, sample, f"{table.path}: line {table.lines[i]}")
            samples.append(sample)
            if i > 0 and (not rows_kept or rows_kept[-1] != i - 1):
                gaps.add(len(samples) - 1)
            rows_kept.append(i)
        if kind == "c" and len({c.n for c in samples if isinstance(c, Count)}) > 1:
            # c̄ ± 3√c̄ holds for inspection units of one size (Montgomery ch. 7); per-unit rates need u.
            msg = (
                f"{table.path}: the sample sizes in {size_column!r} vary, but the c chart needs samples of "
                "one size: use the u chart (nonconformities per unit) with the same --size-column"
            )
            raise SpcConfigError(msg)
        labels = [all_labels[i] for i in rows_kept]
        baseline = None if flags is None else [flags[i] for i in rows_kept]
        lines = [table.lines[i] for i in rows_kept]
    if not samples:
        msg = f"{table.path}: column {value_column!r} has no values to chart (every one is missing)"
        raise SpcInputError(msg)
    if baseline is None:
        count = len(samples) if phase1_count is None else phase1_count
        if not 0 <= count <= len(samples):
            msg = f"--phase1-count must be between 0 and {len(samples)} (the number of samples), got {count}"
            raise SpcConfigError(msg)
        baseline = [i < count for i in range(len(samples))]
    missing = sum(v is None for v in values)
    return SampleSet(samples, baseline, labels, lines, missing, tuple(dropped), frozenset(gaps))


@dataclass(frozen=True)
class ChartResult:
    """Everything the CLI prints or plots for one chart."""

    chart: Chart
    points: list[Point]
    samples: SampleSet
    capability: Capability

    @property
    def kind(self) -> str:
        return self.chart.kind


def _common(values: Sequence[float | None]) -> float | None:
    first = values[0] if values else None
    return first if all(v == first for v in values) else None


def headline(result: ChartResult) -> tuple[float | None, float | None, float | None]:
    """Center and limits for the whole chart; None where they vary from point to point."""
    chart, points = result.chart, result.points
    if isinstance(chart, EwmaChart):
        sizes = {s.n for s in result.samples.samples if isinstance(s, Subgroup)}
        assert chart.limits is not None
        if len(sizes) == 1:
            lcl, ucl = chart.steady_limits(sizes.pop())
            return chart.limits["center"], lcl, ucl
        return chart.limits["center"], None, None
    return (
        _common([p.center for p in points]),
        _common([p.lcl for p in points]),
        _common([p.ucl for p in points]),
    )


def secondary_headline(result: ChartResult) -> tuple[float | None, float | None, float | None]:
    sec = [p.secondary for p in result.points if p.secondary is not None]
    if not sec:
        return None, None, None
    return _common([s.center for s in sec]), _common([s.lcl for s in sec]), _common([s.ucl for s in sec])


def analyse(
    kind: str, samples: SampleSet, config: ChartConfig, lsl: float | None = None, usl: float | None = None
) -> ChartResult:
    """Phase I on the baseline samples, then phase II over every sample in order."""
    chart = make_chart(kind, config)
    if (lsl is not None or usl is not None) and chart.data != "variables":
        msg = (
            f"--lsl/--usl give process capability, which needs measurements (imr, xbar-r, xbar-s, ewma, "
            f"cusum); the {kind} chart counts nonconformities: leave the spec limits out"
        )
        raise SpcConfigError(msg)
    positions = [i for i, b in enumerate(samples.baseline) if b]
    base = [samples.samples[i] for i in positions]
    # A moving range needs two consecutive values: none spans a sample left out for missing data.
    chart.fit(base, breaks=[k for k, i in enumerate(positions) if i in samples.gaps])
    points = [chart.judge(s, after_gap=i in samples.gaps) for i, s in enumerate(samples.samples)]
    cap = NO_CAPABILITY
    if lsl is not None or usl is not None:
        cap = capability(capability_samples(chart, base), chart.within_sigma(), lsl, usl)
    return ChartResult(chart, points, samples, cap)
