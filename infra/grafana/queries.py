"""Turn dashboard targets into the exact queries Grafana would send, for tests and for debugging.

Grafana replaces template variables before a query leaves the browser, and the ClickHouse plugin
expands its macros on the server. :func:`prometheus_query` and :func:`clickhouse_sql` do the same
for a chosen set of variable values and time range, so a test can run every panel's query against a
real Prometheus or ClickHouse.

Macro definitions follow the grafana-clickhouse-datasource plugin (pkg/macros/macros.go):
``$__timeFilter(c)`` is ``c >= toDateTime(from_s) AND c <= toDateTime(to_s)``, the ``_ms`` forms use
``fromUnixTimestamp64Milli(ms)``, ``$__timeInterval(c)`` is
``toStartOfInterval(toDateTime(c), INTERVAL n second)`` and ``$__timeInterval_ms(c)``
``toStartOfInterval(toDateTime64(c, 3), INTERVAL n millisecond)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.grafana.panels import CLICKHOUSE_TYPE, PROMETHEUS_TYPE


@dataclass(frozen=True)
class PanelTarget:
    """One query of one panel."""

    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    datasource: str  # plugin id
    query: str  # expr or rawSql, uninterpolated
    instant: bool = False
    time_from: str | None = None  # the panel's relative time override ("7d"), if any
    legend: str = ""  # Prometheus: the legend format ("{{stage}}"), "__auto" or empty

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dashboard.get("panels") or []:
        yield p
        yield from p.get("panels") or []  # collapsed rows keep their panels inside


def targets(dashboard: dict[str, Any]) -> list[PanelTarget]:
    out = []
    for p in _panels(dashboard):
        for t in p.get("targets") or []:
            ds = (t.get("datasource") or p.get("datasource") or {}).get("type", "")
            query = t.get("expr") if ds == PROMETHEUS_TYPE else t.get("rawSql")
            if not query:
                continue
            title, ref_id = p.get("title", ""), t.get("refId", "")
            out.append(
                PanelTarget(
                    dashboard["uid"],
                    title,
                    ref_id,
                    ds,
                    query,
                    bool(t.get("instant")),
                    p.get("timeFrom"),
                    t.get("legendFormat") or "",
                )
            )
    return out


def legend_labels(legend: str) -> set[str]:
    """The label names a legend format shows (``{{plant}}/{{line}}`` -> plant, line)."""
    return set(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend))


def query_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's query variables in declaration order (later ones may use earlier ones)."""
    return [v for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"]


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<match>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)\s*$")


def label_values_query(variable: dict[str, Any]) -> tuple[str | None, str]:
    """``label_values(match, label)`` of a Prometheus query variable, as (match selector, label)."""
    q = variable.get("query")
    text = q.get("query", "") if isinstance(q, dict) else str(q or "")
    m = _LABEL_VALUES.match(text)
    if not m:
        msg = f"variable {variable.get('name')}: not a label_values() query: {text!r}"
        raise ValueError(msg)
    return m.group("match"), m.group("label")


def variable_datasource(variable: dict[str, Any]) -> str:
    """The plugin id of the datasource a query variable reads (``prometheus`` or the ClickHouse one)."""
    return str((variable.get("datasource") or {}).get("type", ""))


def variable_sql(variable: dict[str, Any], values: dict[str, list[str]], multi: set[str]) -> str:
    """The SQL of a ClickHouse query variable with the variables it depends on replaced."""
    q = variable.get("query")
    text = q.get("rawSql", "") if isinstance(q, dict) else str(q or "")
    sql = interpolate(text, values, multi, CLICKHOUSE_TYPE)
    if "$" in sql:
        msg = f"variable {variable.get('name')}: unexpanded variable left in: {sql}"
        raise ValueError(msg)
    return sql


_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration_ms(text: str) -> int:
    """A Grafana relative duration ("30m", "7d") in milliseconds."""
    m = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not m:
        msg = f"not a duration: {text!r}"
        raise ValueError(msg)
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


# ------------------------------------------------------------------------------------ variables
_VAR = re.compile(r"\$\{(?P<braced>[a-zA-Z_]\w*)(?::(?P<fmt>\w+))?\}|\$(?P<plain>[a-zA-Z_]\w*)")


def interpolate(text: str, values: dict[str, list[str]], multi: set[str], datasource: str) -> str:
    """Replace template variables the way Grafana formats them for ``datasource``.

    Prometheus: a multi-value or include-all variable becomes a regex alternation of escaped values,
    a single-value one its raw value. ``${v:singlequote}`` becomes ``'a','b'`` (``'`` escaped as
    ``\\'``, as Grafana's singlequote format does).
    Names starting with ``__`` (Grafana's built-ins and the ClickHouse macros) are left alone.
    """

    def repl(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        if name.startswith("__") or name not in values:
            return m.group(0)
        vals = values[name]
        fmt = m.group("fmt")
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in vals)
        if fmt not in (None, "raw", "regex"):
            msg = f"unsupported variable format ${{{name}:{fmt}}}"
            raise ValueError(msg)
        if datasource == PROMETHEUS_TYPE and (name in multi or fmt == "regex"):
            escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in vals]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return ",".join(vals)

    return _VAR.sub(repl, text)


# ------------------------------------------------------------------------------------ built-ins
def prometheus_query(text: str, values: dict[str, list[str]], multi: set[str], interval: str = "10s") -> str:
    """A Prometheus target with variables and ``$__rate_interval``/``$__interval``/``$__range`` replaced."""
    out = interpolate(text, values, multi, PROMETHEUS_TYPE)
    for builtin in ("$__rate_interval", "$__interval", "$__range"):
        out = out.replace(builtin, interval)
    return out


_MACRO = re.compile(r"\$__(?P<name>\w+)(?:\((?P<args>[^()]*)\))?")


def clickhouse_sql(
    text: str,
    values: dict[str, list[str]],
    multi: set[str],
    from_ms: int,
    to_ms: int,
    interval_ms: int = 10_000,
) -> str:
    """A ClickHouse target with variables and the plugin's macros expanded into concrete SQL."""
    sql = interpolate(text, values, multi, CLICKHOUSE_TYPE)
    f_s, t_s, step_s = from_ms // 1000, to_ms // 1000, max(1, interval_ms // 1000)
    constants = {
        "fromTime": f"toDateTime({f_s})",
        "toTime": f"toDateTime({t_s})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({from_ms})",
        "toTime_ms": f"fromUnixTimestamp64Milli({to_ms})",
        "interval_s": str(step_s),
    }
    of_column: dict[str, Callable[[str], str]] = {  # macros of one column argument
        "timeFilter": lambda c: f"{c} >= {constants['fromTime']} AND {c} <= {constants['toTime']}",
        "timeFilter_ms": lambda c: f"{c} >= {constants['fromTime_ms']} AND {c} <= {constants['toTime_ms']}",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {step_s} second)",
        "timeInterval_ms": lambda c: (
            f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {max(1, interval_ms)} millisecond)"
        ),
    }

    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        args = [a.strip() for a in (m.group("args") or "").split(",") if a.strip()]
        if name in constants:
            return constants[name]
        if name in of_column:
            (c,) = args
            return of_column[name](c)
        msg = f"unknown ClickHouse macro $__{name}"
        raise ValueError(msg)

    sql = _MACRO.sub(repl, sql)
    if "$" in sql:
        msg = f"unexpanded variable or macro left in: {sql}"
        raise ValueError(msg)
    return sql


# ------------------------------------------------------------------------------------ metric names
_METRIC_DEF = re.compile(r"(Counter|Gauge|Histogram|Summary)\(\s*\"(millstream_[a-z0-9_]+)\"", re.S)
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROMQL_WORDS = {
    "sum", "count", "max", "min", "avg", "rate", "increase", "irate", "deriv", "delta", "abs",
    "histogram_quantile", "topk", "bottomk", "sort_desc", "sort", "time", "vector", "absent",
    "min_over_time", "max_over_time", "avg_over_time", "changes", "or", "and", "unless", "bool",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric (and recorded series) names a PromQL expression reads."""
    body = re.sub(r'"[^"]*"', '""', expr)  # label values
    body = re.sub(r"\{[^}]*\}", "", body)  # matchers
    body = re.sub(r"\[[^\]]*\]", "", body)  # ranges
    body = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", body)  # label lists
    return {n for n in _IDENT.findall(body) if n not in _PROMQL_WORDS}


def exported_metric_names(repo: Path) -> set[str]:
    """Sample names the Millstream processes export, from the metric definitions in ingest, streams, sinks."""
    names: set[str] = set()
    for pkg in ("ingest", "streams", "sinks"):
        for path in (repo / pkg).rglob("*.py"):
            for kind, name in _METRIC_DEF.findall(path.read_text(encoding="utf-8")):
                if kind.endswith("Counter"):
                    names.add(name + "_total")
                elif kind == "Histogram":
                    names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
                else:
                    names.add(name)
    return names
