"""Plant overview and machine detail: what the machines do now (Prometheus) and did (ClickHouse)."""

from __future__ import annotations

from typing import Any

from infra.grafana import shared
from infra.grafana.panels import (
    Steps,
    bar_panel,
    board,
    ch,
    ch_ts,
    label_variable,
    per_second,
    prom,
    prom_ts,
    stat_panel,
    table_panel,
)

SILENT_STEPS: Steps = [(None, "green"), (30, "yellow"), (120, "red")]


def plant_overview() -> dict[str, Any]:
    sel = 'plant=~"$plant"'
    b = board(
        "Plant overview",
        "Every machine of the selected plants: who reports, what the latest windows say, what SPC and "
        "the anomaly detectors flagged.",
        ["plant"],
        shared.plant_variable(),
        label_variable("sensor", "Sensor", f"millstream_window_mean{{{sel}}}", "sensor"),
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
            steps=shared.RED_AT_1,
            description="Machines known to the stream job with no reading for more than 120 s.",
        ),
        stat_panel(
            "Sensor values / s",
            prom(per_second("millstream_gateway_values_total")),
            unit="ops",
            description="Sensor values the gateways produce (all plants).",
        ),
        shared.rule1_signals(
            "SPC rule-1 signals (10 min)",
            "Points beyond the 3-sigma control limits, all plants (WE1, N1 or LIMIT).",
        ),
        shared.anomaly_events("Anomaly events (10 min)"),
        shared.firing_alerts("Firing alerts", shared.MILLSTREAM_ALERTS, "every Millstream alert, all plants"),
    )
    b.row("Machines")
    b.add(
        bar_panel(
            "Seconds since last reading, 20 longest",
            prom(
                f"sort_desc(topk(20, machine:millstream_seconds_since_last_reading{{{sel}}}))",
                legend="{{plant}}/{{line}}/{{machine_id}}",
                instant=True,
            ),
            unit="s",
            steps=SILENT_STEPS,
            description="Wall clock minus the event time of each machine's newest reading, for the 20 "
            "machines silent longest (one bar per machine would be unreadable for a fleet). Yellow: "
            "over 30 s; red: over 120 s, when MillstreamMachineSilent fires.",
        ),
        prom_ts(
            "Machines reporting by line",
            f"line:millstream_machines:count{{{sel}}} - line:millstream_machines_silent:count{{{sel}}}",
            "{{plant}}/{{line}}",
            stacked=True,
            description=(
                "Machines per line whose newest reading is at most 120 s old (event time), stacked. A step "
                "down: machines went silent; the bar chart of seconds since the last reading names them."
            ),
        ),
        prom_ts(
            "Latest window mean: $sensor",
            f'millstream_window_mean{{{sel},sensor="$sensor"}}',
            "{{line}}/{{machine_id}}",
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
            steps=shared.RED_AT_1,
            description="Latest window mean outside the lsl/usl loaded into the machines table.",
            span=8,
        ),
        shared.open_incidents("Open anomaly incidents", span=8),
        stat_panel(
            "Data gaps and stale sensors (24 h)",
            ch("SELECT count() AS gaps FROM v_data_gaps WHERE plant IN (${plant:singlequote})"),
            steps=shared.YELLOW_AT_1,
            span=8,
            description=(
                "Gaps (consecutive windows more than 3 window sizes apart) and stale sensors (no window for "
                "10 minutes) of the last 24 h (view v_data_gaps); the Data gaps table lists them."
            ),
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
            machine_links=True,
        ),
        ch_ts(
            "Windows written per interval, by line",
            "SELECT $__timeInterval_ms(window_end) AS time, concat(plant, '/', line) AS line, "
            "count() AS windows FROM window_aggregates FINAL "
            "WHERE plant IN (${plant:singlequote}) AND $__timeFilter_ms(window_end) "
            "GROUP BY time, line ORDER BY time",
            stacked=True,
            description=(
                "Window rows the sink wrote to ClickHouse per interval (by window end), per line. A line at "
                "0 while its machines report: look at the sink on Pipeline health."
            ),
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
            machine_links=True,
        ),
        table_panel(
            "SPC violations (24 h)",
            ch(
                "SELECT event_time, plant, line, machine_id, sensor, chart, rule, rule_description, "
                "round(value, 4) AS value, round(lcl, 4) AS lcl, round(ucl, 4) AS ucl "
                "FROM v_spc_violations_24h WHERE plant IN (${plant:singlequote}) LIMIT 100"
            ),
            machine_links=True,
            description=(
                "The newest 100 SPC signals of the last 24 h with their control limits (view "
                "v_spc_violations_24h). Out of control is not out of specification: compare with lsl/usl in "
                "the table above."
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
            machine_links=True,
            description=(
                "The 20 incidents with the highest peak score that started in the time range (view "
                "v_anomalies_ranked)."
            ),
        ),
    )
    return b.to_dict()


def machine_detail() -> dict[str, Any]:
    one = 'plant="$plant",line="$line",machine_id="$machine"'
    b = board(
        "Machine detail",
        "One machine: freshness, every sensor's windows, anomaly scores, SPC signals and dead letters.",
        ["machine"],
        shared.plant_variable(multi=False),
        shared.catalogue_variable("line", "Line", "line", "plant = ${plant:singlequote}"),
        shared.catalogue_variable(
            "machine", "Machine", "machine_id", "plant = ${plant:singlequote} AND line = ${line:singlequote}"
        ),
        shared.catalogue_variable(
            "sensor", "Sensor", "sensor", "machine_id = ${machine:singlequote}", multi=True
        ),
    )
    b.row("Now")
    b.add(
        stat_panel(
            "Seconds since last reading",
            prom(f"machine:millstream_seconds_since_last_reading{{{one}}}"),
            unit="s",
            steps=SILENT_STEPS,
            span=6,
            description=(
                "Wall clock minus the event time of this machine's newest reading (stream job). Over 120 s "
                "for a minute fires MillstreamMachineSilent: is the machine stopped? Else check its gateway "
                "and the device clock."
            ),
        ),
        stat_panel(
            "Sensors reporting",
            ch(
                "SELECT countIf(age_s <= greatest(120, 3 * dateDiff('second', window_start, window_end))) "
                "AS reporting FROM v_machine_latest WHERE machine_id = '${machine}'"
            ),
            span=6,
            description=(
                "Sensors of this machine whose newest window ended less than three window lengths (at "
                "least 2 minutes) ago (view v_machine_latest; every engine). A sensor that stopped "
                "drops out; Latest state per sensor shows its age_s."
            ),
        ),
        shared.highest_score(one, span=6),
        shared.firing_alerts(
            "Firing alerts for this machine",
            'machine_id="$machine"',
            "alerts with this machine's machine_id (MillstreamMachineSilent)",
            span=6,
        ),
    )
    b.row("Sensors")
    b.add(
        prom_ts(
            "Window mean per sensor",
            f'millstream_window_mean{{{one},sensor=~"$sensor"}}',
            "{{sensor}}",
            description=(
                "Mean of each sensor's latest closed window as the stream job exports it (sampled at each "
                "scrape). Every window: the ClickHouse panel below."
            ),
        ),
        prom_ts(
            "Anomaly score per sensor",
            f'millstream_anomaly_score{{{one},sensor=~"$sensor"}}',
            "{{sensor}}",
            unit="percentunit",
            description=(
                "Latest normalised anomaly score of each sensor (0-100%); each detector's own threshold "
                "opens an event (Anomaly incidents below)."
            ),
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
            description=(
                "The newest window of each sensor with its specification limits (lsl/usl, machines table), "
                "in_spec, SPC signals of the last 24 h, open anomalies and age_s, seconds since the window "
                "end (view v_machine_latest)."
            ),
        ),
        ch_ts(
            "Window mean per sensor (all windows)",
            "SELECT window_end AS time, sensor, mean FROM window_aggregates FINAL "
            "WHERE plant = ${plant:singlequote} AND line = ${line:singlequote} "
            "AND machine_id = ${machine:singlequote} "
            "AND sensor IN (${sensor:singlequote}) AND $__timeFilter_ms(window_end) "
            "ORDER BY time",
            description=(
                "The mean of every window of the selected sensors (window_aggregates, newest version of each"
                " window)."
            ),
        ),
        ch_ts(
            "Raw readings",
            "SELECT event_time AS time, sensor, value FROM readings "
            "WHERE machine_id = ${machine:singlequote} AND plant = ${plant:singlequote} "
            "AND sensor IN (${sensor:singlequote}) AND $__timeFilter_ms(event_time) "
            "ORDER BY time LIMIT 100000",
            description="Only when the sink stores raw readings (MILLSTREAM_SINK_RAW_READINGS=true).",
        ),
        ch_ts(
            "Hourly mean (rollup, last 7 days)",
            "SELECT bucket AS time, sensor, mean FROM v_rollup_1h "
            "WHERE machine_id = ${machine:singlequote} AND sensor IN (${sensor:singlequote}) "
            "AND $__timeFilter(bucket) ORDER BY time",
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
            description=(
                "The newest 200 windows of the selected sensors in the time range: count, mean, std, min, "
                "max, p95; a window re-emitted for late readings has a higher version."
            ),
        ),
        table_panel(
            "SPC signals (24 h)",
            ch(
                "SELECT event_time, sensor, chart, rule, rule_description, round(value, 4) AS value, "
                "round(center, 4) AS center, round(lcl, 4) AS lcl, round(ucl, 4) AS ucl "
                "FROM v_spc_violations_24h "
                "WHERE plant = ${plant:singlequote} AND machine_id = ${machine:singlequote} LIMIT 200"
            ),
            description=(
                "This machine's SPC signals of the last 24 h with center line and control limits (view "
                "v_spc_violations_24h). Out of control is not out of specification: compare with lsl/usl "
                "above."
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
            description=(
                "This machine's anomaly incidents that started in the time range, by peak score, with the "
                "detector's threshold and model (view v_anomalies_ranked)."
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
            description=(
                "Alert notifications about this machine (labels plant and machine_id), firing and resolved, "
                "as Alertmanager sent them to the sink (table alerts)."
            ),
        ),
        table_panel(
            "Dead letters keyed by this machine",
            ch(
                "SELECT failed_at, stage, reason_code, reason, topic, partition, offset "
                "FROM dead_letters FINAL WHERE key = ${machine:singlequote} AND $__timeFilter_ms(failed_at) "
                "ORDER BY failed_at DESC LIMIT 100"
            ),
            description=(
                "Records keyed by this machine id that a stage could not process (table dead_letters): the "
                "reason, and topic, partition and offset to find or replay them."
            ),
        ),
    )
    return b.to_dict()
