"""Per-machine anomaly monitor: features -> detectors -> calibration -> events, with explicit state.

For every reading of a machine (a timestamp and a value per sensor):

1. each sensor's window features and range are computed (pure: nothing is updated yet);
2. per sensor, :class:`SensorDetector` scores the value against its time-of-day profile and
   :class:`SequenceDetector` scores how rare the recent quantised sequence is; per machine,
   :class:`MachineDetector` (half-space trees) scores the joint window features of all sensors and
   :class:`RelationDetector` how far each sensor's deviation from its time-of-day normal is from
   what the other sensors' deviations predict; each raw score is calibrated by its own
   :class:`Likelihood` into [0, 1] (a sensor's score is the highest of its detectors');
3. the machine score is the highest calibrated score (its detector is the event's ``sensor``) or,
   if higher, the range exceedance of a value beyond everything seen so far (>= 0.5); after the
   first score above ``red`` in a burst, the next ones are reported capped at ``yellow``;
4. the :class:`EventGate` turns the uncapped scores into events (warm-up, hysteresis, cooldown);
   a range exceedance counts for it only once the sensor has been beyond its range for
   ``range_persist`` readings in a row (a lone spike shows in the score, opens no event);
   an open event also stays open while the sensor that raised it reads ``hold`` spreads or more
   from its time-of-day normal (or ``hold`` standard deviations from what the other sensors
   predict), so it lasts as long as the fault does (up to ``max_duration``);
5. the detectors learn the reading unless it is inside an event (weight ``flagged_weight``), or
   scores ``enter`` or more, or follows such a reading before ``exit_duration`` readings in a row
   have scored below ``exit`` (the readings an event would have held), so a fault is not learnt as
   normal; windows, ranges, sequences and calibrators always advance. An
   event that outlasts ``max_duration`` is closed and the detectors then learn everything for as
   long, so a lasting change of regime becomes the new normal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.anomaly.calibrate import Likelihood, range_exceedance
from streams.anomaly.config import AnomalySettings
from streams.anomaly.detector import (
    MachineDetector,
    RelationDetector,
    SensorDetector,
    SequenceDetector,
    TransitionDetector,
)
from streams.anomaly.events import MACHINE, AnomalyEvent
from streams.anomaly.exceptions import SnapshotError
from streams.anomaly.features import SensorWindow
from streams.anomaly.threshold import EventGate

logger = logging.getLogger(__name__)

STATE_VERSION = 1
WINDOW_SETTLE = 20  # LIKELIHOOD_WINDOW_S: judged readings that measure the sampling interval
MAX_WINDOW = 3600  # LIKELIHOOD_WINDOW_S: longest calibration window, in readings
MODEL_NAME = "millstream-anomaly/1"


def model_id(settings: AnomalySettings) -> str:
    digest = hashlib.sha256(json.dumps(settings.model_dump(), sort_keys=True).encode()).hexdigest()[:10]
    return f"{MODEL_NAME}/{digest}"


@dataclass(frozen=True)
class Scored:
    """The outcome of one reading."""

    ts_ms: int
    score: float  # machine score in [0, 1]
    is_anomaly: bool  # inside an event
    source: str  # detector with the highest score: a sensor name or "machine"; "" when the score is 0
    scores: dict[str, float]  # calibrated score per sensor detector and "machine"
    event: AnomalyEvent | None  # an event that opened or closed at this reading


class MachineMonitor:
    def __init__(self, machine_id: str, settings: AnomalySettings | None = None) -> None:
        self.machine_id = machine_id
        self.settings = s = settings or AnomalySettings()
        self.model_id = model_id(s)
        self.windows: dict[str, SensorWindow] = {}
        self.sensors: dict[str, SensorDetector] = {}
        self.liks: dict[str, Likelihood] = {}
        self.sequences: dict[str, SequenceDetector] = {}
        self.seq_liks: dict[str, Likelihood] = {}
        self.transitions: dict[str, TransitionDetector] = {}
        self.last_features: dict[str, dict[str, float]] = {}
        self.machine = MachineDetector(s.hst_trees, s.hst_height, s.hst_window, s.seed, s.hst_backend)
        self.machine_lik = self._likelihood(s.likelihood_window)
        self.gate = EventGate(
            s.enter,
            s.exit,
            s.min_duration,
            s.cooldown,
            s.max_duration,
            s.warmup,
            s.exit_duration,
            round(s.max_duration_hours * 3_600_000),
        )
        self.count = 0
        self.prev_red = False
        # sensors beyond their range: [readings in a row, range (lo, hi) from before the first of them]
        self.beyond: dict[str, list[float]] = {}
        self.suspect = 0  # readings still to go (quiet ones) before learning resumes after an alert
        self.credit = 0.0  # fractional learning weight carried over (the trees learn whole readings)
        self.open_event: AnomalyEvent | None = None
        self.peaks: dict[str, float] = {}  # while an event is open: highest score of each detector
        self.adapt_left = 0  # after an event outlasts max_duration, learn everything for that long
        self.first_ms: int | None = None  # event time of the first scored reading (time-based warm-up)
        self.runs: dict[str, list[float]] = {}  # flatline: sensor -> [last value, run, longest normal run]
        # sensors that first reported after the machine's first reading: the reading count they came at
        # (their range is judged only after a warm-up of their own)
        self.late: dict[str, int] = {}
        # LIKELIHOOD_WINDOW_S: the gaps between the first WINDOW_SETTLE readings, and the last one's time
        self.settle_gaps: list[int] = []
        self.last_ms: int | None = None
        self._ignored = s.ignored
        self.relation: RelationDetector | None = None  # created at the 2nd reading or later with 2+ sensors
        self.rel_liks: dict[str, Likelihood] = {}

    def _likelihood(self, window: int | None = None) -> Likelihood:
        """A calibrator averaging ``window`` readings (default: as many as the machine's others)."""
        s = self.settings
        return Likelihood(
            window or self.lik_window,
            s.likelihood_alpha,
            learn_period=s.warmup,
            var_floor=s.likelihood_var_floor,
        )

    @property
    def lik_window(self) -> int:
        """Readings the calibrators average (LIKELIHOOD_WINDOW, or more by LIKELIHOOD_WINDOW_S)."""
        return self.machine_lik.window

    def _calibrators(self) -> list[Likelihood]:
        return [*self.liks.values(), *self.seq_liks.values(), *self.rel_liks.values(), self.machine_lik]

    def _time_window(self, ts_ms: int) -> None:
        """LIKELIHOOD_WINDOW_S: at the WINDOW_SETTLE-th judged reading, the sampling interval is known
        and every calibrator's window becomes that many seconds of readings (never fewer than
        LIKELIHOOD_WINDOW): at a reading a second, 10 readings are 10 s, within which a slowly
        wandering residual hardly changes, so its average is no average at all."""
        s = self.settings
        if not s.likelihood_window_s or self.count > WINDOW_SETTLE:
            return
        # the median gap, not the mean: one reconnect pause or a buffered burst among the first
        # readings would set the window for the machine's whole life
        if self.last_ms is not None:
            self.settle_gaps.append(ts_ms - self.last_ms)
        self.last_ms = ts_ms
        if self.count != WINDOW_SETTLE:
            return
        gap_s = statistics.median(self.settle_gaps) / 1000 if self.settle_gaps else 0.0
        self.settle_gaps, self.last_ms = [], None
        if gap_s <= 0:
            return
        window = min(MAX_WINDOW, max(s.likelihood_window, round(s.likelihood_window_s / gap_s)))
        if window != self.lik_window:
            for lik in self._calibrators():
                lik.resize(window)

    def _transition_detector(self) -> TransitionDetector:
        s = self.settings
        return TransitionDetector(
            s.transition_min_levels, s.transition_max_levels, s.transition_headroom, s.transition_rest
        )

    def _add_sensor(self, name: str) -> None:
        s = self.settings
        if self.count > 1:
            self.late[name] = self.count
        self.windows[name] = SensorWindow(s.window, s.segments, s.long_window)
        self.sensors[name] = SensorDetector(
            s.profile_bins,
            s.profile_alpha,
            s.profile_squash,
            s.profile_power,
            s.profile_clip,
            s.profile_ready,
            round(s.profile_interval * 1000),
        )
        self.liks[name] = self._likelihood()
        if s.sequence_length:
            self.sequences[name] = SequenceDetector(s.sequence_levels, s.sequence_length, s.sequence_table)
            self.seq_liks[name] = self._likelihood()
        if s.transition_min_levels:
            self.transitions[name] = self._transition_detector()

    # ------------------------------------------------------------------------------------------ update
    def update(self, ts_ms: int, values: Mapping[str, float | None]) -> Scored:
        s = self.settings
        if s.idle_sensor and self._idle(values.get(s.idle_sensor)):  # stopped machine: not judged
            for d in self.transitions.values():  # and the reading after the stop follows no other
                d.break_sequence()
            return Scored(ts_ms, 0.0, self.gate.active, "", {}, None)
        if self.first_ms is None:
            self.first_ms = ts_ms
        self.count += 1
        self._time_window(ts_ms)
        warming = self.count <= s.warmup or ts_ms - self.first_ms < s.warmup_hours * 3_600_000
        present: dict[str, float] = {}
        for name, v in values.items():
            if v is None or not math.isfinite(v) or name in self._ignored:
                continue
            if name not in self.windows:
                self._add_sensor(name)
            present[name] = float(v)
        scores: dict[str, float] = {}
        exceed, exceed_by = 0.0, ""
        # what opens an event: an exceedance that has lasted RANGE_PERSIST readings in a row, judged
        # against the range from before the first of them (which that reading widened): a step to a new
        # level stays beyond it, a lone spike does not. A run that has opened starts over.
        lasting, lasting_by = 0.0, ""
        runs: dict[str, list[float]] = {}
        for name, v in present.items():
            win = self.windows[name]
            # a range of a few readings says little: a sensor that came late is not judged by it
            # before it has made WARMUP readings (the others have by the end of the machine's warm-up)
            came = self.late.get(name)
            if win.count and (came is None or self.count - came >= s.warmup):
                res = s.range_steps * win.step
                e = range_exceedance(v, win.lo, win.hi, s.range_tolerance, res)
                run = self.beyond.get(name)
                if run is None:  # not in a run: the range from before is the range
                    done, lo, hi, e_run = 0.0, win.lo, win.hi, e
                else:
                    done, lo, hi = run
                    e_run = range_exceedance(v, lo, hi, s.range_tolerance, res)
                if e_run > 0:
                    if done + 1 >= s.range_persist:
                        if e_run > lasting:
                            lasting, lasting_by = e_run, name
                    else:
                        runs[name] = [done + 1, lo, hi]
                if e > exceed:
                    exceed, exceed_by = e, name
            self.last_features[name] = win.features(v, prefix=f"{name}.")
            scores[name] = self.liks[name].step(self.sensors[name].score_one({"value": v, "ts_ms": ts_ms}))
            if name in self.sequences:
                seq = self.seq_liks[name].step(self.sequences[name].score_one({"value": v}))
                scores[name] = max(scores[name], seq)
            if name in self.transitions:  # a direct score: the fraction of grids on which the jump is new
                scores[name] = max(scores[name], self.transitions[name].score_one({"value": v}))
            if s.flatline:
                scores[name] = max(scores[name], self._flatline(name, v, warming))
        self.beyond = runs
        deviations = self._deviations(present, ts_ms)
        related: dict[str, float] = {}  # residual from what the other sensors predict, per sensor
        if self.relation is not None and deviations:
            related = self.relation.residuals(deviations)
            for name, z in related.items():
                raw = self.relation.squash_residual(z)
                scores[name] = max(scores[name], self.rel_liks[name].step(raw))
        x: dict[str, float] = {}
        for feats in self.last_features.values():
            x.update(feats)
        scores[MACHINE] = (
            self.machine_lik.step(self.machine.score_one(x)) if x and self.machine.ready else 0.0
        )

        source = max(scores, key=scores.__getitem__)
        score = scores[source]
        opening, opened_by = score, source  # what the event gate judges: a lone reading past the range
        if lasting > opening:  # shows in the score but opens no event
            opening, opened_by = lasting, lasting_by
        if exceed > score:
            score, source = exceed, exceed_by
        # the event gate judges the score itself; the reported score marks a burst once (its first
        # red reading), so a burst that turns red below ENTER and then climbs still opens an event
        alarm = score
        red = score >= s.red
        if red and self.prev_red:
            score = min(score, s.yellow)
        self.prev_red = red
        if warming:
            score = alarm = opening = 0.0
        if score <= 0.0:  # nothing scored (or still warming up): no detector to name
            source = ""

        hold = 0.0  # an open event's sensor still far from its normal keeps the event open
        o = self.open_event
        if s.hold and o is not None and o.sensor in present:  # a present sensor has its detectors
            away = self.sensors[o.sensor].residual({"value": present[o.sensor], "ts_ms": ts_ms})
            if max(away, related.get(o.sensor, 0.0)) >= s.hold:
                hold = s.exit
        step = self.gate.step(max(opening, hold), ts_ms)
        event = None
        if step.opened or (self.open_event is not None and not step.closed):  # readings of the event
            for k, v in scores.items():
                self.peaks[k] = max(self.peaks.get(k, 0.0), v)
            if exceed_by:
                self.peaks[exceed_by] = max(self.peaks.get(exceed_by, 0.0), exceed)
        if step.opened:
            features = {f"value.{k}": v for k, v in present.items()}
            features.update({f"score.{k}": v for k, v in scores.items()})
            event = self.open_event = AnomalyEvent(
                self.machine_id,
                opened_by,
                opening,
                s.enter,
                int(step.start_ms or ts_ms),
                None,
                self.model_id,
                features,
            )
        elif step.closed and self.open_event is not None:
            o = self.open_event
            # every detector that reached ENTER during the event, also one that started later (a
            # second fault while the first is open)
            peaks = {f"peak.{k}": v for k, v in self.peaks.items() if v >= s.enter}
            event = AnomalyEvent(
                o.machine_id,
                o.sensor,
                step.peak,
                o.threshold,
                o.start_ms,
                ts_ms,
                o.model_id,
                {**o.features, **peaks},
            )
            self.open_event = None
            self.peaks = {}

        # learn: everything outside events; inside, with the reduced weight
        if step.timed_out:
            self.adapt_left = s.max_duration
        if self.adapt_left > 0:
            self.adapt_left -= 1
            weight = 1.0
        else:
            # a reading that alerts and those after it until EXIT_DURATION in a row are quiet are not
            # learnt, whether or not they opened an event (a lone spike past the range opens none)
            if alarm >= s.enter:
                self.suspect = s.exit_duration
            elif alarm < s.exit and self.suspect > 0:
                self.suspect -= 1
            weight = s.flagged_weight if (step.is_anomaly or alarm >= s.enter or self.suspect) else 1.0
        if weight > 0:
            for name, v in present.items():
                self.sensors[name].learn_one({"value": v, "ts_ms": ts_ms}, w=weight)
            if self.relation is not None and deviations:
                self.relation.learn_one(deviations, w=weight)
            self.credit += weight
            if x and self.credit >= 1.0:
                self.credit -= 1.0
                self.machine.learn_one(x)
        for name, v in present.items():
            self.windows[name].push(v)
            if name in self.sequences:  # the sequence always advances; a flagged context is not counted
                self.sequences[name].learn_one({"value": v}, w=1.0 if weight > 0 else 0.0)
            if name in self.transitions:  # novelty happens once: always remembered
                self.transitions[name].learn_one({"value": v})
        return Scored(ts_ms, score, step.is_anomaly, source, scores, event)

    def _deviations(self, present: Mapping[str, float], ts_ms: int) -> dict[str, float]:
        """Each sensor's deviation from its time-of-day normal, for the relation detector ({} if it is
        off or a sensor is missing). The detector is created at the second reading with 2+ sensors."""
        s = self.settings
        if not s.relation_alpha:
            return {}
        if self.relation is None:
            if len(present) < 2 or self.count < 2:
                return {}
            names = sorted(present)
            self.relation = RelationDetector(names, s.relation_alpha, s.relation_min_r2)
            self.rel_liks = {k: self._likelihood() for k in names}
        if any(k not in present for k in self.relation.names):
            return {}
        return {k: present[k] - self.sensors[k].profile.expected(ts_ms) for k in self.relation.names}

    def _idle(self, state: float | None) -> bool:
        """The machine is stopped, or its state is unknown (reading missing) on a machine that has one."""
        if state is None or not math.isfinite(state):
            return self.settings.idle_sensor in self.windows
        return state == self.settings.idle_value

    def _flatline(self, name: str, v: float, warming: bool) -> float:
        """Score of a stuck sensor: ``flatline`` identical readings in a row from a sensor whose value
        changes at most readings, more than twice the longest run it had in normal operation (a state,
        a counter or a coarsely quantised sensor repeats values normally and is never judged stuck).

        ``runs[name]`` is [last value, current run, longest normal run, changes, readings]."""
        run = self.runs.get(name)
        if run is None:
            self.runs[name] = [v, 1.0, 0.0, 0.0, 1.0]
            return 0.0
        stuck_before = self._stuck(run) and not warming
        run[4] += 1
        if run[0] != v:
            if not stuck_before:  # a run that ended in warm-up or without being flagged was normal
                run[2] = max(run[2], run[1])
            run[0], run[1] = v, 1.0
            run[3] += 1
            return 0.0
        run[1] += 1
        return min(1.0, self.settings.enter + 0.1) if self._stuck(run) else 0.0

    def _stuck(self, run: list[float]) -> bool:
        return run[1] >= self.settings.flatline and run[1] > 2 * run[2] and run[3] > 0.5 * run[4]

    # ------------------------------------------------------------------------------------------- state
    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-serialisable state; :meth:`restore` continues exactly where this left off."""
        return {
            "version": STATE_VERSION,
            "kind": "MachineMonitor",
            "machine_id": self.machine_id,
            "settings": self.settings.model_dump(),
            "count": self.count,
            "prev_red": self.prev_red,
            "beyond": {k: list(r) for k, r in self.beyond.items()},
            "suspect": self.suspect,
            "credit": self.credit,
            "adapt_left": self.adapt_left,
            "first_ms": self.first_ms,
            "runs": {k: list(r) for k, r in self.runs.items()},
            "late": dict(self.late),
            "settle_gaps": list(self.settle_gaps),
            "settle_last_ms": self.last_ms,
            "windows": {k: w.snapshot() for k, w in self.windows.items()},
            "sensors": {k: d.snapshot() for k, d in self.sensors.items()},
            "liks": {k: c.snapshot() for k, c in self.liks.items()},
            "sequences": {k: d.snapshot() for k, d in self.sequences.items()},
            "seq_liks": {k: c.snapshot() for k, c in self.seq_liks.items()},
            "transitions": {k: d.snapshot() for k, d in self.transitions.items()},
            "relation": None if self.relation is None else self.relation.snapshot(),
            "rel_liks": {k: c.snapshot() for k, c in self.rel_liks.items()},
            "last_features": self.last_features,
            "machine": self.machine.snapshot(),
            "machine_lik": self.machine_lik.snapshot(),
            "gate": self.gate.snapshot(),
            "open_event": self.open_event.to_dict() if self.open_event else None,
            "peaks": dict(self.peaks),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> MachineMonitor:
        if state.get("kind") != "MachineMonitor":
            msg = f"not a MachineMonitor snapshot (kind={state.get('kind')!r})"
            raise SnapshotError(msg)
        if state.get("version") != STATE_VERSION:
            msg = f"snapshot version {state.get('version')!r} is not supported (expected {STATE_VERSION})"
            raise SnapshotError(msg)
        try:
            m = cls(state["machine_id"], AnomalySettings(**state["settings"]))
            m.count, m.prev_red, m.credit = (
                int(state["count"]),
                bool(state["prev_red"]),
                float(state["credit"]),
            )
            m.adapt_left = int(state["adapt_left"])
            # snapshots of earlier releases have none
            m.beyond = {k: [float(x) for x in r] for k, r in state.get("beyond", {}).items()}
            m.suspect = int(state.get("suspect", 0))
            m.first_ms = None if state.get("first_ms") is None else int(state["first_ms"])
            m.runs = {k: [float(x) for x in r] for k, r in state.get("runs", {}).items()}
            m.late = {k: int(v) for k, v in state.get("late", {}).items()}
            m.settle_gaps = [int(g) for g in state.get("settle_gaps", [])]
            m.last_ms = None if state.get("settle_last_ms") is None else int(state["settle_last_ms"])
            m.windows = {k: SensorWindow.from_snapshot(v) for k, v in state["windows"].items()}
            m.sensors = {k: SensorDetector.from_snapshot(v) for k, v in state["sensors"].items()}
            m.liks = {k: Likelihood.from_snapshot(v) for k, v in state["liks"].items()}
            m.sequences = {k: SequenceDetector.from_snapshot(v) for k, v in state["sequences"].items()}
            m.seq_liks = {k: Likelihood.from_snapshot(v) for k, v in state["seq_liks"].items()}
            if "transitions" in state:  # snapshots of earlier releases have none: they start afresh
                m.transitions = {
                    k: TransitionDetector.from_snapshot(v) for k, v in state["transitions"].items()
                }
            else:
                m.transitions = {
                    k: m._transition_detector() for k in m.windows if m.settings.transition_min_levels
                }
            # snapshots of earlier releases have no relation detector: it starts afresh
            rel = state.get("relation")
            m.relation = None if rel is None else RelationDetector.from_snapshot(rel)
            m.rel_liks = {k: Likelihood.from_snapshot(v) for k, v in state.get("rel_liks", {}).items()}
            m.last_features = {
                k: {f: float(x) for f, x in v.items()} for k, v in state["last_features"].items()
            }
            m.machine = MachineDetector.from_snapshot(state["machine"])
            m.machine_lik = Likelihood.from_snapshot(state["machine_lik"])
            m.gate = EventGate.from_snapshot(state["gate"])
            m.open_event = AnomalyEvent(**state["open_event"]) if state["open_event"] else None
            m.peaks = {k: float(v) for k, v in state.get("peaks", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"corrupt MachineMonitor snapshot: {exc}"
            raise SnapshotError(msg) from exc
        return m
