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
summed counts, not averaged per file. A rate whose denominator is 0 (precision with nothing flagged,
recall and MAR with nothing labelled, F1 when either of those is, FAR with no normal reading) is
undefined: ``None`` in :meth:`Backtest.rates` and :meth:`Backtest.to_dict`; the properties give 0.0
for it. :func:`backtest_folder` replays and judges a folder of runs.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.anomaly.exceptions import InputFileError

if TYPE_CHECKING:
    from streams.anomaly.config import AnomalySettings

logger = logging.getLogger(__name__)
RATES = ("precision", "recall", "f1", "far", "mar")


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

    def rates(self) -> dict[str, float | None]:
        """The point-wise rates, None where undefined (a denominator of 0, see the module)."""
        flagged, anomalous, normal = self.tp + self.fp, self.tp + self.fn, self.fp + self.tn
        return {
            "precision": self.precision if flagged else None,
            "recall": self.recall if anomalous else None,
            "f1": self.f1 if anomalous else None,  # a fault missed entirely is F1 0, not undefined
            "far": self.far if normal else None,
            "mar": self.mar if anomalous else None,
        }

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    def to_dict(self) -> dict[str, Any]:
        rates = {k: None if v is None else round(v, 4) for k, v in self.rates().items()}
        return {
            "readings": self.readings,
            "anomalous_readings": self.tp + self.fn,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            **rates,
            "faults": self.faults,
            "faults_found": self.found,
            "false_events": self.false_events,
            "median_delay_s": self.median_delay_s,
        }

    def summary(self) -> str:
        delay = "" if self.median_delay_s is None else f", median delay {self.median_delay_s:g} s"
        r = {k: rate_text(v) for k, v in self.rates().items()}
        return (
            f"faults found {self.found}/{self.faults}{delay}, false events {self.false_events}; "
            f"readings: precision {r['precision']}, recall {r['recall']}, F1 {r['f1']}, "
            f"FAR {r['far']}, MAR {r['mar']}"
        )


def rate_text(rate: float | None) -> str:
    """A rate for people: three decimals, or an em dash when undefined."""
    return "\u2014" if rate is None else f"{rate:.3f}"


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


CSV_SUFFIXES = (".csv", ".tsv")


def backtest_folder(
    input_dir: Path,
    output_dir: Path,
    timestamp_column: str,
    labels: str,
    columns: Sequence[str] | None = None,
    settings: AnomalySettings | None = None,
    timestamp_format: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Backtest]:
    """Replay every CSV file under ``input_dir`` (sorted by path; each file one run of its own
    machine, with fresh models; hidden files and folders, such as macOS's ``._name.csv``, are
    skipped) like :func:`~streams.anomaly.detect.detect_file`, writing ``output_dir/<same relative
    path>`` (``.csv`` appended to a ``.tsv`` name), and judge each against its ``labels`` column.
    A file without that column is judged as fault-free (a warning says so): a rig's fault-free
    reference run often carries no labels. An error in a file names it and stops the run. Nothing
    is written when the output folder lies inside or holds the input folder, or when a scored copy
    would replace a file that is not one.

    Returns the judgement per file (relative path) in order; add them up with
    :meth:`Backtest.merge`. ``progress(done, total, file)`` is called after each file."""
    from streams.anomaly.detect import check_output, detect_file

    if not input_dir.is_dir():
        msg = f"{input_dir} is not a folder"
        raise InputFileError(msg)
    files = []
    for p in sorted(input_dir.rglob("*")):
        if p.is_file() and p.suffix.lower() in CSV_SUFFIXES:
            if any(part.startswith(".") for part in p.relative_to(input_dir).parts):
                logger.debug("%s is hidden: skipped", p)
            else:
                files.append(p)
    if not files:
        msg = f"no CSV files ({', '.join(CSV_SUFFIXES)}) under {input_dir}"
        raise InputFileError(msg)
    if output_dir.exists() and not output_dir.is_dir():
        msg = f"cannot write to {output_dir}: it is not a folder"
        raise InputFileError(msg)
    if output_dir.resolve().is_relative_to(input_dir.resolve()):
        msg = f"the output folder {output_dir} must not be inside the input folder {input_dir}"
        raise InputFileError(msg)
    if input_dir.resolve().is_relative_to(output_dir.resolve()):
        msg = f"the output folder {output_dir} must not hold the input folder {input_dir}"
        raise InputFileError(msg)
    outputs = {}
    for path in files:
        rel = path.relative_to(input_dir)
        outputs[path] = output_dir / (
            rel if rel.suffix.lower() == ".csv" else rel.with_name(rel.name + ".csv")
        )
        check_output(outputs[path], path)  # before any file is written
    results: dict[str, Backtest] = {}
    for done, path in enumerate(files, start=1):
        rel = path.relative_to(input_dir)
        try:
            counts = detect_file(
                path,
                outputs[path],
                timestamp_column,
                columns,
                settings,
                machine_id=rel.with_suffix("").as_posix(),
                timestamp_format=timestamp_format,
                labels=labels,
                fault_free=True,  # a file without the labels column is a fault-free run
            )
        except InputFileError as exc:
            raise InputFileError(named(exc, path)) from exc
        except Exception as exc:  # not the file's fault, but say which file it was
            exc.add_note(f"while replaying {path}")
            raise
        results[rel.as_posix()] = counts["backtest"]
        if progress is not None:
            progress(done, len(files), rel.as_posix())
    return results


def named(exc: Exception, path: Path) -> str:
    """The error's message, beginning with the file's name unless it names it already."""
    text = str(exc)
    return text if str(path) in text else f"{path}: {text}"
