"""The fast MachineScan encoder writes exactly the bytes of the generic (fastavro) encoder."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.encoding import QUALITIES, ScanEncoder, encode_long, has_scan_layout, varint
from schemas.exceptions import EncodeError
from schemas.registry import SCHEMA_DIR, SchemaSet
from schemas.serde import Serde

TOPIC = "readings"
SERDE = Serde()
GENERIC = SERDE.encoder("MachineScan", TOPIC)

longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Event times and sequence numbers as gateways produce them, plus the whole long range.
times = st.one_of(longs, st.integers(min_value=0, max_value=4_102_444_800_000))
doubles = st.floats(allow_nan=True, allow_infinity=True)
values = st.fixed_dictionaries(
    {
        "sensor": st.text(max_size=20),
        "unit": st.text(max_size=6),
        "value": doubles,
        "quality": st.sampled_from(QUALITIES),
    }
)
scans = st.fixed_dictionaries(
    {
        "plant": st.text(max_size=10),
        "line": st.text(max_size=10),
        "machine_id": st.text(max_size=12),
        "event_time": times,
        "gateway_id": st.text(max_size=10),
        "seq": times,
        "lot_id": st.none() | st.text(max_size=16),
        "values": st.lists(values, max_size=12),
    }
)


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (decoded doubles)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(scans)
def test_dict_path_matches_fastavro_and_decodes(record: dict[str, Any]) -> None:
    enc = ScanEncoder(SERDE, TOPIC)
    assert enc.fast
    fast = enc.encode(record)
    assert fast == GENERIC(record)
    decoded = SERDE.decode(fast)
    assert decoded.name == "millstream.MachineScan"
    assert _same(decoded.record, record)


@settings(max_examples=200, deadline=None)
@given(
    sensors=st.lists(st.tuples(st.text(max_size=15), st.text(max_size=5)), min_size=0, max_size=10),
    data=st.data(),
)
def test_layout_path_matches_fastavro_over_a_stream(sensors: list[tuple[str, str]], data: Any) -> None:
    """Several scans through one layout: the per-machine caches (lot, seq, event time) stay correct."""
    enc = ScanEncoder(SERDE, TOPIC)
    m = enc.machine("p1", "l2", "m007", "gw-x", sensors)
    n = len(sensors)
    for _ in range(data.draw(st.integers(1, 6))):
        vals = data.draw(st.lists(doubles, min_size=n, max_size=n))
        quals = data.draw(st.none() | st.lists(st.integers(0, 2), min_size=n, max_size=n))
        lot = data.draw(st.sampled_from([None, "lot-1", "lot-2"]))
        et, seq = data.draw(times), data.draw(times)
        record = {
            "plant": "p1",
            "line": "l2",
            "machine_id": "m007",
            "event_time": et,
            "gateway_id": "gw-x",
            "seq": seq,
            "lot_id": lot,
            "values": [
                {"sensor": s, "unit": u, "value": v, "quality": QUALITIES[q]}
                for (s, u), v, q in zip(sensors, vals, quals or [0] * n, strict=True)
            ],
        }
        assert enc.encode_scan(m, et, seq, lot, vals, quals) == GENERIC(record)


def test_varints_match_the_avro_specification_examples() -> None:
    # Avro 1.11 specification, "Binary Encoding", zig-zag table: 0->00, -1->01, 1->02, -2->03, 2->04,
    # -64->7f, 64->80 01.
    expected = {0: b"\x00", -1: b"\x01", 1: b"\x02", -2: b"\x03", 2: b"\x04", -64: b"\x7f", 64: b"\x80\x01"}
    for n, b in expected.items():
        assert encode_long(n) == b
    assert varint(300) == b"\xac\x02"  # the protobuf/LEB128 textbook example (protobuf encoding guide)
    with pytest.raises(OverflowError):
        encode_long(2**63)


def test_invalid_records_raise_encode_error_like_the_generic_encoder() -> None:
    enc = ScanEncoder(SERDE, TOPIC)
    good = {
        "plant": "p",
        "line": "l",
        "machine_id": "m",
        "event_time": 1,
        "gateway_id": "g",
        "seq": 1,
        "lot_id": None,
        "values": [{"sensor": "s", "unit": "u", "value": 1.0, "quality": "GOOD"}],
    }
    broken = [
        {**good, "plant": 5},
        {**good, "event_time": "soon"},
        {**good, "seq": 2**63},
        {**good, "values": [{"sensor": "s", "unit": "u", "value": "x", "quality": "GOOD"}]},
        {**good, "values": [{"sensor": "s", "unit": "u", "value": 1.0, "quality": "FINE"}]},
        {k: v for k, v in good.items() if k != "machine_id"},
    ]
    for record in broken:
        # Serde lets fastavro's OverflowError through for an out-of-range long (reported to the lead).
        with pytest.raises((EncodeError, OverflowError)):
            GENERIC(record)
        with pytest.raises(EncodeError):
            enc.encode(record)
    m = enc.machine("p", "l", "m", "g", [("s", "u")])
    with pytest.raises(EncodeError):
        enc.encode_scan(m, 1, 1, None, [1.0, 2.0])  # two values for one sensor
    with pytest.raises(EncodeError):
        enc.encode_scan(m, 1, 1, None, [1.0], [3])  # no such quality


def test_changed_schema_shape_falls_back_to_the_generic_encoder(tmp_path: Path) -> None:
    """A MachineScan whose layout differs from what the fast path writes must not be fast-encoded."""
    for f in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(f, tmp_path / f.name)
    raw = json.loads((SCHEMA_DIR / "machine_scan.v1.avsc").read_text())
    assert has_scan_layout(raw)
    raw["fields"][0], raw["fields"][1] = raw["fields"][1], raw["fields"][0]  # line before plant
    (tmp_path / "machine_scan.v1.avsc").write_text(json.dumps(raw))
    assert not has_scan_layout(raw)
    serde = Serde(schemas=SchemaSet(tmp_path))
    enc = ScanEncoder(serde, TOPIC)
    assert not enc.fast
    m = enc.machine("p1", "l1", "m001", "g", [("temperature", "Cel")])
    data = enc.encode_scan(m, 1_700_000_000_000, 9, "lot", [21.5], None)
    record = serde.decode(data).record
    assert (record["plant"], record["line"], record["seq"]) == ("p1", "l1", 9)
    assert record["values"] == [{"sensor": "temperature", "unit": "Cel", "value": 21.5, "quality": "GOOD"}]
