"""The bulk (one scan cycle per call) encoder writes exactly the bytes of the per-scan encoder, and
those decode to the scans that were sent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.encoding import ScanEncoder
from ingest.tick_encoding import TickEncoder, _same_length_range
from schemas.config import SerdeSettings
from schemas.exceptions import EncodeError
from schemas.serde import Serde

SENSORS = [("vibration_rms", "mm/s"), ("temperature", "degC"), ("pressure", "bar")]
MACHINES = ["m001", "m002", "machine-with-a-long-name-0003"]

# Varint lengths change at zig-zag 2**7, 2**14, 2**21 ...: seq s has zig-zag 2s, so at s = 64, 8192, ...
SEQ_EDGES = [0, 1, 60, 62, 63, 64, 8188, 8190, 8191, 8192, 1_048_575, 2**62 - 3]
TIME_EDGES = [0, 63, 64, -64, -65, 8191, 8192, 1_700_000_000_000, -1_700_000_000_000, 2**62 - 1]

cycle = st.tuples(
    st.one_of(st.sampled_from(TIME_EDGES), st.integers(-(2**62), 2**62)),  # event time
    st.one_of(st.sampled_from(SEQ_EDGES), st.integers(0, 2**40)),  # first seq
    st.lists(st.sampled_from(["L1", "L2", "lot-Ä", None]), min_size=3, max_size=3),  # lots
    st.lists(st.floats(allow_nan=False), min_size=9, max_size=9),  # values
    st.lists(
        st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=3, max_size=3)), min_size=3, max_size=3
    ),
)


def layouts(enc: ScanEncoder) -> list:
    return [enc.machine("p1", "l1", m, "gw-7", SENSORS) for m in MACHINES]


@settings(max_examples=150, deadline=None)
@given(st.lists(cycle, min_size=1, max_size=12))
def test_bulk_bytes_equal_per_scan_bytes(cycles: list) -> None:
    serde = Serde()
    bulk_enc, matrix_enc, ref_enc = ScanEncoder(serde, "t"), ScanEncoder(serde, "t"), ScanEncoder(serde, "t")
    tick = TickEncoder(bulk_enc, layouts(bulk_enc))
    tick_m = TickEncoder(matrix_enc, layouts(matrix_enc))  # qualities as one matrix, as the simulator sends
    ref = layouts(ref_enc)
    for et, seq, lots, flat, quals in cycles:
        values = np.array(flat).reshape(3, 3)
        got = tick.encode(et, seq, lots, values, quals)
        matrix = np.array([q if q is not None else [0, 0, 0] for q in quals], np.int8)
        assert tick_m.encode(et, seq, lots, values, matrix if matrix.any() else None) == got
        want = [
            ref_enc.encode_scan(m, et, seq + i, lots[i], values[i].tolist(), quals[i])
            for i, m in enumerate(ref)
        ]
        assert got == want


def test_bulk_messages_decode_to_the_scans() -> None:
    serde = Serde()
    enc = ScanEncoder(serde, "t")
    tick = TickEncoder(enc, layouts(enc))
    values = np.arange(9, dtype=float).reshape(3, 3) / 7
    for k in range(3):  # the second and third cycles reuse the template
        msgs = tick.encode(1_700_000_000_000 + 1000 * k, 100 + 3 * k, ["A", "B", None], values + k, None)
        for i, raw in enumerate(msgs):
            rec = serde.decode(raw).record
            assert rec["machine_id"] == MACHINES[i]
            assert rec["event_time"] == 1_700_000_000_000 + 1000 * k
            assert rec["seq"] == 100 + 3 * k + i
            assert rec["lot_id"] == ["A", "B", None][i]
            assert [v["value"] for v in rec["values"]] == (values[i] + k).tolist()
            assert {v["quality"] for v in rec["values"]} == {"GOOD"}
    assert tick.rebuilds == 1


def test_template_is_rebuilt_only_when_something_constant_changes() -> None:
    enc = ScanEncoder(Serde(), "t")
    tick = TickEncoder(enc, layouts(enc))
    v = np.zeros((3, 3))
    tick.encode(1_700_000_000_000, 100, ["A", "B", "C"], v)
    tick.encode(1_700_000_001_000, 103, ["A", "B", "C"], v)
    assert tick.rebuilds == 1
    tick.encode(1_700_000_002_000, 106, ["A", "B2", "C"], v)  # a lot changed
    assert tick.rebuilds == 2
    tick.encode(1_700_000_003_000, 8192, ["A", "B2", "C"], v)  # seq varint grew a byte
    assert tick.rebuilds == 3


@pytest.mark.parametrize("n", [0, 1, 63, 64, 8191, 8192, 2**40, -1, -64, -65, -8192, -8193, -(2**40)])
def test_same_length_range_is_exactly_the_integers_of_that_varint_length(n: int) -> None:
    from ingest.encoding import encode_long

    length = len(encode_long(n))
    lo, hi = _same_length_range(n, length)
    assert lo <= n < hi
    assert len(encode_long(lo)) == length and len(encode_long(hi - 1)) == length
    # Just outside: a different length, or the other sign (the range never spans zero).
    assert len(encode_long(lo - 1)) != length or (lo - 1 < 0) != (n < 0)
    assert len(encode_long(hi)) != length or (hi < 0) != (n < 0)


def test_registry_framing_falls_back_to_the_per_scan_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    # confluent-kafka's in-memory registry (mock:// URL) in place of a server: none can run offline.
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from schemas import serde as serde_module

    client = SchemaRegistryClient.new_client({"url": "mock://millstream-tick-tests"})
    monkeypatch.setattr(serde_module, "_registry_client", lambda _settings: client)
    serde = Serde(SerdeSettings(schema_registry_url="mock://millstream-tick-tests"))
    enc = ScanEncoder(serde, "t")
    assert not enc.fast
    tick = TickEncoder(enc, layouts(enc))
    values = np.ones((3, 3))
    got = tick.encode(1_700_000_000_000, 1, ["A", "B", "C"], values)
    assert all(m[0] == 0 for m in got)  # Confluent framing: magic byte 0 + schema id
    assert [serde.decode(m).record["seq"] for m in got] == [1, 2, 3]
    assert tick.rebuilds == 0


def test_bad_quality_codes_are_refused() -> None:
    enc = ScanEncoder(Serde(), "t")
    tick = TickEncoder(enc, layouts(enc))
    for bad in (3, -1):
        q = np.zeros((3, 3), np.int8)
        q[1, 2] = bad
        with pytest.raises(EncodeError, match="GOOD"):
            tick.encode(1_700_000_000_000, 1, ["A", "B", "C"], np.zeros((3, 3)), q)


def test_wrong_shapes_are_refused_with_a_clear_error() -> None:
    enc = ScanEncoder(Serde(), "t")
    tick = TickEncoder(enc, layouts(enc))
    with pytest.raises(EncodeError, match="3 machines"):
        tick.encode(1_700_000_000_000, 1, ["A", "B"], np.zeros((2, 3)))
    with pytest.raises(EncodeError):
        tick.encode(1_700_000_000_000, 1, ["A", "B", "C"], np.zeros((3, 2)))
