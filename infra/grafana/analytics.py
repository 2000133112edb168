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
            description=(
                "Signals of every run rule (WE1-WE4, N1-N8, LIMIT) of the last 10 minutes, all plants. The "
                "rules beyond rule 1 flag runs, trends and shifts inside the limits."
            ),
        ),
        shared.firing_alerts(
            "Firing SPC alerts",
            'alertname="MillstreamSpcOutOfControl"',
            "MillstreamSpcOutOfControl, more rule-1 signals than in-control processes produce",
            span=8,
        ),
        prom_ts(
            "Signals per 10 min, by chart and rule",
            "rule:millstream_spc_signals:increase10m",
            "{{chart}} {{rule}}",
            stacked=True,
            description="SPC signals of the trailing 10 minutes by chart type and rule, all plants.",
        ),
        prom_ts(
            "Signal rate by rule",
            per_second("millstream_spc_signals_total", "rule"),
            "{{rule}}",
            unit="ops",
            description="SPC signals per second by rule, all plants.",
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
            description=(
                "The 10 (machine, sensor) pairs with the most SPC signals in the time range (table "
                "spc_signals); their limits are in the violations table below."
            ),
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
            machine_links=True,
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
            machine_links=True,
        ),
        table_panel(
            "Least capable processes (24 h, per hour)",
            ch(
                "SELECT period_start, plant, line, machine_id, sensor, windows, round(cpk, 2) AS cpk, "
                "round(ppk, 2) AS ppk, round(cp, 2) AS cp, round(pp, 2) AS pp, round(mean, 4) AS mean, "
                "lsl, usl "
                "FROM v_capability WHERE plant IN (${plant:singlequote}) AND cpk IS NOT NULL "
                "ORDER BY cpk ASC LIMIT 100"
            ),
            description=(
                "View v_capability: Cp/Cpk from the spread within windows, Pp/Ppk from the hour's overall "
                "spread, against the specification limits of the machines table (millstream metadata load). "
                "Cpk below 1.33 is the usual call to act; Ppk well below Cpk: the mean wanders between "
                "windows."
            ),
            span=24,
            machine_links=True,
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
        shared.firing_alerts(
            "Firing anomaly alerts",
            'alertname="MillstreamAnomalyBurst"',
            "MillstreamAnomalyBurst, more anomaly events than chance explains",
            span=8,
        ),
        prom_ts(
            "Events per 10 min, by kind",
            "kind:millstream_anomaly_events:increase10m",
            "{{kind}}",
            stacked=True,
            description=(
                "Anomaly events opened in the trailing 10 minutes by detector kind (sensor: one sensor's "
                "detector; machine: the detector over all sensors of a machine), all plants."
            ),
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
            description="The 10 highest current normalised anomaly scores of the selected plants.",
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
            description=(
                "Anomaly incidents opened per interval (by their open event's time), per line (table "
                "anomalies)."
            ),
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
            description=(
                "The 10 machines with the most incidents that started in the time range (view "
                "v_anomalies_ranked)."
            ),
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
            machine_links=True,
        ),
    )
    return b.to_dict()
