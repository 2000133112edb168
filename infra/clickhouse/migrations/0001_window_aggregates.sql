-- Window aggregates (schema millstream.WindowAggregate v1), one row per
-- (machine, sensor, window kind, window). A late-but-allowed reading re-emits a window with a higher
-- `version`; ReplacingMergeTree(version) keeps the highest one per sorting key, and a replayed or
-- retried insert of the same window collapses into one row. Read with FINAL (or argMax by version)
-- for exact results before background merges have run.
-- non_replicated_deduplication_window lets the writer's insert_deduplication_token drop a retried
-- block without waiting for a merge (a Replicated* engine keeps such a window by default).
-- Retention (TTL) is added by a later migration once its setting exists.
CREATE TABLE IF NOT EXISTS window_aggregates
(
    `plant`        LowCardinality(String),
    `line`         LowCardinality(String),
    `machine_id`   String,
    `sensor`       LowCardinality(String),
    `unit`         LowCardinality(String),
    `window_kind`  LowCardinality(String),
    `window_start` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    `window_end`   DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    `count`        UInt64 CODEC(T64, ZSTD(1)),
    `sum`          Float64 CODEC(ZSTD(1)),
    `mean`         Float64 CODEC(ZSTD(1)),
    `min`          Float64 CODEC(ZSTD(1)),
    `max`          Float64 CODEC(ZSTD(1)),
    `std`          Float64 CODEC(ZSTD(1)),
    `first_ts`     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `last_ts`      DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `first`        Float64 CODEC(ZSTD(1)),
    `last`         Float64 CODEC(ZSTD(1)),
    `p50`          Nullable(Float64) CODEC(ZSTD(1)),
    `p95`          Nullable(Float64) CODEC(ZSTD(1)),
    `p99`          Nullable(Float64) CODEC(ZSTD(1)),
    `slope`        Nullable(Float64) CODEC(ZSTD(1)),
    `version`      UInt32 CODEC(T64, ZSTD(1)),
    `emitted_at`   DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `written_at`   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
        COMMENT 'When the sink inserted the row (server clock).'
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(window_start)
ORDER BY (machine_id, sensor, window_kind, window_start, window_end)
SETTINGS non_replicated_deduplication_window = 1000;
