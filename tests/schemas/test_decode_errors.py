"""Bytes that are not a Millstream record raise DecodeError with a stable code, never anything else.

Corrupt bodies are built with fastavro from "look-alike" schemas: the Reading schema with one field's
type swapped, so the bytes carry a real Reading header but an impossible value at a known position.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.config import SerdeSettings
from schemas.exceptions import DecodeError
from schemas.registry import default_schemas
from schemas.serde import SINGLE_OBJECT_MAGIC, Serde

READING_SV = default_schemas().latest("Reading")
READING = {
    "plant": "p1", "line": "l1", "machine_id": "m-7", "sensor": "vibration_rms", "unit": "mm/s",
    "event_time": 1_700_000_000_000, "value": 2.5, "quality": "GOOD", "gateway_id": "gw-1", "seq": 1,
    "lot_id": None,
}  # fmt: skip


@pytest.fixture(scope="module")
def serde() -> Serde:
    return Serde(SerdeSettings(schema_registry_url=None))


def avro_body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def look_alike(field: str, avro_type: Any) -> dict[str, Any]:
    """The shipped Reading schema with ``field`` re-typed (logical types dropped)."""
    schema = copy.deepcopy(READING_SV.raw)
    for f in schema["fields"]:
        if f["name"] == field:
            f["type"] = avro_type
            f.pop("default", None)
    return schema


# fastavro 1.13 checks only the upper bound of enum and union indexes, so a negative index picks a
# symbol / branch counted from the end (Python list indexing) and corrupt bytes decode silently.
# The same flaw in Apache Avro's Python decoder: https://github.com/apache/avro/pull/3876.
# strict: this starts failing (and should become a plain case) once the decoder rejects them.
NEGATIVE_INDEX = pytest.mark.xfail(
    strict=True, raises=pytest.fail.Exception, reason="fastavro accepts negative enum/union indexes"
)


def reading_frame(body: bytes) -> bytes:
    return SINGLE_OBJECT_MAGIC + READING_SV.fingerprint_bytes + body


def assert_code(serde: Serde, data: bytes | None, code: str, *words: str) -> None:
    with pytest.raises(DecodeError) as err:
        serde.decode(data)
    assert err.value.code == code
    for word in words:
        assert word in err.value.reason


def test_valid_reading_decodes(serde: Serde) -> None:
    body = avro_body(READING_SV.raw, READING)
    assert serde.decode(reading_frame(body)).record == READING


@pytest.mark.parametrize("data", [b"", None], ids=["empty", "none"])
def test_empty(serde: Serde, data: bytes | None) -> None:
    assert_code(serde, data, "decode_error", "empty")


@pytest.mark.parametrize(
    "data",
    [b"\x7f\x01\x02", b"hello world", b'{"plant": "p1"}', b"\xc3\x02" + bytes(12)],
    ids=["binary", "text", "json", "wrong-second-magic-byte"],
)
def test_garbage(serde: Serde, data: bytes) -> None:
    assert_code(serde, data, "decode_error", "not Avro")


@pytest.mark.parametrize("cut", range(2, 10))
def test_truncated_single_object_header(serde: Serde, cut: int) -> None:
    data = reading_frame(avro_body(READING_SV.raw, READING))[:cut]
    assert_code(serde, data, "decode_error", "truncated single-object header")


@pytest.mark.parametrize("cut", range(1, 5))
def test_truncated_confluent_header(serde: Serde, cut: int) -> None:
    assert_code(serde, (b"\x00\x00\x00\x00\x07" + b"\x02x")[:cut], "decode_error", "truncated Confluent")


def test_confluent_frame_without_registry(serde: Serde) -> None:
    assert_code(serde, b"\x00\x00\x00\x00\x07\x02x", "unknown_schema", "schema id 7")


def test_unknown_fingerprint(serde: Serde) -> None:
    # A record written with a schema that is not shipped: Reading with an extra field.
    foreign = look_alike("lot_id", ["null", "string"])
    foreign["fields"].append({"name": "shift", "type": "string"})
    fp = int(fingerprint(to_parsing_canonical_form(parse_schema(foreign)), "CRC-64-AVRO"), 16)
    assert fp not in default_schemas().by_fingerprint
    data = SINGLE_OBJECT_MAGIC + fp.to_bytes(8, "little") + avro_body(foreign, {**READING, "shift": "night"})
    assert_code(serde, data, "unknown_schema", f"{fp:016x}")


@pytest.mark.parametrize(
    ("field", "avro_type", "value"),
    [
        pytest.param("quality", "int", 7, id="enum-index-past-end"),  # 3 symbols
        pytest.param("lot_id", "int", 5, id="union-index-past-end"),  # 2 branches
        pytest.param("plant", "bytes", b"\xff\xfe\xfd", id="string-not-utf8"),
        pytest.param("quality", "int", -1, marks=NEGATIVE_INDEX, id="negative-enum-index"),
        pytest.param("lot_id", "int", -2, marks=NEGATIVE_INDEX, id="negative-union-index"),  # -> null
    ],
)
def test_corrupt_body(serde: Serde, field: str, avro_type: str, value: Any) -> None:
    body = avro_body(look_alike(field, avro_type), {**READING, field: value})
    assert_code(serde, reading_frame(body), "decode_error", "corrupt Avro body", "millstream.Reading")


def test_truncated_body(serde: Serde) -> None:
    body = avro_body(READING_SV.raw, READING)
    for cut in range(len(body)):
        assert_code(serde, reading_frame(body[:cut]), "decode_error", "corrupt Avro body")


def test_trailing_bytes(serde: Serde) -> None:
    body = avro_body(READING_SV.raw, READING)
    assert_code(serde, reading_frame(body + b"\x00"), "decode_error", "1 trailing bytes")


HEADERS = [b"", b"\x00", SINGLE_OBJECT_MAGIC] + [
    SINGLE_OBJECT_MAGIC + sv.fingerprint_bytes for sv in default_schemas().versions
]


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(HEADERS), tail=st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_decode_error(prefix: bytes, tail: bytes) -> None:
    serde = Serde(SerdeSettings(schema_registry_url=None))
    try:
        decoded = serde.decode(prefix + tail)
    except DecodeError as err:
        assert err.code in {"decode_error", "unknown_schema"}
    else:
        assert decoded.name in default_schemas().by_name
        assert isinstance(decoded.record, dict)
