"""``millstream schemas check|list``: guard schema evolution and show what is shipped.

``check`` loads every ``<name>.v<N>.avsc`` file (naming and 1..N numbering are enforced while loading),
checks that each file's name is the snake_case of its record, and that every version reads data
written by all earlier versions (transitive backward compatibility, :mod:`schemas.compat`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from schemas.exceptions import IncompatibleSchemaError, SchemaError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schemas", help="check schema evolution; list shipped schemas")
    actions = parser.add_subparsers(dest="schemas_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="every version of every record must read data written by all earlier versions"
    )
    listing = actions.add_parser(
        "list",
        help="name, version, CRC-64-AVRO fingerprint (hex; single-object headers hold it little-endian) "
        "and file of every schema",
    )
    for p in (check, listing):
        p.add_argument("--dir", type=Path, default=None, help="schema folder (default: the shipped schemas)")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from schemas.registry import SCHEMA_DIR, SchemaSet

    directory: Path = args.dir or SCHEMA_DIR
    if not directory.is_dir():
        msg = f"schema directory {directory} does not exist"
        raise SchemaError(msg)
    schemas = SchemaSet(directory)
    if args.schemas_action == "list":
        return _list(schemas)
    return _check(schemas)


def snake_case(name: str) -> str:
    """``millstream.WindowAggregate`` -> ``window_aggregate`` (the expected file stem)."""
    short = name.rpartition(".")[2]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", short).lower()


def _list(schemas: Any) -> int:
    rows = [(v.name, f"v{v.version}", f"{v.fingerprint:016x}", str(v.path)) for v in schemas.versions]
    rows.sort()
    header = ("NAME", "VERSION", "FINGERPRINT", "FILE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
    return 0


def _check(schemas: Any) -> int:
    from schemas.compat import check_schema_set

    problems: list[str] = []
    for v in schemas.versions:
        expected = f"{snake_case(v.name)}.v{v.version}.avsc"
        if v.path.name != expected:
            problems.append(f"{v.path.name}: holds {v.name} v{v.version}, so it must be named {expected}")
    for problem in problems:
        print(f"BAD NAME      {problem}")
    for name, results in check_schema_set(schemas).items():
        if not results:
            print(f"OK            {name} v1 (only version)")
        for res in results:
            if res.ok:
                print(f"OK            {name} v{res.reader} reads data written by v{res.writer}")
                continue
            print(f"INCOMPATIBLE  {name} v{res.reader} cannot read data written by v{res.writer}:")
            for reason in res.reasons:
                print(f"                {reason}")
                problems.append(reason)
    if problems:
        listed = "; ".join(problems)
        msg = f"schema check failed in {schemas.directory} ({len(problems)} problem(s)): {listed}"
        raise IncompatibleSchemaError(msg)
    return 0
