-- SPC run-rule signals (schema millstream.SpcSignal v1): one row per rule that fired on one point
-- of one chart of one (machine, sensor). The sorting key is the signal's identity, so a replay
-- (sink crash, stream worker restart) collapses into one row; read with FINAL for exact counts.
-- No partition key: replacing only happens within a partition, and the identity holds no time
-- that is stable across re-emissions (emitted_at changes). Signals are few; TTL deletes rows.
CREATE TABLE IF NOT EXISTS spc_signals
(
    `plant`        LowCardinality(String),
    `line`         LowCardinality(String),
    `machine_id`   String,
    `sensor`       LowCardinality(String),
    `chart`        LowCardinality(String) COMMENT 'xbar, r, s, i, mr, ewma, cusum, p, np, c or u.',
    `rule`         LowCardinality(String) COMMENT 'WE1..WE4, N1..N8, or LIMIT.',
    `point_index`  Int64 COMMENT '1-based sample number since the monitor started.',
    `value`        Float64,
    `center`       Float64,
    `lcl`          Nullable(Float64),
    `ucl`          Nullable(Float64),
    `window_start` Nullable(DateTime64(3, 'UTC')),
    `window_end`   Nullable(DateTime64(3, 'UTC')),
    `emitted_at`   DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `written_at`   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (machine_id, sensor, chart, rule, point_index)
SETTINGS non_replicated_deduplication_window = 1000;
