"""Pipeline health: is every component up, is data flowing, where does it wait or get lost."""

from __future__ import annotations

from typing import Any

from infra.grafana import shared
from infra.grafana.panels import (
    board,
    ch,
    ch_ts,
    label_variable,
    per_second,
    prom,
    prom_ts,
    proms,
    stat_panel,
    table_panel,
    ts,
)

J = 'job=~"$job"'  # one deployment's processes share a job label (docs/observability.md, Label contract)
C = f'{J},component=~"$component"'


def j(metric: str) -> str:
    """``metric`` of the selected deployments."""
    return f"{metric}{{{J}}}"


def pipeline_health() -> dict[str, Any]:
    b = board(
        "Pipeline health",
        "Gateway -> Kafka -> stream job -> Kafka -> sink -> ClickHouse: availability, throughput, lag, "
        "latency, losses and resources of every component.",
        ["pipeline", "sre"],
        label_variable("job", "Job", 'up{component=~"gateway|windows|sink"}', "job", multi=True),
        label_variable("component", "Component", f"up{{{J}}}", "component", multi=True),
    )

    b.row("Components")
    b.add(
        stat_panel(
            "Targets up",
            prom(f"sum(up{{{C}}})"),
            span=6,
            description="Scrape targets of the selected jobs and components that answered their last scrape.",
        ),
        stat_panel(
            "Targets down",
            prom(f"count(up{{{C}}} == 0) or vector(0)"),
            steps=shared.RED_AT_1,
            span=6,
            description=(
                "Targets whose last scrape failed. Down for a minute fires MillstreamComponentDown: check "
                "the process or pod and its log."
            ),
        ),
        shared.firing_alerts(
            "Firing alerts", shared.MILLSTREAM_ALERTS, "every Millstream alert, all jobs", span=6
        ),
        stat_panel(
            "Uptime (youngest process)",
            prom(f"time() - max(millstream_process_start_time_ms{{{C}}}) / 1000"),
            unit="s",
            span=6,
            description=(
                "Time since the most recently started Millstream process of the selection started. Small "
                "again and again: a process restarts; see Scrape status and the pod restarts."
            ),
        ),
        prom_ts(
            "Scrape status",
            f"up{{{C}}}",
            "{{component}} {{instance}}",
            span=24,
            height=6,
            description="1 while the last scrape of a target succeeded, 0 while it failed.",
        ),
    )

    b.row("Flow")
    b.add(
        prom_ts(
            "Records in / s",
            f"component:millstream_records_in:rate1m{{{C}}}",
            "{{stage}}",
            unit="ops",
            description="Kafka records each stage consumed (a machine scan counts once).",
        ),
        prom_ts(
            "Records out / s",
            f"component:millstream_records_out:rate1m{{{C}}}",
            "{{stage}}",
            unit="ops",
            description="Sensor values produced (gateway), windows emitted (windows), rows written (sink).",
        ),
        prom_ts(
            "Consumer lag",
            f"component:millstream_consumer_lag_records:sum{{{C}}}",
            "{{stage}} {{topic}}",
            description="High watermark minus position, summed over partitions.",
        ),
        prom_ts(
            "End-to-end latency",
            f"component:millstream_end_to_end_latency_ms:quantile5m{{{C}}}",
            "{{stage}} p{{quantile}}",
            unit="ms",
            description="Event time (windows: window end) to the moment the stage handled the result.",
        ),
        prom_ts(
            "Watermark lag",
            f"component:millstream_watermark_lag_seconds:max{{{C}}}",
            "{{stage}}",
            unit="s",
            description="Wall clock minus the event-time watermark of the stream job.",
        ),
        prom_ts(
            "Dead letters / s, by reason",
            f"component:millstream_dead_letters:rate5m{{{C}}}",
            "{{stage}} {{reason}}",
            unit="ops",
            description="too_late: readings behind watermark + allowed lateness (late topic); "
            "the others go to the dead-letter topic and the ClickHouse dead_letters table.",
        ),
        prom_ts(
            "Decode errors / s",
            per_second(f"millstream_decode_errors_total{{{C}}}", "component, stage"),
            "{{stage}}",
            unit="ops",
            span=12,
            height=6,
            description=(
                "Values a stage could not decode (wrong or unregistered schema, corrupt payload); they go to"
                " the dead-letter topic: see Dead letters by stage and reason."
            ),
        ),
        prom_ts(
            "Records re-read after a gap / s",
            per_second(f"millstream_catch_up_records_total{{{C}}}", "component, stage"),
            "{{stage}}",
            unit="ops",
            span=12,
            height=6,
            description="Input records the Faust worker's consumer did not deliver (after a restart, or "
            "skipped) that the worker read from Kafka directly: nothing was lost. Steady non-zero: "
            "look at the worker's log.",
        ),
    )

    b.row("Sink")
    b.add(
        prom_ts(
            "Rows written / s, by table",
            j("table:millstream_sink_rows:rate1m"),
            "{{table}}",
            unit="ops",
            description="Rows the sink inserted into each ClickHouse table per second (successful inserts).",
        ),
        prom_ts(
            "Insert duration p99, by table",
            j("table:millstream_sink_insert_seconds:quantile5m"),
            "{{table}}",
            unit="s",
            description=(
                "99th percentile of the seconds per successful insert, retries included, over 5 minutes. "
                "Rising: ClickHouse is slow (parts, merges, memory, disk)."
            ),
        ),
        prom_ts(
            "Rows per insert (median)",
            f"histogram_quantile(0.5, {per_second(j('millstream_sink_batch_rows_bucket'), 'table, le')})",
            "{{table}}",
            description=(
                "Median rows per ClickHouse insert. Small batches make many parts: check the sink's batch "
                "settings."
            ),
        ),
        ts(
            "Insert retries and rejected rows / s",
            proms(
                (per_second(j("millstream_sink_retries_total"), "table"), "retries {{table}}"),
                (per_second(j("millstream_sink_rejected_rows_total"), "table"), "rejected {{table}}"),
            ),
            unit="ops",
            description=(
                "Retries: inserts repeated after a transient error (MillstreamSinkRetrying). Rejected: rows "
                "ClickHouse refused, written to dead_letters (MillstreamSinkRejectingRows)."
            ),
        ),
        ts(
            "Backpressure",
            proms(
                (f"max({j('millstream_sink_paused')})", "paused (1 = yes)"),
                (per_second(j("millstream_sink_pauses_total"), "reason"), "pauses / s ({{reason}})"),
            ),
            description="The sink pauses consumption while a batch is being retried or the backlog is full.",
        ),
        prom_ts(
            "Alert notifications received / s",
            per_second(j("millstream_sink_alerts_received_total"), "status"),
            "{{status}}",
            unit="ops",
            description="Alerts Alertmanager posted to the sink's /alertmanager webhook and the sink wrote.",
        ),
        ts(
            "Buffered rows and commits",
            proms(
                (f"sum({j('millstream_sink_pending_rows')})", "pending rows"),
                (per_second(j("millstream_sink_commits_total")), "commits / s"),
            ),
            span=24,
            height=6,
            description=(
                "Rows the sink holds or is inserting, and offset commits per second (one after each written "
                "batch). Pending rows growing while commits stop: inserts are stuck."
            ),
        ),
    )

    b.row("Gateways")
    b.add(
        prom_ts(
            "Messages / s, by outcome",
            per_second(j("millstream_gateway_messages_total"), "outcome"),
            "{{outcome}}",
            unit="ops",
            description=(
                "Kafka messages of the gateways: produced (queued), acknowledged by the broker, failed. "
                "Acknowledged well below produced: the broker is slow or out of reach."
            ),
        ),
        prom_ts(
            "Sensor values / s, by gateway",
            per_second(j("millstream_gateway_values_total"), "instance"),
            "{{instance}}",
            unit="ops",
            description=(
                "Sensor values each gateway produced per second (each becomes one reading). A gateway at 0: "
                "its devices or the gateway stopped."
            ),
        ),
        prom_ts(
            "In-flight messages",
            j("millstream_gateway_in_flight_messages"),
            "{{instance}}",
            description=(
                "Messages each gateway sent that the broker has not acknowledged yet. Growing: the broker is"
                " slow or out of reach."
            ),
        ),
        ts(
            "Backpressure and rate limiting",
            proms(
                (
                    per_second(j("millstream_gateway_backpressure_waits_total"), "instance"),
                    "queue-full waits / s {{instance}}",
                ),
                (
                    per_second(j("millstream_gateway_throttled_seconds_total"), "instance"),
                    "throttled s / s {{instance}}",
                ),
            ),
            description=(
                "Waits on a full local send queue per second, and seconds per second spent on the configured"
                " rate limit (1 = waiting all the time)."
            ),
        ),
        prom_ts(
            "Delivery failures / s",
            per_second(j("millstream_gateway_delivery_failures_total")) + " or vector(0)",
            "not acknowledged",
            unit="ops",
            description="Break down by the reason label in Explore (librdkafka error names).",
        ),
        prom_ts(
            "Broker reachable (store-and-forward)",
            j("millstream_gateway_broker_online"),
            "{{instance}}",
            description="1 while the gateway sends to Kafka, 0 while it spools locally.",
            span=8,
        ),
        prom_ts(
            "Spool backlog",
            j("millstream_gateway_spool_records"),
            "{{instance}}",
            description="Spooled records not yet acknowledged by Kafka.",
            span=8,
        ),
        ts(
            "Spooled, replayed and dropped / s",
            proms(
                (per_second(j("millstream_gateway_spooled_total"), "instance"), "spooled {{instance}}"),
                (per_second(j("millstream_gateway_replayed_total"), "instance"), "replayed {{instance}}"),
                (
                    per_second(j("millstream_gateway_spool_dropped_total"), "instance, reason"),
                    "dropped {{reason}} {{instance}}",
                ),
            ),
            unit="ops",
            span=8,
            description=(
                "Store-and-forward: records written to the local spool while the broker was out of reach, "
                "replayed once it was back, and lost (overflow or corrupt: MillstreamGatewaySpoolDropping)."
            ),
        ),
        prom_ts(
            "Simulated faults, by kind",
            per_second(j("millstream_gateway_simulated_faults_total"), "kind"),
            "{{kind}}",
            unit="ops",
            description="Only the plant simulator injects faults.",
        ),
    )

    b.row("Processes")
    b.add(
        prom_ts(
            "CPU",
            f"rate(process_cpu_seconds_total{{{C}}}[$__rate_interval])",
            "{{component}} {{instance}}",
            unit="percentunit",
            span=8,
            description="CPU seconds per second of each process (100% = one core busy).",
        ),
        prom_ts(
            "Resident memory",
            f"process_resident_memory_bytes{{{C}}}",
            "{{component}} {{instance}}",
            unit="bytes",
            span=8,
            description="Resident memory of each process; a steady climb without a plateau points at a leak.",
        ),
        prom_ts(
            "Domain-metric updates dropped / s",
            per_second(j("millstream_metrics_series_dropped_total")) + " or vector(0)",
            "dropped by the cardinality guard",
            unit="ops",
            description="MILLSTREAM_METRICS_MAX_SERIES caps the label sets of each domain metric.",
            span=8,
        ),
    )

    b.row("Records (ClickHouse)")
    b.add(
        ch_ts(
            "Sink write delay p99",
            "SELECT $__timeInterval_ms(written_at) AS time, "
            "quantile(0.99)(dateDiff('millisecond', emitted_at, written_at)) AS p99_ms "
            "FROM window_aggregates WHERE $__timeFilter_ms(written_at) GROUP BY time ORDER BY time",
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
            description=(
                "Dead-letter records of the time range by stage and reason code (table dead_letters); Latest"
                " dead letters shows where each came from."
            ),
        ),
        ch_ts(
            "Alerts started per interval, by severity",
            "SELECT $__timeInterval_ms(starts_at) AS time, severity, "
            "uniqExact(fingerprint) AS alerts "
            "FROM alerts FINAL WHERE status = 'firing' AND $__timeFilter_ms(starts_at) "
            "GROUP BY time, severity ORDER BY time",
            description="Alert history written by the sink's Alertmanager webhook (table alerts).",
        ),
        table_panel(
            "Alert history",
            ch(
                "SELECT starts_at, ends_at, status, severity, alertname, labels['component'] AS component, "
                "annotations['summary'] AS summary, receiver FROM alerts FINAL "
                "WHERE $__timeFilter_ms(starts_at) ORDER BY starts_at DESC, status LIMIT 200"
            ),
            description=(
                "Alert notifications Alertmanager sent to the sink in the time range, firing and resolved "
                "(table alerts)."
            ),
        ),
        table_panel(
            "Latest dead letters",
            ch(
                "SELECT failed_at, stage, topic, partition, offset, key, reason_code, reason "
                "FROM dead_letters FINAL WHERE $__timeFilter_ms(failed_at) ORDER BY failed_at DESC LIMIT 100"
            ),
            span=24,
            description=(
                "The newest 100 dead-letter records: topic, partition, offset and key they came from, and "
                "why. The payload is kept byte for byte for a replay."
            ),
        ),
    )
    return b.to_dict()
