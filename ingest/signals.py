"""Sensor signals of a simulated plant, vectorised over machines, deterministic for a seed.

Each machine alternates between running and idle (duty cycle); every sensor has its own level per
state, slow drift (an Ornstein-Uhlenbeck process) and white noise. Faults are injected at random
into running, healthy machines and freeze the duty cycle while they last:

* ``bearing_wear``: vibration (and acoustic noise) rise quadratically over the fault;
* ``overheating``: temperature steps up; for the last 30 % the machine trips (machine_state 2);
* ``pressure_leak``: pressure drops within the first quarter of the fault and stays low;
* ``sensor_stuck``: one analog sensor repeats its last value (quality still GOOD).

Faults can also be scheduled (:class:`ScheduledFault`, :func:`parse_schedule`): a given kind on a
given machine at a given time for a given duration, e.g. realistic hour-long faults for a detection
test. Machines with a schedule, and ``quiet`` machines, get no random faults.

:class:`PlantSignals` knows only ticks (scan indices); turning ticks into event times and fault
events into labels is :mod:`ingest.simulator`'s job. Same seed and settings, same values, whether
the simulator runs live or fast-forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SensorSpec:
    name: str
    unit: str  # UCUM-style
    # Specification limits of the simulated plant (what a quality engineer would load as metadata).
    lsl: float | None = None
    usl: float | None = None
    description: str = ""


DEFAULT_SENSORS = (
    SensorSpec("vibration_rms", "mm/s", 0.0, 4.5, "bearing housing vibration, RMS velocity"),
    SensorSpec("temperature", "Cel", 15.0, 80.0, "motor winding temperature"),
    SensorSpec("pressure", "bar", 5.0, 7.0, "hydraulic line pressure"),
    SensorSpec("current", "A", 0.0, 20.0, "motor current"),
    SensorSpec("energy", "kWh", description="energy meter (monotone counter)"),
    SensorSpec("noise", "dB", 40.0, 85.0, "sound pressure level at the machine"),
    SensorSpec("part_count", "1", description="parts made (monotone counter)"),
    SensorSpec("machine_state", "1", description="0 idle, 1 running, 2 fault"),
)
ANALOG = ("vibration_rms", "temperature", "pressure", "current", "noise")


def sensor_specs(count: int) -> tuple[SensorSpec, ...]:
    """The first ``count`` default sensors, then auxiliary analog signals aux_01, aux_02, ..."""
    if count < 1:
        msg = f"a machine needs at least one sensor, got {count}"
        raise ValueError(msg)
    extra = tuple(SensorSpec(f"aux_{i:02d}", "1") for i in range(1, count - len(DEFAULT_SENSORS) + 1))
    return DEFAULT_SENSORS[:count] + extra


class FaultKind(StrEnum):
    BEARING_WEAR = "bearing_wear"
    OVERHEATING = "overheating"
    PRESSURE_LEAK = "pressure_leak"
    SENSOR_STUCK = "sensor_stuck"


KINDS = tuple(FaultKind)
# Fault kind -> (sensors it shows on, duration range in seconds, magnitude range).
FAULTS: dict[FaultKind, tuple[tuple[str, ...], tuple[float, float], tuple[float, float]]] = {
    FaultKind.BEARING_WEAR: (("vibration_rms", "noise"), (60.0, 300.0), (3.0, 8.0)),  # +mm/s at the end
    FaultKind.OVERHEATING: (("temperature", "machine_state"), (30.0, 120.0), (12.0, 25.0)),  # +Cel
    FaultKind.PRESSURE_LEAK: (("pressure",), (60.0, 240.0), (1.0, 3.0)),  # -bar
    FaultKind.SENSOR_STUCK: ((), (20.0, 120.0), (0.0, 0.0)),  # the stuck sensor is drawn at the start
}
TRIP_AT = 0.7  # overheating: share of the fault before the machine trips
_WEAR, _HEAT, _LEAK = (
    KINDS.index(k) for k in (FaultKind.BEARING_WEAR, FaultKind.OVERHEATING, FaultKind.PRESSURE_LEAK)
)


@dataclass(frozen=True)
class ScheduledFault:
    """``kind`` on machine ``machine`` (id such as m001) from ``start_s`` seconds of simulated time on,
    for ``duration_s``; ``magnitude`` (None: the middle of the kind's range) or, for sensor_stuck,
    the stuck ``sensor`` (None: the first analog sensor)."""

    machine: str
    kind: FaultKind
    start_s: float
    duration_s: float
    magnitude: float | None = None
    sensor: str | None = None


def parse_schedule(text: str) -> list[ScheduledFault]:
    """``MACHINE:KIND:START_S:DURATION_S[:MAGNITUDE|SENSOR]`` entries separated by commas."""
    out: list[ScheduledFault] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        try:
            if len(parts) not in (4, 5):
                msg = "expected MACHINE:KIND:START_S:DURATION_S[:MAGNITUDE|SENSOR]"
                raise ValueError(msg)
            kind = FaultKind(parts[1])
            start, duration = float(parts[2]), float(parts[3])
            if start < 0 or duration <= 0:
                msg = "START_S must be >= 0 and DURATION_S > 0"
                raise ValueError(msg)
            extra = parts[4] if len(parts) == 5 else None
            stuck = kind is FaultKind.SENSOR_STUCK
            magnitude = float(extra) if extra is not None and not stuck else None
            out.append(ScheduledFault(parts[0], kind, start, duration, magnitude, extra if stuck else None))
        except ValueError as exc:
            msg = f"bad fault schedule entry {entry!r}: {exc}"
            raise ValueError(msg) from exc
    by_machine: dict[str, list[ScheduledFault]] = {}
    for f in out:
        by_machine.setdefault(f.machine, []).append(f)
    for faults in by_machine.values():
        faults.sort(key=lambda f: f.start_s)
        for a, b in zip(faults, faults[1:], strict=False):
            if b.start_s < a.start_s + a.duration_s:
                msg = (
                    f"scheduled faults overlap on {a.machine}: {a.kind} at {a.start_s}s "
                    f"and {b.kind} at {b.start_s}s"
                )
                raise ValueError(msg)
    return out


@dataclass(frozen=True)
class FaultEvent:
    """A fault began (``started``) or ended on ``machine`` at ``tick``; ``sensors`` it shows on."""

    machine: int
    kind: FaultKind
    sensors: tuple[str, ...]
    tick: int
    started: bool


@dataclass
class Step:
    """One scan cycle of all machines."""

    tick: int
    values: npt.NDArray[np.float64]  # (machines, sensors)
    qualities: npt.NDArray[np.int8] | None  # (machines, sensors): 0 GOOD 1 UNCERTAIN 2 BAD; None: all GOOD
    parts: npt.NDArray[np.int64]  # (machines,) part counters (lots derive from them)
    events: list[FaultEvent]


class PlantSignals:
    """All sensor signals of ``n_machines`` machines, one :meth:`step` per scan cycle."""

    def __init__(
        self,
        n_machines: int,
        sensors: Sequence[SensorSpec],
        rate_hz: float,
        seed: int,
        fault_probability: float = 0.002,
        uncertain_probability: float = 0.002,
        bad_probability: float = 0.0005,
        quiet: Sequence[int] = (),
        schedule: Sequence[tuple[int, ScheduledFault]] = (),
    ) -> None:
        """``quiet``: machine indices without random faults; ``schedule``: (machine index, fault)."""
        self.n = n = n_machines
        self.sensors = tuple(sensors)
        self.names = [s.name for s in self.sensors]
        self.dt = 1.0 / rate_hz
        self.p_fault = 1.0 - (1.0 - fault_probability) ** self.dt  # per machine per tick
        self.p_bad, self.p_uncertain = bad_probability, uncertain_probability
        self.rng = rng = np.random.default_rng(seed)
        self.aux = [i for i, name in enumerate(self.names) if name.startswith("aux_")]
        self.kinds = [k for k in KINDS if self._applicable(k)]
        self.stuck_columns = [i for i, name in enumerate(self.names) if name in ANALOG or i in self.aux]
        # Per-machine operating points (machines differ a little, as real ones do).
        self.vib_run = rng.uniform(1.8, 3.2, n)
        self.temp_run = rng.uniform(55.0, 70.0, n)
        self.press_run = rng.uniform(5.5, 6.5, n)
        self.cur_run = rng.uniform(10.0, 16.0, n)
        self.noise_run = rng.uniform(74.0, 82.0, n)
        self.cycle_s = rng.uniform(4.0, 20.0, n)
        self.ambient = rng.uniform(19.0, 26.0, n)
        # State.
        self.tick = 0
        self.running = rng.random(n) < 0.8
        self.phase_left = np.where(self.running, rng.uniform(60, 900, n), rng.uniform(10, 120, n)) / self.dt
        self.temp = np.where(self.running, self.temp_run, self.ambient + 3.0)
        self.drift = np.zeros((n, 3 + len(self.aux)))  # vibration, pressure, temperature, aux...
        self.energy = rng.uniform(0.0, 5000.0, n)
        self.parts = np.floor(rng.uniform(0.0, 10_000.0, n))
        self.fault = np.full(n, -1, dtype=np.int64)  # index into KINDS, -1 healthy
        self.fault_start = np.zeros(n, dtype=np.int64)
        self.fault_end = np.zeros(n, dtype=np.int64)  # exclusive
        self.fault_mag = np.zeros(n)
        self.stuck_col = np.full(n, -1, dtype=np.int64)
        self.stuck_val = np.zeros(n)
        # Random faults only where neither quiet nor scheduled; scheduled starts by tick.
        self.random_ok = np.ones(n, dtype=bool)
        self.random_ok[list(quiet)] = False
        self.scheduled: dict[int, list[tuple[int, ScheduledFault]]] = {}
        for i, f in schedule:
            if f.kind not in self.kinds:
                msg = f"fault {f.kind} needs sensor {FAULTS[f.kind][0][0]}, which this plant does not have"
                raise ValueError(msg)
            if f.sensor is not None and f.sensor not in self.names:
                msg = f"sensor_stuck: no sensor {f.sensor!r}"
                raise ValueError(msg)
            self.random_ok[i] = False
            self.scheduled.setdefault(round(f.start_s / self.dt), []).append((i, f))

    def _applicable(self, kind: FaultKind) -> bool:
        if kind is FaultKind.SENSOR_STUCK:
            return any(name in ANALOG or name.startswith("aux_") for name in self.names)
        return FAULTS[kind][0][0] in self.names

    def step(self) -> Step:
        k, n, dt, rng = self.tick, self.n, self.dt, self.rng
        events = self._end_faults(k)
        healthy: npt.NDArray[np.bool_] = self.fault < 0
        # Duty cycle (frozen during a fault).
        self.phase_left[healthy] -= 1
        switch: npt.NDArray[np.bool_] = healthy & (self.phase_left <= 0)
        if switch.any():
            self.running[switch] = ~self.running[switch]
            means = np.where(self.running[switch], 600.0, 60.0)
            self.phase_left[switch] = np.maximum(10.0, rng.exponential(means)) / dt
        starts = np.flatnonzero(healthy & self.running & (rng.random(n) < self.p_fault) & self.random_ok)
        if self.kinds:
            events += [self._start_fault(int(i), k) for i in starts]
        for i, f in self.scheduled.get(k, ()):
            if self.fault[i] < 0:  # a scheduled fault starts a stopped machine (it shows when running)
                self.running[i] = True
                events.append(self._start_fault(i, k, f))
        z = rng.standard_normal((n, 6 + len(self.aux)))
        kind = self.fault
        tripped = (kind == _HEAT) & (k >= self.fault_start + TRIP_AT * (self.fault_end - self.fault_start))
        run = self.running & ~tripped
        # Slow drift: Ornstein-Uhlenbeck, time constant 10 min,
        # stationary std 0.15 mm/s (vibration), 0.05 bar (pressure), 0.5 Cel (temperature), 1 (aux).
        a = math.exp(-dt / 600.0)
        sd = np.array([0.15, 0.05, 0.5] + [1.0] * len(self.aux)) * math.sqrt(1 - a * a)
        self.drift = self.drift * a + rng.standard_normal(self.drift.shape) * sd
        vib = np.where(run, self.vib_run + self.drift[:, 0] + 0.12 * z[:, 0], 0.3 + 0.03 * z[:, 0])
        target = np.where(run, self.temp_run, self.ambient + 3.0) + self.drift[:, 2]
        self.temp += (target - self.temp) * min(1.0, dt / 300.0)
        temp = self.temp + 0.2 * z[:, 1]
        press = np.where(run, self.press_run + self.drift[:, 1], 0.6) + 0.04 * z[:, 2]
        wave = 1.0 + 0.06 * np.sin(2 * math.pi * k * dt / self.cycle_s)
        current = np.maximum(0.0, np.where(run, self.cur_run * wave, 0.9) + 0.2 * z[:, 3])
        self.energy += current * 0.4 * dt / 3600.0  # ~0.4 kW per A at 400 V three-phase
        noise = np.where(run, self.noise_run, 50.0) + 0.8 * z[:, 4]
        self.parts += np.where(run, dt / self.cycle_s, 0.0)
        state = np.where(tripped, 2.0, np.where(run, 1.0, 0.0))
        # Fault effects.
        span = np.maximum(1, self.fault_end - self.fault_start)
        progress = np.clip((k - self.fault_start) / span, 0.0, 1.0)
        wear = np.where(kind == _WEAR, self.fault_mag * progress**2, 0.0)
        vib = np.maximum(0.0, vib + wear * (1.0 + 0.1 * z[:, 5]))
        noise = noise + 0.8 * wear
        temp = temp + np.where(kind == _HEAT, self.fault_mag, 0.0)
        leak = np.where(kind == _LEAK, self.fault_mag, 0.0)
        press = np.maximum(0.0, press - leak * np.minimum(1.0, 4.0 * progress))
        columns = {
            "vibration_rms": vib,
            "temperature": temp,
            "pressure": press,
            "current": current,
            "energy": self.energy,
            "noise": noise,
            "part_count": np.floor(self.parts),
            "machine_state": state,
        }
        for j, col in enumerate(self.aux):
            columns[self.names[col]] = 10.0 + self.drift[:, 3 + j] + 0.1 * z[:, 6 + j]
        values = np.column_stack([columns[name] for name in self.names])
        self._hold_stuck(values, [e for e in events if e.started])
        q = rng.random(size=(n, len(self.names)))
        qualities: npt.NDArray[np.int8] | None = None
        if np.any(q < self.p_bad + self.p_uncertain):
            bad, doubtful = q < self.p_bad, q < self.p_bad + self.p_uncertain
            qualities = np.where(bad, 2, np.where(doubtful, 1, 0)).astype(np.int8)
        self.tick += 1
        return Step(k, values, qualities, self.parts.astype(np.int64), events)

    def _start_fault(self, i: int, k: int, planned: ScheduledFault | None = None) -> FaultEvent:
        rng = self.rng
        if planned is None:
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
        else:
            kind = planned.kind
        sensors, (lo, hi), (mlo, mhi) = FAULTS[kind]
        self.fault[i] = KINDS.index(kind)
        self.fault_start[i] = k
        if planned is None:
            self.fault_end[i] = k + max(2, round(rng.uniform(lo, hi) / self.dt))
            self.fault_mag[i] = rng.uniform(mlo, mhi)
        else:
            self.fault_end[i] = k + max(2, round(planned.duration_s / self.dt))
            self.fault_mag[i] = planned.magnitude if planned.magnitude is not None else (mlo + mhi) / 2
        if kind is FaultKind.SENSOR_STUCK:
            if planned is not None:
                col = self.names.index(planned.sensor) if planned.sensor else self.stuck_columns[0]
            else:
                col = self.stuck_columns[int(rng.integers(len(self.stuck_columns)))]
            self.stuck_col[i] = col
            sensors = (self.names[col],)
        return FaultEvent(i, kind, tuple(s for s in sensors if s in self.names), k, True)

    def _hold_stuck(self, values: npt.NDArray[np.float64], started: list[FaultEvent]) -> None:
        for e in started:
            if e.kind is FaultKind.SENSOR_STUCK:
                self.stuck_val[e.machine] = values[e.machine, self.stuck_col[e.machine]]
        stuck = np.flatnonzero(self.stuck_col >= 0)
        if stuck.size:
            values[stuck, self.stuck_col[stuck]] = self.stuck_val[stuck]

    def _end_faults(self, k: int) -> list[FaultEvent]:
        events: list[FaultEvent] = []
        for i in np.flatnonzero((self.fault >= 0) & (k >= self.fault_end)):
            kind = KINDS[self.fault[i]]
            sensors = (
                FAULTS[kind][0] if kind is not FaultKind.SENSOR_STUCK else (self.names[self.stuck_col[i]],)
            )
            events.append(FaultEvent(int(i), kind, tuple(s for s in sensors if s in self.names), k, False))
            if kind is FaultKind.OVERHEATING:  # after a trip the machine stays idle for a while
                self.running[i] = False
                self.phase_left[i] = self.rng.uniform(30.0, 120.0) / self.dt
            self.fault[i] = -1
            self.stuck_col[i] = -1
        return events


def fault_plan(machine_ids: Sequence[str], quiet: Sequence[str], schedule: str) -> dict[str, Any]:
    """Keyword arguments ``quiet`` and ``schedule`` of :class:`PlantSignals` from machine ids."""
    index = {m: i for i, m in enumerate(machine_ids)}
    unknown = [m for m in [*quiet, *(f.machine for f in parse_schedule(schedule))] if m not in index]
    if unknown:
        names = ", ".join(sorted(set(unknown)))
        msg = f"unknown machine(s) {names}; this plant has {machine_ids[0]}..{machine_ids[-1]}"
        raise ValueError(msg)
    planned = [(index[f.machine], f) for f in parse_schedule(schedule)]
    clash = sorted({machine_ids[i] for i, _ in planned} & set(quiet))
    if clash:
        msg = f"machine(s) {', '.join(clash)} are quiet and have scheduled faults"
        raise ValueError(msg)
    return {"quiet": [index[m] for m in quiet], "schedule": planned}
