-- Records no stage could process (schema millstream.DeadLetter v1), plus values the sink itself
-- could not decode (stage 'sink'). One row per (source topic, partition, offset, stage): a replay
-- collapses into one row. No partition key on failed_at: a re-processed record gets a new
-- failed_at, and rows in different partitions would never be merged.
CREATE TABLE IF NOT EXISTS dead_letters
(
    `stage`       LowCardinality(String),
    `topic`       LowCardinality(String),
    `partition`   Int32,
    `offset`      Int64 CODEC(Delta, ZSTD(1)),
    `key`         Nullable(String) CODEC(ZSTD(1)),
    `payload`     String CODEC(ZSTD(3)) COMMENT 'Original bytes, untouched.',
    `reason_code` LowCardinality(String),
    `reason`      String CODEC(ZSTD(1)),
    `failed_at`   DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `written_at`  DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, stage)
SETTINGS non_replicated_deduplication_window = 1000;
