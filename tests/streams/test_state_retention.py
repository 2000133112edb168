"""State of machines that stopped reporting: over months thousands of machine ids pass through a stream
job (decommissioned, renamed, replaced). What a silent machine costs must not grow with time."""

from __future__ import annotations

import json
from typing import Any

from schemas.config import TopicSettings
from schemas.serde import Serde
from sinks.domain_metrics import CardinalityGuard, DomainMetrics
from streams.config import StreamSettings
from streams.pipeline import ANOMALY_PREFIX, KEY_SEP, Outputs, PartitionProcessor
from streams.spc.config import SpcSettings

TOPIC = TopicSettings().topic_readings
T0 = 1_700_000_000_000
SENSORS = ("temperature", "pressure")


class Plant:
    """Scans of machines through one processor, as the readings topic carries them."""

    def __init__(self, proc: PartitionProcessor) -> None:
        self.proc = proc
        self.encode = Serde().encoder("MachineScan", TOPIC)
        self.offset = 0

    def scan(self, machine: str, ts: int, sensors: tuple[str, ...] = SENSORS) -> Outputs:
        value = 50.0 + (self.offset % 7) * 0.1
        record = {
            "plant": "p1", "line": "l1", "machine_id": machine, "event_time": ts, "gateway_id": "gw",
            "seq": self.offset, "lot_id": None,
            "values": [{"sensor": s, "unit": "u", "value": value, "quality": "GOOD"} for s in sensors],
        }  # fmt: skip
        self.offset += 1
        return self.proc.handle(self.encode(record), self.offset - 1, machine.encode(), wall_ms=ts)


def test_a_silent_machines_anomaly_model_is_not_written_again() -> None:
    """Its checkpoint is current: writing it every checkpoint interval (10 s) for every machine ever
    seen made the changelog traffic and the job's CPU grow with the fleet's history."""
    proc = PartitionProcessor(
        StreamSettings(window="tumbling:10s", idle_timeout_ms=0), Serde(), 0, TOPIC, SpcSettings(),
        anomaly_checkpoint_ms=0,
    )  # fmt: skip
    plant = Plant(proc)
    for k in range(3):
        plant.scan("retired", T0 + 1000 * k)
        plant.scan("live", T0 + 1000 * k)
    first = {k for k in proc.dirty_state() if k.startswith(ANOMALY_PREFIX)}
    assert first == {ANOMALY_PREFIX + "retired", ANOMALY_PREFIX + "live"}
    plant.scan("live", T0 + 5000)
    again = {k for k in proc.dirty_state() if k.startswith(ANOMALY_PREFIX)}
    assert again == {ANOMALY_PREFIX + "live"}
    assert not {k for k in proc.dirty_state() if k.startswith(ANOMALY_PREFIX)}  # nothing learnt since


def processor(ttl_ms: int, domain: DomainMetrics | None = None) -> PartitionProcessor:
    stream = StreamSettings(window="tumbling:10s", idle_timeout_ms=0, state_ttl_ms=ttl_ms)
    spc = SpcSettings(phase1_count=5)
    return PartitionProcessor(stream, Serde(), 0, TOPIC, spc, anomaly_checkpoint_ms=0, domain=domain)


def run(plant: Plant, seconds: range, machines: tuple[str, ...] = ("live",)) -> Outputs:
    out = Outputs()
    for s in seconds:
        for m in machines:
            out.extend(plant.proc.on_idle(T0 + 1000 * s))
            out.extend(plant.scan(m, T0 + 1000 * s))
    return out


def store(state: dict[str, Any], changed: dict[str, Any]) -> None:
    """Apply a checkpoint as a compacted changelog would: None deletes the key."""
    for k, v in changed.items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = json.loads(json.dumps(v))


def machines_in(state: dict[str, Any]) -> set[str]:
    return {k.removeprefix(ANOMALY_PREFIX).split(KEY_SEP, 1)[0] for k in state}


def outputs_of(out: Outputs, machine: str) -> list[Any]:
    rows = (*out.windows, *out.spc_signals, *out.anomalies)
    return [r for r in rows if r["machine_id"] == machine]


def test_a_machine_silent_past_the_ttl_is_forgotten_and_deleted_from_the_changelog() -> None:
    domain = DomainMetrics(CardinalityGuard(max_series=100))
    proc = processor(60_000, domain)
    plant = Plant(proc)
    state: dict[str, Any] = {}
    out = run(plant, range(3), ("retired", "live"))
    store(state, proc.dirty_state())
    assert machines_in(state) == {"retired", "live"}
    assert ("p1", "l1", "retired") in domain.guard._seen["millstream_last_reading_timestamp_seconds"]
    out.extend(run(plant, range(3, 90)))
    store(state, proc.dirty_state())

    assert machines_in(state) == {"live"}  # keys deleted: a restart does not bring the machine back
    assert proc.machine_ids() == {"live"}
    assert set(proc.spc.monitors) == {("live", s) for s in SENSORS}
    assert not any("retired" in labels for seen in domain.guard._seen.values() for labels in seen)
    assert not [m for m in (proc._seen, proc._anomaly_last_ts, proc._anomaly_saved) if "retired" in m]

    # Nothing it produced before, and nothing the live machine produces, differs from keeping it.
    keep = Plant(processor(0))
    kept = run(keep, range(3), ("retired", "live"))
    kept.extend(run(keep, range(3, 90)))
    assert {w["machine_id"] for w in out.windows} == {"retired", "live"} and out.spc_signals
    for machine in ("retired", "live"):
        assert outputs_of(out, machine) == outputs_of(kept, machine)
    assert "retired" in keep.proc.machine_ids()


def test_the_silence_is_counted_across_a_restart() -> None:
    """The newest reading's time travels with the state: a job restarted more often than the TTL
    still forgets a silent machine."""
    first = processor(60_000)
    plant = Plant(first)
    state: dict[str, Any] = {}
    run(plant, range(3), ("retired", "live"))
    run(plant, range(3, 40))
    store(state, first.dirty_state())
    meta = first.meta_state()

    second = processor(60_000)
    second.restore(dict(state), meta)
    assert "retired" in second.machine_ids()
    plant.proc = second
    run(plant, range(40, 70))
    store(state, second.dirty_state())
    assert machines_in(state) == {"live"}
    assert second.machine_ids() == {"live"}


def test_a_machine_back_after_being_forgotten_starts_afresh() -> None:
    proc = processor(30_000)
    plant = Plant(proc)
    state: dict[str, Any] = {}
    run(plant, range(3), ("back", "live"))
    run(plant, range(3, 60))
    store(state, proc.dirty_state())
    assert "back" not in proc.machine_ids()
    out = run(plant, range(60, 75), ("back", "live"))
    store(state, proc.dirty_state())
    assert machines_in(state) == {"back", "live"}
    assert proc.anomaly["back"].count == 15
    assert {w["window_start"] for w in outputs_of(out, "back") if "window_kind" in w} == {T0 + 60_000}


def test_a_renamed_sensor_of_a_machine_that_goes_on_reporting_is_forgotten() -> None:
    proc = processor(30_000)
    plant = Plant(proc)
    state: dict[str, Any] = {}
    for s in range(3):
        plant.scan("m1", T0 + 1000 * s)
    store(state, proc.dirty_state())
    for s in range(3, 60):
        plant.scan("m1", T0 + 1000 * s, ("temperature", "pressure_bar"))
    store(state, proc.dirty_state())
    assert set(state) == {ANOMALY_PREFIX + "m1", f"m1{KEY_SEP}temperature", f"m1{KEY_SEP}pressure_bar"}
    assert set(proc.spc.monitors) == {("m1", "temperature"), ("m1", "pressure_bar")}
    assert "m1" in proc.anomaly  # the machine reports: its models stay
