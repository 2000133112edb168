"""Round trips through Serde for every shipped schema, in both wire formats, on generated records.

Records come from hypothesis strategies derived from the Avro schema itself (any primitive, record,
enum, array, map, union, fixed, named references), so a new field or schema is covered without
touching this file. Doubles include NaN, infinities and -0.0, so values are compared bit for bit.

Confluent framing: no Schema Registry server can run here (offline, no service binary), so the
registry client is replaced by confluent-kafka's own in-memory ``MockSchemaRegistryClient`` (same
``register_schema`` / ``get_schema`` methods as the real client), injected where Serde builds its
client. Confluent's AvroSerializer/AvroDeserializer on that client cross-check the framing.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import schemas.serde as serde_module
from schemas.config import SerdeSettings
from schemas.exceptions import DecodeError
from schemas.registry import SchemaSet, SchemaVersion, default_schemas
from schemas.serde import CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC, Serde

SHIPPED = default_schemas().versions
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ strategies from a schema
def avro_strategy(schema: Any, utf8_bytes: bool = False) -> st.SearchStrategy[Any]:
    """Valid Python values (as fastavro writes them) for an Avro schema given as parsed JSON.

    ``utf8_bytes``: draw ``bytes`` values from UTF-8 text only (see the compat property test).
    """
    return _Gen(utf8_bytes).build(schema, None)


class _Gen:
    def __init__(self, utf8_bytes: bool) -> None:
        self.named: dict[str, st.SearchStrategy[Any]] = {}
        self.utf8_bytes = utf8_bytes

    def build(self, s: Any, ns: str | None) -> st.SearchStrategy[Any]:
        if isinstance(s, list):
            return st.one_of([self.build(branch, ns) for branch in s])
        if isinstance(s, str):
            if s == "bytes" and self.utf8_bytes:
                return st.text(max_size=16).map(str.encode)
            primitive = _PRIMITIVES.get(s)
            if primitive is not None:
                return primitive
            full = s if "." in s or not ns else f"{ns}.{s}"
            return self.named[full] if full in self.named else self.named[s]
        kind = s["type"]
        if not isinstance(kind, str) or kind in _PRIMITIVES:
            return self.build(kind, ns)  # nested type, or a primitive with a logicalType
        if kind == "array":
            return st.lists(self.build(s["items"], ns), max_size=5)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), self.build(s["values"], ns), max_size=4)
        name = s["name"]
        ns = name.rpartition(".")[0] if "." in name else s.get("namespace", ns)
        full = name if "." in name or not ns else f"{ns}.{name}"
        if kind == "enum":
            strategy: st.SearchStrategy[Any] = st.sampled_from(s["symbols"])
        elif kind == "fixed":
            strategy = st.binary(min_size=s["size"], max_size=s["size"])
        elif kind == "record":
            strategy = st.fixed_dictionaries({f["name"]: self.build(f["type"], ns) for f in s["fields"]})
        else:
            raise AssertionError(f"unsupported Avro type {kind!r}")
        self.named[full] = strategy
        return strategy


_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    # float is 32-bit on the wire: only float32-representable values (a NaN payload would not survive
    # the float64 -> float32 conversion, so the one NaN offered is the canonical quiet NaN).
    "float": st.floats(width=32, allow_nan=False) | st.just(math.nan),
    "double": st.floats(allow_nan=True, allow_infinity=True),
    "bytes": st.binary(max_size=32),
    "string": st.text(max_size=16),
}


def same(a: Any, b: Any) -> bool:
    """Deep equality with floats compared bit for bit (NaN == NaN, -0.0 != 0.0)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def short(sv: SchemaVersion) -> str:
    return sv.name.rpartition(".")[2]


# ------------------------------------------------------------------ the comparator itself
def test_same_compares_doubles_bitwise() -> None:
    assert same({"v": [math.nan]}, {"v": [math.nan]})
    assert not same(0.0, -0.0)
    assert not same(1, 1.0)
    assert not same({"a": 1}, {"a": 1, "b": None})


# ------------------------------------------------------------------ single-object encoding
@pytest.mark.parametrize("sv", SHIPPED, ids=short)
def test_single_object_round_trip(sv: SchemaVersion) -> None:
    serde = Serde(SerdeSettings(schema_registry_url=None))
    encode = serde.encoder(sv.name, "any-topic")

    @PROPERTY
    @given(avro_strategy(sv.raw))
    def check(record: dict[str, Any]) -> None:
        data = encode(record)
        # Avro spec, "Single object encoding": C3 01, then the CRC-64-AVRO fingerprint, little-endian.
        assert data[:2] == SINGLE_OBJECT_MAGIC
        assert data[2:10] == sv.fingerprint_bytes
        decoded = serde.decode(data)
        assert decoded.name == sv.name
        assert same(decoded.record, record), (decoded.record, record)

    check()


# A schema with every Avro type, so the generic strategy and Serde are exercised beyond the shipped set.
KITCHEN_SINK = {
    "type": "record",
    "name": "KitchenSink",
    "namespace": "millstream",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "by", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "Md5", "size": 16}},
        {"name": "arr", "type": {"type": "array", "items": "Colour"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "double"]}},
        {
            "name": "nested",
            "type": {
                "type": "record",
                "name": "Inner",
                "namespace": "other",
                "fields": [{"name": "x", "type": "millstream.Md5"}],
            },
        },
        {"name": "again", "type": ["null", "other.Inner"]},
        {"name": "u", "type": ["null", "string", "long", "double", "boolean"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_kitchen_sink_round_trip(tmp_path: Path) -> None:
    (tmp_path / "kitchen_sink.v1.avsc").write_text(json.dumps(KITCHEN_SINK), encoding="utf-8")
    serde = Serde(SerdeSettings(schema_registry_url=None), SchemaSet(tmp_path))
    encode = serde.encoder("KitchenSink", "t")

    @PROPERTY
    @given(avro_strategy(KITCHEN_SINK))
    def check(record: dict[str, Any]) -> None:
        assert same(serde.decode(encode(record)).record, record)

    check()


# ------------------------------------------------------------------ Confluent wire format
@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch) -> SchemaRegistryClient:
    """In-memory registry in place of a server (none can run offline); Serde's client factory returns it."""
    client = SchemaRegistryClient.new_client({"url": "mock://millstream-tests"})
    monkeypatch.setattr(serde_module, "_registry_client", lambda _settings: client)
    return client


CONFLUENT = SerdeSettings(schema_registry_url="mock://millstream-tests")


@pytest.mark.parametrize("sv", SHIPPED, ids=short)
def test_confluent_round_trip(sv: SchemaVersion, registry: SchemaRegistryClient) -> None:
    producer = Serde(CONFLUENT)
    consumer = Serde(CONFLUENT)  # a separate process: learns the schema from the registry by id
    encode = producer.encoder(sv.name, "plant-a")
    subject = registry.get_latest_version("plant-a-value")
    assert json.loads(str(subject.schema.schema_str)) == sv.raw

    @PROPERTY
    @given(avro_strategy(sv.raw))
    def check(record: dict[str, Any]) -> None:
        data = encode(record)
        # Confluent wire format: magic byte 0, then the registry's schema id as a 4-byte big-endian int.
        assert data[0] == CONFLUENT_MAGIC
        assert int.from_bytes(data[1:5], "big") == subject.schema_id
        for serde in (producer, consumer):
            decoded = serde.decode(data)
            assert decoded.name == sv.name
            assert same(decoded.record, record)

    check()


# ------------------------------------------------------------------ event time without decoding
# The shipped schemas whose fields before event_time are all strings; the others have no such field.
EVENT_TIME_SHAPED = {"millstream.Reading", "millstream.MachineScan", "millstream.AnomalyEvent"}


@pytest.mark.parametrize("framing", ["single-object", "confluent"])
@pytest.mark.parametrize("sv", SHIPPED, ids=short)
def test_event_time_is_read_from_the_bytes(
    sv: SchemaVersion, framing: str, registry: SchemaRegistryClient
) -> None:
    serde = Serde(CONFLUENT if framing == "confluent" else SerdeSettings(schema_registry_url=None))
    encode = serde.encoder(sv.name, "t")
    reader = Serde(CONFLUENT if framing == "confluent" else SerdeSettings(schema_registry_url=None))

    @PROPERTY
    @given(avro_strategy(sv.raw))
    def check(record: dict[str, Any]) -> None:
        data = encode(record)
        want = record["event_time"] if sv.name in EVENT_TIME_SHAPED else None
        assert reader.event_time(data) == want
        assert reader.event_time(data[: len(data) // 2] if want is None else data) == want

    check()


def test_event_time_of_bytes_it_cannot_read_is_none() -> None:
    serde = Serde(SerdeSettings(schema_registry_url=None))
    reading = {
        "plant": "p1", "line": "l1", "machine_id": "m-7", "sensor": "temperature", "unit": "Cel",
        "event_time": -1_700_000_000_123, "value": 71.25, "quality": "GOOD", "gateway_id": "gw-1",
        "seq": 42, "lot_id": "LOT-9",
    }  # fmt: skip
    data = serde.encode("Reading", "t", reading)
    assert serde.event_time(data) == reading["event_time"]
    assert serde.event_time(data[:12]) is None  # truncated inside the strings
    assert serde.event_time(b"") is None
    assert serde.event_time(None) is None
    assert serde.event_time(b"not avro") is None
    assert serde.event_time(SINGLE_OBJECT_MAGIC + bytes(8) + data[10:]) is None  # unknown fingerprint
    assert serde.event_time(bytes([CONFLUENT_MAGIC, 0, 0, 0, 7]) + data[10:]) is None  # no registry


def test_confluent_framing_matches_confluent_client(registry: SchemaRegistryClient) -> None:
    reading = {
        "plant": "p1", "line": "l1", "machine_id": "m-7", "sensor": "temperature", "unit": "Cel",
        "event_time": 1_700_000_000_123, "value": 71.25, "quality": "GOOD", "gateway_id": "gw-1",
        "seq": 42, "lot_id": "LOT-9",
    }  # fmt: skip
    ctx = SerializationContext("plant-b", MessageField.VALUE)
    ours = Serde(CONFLUENT).encode("Reading", "plant-b", reading)
    theirs = AvroDeserializer(registry)(ours, ctx)
    assert theirs is not None
    # Confluent's deserializer applies the timestamp-millis logical type; Millstream keeps epoch ms.
    assert int(theirs.pop("event_time").timestamp() * 1000) == reading["event_time"]
    assert theirs == {k: v for k, v in reading.items() if k != "event_time"}

    raw = json.dumps(default_schemas().latest("Reading").raw)
    produced = AvroSerializer(registry, raw)(reading, ctx)
    assert produced is not None and produced[0] == CONFLUENT_MAGIC
    assert Serde(CONFLUENT).decode(produced).record == reading


# ------------------------------------------------------------------ compat verdict vs. real decoding
# Random writer schemas and random edits of them: whenever schemas.compat calls an edit backward
# compatible, Serde with both versions installed must read every record the old version writes.
# bytes values are UTF-8 here: the spec's bytes -> string promotion only holds for UTF-8 content
# (fastavro raises on other bytes), a caveat documented in schemas.compat.
SIMPLE = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
DEFAULTS = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0,
            "bytes": "", "string": ""}  # fmt: skip


def field_types(name: str) -> st.SearchStrategy[Any]:
    symbols = st.lists(st.sampled_from(["A", "B", "C", "D"]), min_size=1, max_size=4, unique=True)
    enum = symbols.flatmap(
        lambda syms: st.sampled_from([None, *syms]).map(
            lambda d: (
                {"type": "enum", "name": f"E_{name}", "symbols": syms} | ({} if d is None else {"default": d})
            )
        )
    )
    prim = st.sampled_from(SIMPLE)
    return st.one_of(
        prim,
        enum,
        prim.map(lambda t: {"type": "array", "items": t}),
        prim.map(lambda t: {"type": "map", "values": t}),
        st.lists(prim, min_size=2, max_size=3, unique=True),
    )


@st.composite
def schema_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True))
    old = {"type": "record", "name": "Gen", "namespace": "millstream",
           "fields": [{"name": n, "type": draw(field_types(n))} for n in names]}  # fmt: skip
    new = json.loads(json.dumps(old))
    for k in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["retype", "add", "drop", "rename", "nullable"]))
        fields = new["fields"]
        if edit == "add":
            t = draw(st.sampled_from(SIMPLE))
            extra = {"default": DEFAULTS[t]} if draw(st.booleans()) else {}
            fields.append({"name": f"x{k}", "type": t, **extra})
        elif not fields:
            continue
        elif edit == "drop":
            fields.pop(draw(st.integers(0, len(fields) - 1)))
        else:
            f = fields[draw(st.integers(0, len(fields) - 1))]
            if edit == "retype":
                f["type"] = draw(field_types(f["name"]))
                f.pop("default", None)
            elif edit == "rename":
                f["aliases"], f["name"] = [f["name"]], f"{f['name']}_renamed"
            elif not isinstance(f["type"], list):
                f["type"] = ["null", f["type"]]
                f.pop("default", None)
    return old, new


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=schema_pairs(), data=st.data())
def test_compatible_verdict_means_old_bytes_decode(
    tmp_path_factory: pytest.TempPathFactory, pair: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    from schemas.compat import check_backward

    old, new = pair
    reasons = check_backward(old, new)
    event("compatible" if not reasons else "incompatible")
    directory = tmp_path_factory.mktemp("gen")
    (directory / "gen.v1.avsc").write_text(json.dumps(old), encoding="utf-8")
    writer = Serde(SerdeSettings(schema_registry_url=None), SchemaSet(directory))
    (directory / "gen.v2.avsc").write_text(json.dumps(new), encoding="utf-8")
    reader = Serde(SerdeSettings(schema_registry_url=None), SchemaSet(directory))
    encoded = writer.encode("Gen", "t", data.draw(avro_strategy(old, utf8_bytes=True)))
    if not reasons:
        assert reader.decode(encoded).name == "millstream.Gen"
    elif all("has no default" in r for r in reasons):
        # A required field the old writer never wrote cannot be read from any record.
        with pytest.raises(DecodeError):
            reader.decode(encoded)
