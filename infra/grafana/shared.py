"""Series, thresholds, variables and panels that more than one dashboard shows."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat

from infra.grafana.panels import Steps, ch, prom, sql_variable, stat_panel

RULE1 = 'rule=~"WE1|N1|LIMIT"'
MILLSTREAM_ALERTS = 'alertname=~"Millstream.*"'

RED_AT_1: Steps = [(None, "green"), (1, "red")]
YELLOW_AT_1: Steps = [(None, "green"), (1, "yellow")]
SCORE_STEPS: Steps = [(None, "green"), (0.7, "yellow"), (0.9, "red")]  # normalised anomaly score


# The machine catalogue the plant, line, machine and sensor variables offer: every (machine, sensor)
# with a window in the last 7 days (as v_machine_latest), from the daily rollup (one row per machine,
# sensor and day: cheap at any fleet size). ClickHouse, not Prometheus: the sink writes the windows
# of both engines, while the per-machine Prometheus gauges exist only where the Faust job (or Flink
# in loopback mode) runs the domain metrics; variables read from them left every panel of these
# dashboards empty on Flink (docs/observability.md, What has data on each engine).
CATALOGUE = "FROM rollup_1d WHERE bucket >= today() - 7"


def catalogue_variable(
    name: str, label: str, column: str, where: str = "", multi: bool = False
) -> dashboard.QueryVariable:
    """The distinct values of ``column`` of the machine catalogue, narrowed by ``where`` (SQL)."""
    cond = f" AND {where}" if where else ""
    return sql_variable(name, label, f"SELECT DISTINCT {column} {CATALOGUE}{cond} ORDER BY {column}", multi)


def plant_variable(multi: bool = True) -> dashboard.QueryVariable:
    return catalogue_variable("plant", "Plant", "plant", multi=multi)


def firing_alerts(title: str, matcher: str, which: str, span: int = 4) -> stat.Panel:
    """How many alerts matching ``matcher`` fire now (0 when none); ``which`` says which in words."""
    expr = f'count(ALERTS{{alertstate="firing",{matcher}}}) or vector(0)'
    description = (
        f"Alerts firing now: {which} (Prometheus ALERTS). Each alert's runbook annotation says what to "
        "do; its dashboard annotation opens the dashboard to look at (docs/observability.md, Alerts)."
    )
    return stat_panel(title, prom(expr), steps=RED_AT_1, description=description, span=span)


def rule1_signals(title: str, description: str, span: int = 4) -> stat.Panel:
    """SPC rule-1 signals (points beyond the control limits) of the last 10 minutes, all plants."""
    expr = f"sum(rule:millstream_spc_signals:increase10m{{{RULE1}}}) or vector(0)"
    return stat_panel(title, prom(expr), steps=RED_AT_1, description=description, span=span)


def anomaly_events(title: str, span: int = 4) -> stat.Panel:
    """Anomaly events of the last 10 minutes, all plants."""
    expr = "sum(kind:millstream_anomaly_events:increase10m) or vector(0)"
    description = (
        "Anomaly events the detectors opened in the last 10 minutes, all plants (the counter has no "
        "machine label). Which machines: the incident panels (ClickHouse). Red from 6; "
        "MillstreamAnomalyBurst fires above 5 events of one kind and 3% of the machines."
    )
    steps: Steps = [(None, "green"), (1, "yellow"), (6, "red")]
    return stat_panel(title, prom(expr), steps=steps, description=description, span=span)


def highest_score(selector: str, span: int) -> stat.Panel:
    """The highest current anomaly score of the series ``selector`` picks."""
    expr = f"max(millstream_anomaly_score{{{selector}}})"
    description = (
        "The highest current normalised anomaly score (0-100%) of the selected machines' sensors. The "
        "colours (yellow from 70%, red from 90%) are a guide: each detector's own threshold opens an event."
    )
    return stat_panel(
        "Highest anomaly score",
        prom(expr),
        unit="percentunit",
        steps=SCORE_STEPS,
        description=description,
        span=span,
    )


def open_incidents(title: str, span: int) -> stat.Panel:
    """Anomaly incidents still open in the selected plants (ClickHouse)."""
    sql = "SELECT count() AS open FROM v_anomalies_ranked WHERE is_open AND plant IN (${plant:singlequote})"
    description = (
        "Anomaly incidents of the selected plants that have not closed yet (view v_anomalies_ranked). "
        "The incident table lists them by peak score; a click on a machine opens Machine detail."
    )
    return stat_panel(title, ch(sql), steps=YELLOW_AT_1, description=description, span=span)
