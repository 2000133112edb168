"""Small, typed helpers over grafana-foundation-sdk: datasources, variables, queries and panels.

Every panel reads from one of two datasource *variables* (``$prometheus``, ``$clickhouse``), so a
dashboard imports into any Grafana whatever its datasource uids are. The SDK has no query type for
the ClickHouse plugin (grafana-clickhouse-datasource); :class:`ClickHouseQuery` builds the target
object that plugin stores (``rawSql``, ``format``, ``queryType``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, Self, TypedDict, TypeVar, Unpack

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

PROMETHEUS_TYPE = "prometheus"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
PROMETHEUS = models.DataSourceRef(type_val=PROMETHEUS_TYPE, uid="${prometheus}")
CLICKHOUSE = models.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid="${clickhouse}")

# Values of the ClickHouse plugin's numeric `format` field (src/types.ts, enum Format).
CH_TIME_SERIES = 0
CH_TABLE = 1

Target = cogbuilder.Builder[Any]
Steps = list[tuple[float | None, str]]  # threshold steps: (from value, colour); the first from None


class ClickHouseQuery(cogbuilder.Builder[UnknownDataquery]):
    """A raw-SQL target of the grafana-clickhouse-datasource plugin."""

    def __init__(self, sql: str, fmt: int = CH_TABLE, ref_id: str = "A") -> None:
        self.sql = " ".join(sql.split())  # one line: readable in the JSON and in the panel editor
        self.fmt = fmt
        self.ref_id = ref_id

    def build(self) -> UnknownDataquery:
        return UnknownDataquery(
            {
                "datasource": {"type": CLICKHOUSE_TYPE, "uid": "${clickhouse}"},
                "editorType": "sql",
                "format": self.fmt,
                "queryType": "sql",
                "rawSql": self.sql,
                "refId": self.ref_id,
            }
        )


def prom(expr: str, legend: str = "__auto", ref_id: str = "A", instant: bool = False) -> prometheus.Dataquery:
    """A PromQL target (range query unless ``instant``)."""
    q = (
        prometheus.Dataquery()
        .expr(" ".join(expr.split()))
        .legend_format(legend)
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
    )
    return q.instant() if instant else q.range()


def ch(sql: str, fmt: int = CH_TABLE, ref_id: str = "A") -> ClickHouseQuery:
    return ClickHouseQuery(sql, fmt, ref_id)


def _source(targets: list[Target]) -> models.DataSourceRef:
    return CLICKHOUSE if all(isinstance(t, ClickHouseQuery) for t in targets) else PROMETHEUS


def _thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=v, color=c) for v, c in steps])
    )


GREEN: Steps = [(None, "green")]


def per_second(metric: str, by: str = "") -> str:
    """PromQL: the summed per-second rate of a counter (``metric`` may carry a selector), ``by`` labels."""
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({metric}[$__rate_interval]))"


def proms(*series: tuple[str, str]) -> list[Target]:
    """PromQL targets from (expression, legend) pairs, ref ids A, B, C... in order."""
    return [prom(expr, legend=legend, ref_id=chr(ord("A") + i)) for i, (expr, legend) in enumerate(series)]


# ------------------------------------------------------------------------------------------ panels
class _Panel(Protocol):
    """The builder methods every panel type used here has."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: models.DataSourceRef) -> Self: ...
    def targets(self, targets: list[Target]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...


class _ValuePanel(_Panel, Protocol):
    """A panel that reduces each series to one value (stat, bar gauge)."""

    def unit(self, unit: str) -> Self: ...
    def thresholds(self, thresholds: cogbuilder.Builder[models.ThresholdsConfig]) -> Self: ...
    def reduce_options(self, reduce_options: cogbuilder.Builder[common_models.ReduceDataOptions]) -> Self: ...


P = TypeVar("P", bound=_Panel)
V = TypeVar("V", bound=_ValuePanel)


class SeriesOptions(TypedDict, total=False):
    """Optional settings of a time-series panel (defaults: unit "short", 12 x 8, not stacked)."""

    unit: str
    description: str
    span: int
    height: int
    stacked: bool


class ValueOptions(TypedDict, total=False):
    """Optional settings of a stat or bar-gauge panel (defaults: unit "short", green only)."""

    unit: str
    description: str
    steps: Steps


def _framed(panel: P, title: str, targets: list[Target], description: str, span: int, height: int) -> P:
    """What every panel sets: title, description, its queries and their datasource, grid size."""
    p = panel.title(title).description(description).datasource(_source(targets)).targets(targets)
    return p.span(span).height(height)


def ts(
    title: str,
    targets: list[Target],
    unit: str = "short",
    description: str = "",
    span: int = 12,
    height: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    p = (
        _framed(timeseries.Panel(), title, targets, description, span, height)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI))
    )
    if stacked:
        p = p.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    return p


def prom_ts(title: str, expr: str, legend: str = "__auto", **opts: Unpack[SeriesOptions]) -> timeseries.Panel:
    """A time series of one PromQL range query."""
    return ts(title, [prom(expr, legend=legend)], **opts)


def ch_ts(title: str, sql: str, **opts: Unpack[SeriesOptions]) -> timeseries.Panel:
    """A time series of one ClickHouse query in the plugin's time-series format."""
    return ts(title, [ch(sql, fmt=CH_TIME_SERIES)], **opts)


def _value(
    panel: V,
    title: str,
    target: Target,
    span: int,
    height: int,
    unit: str = "short",
    description: str = "",
    steps: Steps | None = None,
) -> V:
    return (
        _framed(panel, title, [target], description, span, height)
        .unit(unit)
        .thresholds(_thresholds(steps or GREEN))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def stat_panel(
    title: str, target: Target, *, span: int = 4, height: int = 4, **opts: Unpack[ValueOptions]
) -> stat.Panel:
    """The latest value, large, coloured by ``steps``, over a sparkline."""
    return (
        _value(stat.Panel(), title, target, span, height, **opts)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .graph_mode(common_models.BigValueGraphMode.AREA)
    )


def bar_panel(
    title: str, target: Target, *, span: int = 12, height: int = 8, **opts: Unpack[ValueOptions]
) -> bargauge.Panel:
    """One horizontal bar per series, its latest value, coloured by ``steps``."""
    return (
        _value(bargauge.Panel(), title, target, span, height, **opts)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
    )


# A click on a machine_id cell opens Machine detail for that machine, with the same time range.
MACHINE_DETAIL_LINK = models.DynamicConfigValue(
    id_val="links",
    value=[
        {
            "title": "Machine detail",
            "url": "/d/millstream-machine-detail?var-plant=${__data.fields.plant}"
            "&var-line=${__data.fields.line}&var-machine=${__value.raw}&${__url_time_range}",
        }
    ],
)


def table_panel(
    title: str,
    target: Target,
    description: str = "",
    span: int = 12,
    height: int = 8,
    machine_links: bool = False,
) -> table.Panel:
    """A table; ``machine_links``: its rows have plant, line and machine_id, and a machine_id cell
    opens Machine detail for that machine."""
    p = (
        _framed(table.Panel(), title, [target], description, span, height)
        .show_header(True)
        .cell_height(common_models.TableCellHeight.SM)
    )
    return p.override_by_name("machine_id", [MACHINE_DETAIL_LINK]) if machine_links else p


# ------------------------------------------------------------------------------------------ variables
def datasource_variables() -> list[dashboard.DatasourceVariable]:
    return [
        dashboard.DatasourceVariable("prometheus").label("Prometheus").type(PROMETHEUS_TYPE),
        dashboard.DatasourceVariable("clickhouse").label("ClickHouse").type(CLICKHOUSE_TYPE),
    ]


def label_variable(
    name: str, label: str, metric: str, label_name: str, multi: bool = False
) -> dashboard.QueryVariable:
    """A variable of Prometheus label values: ``label_values(metric, label_name)``."""
    query = f"label_values({metric}, {label_name})"
    v = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)  # the classic string form: every Grafana version parses label_values() from it
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        v = v.multi(True).include_all(True)
    return v


def sql_variable(name: str, label: str, sql: str, multi: bool = False) -> dashboard.QueryVariable:
    """A variable of the values in the first column of a ClickHouse query (the plugin's variable
    support reads a plain SQL string and turns a one-column result into the options)."""
    v = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(CLICKHOUSE)
        .query(" ".join(sql.split()))
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        v = v.multi(True).include_all(True)
    return v


# ------------------------------------------------------------------------------------------ board
class Board:
    """A dashboard under construction: stable panel ids in insertion order, JSON rendering."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["millstream", *tags])
            .editable()
            .timezone("utc")
            .time("now-1h", "now")
            .refresh("30s")
            .tooltip(models.DashboardCursorSync.CROSSHAIR)
            .link(
                dashboard.DashboardLink("Millstream")
                .type(models.DashboardLinkType.DASHBOARDS)
                .tags(["millstream"])
                .as_dropdown(True)
                .include_vars(False)
                .keep_time(True)
            )
        )
        self._next_id = 1

    def _id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def variables(self, variables: list[Any]) -> Board:
        for v in variables:
            self.builder.with_variable(v)
        return self

    def row(self, title: str) -> Board:
        self.builder.with_row(dashboard.Row(title).id(self._id()))
        return self

    def add(self, *panels: Any) -> Board:
        for p in panels:
            self.builder.with_panel(p.id(self._id()))
        return self

    def to_dict(self) -> dict[str, Any]:
        """The dashboard model as Grafana stores it (plain JSON types)."""
        out: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        return out


def board(name: str, description: str, tags: list[str], *variables: dashboard.QueryVariable) -> Board:
    """The dashboard "Millstream / ``name``" (uid ``millstream-<name in lower case, dashed>``), its
    datasource variables first, then ``variables``."""
    uid = "millstream-" + name.lower().replace(" ", "-")
    return Board(uid, f"Millstream / {name}", description, tags).variables(
        [*datasource_variables(), *variables]
    )
