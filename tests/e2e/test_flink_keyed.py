"""The per-machine logic of the Flink job (streams.flink.keyed), driven by a stand-in for Flink's
keyed state, timers and watermark, so its contract is checked in milliseconds without a cluster:

* windows close as soon as Flink's watermark + 1 passes their end (the event-time timers it asks
  for are the right ones), and the final windows equal the Faust job's PartitionProcessor's;
* the state it writes is complete: a fresh instance that reloads it mid-stream (a restore)
  continues exactly like the one that never stopped.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import pytest

from schemas.serde import Serde
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
        for k in delta.removes:
            self.keys[machine].pop(k, None)
        self.keys[machine].update(delta.puts)
        if delta.watermark is not None:
            self.wm_state[machine] = delta.watermark
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
