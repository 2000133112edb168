"""explode_scan: one MachineScan with k values becomes k Readings carrying the scan's metadata."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.config import SerdeSettings
from schemas.serde import Serde, explode_scan

SCAN_FIELDS = ("plant", "line", "machine_id", "event_time", "gateway_id", "seq", "lot_id")
VALUE_FIELDS = ("sensor", "unit", "value", "quality")
QUALITIES = ["GOOD", "UNCERTAIN", "BAD"]

scan_values = st.lists(
    st.fixed_dictionaries(
        {
            "sensor": st.text(min_size=1, max_size=12),
            "unit": st.sampled_from(["mm/s", "Cel", "bar", "A", "1"]),
            "value": st.floats(allow_nan=False),
            "quality": st.sampled_from(QUALITIES),
        }
    ),
    max_size=12,
)
scans = st.fixed_dictionaries(
    {
        "plant": st.text(max_size=6),
        "line": st.text(max_size=6),
        "machine_id": st.text(max_size=8),
        "event_time": st.integers(0, 2**41),
        "gateway_id": st.text(max_size=8),
        "seq": st.integers(0, 2**63 - 1),
        "lot_id": st.none() | st.text(max_size=8),
        "values": scan_values,
    }
)
SERDE = Serde(SerdeSettings(schema_registry_url=None))


@settings(max_examples=100, deadline=None)
@given(scans)
def test_scan_explodes_into_one_reading_per_value(scan: dict[str, Any]) -> None:
    # Through the wire first: a gateway sends the scan, a consumer decodes and explodes it.
    decoded = SERDE.decode(SERDE.encode("MachineScan", "readings", scan))
    assert decoded.name == "millstream.MachineScan"
    readings = explode_scan(decoded.record)

    assert len(readings) == len(scan["values"])
    for reading, value in zip(readings, scan["values"], strict=True):
        assert set(reading) == set(SCAN_FIELDS) | set(VALUE_FIELDS)
        assert {k: reading[k] for k in SCAN_FIELDS} == {k: scan[k] for k in SCAN_FIELDS}
        assert {k: reading[k] for k in VALUE_FIELDS} == value
        # Every exploded record is a valid Reading on the wire.
        assert SERDE.decode(SERDE.encode("Reading", "readings", reading)).record == reading


def test_empty_scan_gives_no_readings() -> None:
    scan = {"plant": "p", "line": "l", "machine_id": "m", "event_time": 1, "gateway_id": "g",
            "seq": 0, "lot_id": None, "values": []}  # fmt: skip
    assert explode_scan(scan) == []


def test_reading_passes_through_unchanged() -> None:
    reading = {"plant": "p", "line": "l", "machine_id": "m", "sensor": "s", "unit": "u", "event_time": 1,
               "value": math.pi, "quality": "GOOD", "gateway_id": "g", "seq": 0, "lot_id": None}  # fmt: skip
    assert explode_scan(reading) == [reading]
    assert explode_scan(reading)[0] is reading
