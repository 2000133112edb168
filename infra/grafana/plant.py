"""Plant overview and machine detail: what the machines do now (Prometheus) and did (ClickHouse)."""

from __future__ import annotations

from typing import Any

from infra.grafana.panels import (
    CH_TIME_SERIES,
    Board,
    bar_panel,
    ch,
    datasource_variables,
    label_variable,
    prom,
    stat_panel,
    table_panel,
    ts,
)

FRESHNESS = "millstream_last_reading_timestamp_seconds"
RULE1 = 'rule=~"WE1|N1|LIMIT"'
SILENT_STEPS: list[tuple[float | None, str]] = [(None, "green"), (30, "yellow"), (120, "red")]


def plant_overview() -> dict[str, Any]:
    sel = 'plant=~"$plant"'
    b = Board(
        "millstream-plant-overview",
        "Millstream / Plant overview",
        "Every machine of the selected plants: who reports, what the latest windows say, what SPC and "
        "the anomaly detectors flagged.",
        ["plant"],
    ).variables(
        [
            *datasource_variables(),
            label_variable("plant", "Plant", FRESHNESS, "plant", multi=True),
            label_variable("sensor", "Sensor", f"millstream_window_mean{{{sel}}}", "sensor"),
        ]
    )
    b.row("Fleet now")
    b.add(
        stat_panel(
            "Machines reporting",
            prom(
                f"sum(line:millstream_machines:count{{{sel}}})"
                f" - sum(line:millstream_machines_silent:count{{{sel}}})"
            ),
            description="Machines whose newest reading is at most 120 s old (event time).",
        ),
        stat_panel(
            "Machines silent > 120 s",
            prom(f"sum(line:millstream_machines_silent:count{{{sel}}})"),
            steps=[(None, "green"), (1, "red")],
            description="Machines known to the stream job with no reading for more than 120 s.",
        ),
        stat_panel(
            "Sensor values / s",
            prom("sum(rate(millstream_gateway_values_total[$__rate_interval]))"),
            unit="ops",
            description="Sensor values the gateways produce (all plants).",
        ),
        stat_panel(
            "SPC rule-1 signals (10 min)",
            prom(f"sum(rule:millstream_spc_signals:increase10m{{{RULE1}}}) or vector(0)"),
            steps=[(None, "green"), (1, "red")],
            description="Points beyond the 3-sigma control limits, all plants (WE1, N1 or LIMIT).",
        ),
        stat_panel(
            "Anomaly events (10 min)",
            prom("sum(kind:millstream_anomaly_events:increase10m) or vector(0)"),
            steps=[(None, "green"), (1, "yellow"), (6, "red")],
        ),
        stat_panel(
            "Firing alerts",
            prom('count(ALERTS{alertstate="firing",alertname=~"Millstream.*"}) or vector(0)'),
            steps=[(None, "green"), (1, "red")],
        ),
    )
    b.row("Machines")
    b.add(
        bar_panel(
            "Seconds since last reading",
            prom(
                f"sort_desc(machine:millstream_seconds_since_last_reading{{{sel}}})",
                legend="{{plant}}/{{line}}/{{machine_id}}",
                instant=True,
            ),
            unit="s",
            steps=SILENT_STEPS,
            description="Wall clock minus the event time of each machine's newest reading.",
        ),
        ts(
            "Machines reporting by line",
            [
                prom(
                    f"line:millstream_machines:count{{{sel}}}"
                    f" - line:millstream_machines_silent:count{{{sel}}}",
                    legend="{{plant}}/{{line}}",
                )
            ],
            stacked=True,
        ),
        ts(
            "Latest window mean: $sensor",
            [prom(f'millstream_window_mean{{{sel},sensor="$sensor"}}', legend="{{line}}/{{machine_id}}")],
            description="Mean of each machine's latest closed window of the selected sensor.",
            span=24,
        ),
    )
    b.row("Latest state and history (ClickHouse)")
    b.add(
        stat_panel(
            "Sensors out of specification",
            ch(
                "SELECT countIf(in_spec = 0) AS out_of_spec FROM v_machine_latest "
                "WHERE plant IN (${plant:singlequote})"
            ),
            steps=[(None, "green"), (1, "red")],
            description="Latest window mean outside the lsl/usl loaded into the machines table.",
            span=8,
        ),
        stat_panel(
            "Open anomaly incidents",
            ch(
                "SELECT count() AS open FROM v_anomalies_ranked "
                "WHERE is_open AND plant IN (${plant:singlequote})"
            ),
            steps=[(None, "green"), (1, "yellow")],
            span=8,
        ),
        stat_panel(
            "Data gaps and stale sensors (24 h)",
            ch("SELECT count() AS gaps FROM v_data_gaps WHERE plant IN (${plant:singlequote})"),
            steps=[(None, "green"), (1, "yellow")],
            span=8,
        ),
        table_panel(
            "Latest state per machine and sensor",
            ch(
                "SELECT plant, line, machine_id, sensor, unit, round(mean, 4) AS mean, round(min, 4) AS min, "
                "round(max, 4) AS max, lsl, usl, in_spec, spc_signals_24h, anomaly_open, age_s, window_end "
                "FROM v_machine_latest WHERE plant IN (${plant:singlequote}) "
                "ORDER BY plant, line, machine_id, sensor"
            ),
            description="The newest window of every (machine, sensor) with its specification limits, "
            "SPC signals in the last 24 h and open anomalies (view v_machine_latest).",
            span=24,
            height=10,
        ),
        ts(
            "Windows written per interval, by line",
            [
                ch(
                    "SELECT $__timeInterval_ms(window_end) AS time, concat(plant, '/', line) AS line, "
                    "count() AS windows FROM window_aggregates FINAL "
                    "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(window_end) "
                    "GROUP BY time, line ORDER BY time",
                    fmt=CH_TIME_SERIES,
                )
            ],
            stacked=True,
        ),
        table_panel(
            "Data gaps (24 h)",
            ch(
                "SELECT plant, line, machine_id, sensor, kind, gap_start, gap_end, gap_s, missing_windows "
                "FROM v_data_gaps WHERE plant IN (${plant:singlequote}) "
                "ORDER BY gap_s DESC NULLS FIRST LIMIT 100"
            ),
            description="gap: consecutive windows more than 3 window sizes apart; stale: no window for "
            "10 minutes (view v_data_gaps).",
        ),
        table_panel(
            "SPC violations (24 h)",
            ch(
                "SELECT event_time, plant, line, machine_id, sensor, chart, rule, rule_description, "
                "round(value, 4) AS value, round(lcl, 4) AS lcl, round(ucl, 4) AS ucl "
                "FROM v_spc_violations_24h WHERE plant IN (${plant:singlequote}) LIMIT 100"
            ),
        ),
        table_panel(
            "Top anomaly incidents",
            ch(
                "SELECT rank, plant, line, machine_id, sensor, started_at, ended_at, is_open, duration_s, "
                "round(peak_score, 4) AS peak_score FROM v_anomalies_ranked "
                "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(started_at) "
                "ORDER BY rank LIMIT 20"
            ),
        ),
    )
    return b.to_dict()


def machine_detail() -> dict[str, Any]:
    one = 'plant="$plant",line="$line",machine_id="$machine"'
    b = Board(
        "millstream-machine-detail",
        "Millstream / Machine detail",
        "One machine: freshness, every sensor's windows, anomaly scores, SPC signals and dead letters.",
        ["machine"],
    ).variables(
        [
            *datasource_variables(),
            label_variable("plant", "Plant", FRESHNESS, "plant"),
            label_variable("line", "Line", f'{FRESHNESS}{{plant="$plant"}}', "line"),
            label_variable("machine", "Machine", f'{FRESHNESS}{{plant="$plant",line="$line"}}', "machine_id"),
            label_variable("sensor", "Sensor", f"millstream_window_mean{{{one}}}", "sensor", multi=True),
        ]
    )
    b.row("Now")
    b.add(
        stat_panel(
            "Seconds since last reading",
            prom(f"machine:millstream_seconds_since_last_reading{{{one}}}"),
            unit="s",
            steps=SILENT_STEPS,
            span=6,
        ),
        stat_panel("Sensors reporting", prom(f"count(millstream_window_mean{{{one}}})"), span=6),
        stat_panel(
            "Highest anomaly score",
            prom(f"max(millstream_anomaly_score{{{one}}})"),
            unit="percentunit",
            steps=[(None, "green"), (0.7, "yellow"), (0.9, "red")],
            span=6,
        ),
        stat_panel(
            "Firing alerts for this machine",
            prom('count(ALERTS{alertstate="firing",machine_id="$machine"}) or vector(0)'),
            steps=[(None, "green"), (1, "red")],
            span=6,
        ),
    )
    b.row("Sensors")
    b.add(
        ts(
            "Window mean per sensor",
            [prom(f'millstream_window_mean{{{one},sensor=~"$sensor"}}', legend="{{sensor}}")],
        ),
        ts(
            "Anomaly score per sensor",
            [prom(f'millstream_anomaly_score{{{one},sensor=~"$sensor"}}', legend="{{sensor}}")],
            unit="percentunit",
        ),
    )
    b.row("Latest state and history (ClickHouse)")
    b.add(
        table_panel(
            "Latest state per sensor",
            ch(
                "SELECT sensor, unit, window_end, round(mean, 4) AS mean, round(min, 4) AS min, "
                "round(max, 4) AS max, round(std, 4) AS std, lsl, usl, in_spec, spc_signals_24h, "
                "anomaly_open, age_s FROM v_machine_latest "
                "WHERE plant = ${plant:singlequote} AND line = ${line:singlequote} "
                "AND machine_id = ${machine:singlequote} ORDER BY sensor"
            ),
            span=24,
        ),
        ts(
            "Window mean per sensor (all windows)",
            [
                ch(
                    "SELECT window_end AS time, sensor, mean FROM window_aggregates FINAL "
                    "WHERE plant = ${plant:singlequote} AND line = ${line:singlequote} "
                    "AND machine_id = ${machine:singlequote} "
                    "AND sensor IN (${sensor:singlequote}) AND $__timeFilter_ms(window_end) "
                    "ORDER BY time",
                    fmt=CH_TIME_SERIES,
                )
            ],
        ),
        ts(
            "Raw readings",
            [
                ch(
                    "SELECT event_time AS time, sensor, value FROM readings "
                    "WHERE machine_id = ${machine:singlequote} AND plant = ${plant:singlequote} "
                    "AND sensor IN (${sensor:singlequote}) AND $__timeFilter_ms(event_time) "
                    "ORDER BY time LIMIT 100000",
                    fmt=CH_TIME_SERIES,
                )
            ],
            description="Only when the sink stores raw readings (MILLSTREAM_SINK_RAW_READINGS=true).",
        ),
        ts(
            "Hourly mean (rollup, last 7 days)",
            [
                ch(
                    "SELECT bucket AS time, sensor, mean FROM v_rollup_1h "
                    "WHERE machine_id = ${machine:singlequote} AND sensor IN (${sensor:singlequote}) "
                    "AND $__timeFilter(bucket) ORDER BY time",
                    fmt=CH_TIME_SERIES,
                )
            ],
            description="From the rollup tables: cheap over weeks of data.",
            span=24,
        ).time_from("7d"),
        table_panel(
            "Recent windows",
            ch(
                "SELECT window_start, window_end, sensor, unit, count, round(mean, 4) AS mean_value, "
                "round(std, 4) AS std_value, min, max, p95, version FROM window_aggregates FINAL "
                "WHERE plant = ${plant:singlequote} AND line = ${line:singlequote} "
                "AND machine_id = ${machine:singlequote} "
                "AND sensor IN (${sensor:singlequote}) AND $__timeFilter_ms(window_end) "
                "ORDER BY window_end DESC, sensor LIMIT 200"
            ),
            span=24,
        ),
        table_panel(
            "SPC signals (24 h)",
            ch(
                "SELECT event_time, sensor, chart, rule, rule_description, round(value, 4) AS value, "
                "round(center, 4) AS center, round(lcl, 4) AS lcl, round(ucl, 4) AS ucl "
                "FROM v_spc_violations_24h "
                "WHERE plant = ${plant:singlequote} AND machine_id = ${machine:singlequote} LIMIT 200"
            ),
        ),
        table_panel(
            "Anomaly incidents",
            ch(
                "SELECT rank_in_machine AS rank, sensor, started_at, ended_at, is_open, duration_s, "
                "round(peak_score, 4) AS peak_score, round(threshold, 4) AS threshold, model_id "
                "FROM v_anomalies_ranked "
                "WHERE plant = ${plant:singlequote} AND machine_id = ${machine:singlequote} "
                "AND $__timeFilter_ms(started_at) ORDER BY rank_in_machine LIMIT 50"
            ),
        ),
        table_panel(
            "Alerts about this machine",
            ch(
                "SELECT starts_at, status, severity, alertname, annotations['summary'] AS summary, ends_at "
                "FROM alerts FINAL WHERE labels['machine_id'] = ${machine:singlequote} "
                "AND labels['plant'] = ${plant:singlequote} AND $__timeFilter_ms(starts_at) "
                "ORDER BY starts_at DESC LIMIT 100"
            ),
        ),
        table_panel(
            "Dead letters keyed by this machine",
            ch(
                "SELECT failed_at, stage, reason_code, reason, topic, partition, offset "
                "FROM dead_letters FINAL WHERE key = ${machine:singlequote} AND $__timeFilter_ms(failed_at) "
                "ORDER BY failed_at DESC LIMIT 100"
            ),
        ),
    )
    return b.to_dict()
