"""Metrics of the ClickHouse sink (the pipeline-wide ones live in :mod:`sinks.metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_ROW_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)

SINK_BATCH_ROWS = Histogram(
    "millstream_sink_batch_rows",
    "Rows per ClickHouse insert, by table.",
    ["table"],
    buckets=BATCH_ROW_BUCKETS,
)
SINK_INSERT_SECONDS = Histogram(
    "millstream_sink_insert_seconds",
    "Seconds per successful ClickHouse insert (retries included), by table.",
    ["table"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_RETRIES = Counter(
    "millstream_sink_retries",
    "Insert attempts repeated after a transient ClickHouse error, by table.",
    ["table"],
)
SINK_REJECTED = Counter(
    "millstream_sink_rejected_rows",
    "Rows ClickHouse (or the client) refused, sent to dead_letters instead, by table.",
    ["table"],
)
SINK_PENDING_ROWS = Gauge("millstream_sink_pending_rows", "Rows buffered or being inserted, not yet written.")
SINK_COMMITS = Counter("millstream_sink_commits", "Offset commits after a written batch.")
SINK_PAUSES = Counter(
    "millstream_sink_pauses",
    "Times the sink paused consumption (backpressure), by reason: backlog or retrying.",
    ["reason"],
)
SINK_PAUSED = Gauge("millstream_sink_paused", "1 while the sink's consumption is paused (backpressure).")
SINK_ALERTS = Counter(
    "millstream_sink_alerts_received",
    "Alerts received on the Alertmanager webhook and written, by status (firing or resolved).",
    ["status"],
)

# Series exist at 0 from the start, so rate()/increase() see the first event and panels show 0.
for _table in ("window_aggregates", "dead_letters", "spc_signals", "anomalies", "readings", "alerts"):
    SINK_RETRIES.labels(_table)
    SINK_REJECTED.labels(_table)
for _reason in ("backlog", "retrying"):
    SINK_PAUSES.labels(_reason)
for _status in ("firing", "resolved"):
    SINK_ALERTS.labels(_status)
