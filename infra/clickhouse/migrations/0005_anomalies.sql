-- Anomaly events (schema millstream.AnomalyEvent v1): an incident is emitted when it opens
-- (state 'open') and when it closes (state 'close', score = peak over the incident). One row per
-- (machine, sensor, started_at, state): replays collapse. started_at is part of the identity, so
-- partitioning by its month keeps every copy of an event in one partition.
CREATE TABLE IF NOT EXISTS anomalies
(
    `plant`      LowCardinality(String),
    `line`       LowCardinality(String),
    `machine_id` String,
    `sensor`     LowCardinality(String) COMMENT 'Sensor name, or machine for the multivariate detector.',
    `state`      LowCardinality(String) COMMENT 'open or close.',
    `event_time` DateTime64(3, 'UTC') COMMENT 'Event time of the point that changed the state.',
    `started_at` DateTime64(3, 'UTC'),
    `score`      Float64,
    `threshold`  Float64,
    `model_id`   LowCardinality(String),
    `features`   Map(LowCardinality(String), Float64) CODEC(ZSTD(1)),
    `emitted_at` DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `written_at` DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (machine_id, sensor, started_at, state)
SETTINGS non_replicated_deduplication_window = 1000;
