"""schemas.compat against the schema resolution rules of the Avro specification.

Reference: Apache Avro 1.12 specification, section "Schema Resolution"
(https://avro.apache.org/docs/1.12.0/specification/#schema-resolution). Where the checker's verdict
can be exercised, a real decoder (fastavro) reads writer bytes with the reader schema and must agree.
"""

from __future__ import annotations

import io
import json
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas.compat import check_backward, check_schema_set, check_versions
from schemas.registry import SchemaSet, default_schemas


def record(name: str, *fields: dict[str, Any], namespace: str = "millstream", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": namespace, "fields": list(fields), **extra}


def field(name: str, avro_type: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": avro_type, **extra}


def enum(symbols: list[str], name: str = "Quality", **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": symbols, **extra}


def fastavro_reads(writer: Any, reader: Any, datum: Any) -> bool:
    """Whether fastavro reads ``datum`` written with ``writer`` using ``reader``."""
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(writer), datum)
    buf.seek(0)
    try:
        schemaless_reader(buf, parse_schema(writer), parse_schema(reader))
    except SchemaResolutionError:
        return False
    return True


# ------------------------------------------------------------------ primitives and promotions
PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
# Spec, "Schema Resolution": the writer's schema may be promoted to the reader's as follows:
# int is promotable to long, float, or double; long to float or double; float to double;
# string to bytes; bytes to string.
SPEC_PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
    ("float", "double"), ("string", "bytes"), ("bytes", "string"),
}  # fmt: skip
SAMPLE = {"null": None, "boolean": True, "int": 7, "long": 2**40, "float": 1.5, "double": 2.25,
          "bytes": b"\x01", "string": "s"}  # fmt: skip


@pytest.mark.parametrize(("writer", "reader"), list(product(PRIMITIVES, PRIMITIVES)))
def test_primitive_promotions(writer: str, reader: str) -> None:
    reasons = check_backward(writer, reader)
    expected = writer == reader or (writer, reader) in SPEC_PROMOTIONS
    assert (reasons == []) is expected, reasons
    if not expected:
        assert f"type {writer} written by old cannot be read as {reader} by new" in reasons[0]
    # The same verdict from a real decoder, inside a record field.
    w = record("R", field("x", writer))
    r = record("R", field("x", reader))
    assert fastavro_reads(w, r, {"x": SAMPLE[writer]}) is expected


def test_logical_types_are_ignored() -> None:
    ts = {"type": "long", "logicalType": "timestamp-millis"}
    assert check_backward(record("R", field("t", "long")), record("R", field("t", ts))) == []
    assert check_backward(record("R", field("t", ts)), record("R", field("t", "double"))) == []


# ------------------------------------------------------------------ records
V1 = record("Reading", field("plant", "string"), field("value", "double"))


def test_identical_schema_is_compatible() -> None:
    assert check_backward(V1, V1) == []
    for sv in default_schemas().versions:
        assert check_backward(sv.raw, sv.raw) == []


def test_added_field_with_default_is_compatible() -> None:
    v2 = record("Reading", *V1["fields"], field("zone", "string", default="unknown"))
    assert check_backward(V1, v2) == []
    assert fastavro_reads(V1, v2, {"plant": "p", "value": 1.0})


def test_added_field_without_default_is_incompatible() -> None:
    v2 = record("Reading", *V1["fields"], field("zone", "string"))
    reasons = check_backward(V1, v2, "v1", "v2")
    assert reasons == [
        "millstream.Reading.zone: field is in v2 but not in v1 and has no default, "
        "so v2 cannot read data written by v1"
    ]
    assert not fastavro_reads(V1, v2, {"plant": "p", "value": 1.0})


def test_null_default_counts_as_a_default() -> None:
    v2 = record("Reading", *V1["fields"], field("lot", ["null", "string"], default=None))
    assert check_backward(V1, v2) == []


def test_removed_field_is_compatible() -> None:
    assert check_backward(V1, record("Reading", field("value", "double"))) == []


def test_reordered_fields_are_compatible() -> None:
    assert check_backward(V1, record("Reading", *reversed(V1["fields"]))) == []


def test_renamed_field_needs_an_alias() -> None:
    renamed = record("Reading", field("site", "string"), field("value", "double"))
    assert check_backward(V1, renamed) == [
        "millstream.Reading.site: field is in new but not in old and has no default, "
        "so new cannot read data written by old"
    ]
    aliased = record("Reading", field("site", "string", aliases=["plant"]), field("value", "double"))
    assert check_backward(V1, aliased) == []
    assert fastavro_reads(V1, aliased, {"plant": "p", "value": 1.0})


def test_field_type_change_names_the_field() -> None:
    v2 = record("Reading", field("plant", "int"), field("value", "double"))
    assert check_backward(V1, v2, "v1", "v2") == [
        "millstream.Reading.plant: type string written by v1 cannot be read as int by v2"
    ]


def test_record_name_must_match_or_be_aliased() -> None:
    renamed = record("Measurement", *V1["fields"])
    reasons = check_backward(V1, renamed)
    assert len(reasons) == 1 and "millstream.Reading written by old does not match" in reasons[0]
    assert check_backward(V1, record("Measurement", *V1["fields"], aliases=["Reading"])) == []
    assert check_backward(V1, record("Measurement", *V1["fields"], aliases=["millstream.Reading"])) == []


def test_namespace_change_is_flagged() -> None:
    # Strict full-name matching (see the schemas.compat docstring): Java readers reject it.
    moved = record("Reading", *V1["fields"], namespace="acme")
    assert check_backward(V1, moved) != []
    assert check_backward(V1, record("Reading", *V1["fields"], namespace="acme",
                                     aliases=["millstream.Reading"])) == []  # fmt: skip


def test_recursive_record_terminates() -> None:
    node = record("Node", field("v", "int"), field("next", ["null", "millstream.Node"], default=None))
    wider = record("Node", field("v", "long"), field("next", ["null", "Node"], default=None))
    assert check_backward(node, wider) == []
    narrower = record("Node", field("v", "string"), field("next", ["null", "Node"], default=None))
    assert check_backward(node, narrower) == [
        "millstream.Node.v: type int written by old cannot be read as string by new"
    ]


# ------------------------------------------------------------------ enums
def quality(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return record("Reading", field("quality", enum(symbols, **extra)))


def test_enum_symbol_added_is_compatible() -> None:
    assert check_backward(quality(["GOOD", "BAD"]), quality(["GOOD", "BAD", "STALE"])) == []


def test_enum_symbol_removed_without_default() -> None:
    reasons = check_backward(quality(["GOOD", "BAD", "FOO"]), quality(["GOOD", "BAD"]), "v1", "v2")
    # The message format the task statement gives as its example.
    assert reasons == [
        "millstream.Reading.quality: symbol FOO written by v1 is missing in v2 and v2 has no enum default"
    ]
    assert not fastavro_reads(quality(["GOOD", "BAD", "FOO"]), quality(["GOOD", "BAD"]), {"quality": "FOO"})


def test_enum_symbol_removed_with_default() -> None:
    old, new = quality(["GOOD", "BAD", "FOO"]), quality(["GOOD", "BAD"], default="BAD")
    assert check_backward(old, new) == []
    assert fastavro_reads(old, new, {"quality": "FOO"})


def test_enum_name_must_match() -> None:
    old = record("Reading", field("quality", enum(["GOOD"], name="Quality")))
    new = record("Reading", field("quality", enum(["GOOD"], name="Status")))
    (reason,) = check_backward(old, new)
    assert "enum millstream.Quality written by old does not match enum millstream.Status" in reason
    aliased = record("Reading", field("quality", enum(["GOOD"], name="Status", aliases=["Quality"])))
    assert check_backward(old, aliased) == []


# ------------------------------------------------------------------ arrays, maps, fixed
def test_array_items_resolve_recursively() -> None:
    ints = record("S", field("xs", {"type": "array", "items": "int"}))
    longs = record("S", field("xs", {"type": "array", "items": "long"}))
    strings = record("S", field("xs", {"type": "array", "items": "string"}))
    assert check_backward(ints, longs) == []
    assert check_backward(ints, strings) == [
        "millstream.S.xs[]: type int written by old cannot be read as string by new"
    ]


def test_map_values_resolve_recursively() -> None:
    floats = record("S", field("m", {"type": "map", "values": "float"}))
    doubles = record("S", field("m", {"type": "map", "values": "double"}))
    assert check_backward(floats, doubles) == []
    assert check_backward(doubles, floats) == [
        "millstream.S.m{}: type double written by old cannot be read as float by new"
    ]


def test_array_versus_map_is_incompatible() -> None:
    arr = record("S", field("x", {"type": "array", "items": "int"}))
    mp = record("S", field("x", {"type": "map", "values": "int"}))
    assert check_backward(arr, mp) == [
        "millstream.S.x: type array<int> written by old cannot be read as map<int> by new"
    ]


def test_nested_record_path() -> None:
    shipped = default_schemas().latest("MachineScan").raw
    changed = json.loads(json.dumps(shipped))
    value_type = changed["fields"][-1]["type"]["items"]
    value_type["fields"][3]["type"] = {"type": "enum", "name": "ScanQuality", "symbols": ["GOOD", "BAD"]}
    assert check_backward(shipped, changed, "v1", "v2") == [
        "millstream.MachineScan.values[].quality: symbol UNCERTAIN written by v1 is missing in v2 "
        "and v2 has no enum default"
    ]


def test_fixed_size_must_match() -> None:
    def digest(size: int) -> dict[str, Any]:
        return record("S", field("d", {"type": "fixed", "name": "Digest", "size": size}))

    assert check_backward(digest(16), digest(16)) == []
    assert check_backward(digest(16), digest(20)) == [
        "millstream.S.d: fixed millstream.Digest has size 16 in old but 20 in new"
    ]
    assert not fastavro_reads(digest(16), digest(20), {"d": bytes(16)})


# ------------------------------------------------------------------ unions
def lot(avro_type: Any) -> dict[str, Any]:
    return record("R", field("lot", avro_type))


def test_union_gaining_a_branch_is_compatible() -> None:
    assert check_backward(lot(["null", "string"]), lot(["null", "string", "long"])) == []


def test_union_losing_a_branch_is_incompatible() -> None:
    assert check_backward(lot(["null", "string", "long"]), lot(["null", "string"])) == [
        "millstream.R.lot: union branch long written by old matches no branch of union[null, string] in new"
    ]
    assert not fastavro_reads(lot(["null", "string", "long"]), lot(["null", "string"]), {"lot": 5})


def test_union_branch_promotion() -> None:
    assert check_backward(lot(["null", "int"]), lot(["null", "double"])) == []
    assert fastavro_reads(lot(["null", "int"]), lot(["null", "double"]), {"lot": 3})


def test_plain_writer_union_reader() -> None:
    assert check_backward(lot("string"), lot(["null", "string"])) == []
    assert check_backward(lot("int"), lot(["null", "long"])) == []  # by promotion
    assert check_backward(lot("int"), lot(["null", "string"])) == [
        "millstream.R.lot: int written by old matches no branch of union[null, string] in new"
    ]


def test_union_writer_plain_reader() -> None:
    assert check_backward(lot(["int", "long"]), lot("long")) == []
    assert check_backward(lot(["null", "string"]), lot("string")) == [
        "millstream.R.lot: union branch null written by old cannot be read as string by new"
    ]
    assert fastavro_reads(lot(["null", "string"]), lot("string"), {"lot": "x"})
    assert not fastavro_reads(lot(["null", "string"]), lot("string"), {"lot": None})


def test_union_record_branch_resolves_recursively() -> None:
    inner_v1 = record("Lot", field("id", "string"))
    inner_v2 = record("Lot", field("id", "string"), field("line", "string"))
    reasons = check_backward(lot(["null", inner_v1]), lot(["null", inner_v2]))
    assert reasons == [
        "millstream.R.lot.line: field is in new but not in old and has no default, "
        "so new cannot read data written by old"
    ]


# ------------------------------------------------------------------ transitive check on files
def write_versions(directory: Path, *schemas: dict[str, Any]) -> SchemaSet:
    for n, schema in enumerate(schemas, start=1):
        (directory / f"reading.v{n}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return SchemaSet(directory)


def test_every_version_is_checked_against_all_earlier(tmp_path: Path) -> None:
    v1 = V1
    v2 = record("Reading", *V1["fields"], field("zone", "string", default="unknown"))
    v3 = record("Reading", *V1["fields"], field("zone", "string"))  # reads v2 data, not v1 data
    results = check_versions(write_versions(tmp_path, v1, v2, v3).by_name["millstream.Reading"])
    verdicts = {(r.reader, r.writer): r.ok for r in results}
    assert verdicts == {(2, 1): True, (3, 1): False, (3, 2): True}
    (failed,) = [r for r in results if not r.ok]
    assert failed.reasons == (
        "millstream.Reading.zone: field is in v3 but not in v1 and has no default, "
        "so v3 cannot read data written by v1",
    )


def test_shipped_schemas_are_compatible() -> None:
    report = check_schema_set(default_schemas())
    assert set(report) == set(default_schemas().by_name)
    assert all(r.ok for results in report.values() for r in results)
