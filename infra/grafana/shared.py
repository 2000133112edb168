"""Series, thresholds, variables and panels that more than one dashboard shows."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat

from infra.grafana.panels import Steps, ch, label_variable, prom, stat_panel

FRESHNESS = "millstream_last_reading_timestamp_seconds"
RULE1 = 'rule=~"WE1|N1|LIMIT"'
MILLSTREAM_ALERTS = 'alertname=~"Millstream.*"'

RED_AT_1: Steps = [(None, "green"), (1, "red")]
YELLOW_AT_1: Steps = [(None, "green"), (1, "yellow")]
SCORE_STEPS: Steps = [(None, "green"), (0.7, "yellow"), (0.9, "red")]  # normalised anomaly score


def plant_variable(multi: bool = True) -> dashboard.QueryVariable:
    return label_variable("plant", "Plant", FRESHNESS, "plant", multi=multi)


def firing_alerts(title: str, matcher: str, span: int = 4) -> stat.Panel:
    """How many alerts matching ``matcher`` fire now (0 when none)."""
    expr = f'count(ALERTS{{alertstate="firing",{matcher}}}) or vector(0)'
    return stat_panel(title, prom(expr), steps=RED_AT_1, span=span)


def rule1_signals(title: str, description: str, span: int = 4) -> stat.Panel:
    """SPC rule-1 signals (points beyond the control limits) of the last 10 minutes, all plants."""
    expr = f"sum(rule:millstream_spc_signals:increase10m{{{RULE1}}}) or vector(0)"
    return stat_panel(title, prom(expr), steps=RED_AT_1, description=description, span=span)


def anomaly_events(title: str, span: int = 4) -> stat.Panel:
    """Anomaly events of the last 10 minutes, all plants."""
    expr = "sum(kind:millstream_anomaly_events:increase10m) or vector(0)"
    return stat_panel(title, prom(expr), steps=[(None, "green"), (1, "yellow"), (6, "red")], span=span)


def highest_score(selector: str, span: int) -> stat.Panel:
    """The highest current anomaly score of the series ``selector`` picks."""
    expr = f"max(millstream_anomaly_score{{{selector}}})"
    return stat_panel("Highest anomaly score", prom(expr), unit="percentunit", steps=SCORE_STEPS, span=span)


def open_incidents(title: str, span: int) -> stat.Panel:
    """Anomaly incidents still open in the selected plants (ClickHouse)."""
    sql = "SELECT count() AS open FROM v_anomalies_ranked WHERE is_open AND plant IN (${plant:singlequote})"
    return stat_panel(title, ch(sql), steps=YELLOW_AT_1, span=span)
