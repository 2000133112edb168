-- Raw readings (schema millstream.Reading v1, and millstream.MachineScan exploded into readings).
-- Optional: the sink consumes the readings topic only when MILLSTREAM_SINK_RAW_READINGS=true.
-- One row per (machine, sensor, event time): a gateway retry or a replay collapses into one row,
-- as the window operator counts such duplicates once. Short retention: the TTL is set from
-- MILLSTREAM_CLICKHOUSE_TTL_READINGS_DAYS by `millstream migrate` (sinks/retention.py); daily
-- partitions with ttl_only_drop_parts make expiry a cheap drop of whole parts.
CREATE TABLE IF NOT EXISTS readings
(
    `plant`       LowCardinality(String),
    `line`        LowCardinality(String),
    `machine_id`  String,
    `sensor`      LowCardinality(String),
    `unit`        LowCardinality(String),
    `event_time`  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    `value`       Float64 CODEC(Gorilla, ZSTD(1)),
    `quality`     LowCardinality(String) COMMENT 'GOOD, UNCERTAIN or BAD (OPC UA status class).',
    `gateway_id`  LowCardinality(String),
    `seq`         Int64 CODEC(Delta, ZSTD(1)),
    `lot_id`      LowCardinality(Nullable(String)),
    `written_at`  DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(event_time)
ORDER BY (machine_id, sensor, event_time)
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
