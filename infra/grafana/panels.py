"""Small, typed helpers over grafana-foundation-sdk: datasources, variables, queries and panels.

Every panel reads from one of two datasource *variables* (``$prometheus``, ``$clickhouse``), so a
dashboard imports into any Grafana whatever its datasource uids are. The SDK has no query type for
the ClickHouse plugin (grafana-clickhouse-datasource); :class:`ClickHouseQuery` builds the target
object that plugin stores (``rawSql``, ``format``, ``queryType``).
"""

from __future__ import annotations

import json
from typing import Any

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


def _thresholds(steps: list[tuple[float | None, str]]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=v, color=c) for v, c in steps])
    )


GREEN: list[tuple[float | None, str]] = [(None, "green")]


# ------------------------------------------------------------------------------------------ panels
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
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_source(targets))
        .targets(targets)
        .unit(unit)
        .span(span)
        .height(height)
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


def stat_panel(
    title: str,
    target: Target,
    unit: str = "short",
    description: str = "",
    steps: list[tuple[float | None, str]] | None = None,
    span: int = 4,
    height: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(_source([target]))
        .with_target(target)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(_thresholds(steps or GREEN))
        .color_mode(common_models.BigValueColorMode.VALUE)
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def table_panel(
    title: str, target: Target, description: str = "", span: int = 12, height: int = 8
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(_source([target]))
        .with_target(target)
        .span(span)
        .height(height)
        .show_header(True)
        .cell_height(common_models.TableCellHeight.SM)
    )


def bar_panel(
    title: str,
    target: Target,
    unit: str = "short",
    description: str = "",
    steps: list[tuple[float | None, str]] | None = None,
    span: int = 12,
    height: int = 8,
) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(_source([target]))
        .with_target(target)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(_thresholds(steps or GREEN))
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


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
