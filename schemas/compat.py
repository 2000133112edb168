"""Backward compatibility of Avro schemas: can a reader on the NEW schema read data the OLD one wrote?

The rules are those of schema resolution in the Avro specification ("Schema Resolution"):

* records: fields are matched by name, or by a reader field's aliases; a field the new schema adds
  needs a default; fields the new schema drops are ignored; matched fields resolve recursively;
* enums: a symbol the writer may write that the reader lacks needs the reader's enum default;
* arrays and maps resolve their items / values recursively; fixed types must keep their size;
* unions: every branch the writer may write must match a reader branch (the first exact match,
  else the first promotable one); a non-union writer must match a branch of a union reader;
  a union writer read by a non-union reader needs every branch to resolve to it;
* primitives must be equal or promotable: int -> long, float, double; long -> float, double;
  float -> double; string <-> bytes.

Named types (record, enum, fixed) match on their *full* name or an alias of the reader's type.
Recent versions of the specification only compare unqualified names and fastavro follows them,
but Java's resolving decoder compares full names ("Found a.X, expecting b.X"), so a namespace
change can break JVM consumers: this check takes the strict reading. Logical types are ignored,
as in resolution (Millstream keeps timestamps as epoch-millisecond longs). The spec's bytes -> string
promotion is accepted, but it only holds for bytes that are UTF-8 (fastavro fails on other bytes,
Java substitutes U+FFFD): review such a change by hand.

Every version of a record is checked against *every* earlier version (transitive backward), since a
topic can hold data from all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.exceptions import SchemaError

if TYPE_CHECKING:
    from schemas.registry import SchemaSet, SchemaVersion

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}

# A normalised schema node: a primitive name, a named type's full name (defined in a _Names table),
# a list (union), or a dict for arrays ({"type": "array", "items"}) and maps ({"type": "map", "values"}).
Node = Any


@dataclass(frozen=True)
class PairResult:
    """Outcome of checking that version ``reader`` of ``name`` reads data written by version ``writer``."""

    name: str
    reader: int
    writer: int
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.reasons


# ---------------------------------------------------------------------------------- normalising
def _full(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


class _Names:
    """Named types of one schema, by full name, after the schema is normalised."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self.root = self._norm(schema, None)

    def deref(self, node: Node) -> Node:
        if isinstance(node, str) and node in self.types:
            return self.types[node]
        return node

    def _norm(self, s: Any, ns: str | None) -> Node:
        if isinstance(s, list):
            return [self._norm(branch, ns) for branch in s]
        if isinstance(s, str):
            if s in PRIMITIVES:
                return s
            for candidate in (_full(s, ns), s):
                if candidate in self.types:
                    return candidate
            msg = f"unknown type {s!r}"
            raise SchemaError(msg)
        if not isinstance(s, dict) or "type" not in s:
            msg = f"not an Avro schema: {s!r}"
            raise SchemaError(msg)
        kind = s["type"]
        if not isinstance(kind, str):  # {"type": {"type": "array", ...}}
            return self._norm(kind, ns)
        if kind in ("array", "map"):
            key = "items" if kind == "array" else "values"
            return {"type": kind, key: self._norm(s[key], ns)}
        if kind not in NAMED:
            return self._norm(kind, ns)  # {"type": "long", "logicalType": ...} or a nested type
        name = s["name"]
        own_ns = s.get("namespace", ns) if "." not in name else name.rpartition(".")[0]
        full = _full(name, own_ns)
        node: dict[str, Any] = {
            "type": "record" if kind == "error" else kind,
            "name": full,
            "aliases": [_full(a, own_ns) for a in s.get("aliases", [])],
        }
        self.types[full] = node  # before the fields: records may refer to themselves
        if kind == "enum":
            node["symbols"] = list(s["symbols"])
            node["default"] = s.get("default")
        elif kind == "fixed":
            node["size"] = s["size"]
        else:
            node["fields"] = [
                {
                    "name": f["name"],
                    "aliases": list(f.get("aliases", [])),
                    "type": self._norm(f["type"], own_ns),
                    "has_default": "default" in f,
                }
                for f in s.get("fields", [])
            ]
        return full


# ---------------------------------------------------------------------------------- resolving
class _Resolver:
    def __init__(self, writer: _Names, reader: _Names, old: str, new: str) -> None:
        self.w = writer
        self.r = reader
        self.old = old
        self.new = new
        self.reasons: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def label(self, node: Node, names: _Names) -> str:
        node = names.deref(node)
        if isinstance(node, list):
            return "union[" + ", ".join(self.label(b, names) for b in node) + "]"
        if isinstance(node, str):
            return node
        if node["type"] == "array":
            return f"array<{self.label(node['items'], names)}>"
        if node["type"] == "map":
            return f"map<{self.label(node['values'], names)}>"
        return f"{node['type']} {node['name']}"

    @staticmethod
    def _same_name(w: dict[str, Any], r: dict[str, Any]) -> bool:
        return bool(w["name"] == r["name"] or w["name"] in r["aliases"])

    def matches(self, w: Node, r: Node, exact: bool) -> bool:
        """Shallow match (the spec's "match"), used to pick a reader union branch."""
        w, r = self.w.deref(w), self.r.deref(r)
        if isinstance(w, list) or isinstance(r, list):
            return False
        if isinstance(w, str) and isinstance(r, str):
            return w == r or (not exact and r in PROMOTIONS.get(w, ()))
        if isinstance(w, str) or isinstance(r, str) or w["type"] != r["type"]:
            return False
        if w["type"] == "array":
            return self.matches(w["items"], r["items"], exact)
        if w["type"] == "map":
            return self.matches(w["values"], r["values"], exact)
        if w["type"] == "fixed" and w["size"] != r["size"]:
            return False
        return self._same_name(w, r)

    def pick(self, w: Node, union: list[Node]) -> Node | None:
        for exact in (True, False):
            for branch in union:
                if self.matches(w, branch, exact):
                    return branch
        return None

    def resolve(self, w: Node, r: Node, path: str) -> None:
        w, r = self.w.deref(w), self.r.deref(r)
        if isinstance(w, list):
            for branch in w:
                if isinstance(r, list):
                    target = self.pick(branch, r)
                    if target is None:
                        self.add(
                            f"{path}: union branch {self.label(branch, self.w)} written by {self.old} "
                            f"matches no branch of {self.label(r, self.r)} in {self.new}"
                        )
                        continue
                    self.resolve(branch, target, path)
                elif self.matches(branch, r, exact=False):
                    self.resolve(branch, r, path)
                else:
                    self.add(
                        f"{path}: union branch {self.label(branch, self.w)} written by {self.old} "
                        f"cannot be read as {self.label(r, self.r)} by {self.new}"
                    )
            return
        if isinstance(r, list):
            target = self.pick(w, r)
            if target is None:
                self.add(
                    f"{path}: {self.label(w, self.w)} written by {self.old} matches no branch of "
                    f"{self.label(r, self.r)} in {self.new}"
                )
            else:
                self.resolve(w, target, path)
            return
        if isinstance(w, str) or isinstance(r, str) or w["type"] != r["type"]:
            if not self.matches(w, r, exact=False):
                self.mismatch(w, r, path)
            return
        kind = w["type"]
        if kind == "array":
            self.resolve(w["items"], r["items"], f"{path}[]")
        elif kind == "map":
            self.resolve(w["values"], r["values"], f"{path}{{}}")
        elif not self._same_name(w, r):
            self.add(
                f"{path}: {kind} {w['name']} written by {self.old} does not match {kind} {r['name']} "
                f"in {self.new} (names differ and {self.new} has no alias {w['name']})"
            )
        elif kind == "fixed":
            if w["size"] != r["size"]:
                self.add(
                    f"{path}: fixed {r['name']} has size {w['size']} in {self.old} "
                    f"but {r['size']} in {self.new}"
                )
        elif kind == "enum":
            self.enum(w, r, path)
        else:
            self.record(w, r, path)

    def mismatch(self, w: Node, r: Node, path: str) -> None:
        self.add(
            f"{path}: type {self.label(w, self.w)} written by {self.old} cannot be read as "
            f"{self.label(r, self.r)} by {self.new}"
        )

    def enum(self, w: dict[str, Any], r: dict[str, Any], path: str) -> None:
        if r["default"] is not None:
            return
        for symbol in w["symbols"]:
            if symbol not in r["symbols"]:
                self.add(
                    f"{path}: symbol {symbol} written by {self.old} is missing in {self.new} "
                    f"and {self.new} has no enum default"
                )

    def record(self, w: dict[str, Any], r: dict[str, Any], path: str) -> None:
        key = (w["name"], r["name"])
        if key in self._seen:  # recursive type, already being checked
            return
        self._seen.add(key)
        by_name = {f["name"]: f for f in w["fields"]}
        for rf in r["fields"]:
            wf = by_name.get(rf["name"])
            if wf is None:
                wf = next((by_name[a] for a in rf["aliases"] if a in by_name), None)
            if wf is not None:
                self.resolve(wf["type"], rf["type"], f"{path}.{rf['name']}")
            elif not rf["has_default"]:
                self.add(
                    f"{path}.{rf['name']}: field is in {self.new} but not in {self.old} "
                    f"and has no default, so {self.new} cannot read data written by {self.old}"
                )

    def add(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)


# ---------------------------------------------------------------------------------- public API
def check_backward(old: Any, new: Any, old_label: str = "old", new_label: str = "new") -> list[str]:
    """Why a reader on ``new`` cannot read data written with ``old`` (empty list: it can).

    ``old`` and ``new`` are Avro schemas as parsed JSON (dict, list or str).
    """
    writer, reader = _Names(old), _Names(new)
    resolver = _Resolver(writer, reader, old_label, new_label)
    root = reader.deref(reader.root)
    path = root["name"] if isinstance(root, dict) and "name" in root else "<root>"
    resolver.resolve(writer.root, reader.root, path)
    return resolver.reasons


def check_versions(versions: Sequence[SchemaVersion]) -> list[PairResult]:
    """Each version against every earlier one (transitive backward), oldest pairs first."""
    ordered = sorted(versions, key=lambda v: v.version)
    results = []
    for i, new in enumerate(ordered):
        for old in ordered[:i]:
            reasons = check_backward(old.raw, new.raw, f"v{old.version}", f"v{new.version}")
            results.append(PairResult(new.name, new.version, old.version, tuple(reasons)))
    return results


def check_schema_set(schemas: SchemaSet) -> dict[str, list[PairResult]]:
    """Transitive backward check of every record in ``schemas``, by full name."""
    return {name: check_versions(versions) for name, versions in sorted(schemas.by_name.items())}
