"""Record factories and a realistic plant dataset for the ClickHouse tests.

``plant_data(now_ms)`` simulates a small plant with the project's own signal generator
(ingest.signals.PlantSignals, 1 Hz), computes 1-minute tumbling windows from the readings with
numpy, runs the project's SPC operator over the windows, and adds what an analyst should find:
a data gap, a machine that went silent, late window updates, anomaly incidents, alerts and dead
letters. ``load_plant`` writes it all through the sink's own writer (and metadata loader).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000


def spc_signal(**overrides: Any) -> dict[str, Any]:
    """A valid SpcSignal record (schema millstream.SpcSignal v1)."""
    rec: dict[str, Any] = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m1",
        "sensor": "temperature",
        "chart": "i",
        "rule": "WE1",
        "point_index": 30,
        "value": 75.5,
        "center": 62.0,
        "lcl": 55.0,
        "ucl": 69.0,
        "window_start": T0,
        "window_end": T0 + MINUTE,
        "emitted_at": T0 + MINUTE + 500,
    }
    rec.update(overrides)
    return rec


def anomaly(**overrides: Any) -> dict[str, Any]:
    """A valid AnomalyEvent record (schema millstream.AnomalyEvent v1)."""
    rec: dict[str, Any] = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m1",
        "sensor": "vibration_rms",
        "state": "open",
        "event_time": T0 + 5_000,
        "started_at": T0 + 5_000,
        "score": 0.93,
        "threshold": 0.8,
        "model_id": "hst-v1",
        "features": {"value.vibration_rms": 7.5, "score.vibration_rms": 0.93},
        "emitted_at": T0 + 5_400,
    }
    rec.update(overrides)
    return rec


def reading(**overrides: Any) -> dict[str, Any]:
    """A valid Reading record (schema millstream.Reading v1)."""
    rec: dict[str, Any] = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m1",
        "sensor": "temperature",
        "unit": "Cel",
        "event_time": T0,
        "value": 61.25,
        "quality": "GOOD",
        "gateway_id": "gw-1",
        "seq": 1,
        "lot_id": None,
    }
    rec.update(overrides)
    return rec


def window_stats(
    ts: np.ndarray[Any, Any], values: np.ndarray[Any, Any], start: int, end: int
) -> dict[str, Any]:
    """The WindowAggregate statistics of the readings in [start, end), computed with numpy."""
    n = len(values)
    slope = float(np.polyfit((ts - ts[0]) / 1000, values, 1)[0]) if n >= 2 else None
    return {
        "window_kind": "tumbling",
        "window_start": start,
        "window_end": end,
        "count": n,
        "sum": float(values.sum()),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "std": float(values.std(ddof=1)) if n >= 2 else 0.0,
        "first_ts": int(ts[0]),
        "last_ts": int(ts[-1]),
        "first": float(values[0]),
        "last": float(values[-1]),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
        "slope": slope,
        "version": 0,
        "emitted_at": end + 700,
    }


@dataclass
class Series:
    plant: str
    line: str
    machine_id: str
    sensor: str
    unit: str
    ts: np.ndarray[Any, Any]
    values: np.ndarray[Any, Any]


@dataclass
class PlantData:
    now_ms: int
    series: list[Series]
    windows: list[dict[str, Any]] = field(default_factory=list)
    late_updates: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    machines_csv: str = ""
    alerts_payload: bytes = b""
    gap: tuple[str, str, int, int] = ("", "", 0, 0)  # machine, sensor, first missing ms, end ms
    silent: str = ""  # machine without data for the last SILENT_MIN minutes


SENSORS = (
    ("vibration_rms", "mm/s", 0.0, 6.0),
    ("temperature", "Cel", 20.0, 80.0),
    ("pressure", "bar", 4.5, 7.5),
)
SILENT_MIN = 30


def plant_data(now_ms: int, hours: int = 3, machines: int = 4, seed: int = 11) -> PlantData:
    """A plant of ``machines`` machines x 3 sensors at 1 Hz for ``hours`` up to ``now_ms``."""
    from ingest.signals import PlantSignals, SensorSpec

    end = now_ms // MINUTE * MINUTE - MINUTE  # last closed minute
    start = end - hours * 3_600_000
    sig = PlantSignals(machines, [SensorSpec(n, u) for n, u, _, _ in SENSORS], 1.0, seed, 0.0, 0.0, 0.0)
    ticks = (end - start) // 1000
    values = np.array([sig.step().values for _ in range(ticks)])  # (ticks, machines, sensors)
    ts = start + np.arange(ticks, dtype=np.int64) * 1000
    ids = [f"m{i + 1:03d}" for i in range(machines)]
    shift_from = end - 40 * MINUTE  # m001 temperature runs 8 degrees hot from here (a fault)
    values[ts >= shift_from, 0, 1] += 8.0
    data = PlantData(now_ms, [])
    gap_machine, gap_sensor = ids[1], "pressure"
    gap_start, gap_end = start + 60 * MINUTE, start + 70 * MINUTE
    silent_from = end - SILENT_MIN * MINUTE
    data.gap, data.silent = (gap_machine, gap_sensor, gap_start, gap_end), ids[-1]
    for m, machine in enumerate(ids):
        line = f"l{m // 2 + 1}"
        for s, (sensor, unit, _, _) in enumerate(SENSORS):
            keep = np.ones(ticks, dtype=bool)
            if (machine, sensor) == (gap_machine, gap_sensor):
                keep &= (ts < gap_start) | (ts >= gap_end)
            if machine == data.silent:
                keep &= ts < silent_from
            series = Series("p1", line, machine, sensor, unit, ts[keep], values[keep, m, s])
            data.series.append(series)
            data.windows += _windows(series)
    data.late_updates = _late_updates(data.windows)
    data.readings = _readings(data.series, since=end - 20 * MINUTE)
    data.signals = _spc(data.windows)
    data.anomalies = _anomalies(ids, shift_from, end)
    data.dead_letters = _dead_letters(end)
    data.machines_csv = _machines_csv(ids)
    data.alerts_payload = alert_payload(end, fired_before=True)
    return data


def _windows(s: Series) -> list[dict[str, Any]]:
    out = []
    minute = s.ts // MINUTE
    for w in np.unique(minute):
        sel = minute == w
        stats = window_stats(s.ts[sel], s.values[sel], int(w) * MINUTE, int(w + 1) * MINUTE)
        out.append({"plant": s.plant, "line": s.line, "machine_id": s.machine_id, "sensor": s.sensor,
                    "unit": s.unit, **stats})  # fmt: skip
    return out


def _late_updates(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Version 1 of five m003 vibration windows: a late reading raised their maximum and mean."""
    picked = [w for w in windows if w["machine_id"] == "m003" and w["sensor"] == "vibration_rms"][10:15]
    out = []
    for w in picked:
        n = w["count"] + 1
        late = w["max"] + 1.0
        out.append({**w, "count": n, "sum": w["sum"] + late, "mean": (w["sum"] + late) / n,
                    "max": late, "version": 1, "emitted_at": w["emitted_at"] + 3_000})  # fmt: skip
    return out


def _readings(series: list[Series], since: int) -> list[dict[str, Any]]:
    out = []
    for s in series:
        for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True):
            if t >= since:
                where = {"plant": s.plant, "line": s.line, "machine_id": s.machine_id, "sensor": s.sensor}
                out.append(reading(**where, unit=s.unit, event_time=t, value=v, seq=t // 1000))
    return out


def _spc(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SPC signals of the project's own operator over the windows (as the stream job emits them)."""
    from streams.pipeline import PartitionProcessor
    from streams.spc.config import SpcSettings
    from streams.spc.operator import SpcOperator

    op = SpcOperator(SpcSettings().monitor_config())
    out = []
    for w in sorted(windows, key=lambda w: (w["window_start"], w["machine_id"], w["sensor"])):
        for sig in op.process_window(w):
            out.append(PartitionProcessor.signal_record(sig, w, w["emitted_at"]))
    return out


def _anomalies(ids: list[str], shift_from: int, end: int) -> list[dict[str, Any]]:
    closed_at = shift_from + 20 * MINUTE
    earlier = end - 150 * MINUTE
    events = [
        anomaly(machine_id=ids[0], sensor="temperature", state="open", started_at=shift_from,
                event_time=shift_from, score=0.91, threshold=0.8, emitted_at=shift_from + 400),
        anomaly(machine_id=ids[0], sensor="temperature", state="close", started_at=shift_from,
                event_time=closed_at, score=0.99, threshold=0.8, emitted_at=closed_at + 400),
        anomaly(machine_id=ids[1], sensor="machine", state="open", started_at=earlier, event_time=earlier,
                score=0.84, threshold=0.8, emitted_at=earlier + 400),
        anomaly(machine_id=ids[1], sensor="machine", state="close", started_at=earlier,
                event_time=earlier + 4 * MINUTE, score=0.87, threshold=0.8,
                emitted_at=earlier + 4 * MINUTE + 400),
        anomaly(machine_id=ids[2], sensor="vibration_rms", state="open", started_at=end - 5 * MINUTE,
                event_time=end - 5 * MINUTE, score=0.95, threshold=0.8, emitted_at=end - 5 * MINUTE + 400),
    ]  # fmt: skip
    line = {m: f"l{i // 2 + 1}" for i, m in enumerate(ids)}
    return [{**e, "line": line[e["machine_id"]]} for e in events]


def _dead_letters(end: int) -> list[dict[str, Any]]:
    return [
        {"stage": "windows", "topic": "millstream.readings.v1", "partition": p, "offset": 100 + p,
         "key": b"m001", "payload": b"\x00\x01", "reason_code": code, "reason": f"{code} example",
         "failed_at": end - p * MINUTE}
        for p, code in enumerate(("too_late", "decode_error", "invalid_record"))
    ]  # fmt: skip


def _machines_csv(ids: list[str]) -> str:
    rows = ["plant,line,machine_id,sensor,unit,lsl,usl,description"]
    for i, machine in enumerate(ids):
        for sensor, unit, lsl, usl in SENSORS:
            rows.append(f'p1,l{i // 2 + 1},{machine},{sensor},{unit},{lsl},{usl},"{sensor} of press {i + 1}"')
    rows.append('p1,l3,m099,temperature,Cel,20,80,"commissioned, no data yet"')
    return "\n".join(rows) + "\n"


def _rfc3339(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def alert_payload(end: int, fired_before: bool = False) -> bytes:
    """An Alertmanager webhook notification in format version 4, as documented at
    https://prometheus.io/docs/alerting/latest/configuration/#webhook_config (fields and layout).
    ``fired_before``: MillstreamSinkLagging also fired and resolved two hours earlier (the same
    alert, so the same fingerprint, with another startsAt)."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "MillstreamSinkLagging", "severity": "warning", "job": "millstream"},
            "annotations": {"summary": "The sink is 12000 records behind", "runbook_url": "docs/runbook.md"},
            "startsAt": _rfc3339(end - 10 * MINUTE),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=lag",
            "fingerprint": "3f2a9c0d1b7e4a55",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "MillstreamDeadLetters", "severity": "critical", "job": "millstream"},
            "annotations": {"summary": "Dead letters are being written"},
            "startsAt": _rfc3339(end - 60 * MINUTE),
            "endsAt": _rfc3339(end - 45 * MINUTE),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=dl",
            "fingerprint": "9b1d7e2f00c4a6b3",
        },
    ]
    if fired_before:
        alerts.append({**alerts[0], "status": "resolved", "startsAt": _rfc3339(end - 130 * MINUTE),
                       "endsAt": _rfc3339(end - 120 * MINUTE)})  # fmt: skip
    payload = {
        "version": "4",
        "groupKey": '{}:{job="millstream"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "millstream-history",
        "groupLabels": {"job": "millstream"},
        "commonLabels": {"job": "millstream"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }
    return json.dumps(payload).encode()


def load_plant(client: Any, settings: Any, data: PlantData, tmp: Path) -> None:
    """Write the dataset through the sink's writer, metadata loader and alert receiver."""
    from sinks.alerts import AlertReceiver
    from sinks.metadata import load
    from sinks.tables import ANOMALIES, DEAD_LETTERS, READINGS, SPC_SIGNALS, WINDOW_AGGREGATES, Source
    from sinks.writer import BatchWriter

    writer = BatchWriter(client, settings)
    offset = 0
    for table, records in [
        (WINDOW_AGGREGATES, data.windows),
        (WINDOW_AGGREGATES, data.late_updates),
        (READINGS, data.readings),
        (SPC_SIGNALS, data.signals),
        (ANOMALIES, data.anomalies),
        (DEAD_LETTERS, data.dead_letters),
    ]:
        for record in records:
            offset += 1
            assert writer.add(table, record, Source(table.name, 0, offset, None, b"%d" % offset)), record
        writer.flush()
    csv_file = tmp / "machines.csv"
    csv_file.write_text(data.machines_csv)
    load(client, csv_file)
    AlertReceiver(client, settings).receive(data.alerts_payload)
