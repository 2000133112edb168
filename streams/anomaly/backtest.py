"""Judge a backtest: the detector's ``is_anomaly`` against known labels of the same readings.

Two views, both standard for labelled telemetry (e.g. a test rig's experiments):

* **point-wise**: precision, recall and F1 of the flagged readings; the false-alarm rate (FAR,
  normal readings flagged) and the missed-alarm rate (MAR, anomalous readings not flagged);
* **per fault**: a labelled segment (a run of consecutive anomalous readings in time order) is
  *found* when an event opens inside it, or within ``grace`` readings after its end; an event that
  opens anywhere else is a *false event*. The delay is the time from the segment's first reading to
  that event's first reading. An event that opened before a segment and is still open when it
  starts does not find it: it was raised by something else.

Counts add up over files (:meth:`Backtest.merge`), so rates over many runs are computed from the
summed counts, not averaged per file.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Backtest:
    """Counts of one or more judged runs; rates are derived from them."""

    readings: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    faults: int = 0
    found: int = 0
    false_events: int = 0
    delays_s: list[float] = field(default_factory=list)

    def merge(self, other: Backtest) -> Backtest:
        return Backtest(
            self.readings + other.readings,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.tn + other.tn,
            self.faults + other.faults,
            self.found + other.found,
            self.false_events + other.false_events,
            self.delays_s + other.delays_s,
        )

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def far(self) -> float:
        """False-alarm rate: the share of normal readings flagged."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed-alarm rate: the share of anomalous readings not flagged (1 - recall)."""
        return self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "anomalous_readings": self.tp + self.fn,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "far": round(self.far, 4),
            "mar": round(self.mar, 4),
            "faults": self.faults,
            "faults_found": self.found,
            "false_events": self.false_events,
            "median_delay_s": self.median_delay_s,
        }

    def summary(self) -> str:
        delay = "" if self.median_delay_s is None else f", median delay {self.median_delay_s:g} s"
        return (
            f"faults found {self.found}/{self.faults}{delay}, false events {self.false_events}; "
            f"readings: precision {self.precision:.3f}, recall {self.recall:.3f}, F1 {self.f1:.3f}, "
            f"FAR {self.far:.3f}, MAR {self.mar:.3f}"
        )


def _runs(flags: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of non-zero flags."""
    runs, start = [], None
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(flags)))
    return runs


def judge(
    predicted: Sequence[int], labels: Sequence[int], times_ms: Sequence[int] | None = None, grace: int = 0
) -> Backtest:
    """Judge one run. ``predicted`` and ``labels`` are 0/1 per reading in time order; ``times_ms``
    (epoch ms, same order) turn delays into seconds; without it a reading counts as one second."""
    if len(predicted) != len(labels) or (times_ms is not None and len(times_ms) != len(labels)):
        msg = "predicted, labels and times must have one entry per reading"
        raise ValueError(msg)
    pred = [1 if p else 0 for p in predicted]
    lab = [1 if v else 0 for v in labels]
    tp = sum(p & v for p, v in zip(pred, lab, strict=True))
    fp = sum(p & (1 - v) for p, v in zip(pred, lab, strict=True))
    fn = sum((1 - p) & v for p, v in zip(pred, lab, strict=True))
    segments, opens = _runs(lab), [start for start, _ in _runs(pred)]
    claimed: set[int] = set()
    found, delays = 0, []
    for s0, e0 in segments:
        hits = [i for i in opens if s0 <= i < e0 + grace and i not in claimed]
        if hits:
            found += 1
            claimed.update(hits)
            delay = (times_ms[hits[0]] - times_ms[s0]) / 1000 if times_ms is not None else float(hits[0] - s0)
            delays.append(delay)
    return Backtest(
        readings=len(pred),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=len(pred) - tp - fp - fn,
        faults=len(segments),
        found=found,
        false_events=len(opens) - len(claimed),
        delays_s=delays,
    )
