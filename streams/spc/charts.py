"""Chart base: configuration, samples, judged points and the registry of chart types.

A chart has two phases. :meth:`Chart.fit` (phase I) estimates the center line and sigma from a
baseline of samples, or takes them from known standards (``target``, ``sigma``); the limits are then
frozen. :meth:`Chart.judge` (phase II) takes one sample at a time, returns the judged
:class:`Point` and keeps whatever the chart needs between samples (EWMA, CUSUM sums, last value for
the moving range, run-rule counters). The offline CLI and the streaming monitor both drive charts
through exactly these two calls, so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

from streams.spc.exceptions import SpcConfigError, SpcInputError, SpcStateError
from streams.spc.rules import RuleTracker, check_rule_set
from streams.spc.state import Stateful

_CHARTS: dict[str, type[Chart]] = {}


class Subgroup(NamedTuple):
    """Summary of one subgroup of measurements (an individual value is a subgroup of 1)."""

    n: int
    mean: float
    sd: float = 0.0  # sample standard deviation (n − 1 divisor); 0 when n == 1
    range: float = 0.0  # max − min; 0 when n == 1

    @classmethod
    def of(cls, values: Sequence[float]) -> Subgroup:
        n = len(values)
        if n == 0:
            msg = "a subgroup needs at least one value"
            raise SpcInputError(msg)
        mean = math.fsum(values) / n
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        return cls(n, mean, sd, max(values) - min(values))


class Count(NamedTuple):
    """Nonconforming units or nonconformities ``x`` found in a sample of size ``n``."""

    x: float
    n: float = 1.0


Sample = Subgroup | Count


class SecondaryPoint(NamedTuple):
    """The R, S or MR chart point that goes with a primary point."""

    value: float
    center: float
    lcl: float
    ucl: float
    beyond: bool


@dataclass(slots=True)
class Point:
    """One judged sample. ``sigma`` is the standard error of ``value`` (zone width of the run rules)."""

    index: int
    value: float
    center: float
    lcl: float | None
    ucl: float | None
    sigma: float
    rules: tuple[str, ...]
    secondary: SecondaryPoint | None = None
    extra: Mapping[str, float] | None = None

    def signals(self, primary: str, secondary: str | None) -> list[tuple[str, str]]:
        """(chart, rule) pairs this point raised; the secondary chart only signals LIMIT."""
        out = [(primary, rule) for rule in self.rules]
        if self.secondary is not None and self.secondary.beyond and secondary:
            out.append((secondary, "LIMIT"))
        return out


@dataclass(frozen=True)
class ChartConfig:
    """Settings of one chart. ``target``/``sigma`` are known standards that replace estimates."""

    rules: str = "we"
    target: float | None = None
    sigma: float | None = None
    lam: float = 0.2  # EWMA weight λ
    width: float = 3.0  # EWMA limit width L, in standard errors of the EWMA statistic
    k: float = 0.5  # CUSUM reference value, in sigma units
    h: float = 5.0  # CUSUM decision interval, in sigma units

    def __post_init__(self) -> None:
        check_rule_set(self.rules)
        checks = [
            (self.sigma is None or (math.isfinite(self.sigma) and self.sigma > 0), "sigma must be > 0"),
            (self.target is None or math.isfinite(self.target), "target must be finite"),
            (0.0 < self.lam <= 1.0, "lambda must be in (0, 1]"),
            (self.width > 0.0, "L must be > 0"),
            (self.k >= 0.0, "k must be >= 0"),
            (self.h > 0.0, "h must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SpcConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChartConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Chart(Stateful):
    """Base of every control chart. Subclasses set the class attributes and the four hooks."""

    kind: ClassVar[str] = ""  # CLI name: imr, xbar-r, ...
    primary: ClassVar[str] = ""  # chart name in points and signals: i, xbar, ...
    secondary: ClassVar[str | None] = None  # r, s, mr
    data: ClassVar[str] = "variables"  # "variables" (Subgroup samples) or "counts" (Count samples)
    uses_rules: ClassVar[bool] = True  # False: only LIMIT signals (EWMA, CUSUM)
    min_n: ClassVar[int] = 1  # smallest subgroup the chart accepts

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if cls.kind:
            cls.state_type = f"chart:{cls.kind}"
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _CHARTS[cls.kind] = cls

    def __init__(self, config: ChartConfig | None = None) -> None:
        self.config = config or ChartConfig()
        self.limits: dict[str, float] | None = None
        self.baseline_breaks: frozenset[int] = frozenset()  # baseline positions after missing data (fit only)
        self.count = 0
        self.tracker = RuleTracker(self.config.rules if self.uses_rules else "none")
        self._reset_stream()

    # -- hooks ------------------------------------------------------------------------------------
    def _estimate(self, baseline: Sequence[Any]) -> dict[str, float]:
        raise NotImplementedError

    def _judge(self, sample: Any, index: int) -> Point:
        raise NotImplementedError

    def _reset_stream(self) -> None:
        """Forget what the chart carries between samples (not the limits)."""

    def _after_gap(self) -> None:
        """Data are missing before the next sample (charts with a moving range forget the last value)."""

    def _stream_state(self) -> list[Any]:
        return []

    def _load_stream_state(self, state: list[Any]) -> None:
        pass

    # -- phase I / phase II -----------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.limits is not None

    def fit(self, baseline: Sequence[Sample], breaks: Collection[int] = ()) -> None:
        """Phase I: estimate and freeze the limits, and start judging from sample 1.

        ``breaks``: positions i in ``baseline`` that follow missing data; the moving range of
        baseline[i − 1] and baseline[i] is left out of MR̄ (charts of individuals).
        """
        for sample in baseline:
            self.validate(sample)
        self.baseline_breaks = frozenset(breaks)
        self.limits = self._estimate(baseline)
        self.count = 0
        self.tracker.reset()
        self._reset_stream()
        self._after_limits()

    def _after_limits(self) -> None:
        """Derive caches from ``self.limits`` (after fit and after restore)."""

    def judge(self, sample: Sample, after_gap: bool = False) -> Point:
        """Phase II: judge one sample against the frozen limits. ``after_gap``: data are missing just
        before it, so it starts no moving range with the previous sample."""
        if self.limits is None:
            msg = f"{self.kind} chart has no limits yet: call fit() first"
            raise SpcStateError(msg)
        self.validate(sample)
        if after_gap:
            self._after_gap()
        self.count += 1
        return self._judge(sample, self.count)

    def validate(self, sample: Sample) -> None:
        if self.data == "variables":
            if not isinstance(sample, Subgroup):
                msg = f"{self.kind} chart takes subgroups of measurements, got {type(sample).__name__}"
                raise SpcInputError(msg)
            if sample.n < self.min_n:
                msg = f"{self.kind} chart needs subgroups of at least {self.min_n} values, got n={sample.n}"
                raise SpcInputError(msg)
            if not (math.isfinite(sample.mean) and math.isfinite(sample.sd) and math.isfinite(sample.range)):
                msg = f"{self.kind} chart got a non-finite subgroup statistic: {sample}"
                raise SpcInputError(msg)
        else:
            if not isinstance(sample, Count):
                msg = f"{self.kind} chart takes counts, got {type(sample).__name__}"
                raise SpcInputError(msg)
            if not (math.isfinite(sample.x) and math.isfinite(sample.n)) or sample.x < 0 or sample.n <= 0:
                msg = f"{self.kind} chart needs a count >= 0 and a sample size > 0, got {sample.x}/{sample.n}"
                raise SpcInputError(msg)

    @classmethod
    def baseline_needed(cls, config: ChartConfig) -> int:
        """Fewest phase I samples :meth:`fit` can estimate from with these standards (0: none needed).

        The center needs one sample unless ``target`` is known; sigma needs one subgroup of 2+ values,
        or two individual values for a moving range, unless ``sigma`` is known (attribute charts
        derive it from the center).
        """
        if cls.data != "variables":
            return 0 if config.target is not None else 1
        if config.sigma is None:
            return 2 if cls.min_n == 1 else 1
        return 0 if config.target is not None else 1

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        """(center, lcl, ucl) of the plotted statistic for a sample of size n (EWMA: asymptotic)."""
        raise NotImplementedError

    def within_sigma(self) -> float | None:
        """Short-term sigma of one observation (for Cp/Cpk); None for attribute charts."""
        return None

    # -- state ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        state = self._header()
        state["config"] = self.config.to_dict()
        state["limits"] = None if self.limits is None else dict(self.limits)
        state["count"] = self.count
        state["rules"] = self.tracker.snapshot()
        state["stream"] = self._stream_state()
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        self._check_header(state)
        try:
            config = ChartConfig.from_dict(state["config"])
            limits = None if state["limits"] is None else {k: float(v) for k, v in state["limits"].items()}
            count = int(state["count"])
            stream = list(state["stream"])
            tracker = RuleTracker(config.rules if self.uses_rules else "none")
            tracker.restore(state["rules"])
        except (KeyError, TypeError, ValueError, AttributeError, SpcConfigError) as exc:
            msg = f"corrupt {self.state_type} snapshot: {exc}"
            raise SpcStateError(msg) from exc
        self.config, self.limits, self.count, self.tracker = config, limits, count, tracker
        self._reset_stream()
        try:
            self._load_stream_state(stream)
        except (IndexError, TypeError, ValueError) as exc:
            self.limits = None
            msg = f"corrupt {self.state_type} snapshot: stream state {stream!r}: {exc}"
            raise SpcStateError(msg) from exc
        if limits is not None:
            self._after_limits()


def chart_types() -> dict[str, type[Chart]]:
    """Every chart type by CLI name (imports the modules that define them)."""
    from streams.spc import attributes, memory, shewhart  # noqa: F401  (registration)

    return dict(_CHARTS)


def make_chart(kind: str, config: ChartConfig | None = None) -> Chart:
    types = chart_types()
    if kind not in types:
        msg = f"unknown chart {kind!r}; choose one of {', '.join(types)}"
        raise SpcConfigError(msg)
    return types[kind](config)


def mean_moving_range(values: Sequence[float], breaks: Collection[int] = ()) -> tuple[float, int]:
    """(MR̄, number of moving ranges) of span 2; the pair (i − 1, i) is left out for i in ``breaks``
    (missing data between them), as Minitab does. MR̄ is nan when no pair is left."""
    ranges = [abs(values[i] - values[i - 1]) for i in range(1, len(values)) if i not in breaks]
    return (math.fsum(ranges) / len(ranges) if ranges else math.nan), len(ranges)


def zscore(value: float, center: float, sigma: float) -> float:
    """Distance from the center in standard errors; ±inf (or 0) when sigma is 0."""
    if sigma > 0.0:
        return (value - center) / sigma
    if value == center:
        return 0.0
    return math.inf if value > center else -math.inf


def need_baseline(kind: str, what: str, have: int, need: int) -> None:
    if have < need:
        msg = (
            f"{kind} chart: phase I needs {need}+ {what} to estimate the limits, got {have} "
            "(or give the known standards --target/--sigma)"
        )
        raise SpcConfigError(msg)
