"""Schema evolution end to end: bytes written with v1 read with v2 through Serde, and the CLI gate.

Each test builds its own schema directory: the shipped reading.v1.avsc plus a hand-written v2.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import infra.cli
from schemas.config import SerdeSettings
from schemas.exceptions import DecodeError, SchemaError
from schemas.registry import SCHEMA_DIR, SchemaSet
from schemas.serde import Serde

V1 = json.loads((SCHEMA_DIR / "reading.v1.avsc").read_text(encoding="utf-8"))
READING = {
    "plant": "p1", "line": "l1", "machine_id": "m-7", "sensor": "spindle_temp", "unit": "Cel",
    "event_time": 1_700_000_000_000, "value": 63.5, "quality": "UNCERTAIN", "gateway_id": "gw-1",
    "seq": 9, "lot_id": "LOT-1",
}  # fmt: skip
NO_REGISTRY = SerdeSettings(schema_registry_url=None)


def v2_of(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(V1)
    change(schema)
    return schema


def field_of(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def add_zone(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "zone", "type": "string", "default": "unassigned"})


def add_zone_without_default(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "zone", "type": "string"})


def plant_to_int(schema: dict[str, Any]) -> None:
    field_of(schema, "plant")["type"] = "int"


def drop_bad_symbol(schema: dict[str, Any]) -> None:
    quality = field_of(schema, "quality")["type"]
    quality["symbols"] = ["GOOD", "UNCERTAIN"]
    del quality["default"]


def compatible_changes(schema: dict[str, Any]) -> None:
    add_zone(schema)
    field_of(schema, "quality")["type"]["symbols"].append("STALE")  # new symbol
    field_of(schema, "lot_id")["type"] = ["null", "string", "long"]  # wider union
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "gateway_id"]  # removed field


def schema_dir(root: Path, *versions: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEMA_DIR / "reading.v1.avsc", root / "reading.v1.avsc")
    for n, schema in enumerate(versions, start=2):
        (root / f"reading.v{n}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return root


# ------------------------------------------------------------------ Serde
def test_v2_reader_reads_v1_bytes(tmp_path: Path) -> None:
    old_writer = Serde(NO_REGISTRY, SchemaSet(schema_dir(tmp_path / "old")))
    new = Serde(NO_REGISTRY, SchemaSet(schema_dir(tmp_path / "new", v2_of(compatible_changes))))
    data = old_writer.encode("Reading", "readings", READING)

    decoded = new.decode(data)
    expected = {k: v for k, v in READING.items() if k != "gateway_id"} | {"zone": "unassigned"}
    assert decoded.name == "millstream.Reading"
    assert decoded.record == expected

    # The new writer's own bytes read back with its new field and symbol...
    newer = {**expected, "zone": "hall-3", "quality": "STALE", "lot_id": 42}
    assert new.decode(new.encode("Reading", "readings", newer)).record == newer
    # ...but a process that only ships v1 cannot know the v2 fingerprint: readers upgrade first.
    with pytest.raises(DecodeError) as err:
        old_writer.decode(new.encode("Reading", "readings", newer))
    assert err.value.code == "unknown_schema"


def test_enum_default_applies_to_unknown_symbol(tmp_path: Path) -> None:
    # v1 declares "default": "UNCERTAIN" on Quality; a v2 without BAD reads BAD as UNCERTAIN.
    def drop_bad_keep_default(schema: dict[str, Any]) -> None:
        field_of(schema, "quality")["type"]["symbols"] = ["GOOD", "UNCERTAIN"]

    old_writer = Serde(NO_REGISTRY, SchemaSet(schema_dir(tmp_path / "old")))
    new = Serde(NO_REGISTRY, SchemaSet(schema_dir(tmp_path / "new", v2_of(drop_bad_keep_default))))
    decoded = new.decode(old_writer.encode("Reading", "readings", {**READING, "quality": "BAD"}))
    assert decoded.record["quality"] == "UNCERTAIN"


# ------------------------------------------------------------------ CLI gate
Cli = Callable[[list[str]], int]


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setattr(infra.cli, "COMMAND_MODULES", ["schemas.cli"])
    return infra.cli.main


def test_check_accepts_compatible_v2(cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = schema_dir(tmp_path, v2_of(compatible_changes))
    assert cli(["schemas", "check", "--dir", str(directory)]) == 0
    assert "OK            millstream.Reading v2 reads data written by v1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            add_zone_without_default,
            "millstream.Reading.zone: field is in v2 but not in v1 and has no default",
        ),
        (plant_to_int, "millstream.Reading.plant: type string written by v1 cannot be read as int by v2"),
        (
            drop_bad_symbol,
            "millstream.Reading.quality: symbol BAD written by v1 is missing in v2 "
            "and v2 has no enum default",
        ),
    ],
    ids=["field-without-default", "string-to-int", "enum-symbol-removed"],
)
def test_check_rejects_incompatible_v2(
    cli: Cli,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[dict[str, Any]], None],
    problem: str,
) -> None:
    directory = schema_dir(tmp_path, v2_of(change))
    assert cli(["schemas", "check", "--dir", str(directory)]) == 1
    captured = capsys.readouterr()
    assert "INCOMPATIBLE  millstream.Reading v2 cannot read data written by v1:" in captured.out
    assert problem in captured.out
    assert captured.err.startswith("millstream: error: schema check failed")
    assert problem in captured.err


def test_check_is_transitive(cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # v3 makes v2's optional field required: fine for v2 data, not for v1 data.
    directory = schema_dir(tmp_path, v2_of(add_zone), v2_of(add_zone_without_default))
    assert cli(["schemas", "check", "--dir", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "OK            millstream.Reading v2 reads data written by v1" in out
    assert "OK            millstream.Reading v3 reads data written by v2" in out
    assert "INCOMPATIBLE  millstream.Reading v3 cannot read data written by v1:" in out


def zone_with_default_of_second_branch(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "zone", "type": ["null", "string"], "default": "unassigned"})


def test_check_rejects_union_default_of_a_later_branch(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # fastavro would fill "unassigned" in for v1 data; Java's parser and Schema Registry refuse the schema.
    directory = schema_dir(tmp_path, v2_of(zone_with_default_of_second_branch))
    assert cli(["schemas", "check", "--dir", str(directory)]) == 1
    err = capsys.readouterr().err
    assert 'field zone: default "unassigned" is not a value of "null", the first type of its union' in err
    with pytest.raises(SchemaError, match="reading.v2.avsc: not a valid Avro schema"):
        SchemaSet(directory)


def test_union_defaults_of_the_first_branch_are_accepted(tmp_path: Path) -> None:
    def first_branches(schema: dict[str, Any]) -> None:
        millis = {"type": "long", "logicalType": "timestamp-millis"}
        schema["fields"] += [
            {"name": "zone", "type": ["string", "null"], "default": "unassigned"},
            {"name": "tag", "type": ["bytes", "null"], "default": "\u00ff"},
            {"name": "at", "type": [millis, "null"], "default": 1},
        ]

    SchemaSet(schema_dir(tmp_path, v2_of(first_branches)))


def test_event_time_of_a_version_with_a_field_before_it(tmp_path: Path) -> None:
    # The gateway stamps each message with its event time (the Flink job's watermarks read it), also
    # when a new version puts a non-string field before event_time.
    def zone_id_first(schema: dict[str, Any]) -> None:
        schema["fields"].insert(3, {"name": "zone_id", "type": "int", "default": 0})

    serde = Serde(NO_REGISTRY, SchemaSet(schema_dir(tmp_path, v2_of(zone_id_first))))
    data = serde.encode("Reading", "readings", {**READING, "zone_id": 4})
    assert serde.event_time(data) == READING["event_time"]
    shipped = Serde(NO_REGISTRY)
    assert shipped.event_time(shipped.encode("WindowAggregate", "windows", window())) is None


def window() -> dict[str, Any]:
    texts = ("plant", "line", "machine_id", "sensor", "unit", "window_kind")
    record: dict[str, Any] = {
        f["name"]: 0 for f in json.loads((SCHEMA_DIR / "window_aggregate.v1.avsc").read_text())["fields"]
    }
    record.update({k: "x" for k in texts})
    record.update({k: 1.0 for k in ("sum", "mean", "min", "max", "std", "first", "last")})
    return record | {k: None for k in ("p50", "p95", "p99", "slope")}
