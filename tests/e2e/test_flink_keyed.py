"""The per-machine logic of the Flink job (streams.flink.keyed), driven by a stand-in for Flink's
keyed state, timers and watermark, so its contract is checked in milliseconds without a cluster:

* windows close as soon as Flink's watermark + 1 passes their end (the event-time timers it asks
  for are the right ones), and the final windows equal the Faust job's PartitionProcessor's;
* the state it writes is complete: a fresh instance that reloads it mid-stream (a restore)
  continues exactly like the one that never stopped;
* a machine silent for MILLSTREAM_STREAM_STATE_TTL_MS is forgotten by its own timer: keyed state,
  cache entry and metric series go, nothing else changes, and if it comes back it starts afresh.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import pytest

from schemas.serde import Serde
from sinks.domain_metrics import CardinalityGuard, DomainMetrics
from streams.config import StreamSettings
from streams.flink.keyed import KeyExtractor, MachineProcessors
from streams.pipeline import Outputs, PartitionProcessor
from streams.spc.config import SpcSettings

OOO = 1000
STREAM = StreamSettings(
    window="tumbling:2s",
    out_of_orderness_ms=OOO,
    allowed_lateness_ms=1000,
    idle_timeout_ms=0,
    max_future_ms=0,
)
SPC = SpcSettings(phase1_count=5)
TOPIC = "readings"


class FakeFlink:
    """Keyed MapState + watermark ValueState + event-time timers, like the WindowsFunction uses them."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, str]] = defaultdict(dict)
        self.wm_state: dict[str, int] = {}
        self.timers: set[tuple[int, str]] = set()
        self.watermark = -(2**63)
        self.out: list[dict[str, Any]] = []
        self.spc: list[dict[str, Any]] = []
        self.anomalies: list[dict[str, Any]] = []

    def loader(self, machine: str) -> Any:
        return lambda: ({k: json.loads(v) for k, v in self.keys[machine].items()}, self.wm_state.get(machine))

    def apply(self, machine: str, out: Outputs, delta: Any) -> None:
        if delta.clear:  # a forgotten machine (MILLSTREAM_STREAM_STATE_TTL_MS)
            self.keys.pop(machine, None)
            self.wm_state.pop(machine, None)
        for k in delta.removes:
            self.keys[machine].pop(k, None)
        self.keys[machine].update(delta.puts)
        if delta.watermark is not None:
            self.wm_state[machine] = delta.watermark
        self.timers.difference_update((t, machine) for t in delta.cancel)
        self.timers.update((t, machine) for t in delta.timers)
        self.out.extend(out.windows)
        self.spc.extend(out.spc_signals)
        self.anomalies.extend(out.anomalies)

    def advance(self, mp: MachineProcessors, wm: int) -> None:
        """Flink: a new watermark fires every timer at or below it, in timestamp order."""
        self.watermark = max(self.watermark, wm)
        while True:
            due = sorted(t for t in self.timers if t[0] <= self.watermark)
            if not due:
                return
            ts, machine = due[0]
            self.timers.discard(due[0])
            self.apply(machine, *mp.on_event_timer(machine, ts, self.watermark, self.loader(machine)))


def _readings(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    t0 = 1_700_000_000_000
    rows = []
    for i in range(240):
        for m in ("m-1", "m-2", "m-3"):
            for s in ("temp", "vib"):
                rows.append((t0 + i * 250 + rng.randrange(0, 600), m, s, round(rng.gauss(50, 5), 6)))
    rows.sort(key=lambda r: r[0] + rng.randrange(-400, 400))  # out of order, within OOO
    out = []
    for ts, m, s, v in rows:
        out.append({"plant": "p", "line": "l", "machine_id": m, "sensor": s, "unit": "u", "event_time": ts,
                    "value": v, "quality": "GOOD", "gateway_id": "g", "seq": 0, "lot_id": None})  # fmt: skip
        if rng.random() < 0.03:  # a gateway retry
            out.append(dict(out[-1]))
    return out


def _run_flink(values: list[bytes], serde: Serde, restart_at: int | None = None) -> FakeFlink:
    flink = FakeFlink()
    extract = KeyExtractor(serde, TOPIC)
    mp = MachineProcessors(STREAM, SPC, serde, TOPIC)
    max_ts = -(2**63)
    for i, value in enumerate(values):
        if i == restart_at:
            mp = MachineProcessors(STREAM, SPC, serde, TOPIC)  # a restore: empty cache, state in "Flink"
        machine, dead = extract.machine_of(value)
        assert machine is not None and dead is None
        ts = serde.decode(value).record["event_time"]
        flink.apply(machine, *mp.on_record(machine, value, ts, flink.watermark, flink.loader(machine), 0))
        max_ts = max(max_ts, ts)
        flink.advance(mp, max_ts - OOO - 1)  # Flink's bounded-out-of-orderness watermark
        closable = {(w["machine_id"], w["sensor"], w["window_start"]) for w in flink.out}
        for machine_keys in flink.keys.values():
            for key, snap in machine_keys.items():
                op = json.loads(snap).get("op")  # anomaly models are stored without one
                for row in op["w"] if op else []:
                    m, s = key.split("\x1f")
                    assert not (row[3] and row[1] <= flink.watermark + 1), (
                        f"{m}/{s} [{row[0]}, {row[1]}) not closed"
                    )
                    assert row[3] or (m, s, row[0]) in closable
    flink.advance(mp, 2**63 - 1)  # end of input
    return flink


@pytest.fixture(scope="module")
def data() -> tuple[list[bytes], Serde]:
    serde = Serde()
    enc = serde.encoder("Reading", TOPIC)
    return [enc(r) for r in _readings(7)], serde


def _final(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    best: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in rows:
        k = (r["machine_id"], r["sensor"], r["window_start"])
        if k not in best or r["version"] >= best[k]["version"]:
            best[k] = r
    return {k: (r["count"], r["mean"], r["min"], r["max"], r["std"]) for k, r in best.items()}


def test_windows_close_on_time_and_equal_the_faust_processor(data: tuple[list[bytes], Serde]) -> None:
    values, serde = data
    flink = _run_flink(values, serde)
    ref = PartitionProcessor(STREAM, serde, 0, TOPIC, SPC)
    ref_out = Outputs()
    for i, v in enumerate(values):
        ref_out.extend(ref.handle(v, i, None, 0))
    ref_out.extend(ref.close_all())
    assert _final(flink.out) == _final(ref_out.windows)

    def signals(rows: list[dict[str, Any]]) -> list[str]:  # per-key order is the same; across keys not
        return sorted(
            json.dumps({k: v for k, v in r.items() if k != "emitted_at"}, sort_keys=True) for r in rows
        )

    assert signals(flink.spc) == signals(ref_out.spc_signals)
    assert len(ref_out.spc_signals) > 0
    assert signals(flink.anomalies) == signals(ref_out.anomalies)


def test_reloading_the_state_mid_stream_continues_identically(data: tuple[list[bytes], Serde]) -> None:
    values, serde = data
    straight = _run_flink(values, serde)
    restored = _run_flink(values, serde, restart_at=len(values) // 2)
    assert [
        (w["machine_id"], w["sensor"], w["window_start"], w["version"], w["count"], w["mean"])
        for w in restored.out
    ] == [
        (w["machine_id"], w["sensor"], w["window_start"], w["version"], w["count"], w["mean"])
        for w in straight.out
    ]
    assert [s["point_index"] for s in restored.spc] == [s["point_index"] for s in straight.spc]


def test_values_that_are_not_readings_become_dead_letters() -> None:
    serde = Serde()
    machine, dead = KeyExtractor(serde, TOPIC).machine_of(b"\x17\x00not avro at all")
    assert machine is None and dead is not None
    assert dead["reason_code"] == "decode_error" and dead["topic"] == TOPIC


# ---------------------------------------------------------------------------- MILLSTREAM_STREAM_STATE_TTL_MS
TTL_MS = 20_000
T0 = 1_700_000_000_000


def _fleet(serde: Serde) -> list[tuple[str, int, bytes]]:
    """(machine, event time, value): "live" reports for 100 s, "gone" for the first 12 s only, "back"
    for the first 12 s and again from 60 s (silent 48 s > TTL), its temperature shifted from 85 s."""
    rng = random.Random(11)
    enc = serde.encoder("Reading", TOPIC)
    rows = []
    for i in range(400):
        ts = T0 + i * 250
        for m in ("live", "gone", "back"):
            if m != "live" and 12_000 <= i * 250 < (60_000 if m == "back" else 10**9):
                continue
            for s in ("temp", "vib"):
                shift = 10.0 if (m == "back" and s == "temp" and i * 250 >= 85_000) else 0.0
                r = {"plant": "p", "line": "l", "machine_id": m, "sensor": s, "unit": "u", "event_time": ts,
                     "value": round(rng.gauss(50 + shift, 1), 6), "quality": "GOOD", "gateway_id": "g",
                     "seq": i, "lot_id": None}  # fmt: skip
                rows.append((m, ts, enc(r)))
    return rows


def _drive(
    ttl_ms: int, rows: list[tuple[str, int, bytes]], serde: Serde, restart_at: int | None = None
) -> tuple[FakeFlink, MachineProcessors, DomainMetrics]:
    """Like _run_flink, without the end of input (which closes and forgets everything)."""
    stream = STREAM.model_copy(update={"state_ttl_ms": ttl_ms})
    flink = FakeFlink()
    domain = DomainMetrics(CardinalityGuard(max_series=100))
    mp = MachineProcessors(stream, SPC, serde, TOPIC)
    mp.domain = domain
    for i, (machine, ts, value) in enumerate(rows):
        if i == restart_at:
            mp = MachineProcessors(stream, SPC, serde, TOPIC)  # a restore: empty cache, state in "Flink"
            mp.domain = domain
        flink.apply(machine, *mp.on_record(machine, value, ts, flink.watermark, flink.loader(machine), 0))
        flink.advance(mp, ts - OOO - 1)
    return flink, mp, domain


def _of(rows: list[dict[str, Any]], machine: str) -> list[str]:
    return [json.dumps({k: v for k, v in r.items() if k != "emitted_at"}, sort_keys=True)
            for r in rows if r["machine_id"] == machine]  # fmt: skip


def test_a_silent_machine_is_forgotten_by_its_timer_and_nothing_else_changes() -> None:
    serde = Serde()
    rows = _fleet(serde)
    flink, mp, domain = _drive(TTL_MS, rows, serde)
    kept, kept_mp, kept_domain = _drive(0, rows, serde)

    # "gone": keyed state, cache entry and metric series removed; "live" and "back" still there.
    assert set(m for m, keys in flink.keys.items() if keys) == {"live", "back"}
    assert set(flink.wm_state) == {"live", "back"} and set(mp._slots) == {"live", "back"}
    assert set(kept.keys) == set(kept_mp._slots) == {"live", "gone", "back"}
    assert not any("gone" in labels for seen in domain.guard._seen.values() for labels in seen)
    assert any("gone" in labels for seen in kept_domain.guard._seen.values() for labels in seen)
    # One expiry timer per silence, not one per record: "live" never had one.
    assert not [t for t, m in flink.timers if m == "live" and t > T0 + 100_000]

    # Results: identical for the machines that report, and for what "gone" produced before.
    for m in ("live", "gone"):
        assert _of(flink.out, m) == _of(kept.out, m) and _of(flink.spc, m) == _of(kept.spc, m)
    assert _of(flink.out, "back") == _of(kept.out, "back")  # windows do not depend on the past

    # "back" came back after the TTL: a new SPC phase I, as if it had never reported before.
    fresh, _, _ = _drive(TTL_MS, [r for r in rows if r[0] == "back" and r[1] >= T0 + 60_000], serde)
    assert _of(flink.spc, "back") == _of(fresh.spc, "back") != []
    assert _of(kept.spc, "back") != _of(fresh.spc, "back")  # kept, its old chart goes on


def test_a_forgotten_machine_stays_forgotten_across_a_restore() -> None:
    serde = Serde()
    rows = _fleet(serde)
    forget_done = next(i for i, r in enumerate(rows) if r[1] >= T0 + 40_000)  # "gone" forgotten by then
    straight, _, _ = _drive(TTL_MS, rows, serde)
    restored, mp, _ = _drive(TTL_MS, rows, serde, restart_at=forget_done)
    assert not restored.keys["gone"] and "gone" not in mp._slots
    for m in ("live", "gone", "back"):
        assert _of(restored.out, m) == _of(straight.out, m)
        assert _of(restored.spc, m) == _of(straight.spc, m)


def test_a_machine_reporting_rarely_has_one_expiry_timer() -> None:
    """Its windows are purged between its readings: each purge moves its expiry, the old timer goes."""
    serde = Serde()
    enc = serde.encoder("Reading", TOPIC)
    rows = []
    for i in range(100):  # "live" every second moves the watermark, "rare" reads every 10 s
        for m in ("rare", "live") if i % 10 == 0 else ("live",):
            ts = T0 + i * 1000
            r = {"plant": "p", "line": "l", "machine_id": m, "sensor": "temp", "unit": "u", "event_time": ts,
                 "value": 50.0 + i % 3, "quality": "GOOD", "gateway_id": "g", "seq": i,
                 "lot_id": None}  # fmt: skip
            rows.append((m, ts, enc(r)))
    ttl = 1_000_000  # its expiry timers are later than any window's
    flink, mp, _ = _drive(ttl, rows, serde)
    expiry = sorted(t for t, m in flink.timers if m == "rare" and t > T0 + 100_000)
    assert expiry == [T0 + 90_000 + ttl - 1]  # its newest reading + TTL, no earlier one left
    assert set(mp._slots) == {"rare", "live"} and flink.keys["rare"]
