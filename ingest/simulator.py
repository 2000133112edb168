"""The plant simulator gateway: machines scanned at a fixed rate, faults labelled, scans to Kafka.

Live mode stamps each scan cycle with the wall clock (epoch ms) and sleeps to keep the rate;
fast-forward mode (``start_ms`` or ``fast_forward``) generates event time ``start + k / rate``
without sleeping, for backfills and tests. Signal values depend only on the seed and the scan
index, so both modes produce the same values.

Ground truth: each injected fault becomes one JSON line in the labels file when it ends (or, cut
off by the end of the run, with ``"truncated": true``)::

    {"plant": "p1", "line": "l1", "machine_id": "m003", "kind": "bearing_wear",
     "sensors": ["vibration_rms", "noise"], "start_ms": ..., "end_ms": ..., "truncated": false}

``start_ms`` and ``end_ms`` are the event times of the first and last affected scans (inclusive).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from ingest import metrics
from ingest.config import SimulatorSettings
from ingest.encoding import MachineLayout
from ingest.exceptions import LabelWriteError
from ingest.signals import FaultEvent, PlantSignals, SensorSpec, fault_plan, sensor_specs
from ingest.tick_encoding import TickEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Machine:
    plant: str
    line: str
    machine_id: str


@dataclass(frozen=True)
class FaultLabel:
    plant: str
    line: str
    machine_id: str
    kind: str
    sensors: list[str]
    start_ms: int
    end_ms: int
    truncated: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass
class Tick:
    """One scan cycle: row i of each list (and of ``matrix``) belongs to machine i."""

    event_time: int
    matrix: npt.NDArray[np.float64]  # machines x sensors
    qualities: list[list[int] | None]
    lots: list[str]
    quality_matrix: npt.NDArray[np.int8] | None = None  # machines x sensors; None: all GOOD

    @cached_property
    def values(self) -> list[list[float]]:
        return self.matrix.tolist()  # type: ignore[no-any-return]


def plant_layout(plant: str, machines: int, per_line: int) -> list[Machine]:
    """Machines m001, m002, ... filling lines l1, l2, ... ``per_line`` at a time."""
    width = max(3, len(str(machines)))
    return [Machine(plant, f"l{i // per_line + 1}", f"m{i + 1:0{width}d}") for i in range(machines)]


class PlantSimulator:
    """Turns :class:`PlantSignals` steps into timestamped scans with lot ids and fault labels."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.machines = plant_layout(settings.plant, settings.machines, settings.machines_per_line)
        self.sensors: tuple[SensorSpec, ...] = sensor_specs(settings.sensors)
        self.signals = PlantSignals(
            settings.machines,
            self.sensors,
            settings.rate_hz,
            settings.seed,
            settings.fault_probability,
            settings.uncertain_probability,
            settings.bad_probability,
            **fault_plan([m.machine_id for m in self.machines], settings.quiet, settings.fault_schedule),
        )
        self._lot_index = [-1] * settings.machines
        self._lots = [""] * settings.machines
        self._open: dict[int, tuple[FaultEvent, int]] = {}
        self._finished: list[FaultLabel] = []
        self._last_time: int | None = None

    @property
    def sensor_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple((s.name, s.unit) for s in self.sensors)

    def tick(self, event_time: int) -> Tick:
        """Scan every machine once at ``event_time`` (epoch ms)."""
        step = self.signals.step()
        for ev in step.events:
            if ev.started:
                self._open[ev.machine] = (ev, event_time)
                metrics.FAULTS_INJECTED.labels(ev.kind.value).inc()
            else:
                self._close(ev.machine, self._last_time if self._last_time is not None else event_time)
        lots = (step.parts // self.settings.parts_per_lot).tolist()
        for i, lot in enumerate(lots):
            if lot != self._lot_index[i]:
                self._lot_index[i] = lot
                self._lots[i] = f"{self.machines[i].machine_id}-L{lot:06d}"
        qualities: list[list[int] | None] = [None] * len(self.machines)
        if step.qualities is not None:
            for i in step.qualities.any(axis=1).nonzero()[0].tolist():
                qualities[i] = step.qualities[i].tolist()
        self._last_time = event_time
        return Tick(event_time, step.values, qualities, list(self._lots), step.qualities)

    def _close(self, machine: int, end_ms: int, truncated: bool = False) -> None:
        ev, start_ms = self._open.pop(machine)
        m = self.machines[machine]
        self._finished.append(
            FaultLabel(
                m.plant, m.line, m.machine_id, ev.kind.value, list(ev.sensors), start_ms, end_ms, truncated
            )
        )

    def take_labels(self) -> list[FaultLabel]:
        """Labels of faults that ended since the last call."""
        out, self._finished = self._finished, []
        return out

    def finish(self) -> list[FaultLabel]:
        """End of run: faults still active are labelled as truncated at the last scan."""
        for machine in sorted(self._open):
            self._close(machine, self._last_time or 0, truncated=True)
        return self.take_labels()


class ScanSink(Protocol):
    """What the simulator sends scans to (the producer core)."""

    def machine(
        self, plant: str, line: str, machine_id: str, gateway_id: str, sensors: Any
    ) -> MachineLayout: ...

    def send_scan(
        self,
        m: MachineLayout,
        event_time: int,
        seq: int,
        lot_id: str | None,
        values: Any,
        qualities: Any = None,
    ) -> None: ...

    def tick_encoder(self, layouts: Sequence[MachineLayout]) -> TickEncoder: ...

    def send_scans(
        self,
        tick: TickEncoder,
        event_time: int,
        first_seq: int,
        lots: Sequence[str | None],
        values: Any,
        qualities: Any = None,
    ) -> None: ...

    def poll(self, timeout: float = 0.0) -> None: ...


POLL_INTERVAL_S = 0.5  # serve delivery reports and refresh metrics at least this often


@dataclass
class RunResult:
    scans: int = 0
    values: int = 0
    ticks: int = 0
    labels: int = 0
    duration_s: float = 0.0


class LabelWriter:
    """Appends fault labels to a JSONL file as they happen (flushed per line)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = path.open("w", encoding="utf-8")
            except OSError as exc:
                msg = f"cannot write fault labels to {path}: {exc}"
                raise LabelWriteError(msg) from exc

    def write(self, labels: list[FaultLabel]) -> int:
        if self._fh is not None and labels:
            try:
                self._fh.write("".join(label.to_json() + "\n" for label in labels))
                self._fh.flush()
            except OSError as exc:
                msg = f"cannot write fault labels to {self.path}: {exc}"
                raise LabelWriteError(msg) from exc
        return len(labels)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


METADATA_COLUMNS = ("plant", "line", "machine_id", "sensor", "unit", "lsl", "usl", "description")


def write_metadata(path: Path, machines: Sequence[Machine], sensors: Sequence[SensorSpec]) -> int:
    """The plant's machine/sensor metadata as a CSV for ``millstream metadata load``; returns the rows.

    Written to a hidden file moved into place, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("w", encoding="utf-8", newline="") as fh:
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(METADATA_COLUMNS)
            for m in machines:
                for s in sensors:
                    limits = ("" if v is None else repr(v) for v in (s.lsl, s.usl))
                    out.writerow((m.plant, m.line, m.machine_id, s.name, s.unit, *limits, s.description))
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        msg = f"cannot write the plant's metadata to {path}: {exc}"
        raise LabelWriteError(msg) from exc
    return len(machines) * len(sensors)


def run_simulation(
    sim: PlantSimulator, sink: ScanSink, stop: threading.Event | None = None, result: RunResult | None = None
) -> RunResult:
    """Scan the plant until ``stop`` is set, the duration has passed or ``max_scans`` are sent.

    ``result`` (if given) is updated as the run goes, so a caller still has the counts when
    sending raises.
    """
    s = sim.settings
    stop = stop or threading.Event()
    result = result if result is not None else RunResult()
    layouts = [
        sink.machine(m.plant, m.line, m.machine_id, s.gateway_id, sim.sensor_pairs) for m in sim.machines
    ]
    per_scan = len(sim.sensors)
    bulk = sink.tick_encoder(layouts)  # a whole scan cycle per call: the fast path
    period_s = 1.0 / s.rate_hz
    start_ms = s.start_ms if s.start_ms is not None else time.time_ns() // 1_000_000
    max_ticks = math.ceil(s.duration_s * s.rate_hz) if (s.fast and s.duration_s) else None
    if s.metadata_path is not None:
        write_metadata(s.metadata_path, sim.machines, sim.sensors)
    writer = LabelWriter(s.labels_path)
    t0 = last_poll = time.monotonic()
    seq = 0
    try:
        while not stop.is_set():
            k = result.ticks
            if s.fast:
                if max_ticks is not None and k >= max_ticks:
                    break
                event_time = start_ms + round(k * period_s * 1000.0)
            else:
                wait = t0 + k * period_s - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
                if s.duration_s is not None and time.monotonic() - t0 >= s.duration_s:
                    break
                event_time = time.time_ns() // 1_000_000
            tick = sim.tick(event_time)
            result.ticks += 1
            n = len(layouts)
            if s.max_scans is not None:
                n = min(n, s.max_scans - result.scans)
            if n == len(layouts):
                sink.send_scans(bulk, event_time, seq + 1, tick.lots, tick.matrix, tick.quality_matrix)
                seq += n
            else:  # the last, partial cycle of a --max-scans run
                for i in range(n):
                    seq += 1
                    lot, values, quality = tick.lots[i], tick.values[i], tick.qualities[i]
                    sink.send_scan(layouts[i], event_time, seq, lot, values, quality)
            result.scans += n
            result.values += n * per_scan
            metrics.SCANS.inc(n)
            if time.monotonic() - last_poll >= POLL_INTERVAL_S:  # slow plants would wait for poll_every
                sink.poll(0)
                last_poll = time.monotonic()
            result.labels += writer.write(sim.take_labels())
            if s.max_scans is not None and result.scans >= s.max_scans:
                break
        result.labels += writer.write(sim.finish())
    finally:
        writer.close()
        result.duration_s = round(time.monotonic() - t0, 3)
    logger.info(
        "simulated %d scans (%d values, %d fault labels) in %.1f s",
        result.scans,
        result.values,
        result.labels,
        result.duration_s,
    )
    return result
