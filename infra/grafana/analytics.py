"""SPC and anomaly dashboards: signal rates from Prometheus, the signals themselves from ClickHouse."""

from __future__ import annotations

from typing import Any

from infra.grafana import shared
from infra.grafana.panels import (
    bar_panel,
    board,
    ch,
    ch_ts,
    per_second,
    prom,
    prom_ts,
    stat_panel,
    table_panel,
)


def spc() -> dict[str, Any]:
    b = board(
        "SPC",
        "Statistical process control: run-rule signals of the control charts of every (machine, sensor).",
        ["spc", "quality"],
        shared.plant_variable(),
    )
    b.row("Signals now (Prometheus, all plants)")
    b.add(
        shared.rule1_signals(
            "Rule-1 signals (10 min)",
            "Points beyond the 3-sigma control limits (WE1, N1, or LIMIT without run rules).",
            span=8,
        ),
        stat_panel(
            "All run-rule signals (10 min)",
            prom("sum(rule:millstream_spc_signals:increase10m) or vector(0)"),
            steps=shared.YELLOW_AT_1,
            span=8,
        ),
        shared.firing_alerts("Firing SPC alerts", 'alertname="MillstreamSpcOutOfControl"', span=8),
        prom_ts(
            "Signals per 10 min, by chart and rule",
            "rule:millstream_spc_signals:increase10m",
            "{{chart}} {{rule}}",
            stacked=True,
        ),
        prom_ts(
            "Signal rate by rule", per_second("millstream_spc_signals_total", "rule"), "{{rule}}", unit="ops"
        ),
    )
    b.row("Signals (ClickHouse)")
    b.add(
        ch_ts(
            "Signals per interval, by rule",
            "SELECT $__timeInterval_ms(emitted_at) AS time, rule, count() AS signals "
            "FROM spc_signals FINAL "
            "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(emitted_at) "
            "GROUP BY time, rule ORDER BY time",
            description="By the time the stream job signalled (emitted_at).",
            stacked=True,
        ),
        bar_panel(
            "Machines and sensors with the most signals",
            ch(
                "SELECT concat(plant, '/', line, '/', machine_id, ' ', sensor) AS machine_sensor, "
                "count() AS signals FROM spc_signals FINAL "
                "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(emitted_at) "
                "GROUP BY machine_sensor ORDER BY signals DESC LIMIT 10"
            ),
            steps=[(None, "yellow"), (10, "red")],
        ),
        table_panel(
            "Violations in the last 24 h, with their control limits",
            ch(
                "SELECT event_time, plant, line, machine_id, sensor, chart, rule, rule_description, "
                "round(value, 4) AS value, round(center, 4) AS center, round(lcl, 4) AS lcl, "
                "round(ucl, 4) AS ucl FROM v_spc_violations_24h WHERE plant IN (${plant:singlequote}) "
                "LIMIT 500"
            ),
            description="View v_spc_violations_24h: newest first, the rule in words.",
            span=24,
            height=10,
        ),
        table_panel(
            "Sensors with signals against their specification",
            ch(
                "SELECT plant, line, machine_id, sensor, spc_signals_24h, round(mean, 4) AS mean, lsl, usl, "
                "in_spec FROM v_machine_latest "
                "WHERE plant IN (${plant:singlequote}) AND spc_signals_24h > 0 "
                "ORDER BY spc_signals_24h DESC LIMIT 100"
            ),
            description="Out of control is not out of specification: compare the signals with lsl/usl.",
            span=24,
        ),
    )
    return b.to_dict()


def anomalies() -> dict[str, Any]:
    b = board(
        "Anomalies",
        "Anomaly detection: events the detectors opened and the current normalised scores.",
        ["anomaly"],
        shared.plant_variable(),
    )
    b.row("Now (Prometheus)")
    b.add(
        shared.anomaly_events("Anomaly events (10 min, all plants)", span=8),
        shared.highest_score('plant=~"$plant"', span=8),
        shared.firing_alerts("Firing anomaly alerts", 'alertname="MillstreamAnomalyBurst"', span=8),
        prom_ts(
            "Events per 10 min, by kind",
            "kind:millstream_anomaly_events:increase10m",
            "{{kind}}",
            stacked=True,
        ),
        bar_panel(
            "Top 10 anomaly scores",
            prom(
                'topk(10, millstream_anomaly_score{plant=~"$plant"})',
                legend="{{line}}/{{machine_id}} {{sensor}}",
                instant=True,
            ),
            unit="percentunit",
            steps=shared.SCORE_STEPS,
        ),
    )
    b.row("Incidents (ClickHouse)")
    b.add(
        shared.open_incidents("Open incidents", span=24),
        ch_ts(
            "Incidents opened per interval, by plant and line",
            "SELECT $__timeInterval_ms(event_time) AS time, concat(plant, '/', line) AS line, "
            "count() AS incidents FROM anomalies FINAL "
            "WHERE state = 'open' AND plant IN (${plant:singlequote}) "
            "AND $__timeFilter_ms(event_time) "
            "GROUP BY time, line ORDER BY time",
            stacked=True,
        ),
        bar_panel(
            "Machines with the most incidents",
            ch(
                "SELECT concat(plant, '/', line, '/', machine_id) AS machine, count() AS incidents "
                "FROM v_anomalies_ranked "
                "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(started_at) "
                "GROUP BY machine ORDER BY incidents DESC LIMIT 10"
            ),
            steps=[(None, "yellow"), (5, "red")],
        ),
        table_panel(
            "Incidents ranked by peak score",
            ch(
                "SELECT rank, plant, line, machine_id, sensor, started_at, ended_at, is_open, duration_s, "
                "round(peak_score, 4) AS peak_score, round(excess, 4) AS excess, model_id "
                "FROM v_anomalies_ranked "
                "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(started_at) "
                "ORDER BY rank LIMIT 100"
            ),
            description="View v_anomalies_ranked: peak score, then duration.",
            span=24,
            height=10,
        ),
    )
    return b.to_dict()
