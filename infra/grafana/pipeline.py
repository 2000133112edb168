"""Pipeline health: is every component up, is data flowing, where does it wait or get lost."""

from __future__ import annotations

from typing import Any

from infra.grafana.panels import (
    CH_TIME_SERIES,
    Board,
    ch,
    datasource_variables,
    label_variable,
    prom,
    stat_panel,
    table_panel,
    ts,
)

C = 'component=~"$component"'
RI = "$__rate_interval"


def pipeline_health() -> dict[str, Any]:
    b = Board(
        "millstream-pipeline-health",
        "Millstream / Pipeline health",
        "Gateway -> Kafka -> stream job -> Kafka -> sink -> ClickHouse: availability, throughput, lag, "
        "latency, losses and resources of every component.",
        ["pipeline", "sre"],
    ).variables(
        [*datasource_variables(), label_variable("component", "Component", "up", "component", multi=True)]
    )

    b.row("Components")
    b.add(
        stat_panel("Targets up", prom(f"sum(up{{{C}}})"), span=6),
        stat_panel(
            "Targets down",
            prom(f"count(up{{{C}}} == 0) or vector(0)"),
            steps=[(None, "green"), (1, "red")],
            span=6,
        ),
        stat_panel(
            "Firing alerts",
            prom('count(ALERTS{alertstate="firing",alertname=~"Millstream.*"}) or vector(0)'),
            steps=[(None, "green"), (1, "red")],
            span=6,
        ),
        stat_panel(
            "Uptime (youngest process)",
            prom(f"time() - max(millstream_process_start_time_ms{{{C}}}) / 1000"),
            unit="s",
            span=6,
        ),
        ts("Scrape status", [prom(f"up{{{C}}}", legend="{{component}} {{instance}}")], span=24, height=6),
    )

    b.row("Flow")
    b.add(
        ts(
            "Records in / s",
            [prom(f"component:millstream_records_in:rate1m{{{C}}}", legend="{{stage}}")],
            unit="ops",
            description="Kafka records each stage consumed (a machine scan counts once).",
        ),
        ts(
            "Records out / s",
            [prom(f"component:millstream_records_out:rate1m{{{C}}}", legend="{{stage}}")],
            unit="ops",
            description="Sensor values produced (gateway), windows emitted (windows), rows written (sink).",
        ),
        ts(
            "Consumer lag",
            [prom(f"component:millstream_consumer_lag_records:sum{{{C}}}", legend="{{stage}} {{topic}}")],
            description="High watermark minus position, summed over partitions.",
        ),
        ts(
            "End-to-end latency",
            [
                prom(
                    f"component:millstream_end_to_end_latency_ms:quantile5m{{{C}}}",
                    legend="{{stage}} p{{quantile}}",
                )
            ],
            unit="ms",
            description="Event time (windows: window end) to the moment the stage handled the result.",
        ),
        ts(
            "Watermark lag",
            [prom(f"component:millstream_watermark_lag_seconds:max{{{C}}}", legend="{{stage}}")],
            unit="s",
            description="Wall clock minus the event-time watermark of the stream job.",
        ),
        ts(
            "Dead letters / s, by reason",
            [prom(f"component:millstream_dead_letters:rate5m{{{C}}}", legend="{{stage}} {{reason}}")],
            unit="ops",
            description="too_late: readings behind watermark + allowed lateness (late topic); "
            "the others go to the dead-letter topic and the ClickHouse dead_letters table.",
        ),
        ts(
            "Decode errors / s",
            [
                prom(
                    f"sum by (component, stage) (rate(millstream_decode_errors_total{{{C}}}[{RI}]))",
                    legend="{{stage}}",
                )
            ],
            unit="ops",
            span=24,
            height=6,
        ),
    )

    b.row("Sink")
    b.add(
        ts(
            "Rows written / s, by table",
            [prom("table:millstream_sink_rows:rate1m", legend="{{table}}")],
            unit="ops",
        ),
        ts(
            "Insert duration p99, by table",
            [prom("table:millstream_sink_insert_seconds:quantile5m", legend="{{table}}")],
            unit="s",
        ),
        ts(
            "Rows per insert (median)",
            [
                prom(
                    "histogram_quantile(0.5, sum by (table, le) "
                    f"(rate(millstream_sink_batch_rows_bucket[{RI}])))",
                    legend="{{table}}",
                )
            ],
        ),
        ts(
            "Insert retries and rejected rows / s",
            [
                prom(
                    f"sum by (table) (rate(millstream_sink_retries_total[{RI}]))",
                    legend="retries {{table}}",
                ),
                prom(
                    f"sum by (table) (rate(millstream_sink_rejected_rows_total[{RI}]))",
                    legend="rejected {{table}}",
                    ref_id="B",
                ),
            ],
            unit="ops",
        ),
        ts(
            "Backpressure",
            [
                prom("max(millstream_sink_paused)", legend="paused (1 = yes)"),
                prom(
                    f"sum by (reason) (rate(millstream_sink_pauses_total[{RI}]))",
                    legend="pauses / s ({{reason}})",
                    ref_id="B",
                ),
            ],
            description="The sink pauses consumption while a batch is being retried or the backlog is full.",
        ),
        ts(
            "Alert notifications received / s",
            [
                prom(
                    f"sum by (status) (rate(millstream_sink_alerts_received_total[{RI}]))",
                    legend="{{status}}",
                )
            ],
            unit="ops",
            description="Alerts Alertmanager posted to the sink's /alertmanager webhook and the sink wrote.",
        ),
        ts(
            "Buffered rows and commits",
            [
                prom("sum(millstream_sink_pending_rows)", legend="pending rows"),
                prom(f"sum(rate(millstream_sink_commits_total[{RI}]))", legend="commits / s", ref_id="B"),
            ],
            span=24,
            height=6,
        ),
    )

    b.row("Gateways")
    b.add(
        ts(
            "Messages / s, by outcome",
            [prom(f"sum by (outcome) (rate(millstream_gateway_messages_total[{RI}]))", legend="{{outcome}}")],
            unit="ops",
        ),
        ts(
            "Sensor values / s, by gateway",
            [prom(f"sum by (instance) (rate(millstream_gateway_values_total[{RI}]))", legend="{{instance}}")],
            unit="ops",
        ),
        ts(
            "In-flight messages",
            [prom("millstream_gateway_in_flight_messages", legend="{{instance}}")],
        ),
        ts(
            "Backpressure and rate limiting",
            [
                prom(
                    f"sum by (instance) (rate(millstream_gateway_backpressure_waits_total[{RI}]))",
                    legend="queue-full waits / s {{instance}}",
                ),
                prom(
                    f"sum by (instance) (rate(millstream_gateway_throttled_seconds_total[{RI}]))",
                    legend="throttled s / s {{instance}}",
                    ref_id="B",
                ),
            ],
        ),
        ts(
            "Delivery failures / s",
            [
                prom(
                    f"sum(rate(millstream_gateway_delivery_failures_total[{RI}])) or vector(0)",
                    legend="not acknowledged",
                )
            ],
            unit="ops",
            description="Break down by the reason label in Explore (librdkafka error names).",
        ),
        ts(
            "Broker reachable (store-and-forward)",
            [prom("millstream_gateway_broker_online", legend="{{instance}}")],
            description="1 while the gateway sends to Kafka, 0 while it spools locally.",
            span=8,
        ),
        ts(
            "Spool backlog",
            [prom("millstream_gateway_spool_records", legend="{{instance}}")],
            description="Spooled records not yet acknowledged by Kafka.",
            span=8,
        ),
        ts(
            "Spooled, replayed and dropped / s",
            [
                prom(
                    f"sum by (instance) (rate(millstream_gateway_spooled_total[{RI}]))",
                    legend="spooled {{instance}}",
                ),
                prom(
                    f"sum by (instance) (rate(millstream_gateway_replayed_total[{RI}]))",
                    legend="replayed {{instance}}",
                    ref_id="B",
                ),
                prom(
                    f"sum by (instance, reason) (rate(millstream_gateway_spool_dropped_total[{RI}]))",
                    legend="dropped {{reason}} {{instance}}",
                    ref_id="C",
                ),
            ],
            unit="ops",
            span=8,
        ),
        ts(
            "Simulated faults, by kind",
            [
                prom(
                    f"sum by (kind) (rate(millstream_gateway_simulated_faults_total[{RI}]))",
                    legend="{{kind}}",
                )
            ],
            unit="ops",
            description="Only the plant simulator injects faults.",
        ),
    )

    b.row("Processes")
    b.add(
        ts(
            "CPU",
            [prom(f"rate(process_cpu_seconds_total{{{C}}}[{RI}])", legend="{{component}} {{instance}}")],
            unit="percentunit",
            span=8,
        ),
        ts(
            "Resident memory",
            [prom(f"process_resident_memory_bytes{{{C}}}", legend="{{component}} {{instance}}")],
            unit="bytes",
            span=8,
        ),
        ts(
            "Domain-metric updates dropped / s",
            [
                prom(
                    f"sum(rate(millstream_metrics_series_dropped_total[{RI}])) or vector(0)",
                    legend="dropped by the cardinality guard",
                )
            ],
            unit="ops",
            description="MILLSTREAM_METRICS_MAX_SERIES caps the label sets of each domain metric.",
            span=8,
        ),
    )

    b.row("Records (ClickHouse)")
    b.add(
        ts(
            "Sink write delay p99",
            [
                ch(
                    "SELECT $__timeInterval_ms(written_at) AS time, "
                    "quantile(0.99)(dateDiff('millisecond', emitted_at, written_at)) AS p99_ms "
                    "FROM window_aggregates WHERE $__timeFilter_ms(written_at) GROUP BY time ORDER BY time",
                    fmt=CH_TIME_SERIES,
                )
            ],
            unit="ms",
            description="Stream job emission to ClickHouse insert, per window row.",
        ),
        table_panel(
            "Dead letters by stage and reason",
            ch(
                "SELECT stage, reason_code, count() AS records, max(failed_at) AS last_failed_at "
                "FROM dead_letters FINAL WHERE $__timeFilter_ms(failed_at) "
                "GROUP BY stage, reason_code ORDER BY records DESC"
            ),
        ),
        ts(
            "Alerts started per interval, by severity",
            [
                ch(
                    "SELECT $__timeInterval_ms(starts_at) AS time, severity, "
                    "uniqExact(fingerprint) AS alerts "
                    "FROM alerts FINAL WHERE status = 'firing' AND $__timeFilter_ms(starts_at) "
                    "GROUP BY time, severity ORDER BY time",
                    fmt=CH_TIME_SERIES,
                )
            ],
            description="Alert history written by the sink's Alertmanager webhook (table alerts).",
        ),
        table_panel(
            "Alert history",
            ch(
                "SELECT starts_at, ends_at, status, severity, alertname, labels['component'] AS component, "
                "annotations['summary'] AS summary, receiver FROM alerts FINAL "
                "WHERE $__timeFilter_ms(starts_at) ORDER BY starts_at DESC, status LIMIT 200"
            ),
        ),
        table_panel(
            "Latest dead letters",
            ch(
                "SELECT failed_at, stage, topic, partition, offset, key, reason_code, reason "
                "FROM dead_letters FINAL WHERE $__timeFilter_ms(failed_at) ORDER BY failed_at DESC LIMIT 100"
            ),
            span=24,
        ),
    )
    return b.to_dict()
