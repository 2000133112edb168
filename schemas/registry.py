"""The Avro schemas shipped in this package, indexed by name, version and fingerprint.

Files are ``<snake_name>.v<N>.avsc``. Every version stays in the package forever: old writers'
bytes must stay readable. Readers use the newest version of a record (Avro schema resolution).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form
from fastavro.validation import validate

from schemas.exceptions import SchemaError

SCHEMA_DIR = Path(__file__).resolve().parent
_FILE_RE = re.compile(r"^(?P<stem>[a-z0-9_]+)\.v(?P<version>\d+)\.avsc$")


def strip_logical_types(schema: Any) -> Any:
    """Return ``schema`` without logicalType annotations.

    Millstream handles timestamps as integer epoch milliseconds end to end; keeping the logical
    type would make the Avro library convert every timestamp to a datetime and back. The parsing
    canonical form (and so the fingerprint) ignores logical types, so the wire format is unchanged.
    """
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def union_default_problems(schema: Any, path: str = "") -> list[str]:
    """Fields whose union type has a default that is not a value of the union's *first* branch.

    The specification requires it and Java's parser and Confluent Schema Registry refuse such a
    schema, but fastavro accepts a default of any branch and fills it in when reading old data.
    Only primitive first branches are checked (nothing else is written as a union default here).
    """
    problems: list[str] = []
    if isinstance(schema, list):
        for branch in schema:
            problems += union_default_problems(branch, path)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error"):
            for f in schema.get("fields", []):
                where = f"{path}.{f['name']}" if path else str(f["name"])
                t = f["type"]
                if isinstance(t, list) and t and "default" in f and not _default_fits(f["default"], t[0]):
                    default, first = json.dumps(f["default"]), json.dumps(t[0])
                    problems.append(
                        f"field {where}: default {default} is not a value of {first}, the first type of its "
                        "union (a union's default must match its first type)"
                    )
                problems += union_default_problems(t, where)
        elif kind == "array":
            problems += union_default_problems(schema.get("items"), path)
        elif kind == "map":
            problems += union_default_problems(schema.get("values"), path)
        elif isinstance(kind, (dict, list)):
            problems += union_default_problems(kind, path)
    return problems


def _default_fits(value: Any, first: Any) -> bool:
    if isinstance(first, dict) and first.get("type") in PRIMITIVES:  # {"type": "long", "logicalType": ...}
        first = first["type"]
    if first not in PRIMITIVES:
        return True  # named or complex first types are not checked
    if first == "bytes":  # JSON has no bytes: a bytes default is a string
        return isinstance(value, str)
    return bool(validate(value, first, raise_errors=False))


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema."""

    name: str  # full name, e.g. millstream.Reading
    version: int
    path: Path
    raw: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)  # fastavro parsed schema, logical types stripped
    canonical: str = field(repr=False)
    fingerprint: int = 0  # CRC-64-AVRO of the parsing canonical form

    @property
    def fingerprint_bytes(self) -> bytes:
        """Fingerprint as it stands in a single-object encoded message (little-endian)."""
        return self.fingerprint.to_bytes(8, "little")


def load_schema_file(path: Path) -> SchemaVersion:
    """Parse one ``*.vN.avsc`` file."""
    m = _FILE_RE.match(path.name)
    if not m:
        msg = f"{path.name}: schema files must be named <name>.v<N>.avsc"
        raise SchemaError(msg)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed = parse_schema(strip_logical_types(raw))
        canonical = to_parsing_canonical_form(parse_schema(raw))
    except (ValueError, TypeError, KeyError, AttributeError, SchemaParseException) as exc:
        msg = f"{path}: not a valid Avro schema: {exc}"
        raise SchemaError(msg) from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        msg = f"{path}: a Millstream schema file must hold one Avro record"
        raise SchemaError(msg)
    problems = union_default_problems(raw)
    if problems:
        msg = f"{path}: not a valid Avro schema: {'; '.join(problems)}"
        raise SchemaError(msg)
    name = raw.get("name", "")
    if raw.get("namespace") and "." not in name:
        name = f"{raw['namespace']}.{name}"
    return SchemaVersion(
        name=name,
        version=int(m.group("version")),
        path=path,
        raw=raw,
        parsed=parsed,
        canonical=canonical,
        # fastavro returns the fingerprint's little-endian bytes as hex (Java's byte order), not the
        # number: read them back as little-endian so ``fingerprint`` is the CRC-64-AVRO value itself.
        fingerprint=int.from_bytes(bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), "little"),
    )


class SchemaSet:
    """All schema versions found in one directory."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self.directory = directory
        self.versions: list[SchemaVersion] = [load_schema_file(p) for p in sorted(directory.glob("*.avsc"))]
        if not self.versions:
            msg = f"no *.avsc schema files in {directory}"
            raise SchemaError(msg)
        self.by_fingerprint = {v.fingerprint: v for v in self.versions}
        self.by_name: dict[str, list[SchemaVersion]] = {}
        for v in self.versions:
            self.by_name.setdefault(v.name, []).append(v)
        for name, vs in self.by_name.items():
            vs.sort(key=lambda v: v.version)
            numbers = [v.version for v in vs]
            if numbers != list(range(1, len(vs) + 1)):
                msg = f"{name}: versions must be 1..N without gaps, found {numbers}"
                raise SchemaError(msg)

    def latest(self, name: str) -> SchemaVersion:
        """Newest version of a record, by full name (``millstream.Reading``) or short name."""
        full = name if "." in name else f"millstream.{name}"
        try:
            return self.by_name[full][-1]
        except KeyError as exc:
            msg = f"unknown schema {name!r}; known: {sorted(self.by_name)}"
            raise SchemaError(msg) from exc

    def get(self, name: str, version: int) -> SchemaVersion:
        """One specific version."""
        full = name if "." in name else f"millstream.{name}"
        for v in self.by_name.get(full, []):
            if v.version == version:
                return v
        msg = f"schema {full} has no version {version}"
        raise SchemaError(msg)


@cache
def default_schemas() -> SchemaSet:
    """The schemas shipped with Millstream (parsed once per process)."""
    return SchemaSet(SCHEMA_DIR)
