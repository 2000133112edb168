"""``millstream schemas list|check`` through the real CLI entry point (infra.cli.main).

Only the schemas command module is registered (COMMAND_MODULES patched), so these tests do not
depend on which other components are importable at the moment.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

import infra.cli
from schemas.registry import SCHEMA_DIR, default_schemas

# ------------------------------------------------------------------ CRC-64-AVRO, from the spec
# Avro specification, "Schema Fingerprints": the 64-bit Rabin fingerprint reference implementation.
EMPTY64 = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (EMPTY64 if _fp & 1 else 0)
    _TABLE.append(_fp)


def rabin64(data: bytes) -> int:
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


# Published vectors: apache/avro share/test/data/schema-tests.txt (signed 64-bit in the file).
AVRO_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"boolean"', -6970731678124411036),
    ('"int"', 8247732601305521295),
    ('{"type":"fixed","name":"foo","size":15}', 1756455273707447556),
    ('{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}', 7843277075252814651),
]


@pytest.mark.parametrize(("schema", "signed"), AVRO_VECTORS)
def test_rabin_oracle_matches_published_vectors(schema: str, signed: int) -> None:
    canonical = to_parsing_canonical_form(parse_schema(json.loads(schema)))
    assert rabin64(canonical.encode()) == signed % 2**64


# ------------------------------------------------------------------ CLI
Cli = Callable[[list[str]], int]


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setattr(infra.cli, "COMMAND_MODULES", ["schemas.cli"])
    return infra.cli.main


def test_list_prints_every_shipped_schema(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["schemas", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "FINGERPRINT", "FILE"]
    rows = {tuple(line.split()) for line in lines[1:]}
    files = sorted(SCHEMA_DIR.glob("*.avsc"))
    assert len(rows) == len(files) == len(default_schemas().versions)
    for sv in default_schemas().versions:
        fp = rabin64(sv.canonical.encode())
        assert (sv.name, f"v{sv.version}", f"{fp:016x}", str(sv.path)) in rows
        # What Serde writes after C3 01 (checked in test_serde_roundtrip): the same value, little-endian.
        assert sv.fingerprint_bytes == fp.to_bytes(8, "little")


def test_check_passes_on_shipped_schemas(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["schemas", "check"]) == 0
    out = capsys.readouterr().out
    for name in default_schemas().by_name:
        assert f"OK            {name} v1" in out


def test_check_requires_an_action(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["schemas"])
    assert exc.value.code == 2


def copy_reading(directory: Path, *names: str) -> None:
    for name in names:
        shutil.copy(SCHEMA_DIR / "reading.v1.avsc", directory / name)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["reading.v1.avsc", "reading.v3.avsc"], "versions must be 1..N without gaps, found [1, 3]"),
        (["Reading.v1.avsc"], "must be named <name>.v<N>.avsc"),
        (["reading.avsc"], "must be named <name>.v<N>.avsc"),
        (["sensor_reading.v1.avsc"], "holds millstream.Reading v1, so it must be named reading.v1.avsc"),
        (["reading.v1.avsc", "reading_copy.v1.avsc"], "versions must be 1..N without gaps, found [1, 1]"),
        ([], "no *.avsc schema files"),
    ],
    ids=["gap", "upper-case", "no-version", "stem-not-record-name", "duplicate-version", "empty-dir"],
)
def test_check_rejects_bad_file_layout(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str], files: list[str], message: str
) -> None:
    copy_reading(tmp_path, *files)
    assert cli(["schemas", "check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("millstream: error: ")
    assert message in err


def test_check_rejects_invalid_schema_files(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = '{"type": "record", "name": "Reading", "fields": ['
    (tmp_path / "reading.v1.avsc").write_text(truncated, encoding="utf-8")
    assert cli(["schemas", "check", "--dir", str(tmp_path)]) == 1
    assert "not a valid Avro schema" in capsys.readouterr().err

    bad_default = {"type": "record", "name": "Reading", "namespace": "millstream",
                   "fields": [{"name": "n", "type": "int", "default": "x"}]}  # fmt: skip
    (tmp_path / "reading.v1.avsc").write_text(json.dumps(bad_default), encoding="utf-8")
    assert cli(["schemas", "check", "--dir", str(tmp_path)]) == 1
    assert "not a valid Avro schema" in capsys.readouterr().err

    (tmp_path / "reading.v1.avsc").write_text('["null", "string"]', encoding="utf-8")
    assert cli(["schemas", "check", "--dir", str(tmp_path)]) == 1
    assert "must hold one Avro record" in capsys.readouterr().err


def test_check_missing_directory(cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["schemas", "check", "--dir", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
