-- Alert history from Alertmanager's webhook (POST /alertmanager on the sink's HTTP port).
-- One row per (alert fingerprint, startsAt, status): Alertmanager repeats a firing notification
-- every repeat_interval; the repeats collapse into one row (the latest received_at wins), and the
-- resolved notification is a second row of the same alert.
CREATE TABLE IF NOT EXISTS alerts
(
    `fingerprint`   String,
    `status`        LowCardinality(String) COMMENT 'firing or resolved.',
    `alertname`     LowCardinality(String) COMMENT 'labels[alertname], for convenience.',
    `severity`      LowCardinality(String) COMMENT 'labels[severity], empty when absent.',
    `labels`        Map(LowCardinality(String), String),
    `annotations`   Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `starts_at`     DateTime64(3, 'UTC'),
    `ends_at`       Nullable(DateTime64(3, 'UTC')) COMMENT 'NULL while Alertmanager sends no end.',
    `generator_url` String CODEC(ZSTD(1)),
    `receiver`      LowCardinality(String),
    `group_key`     String CODEC(ZSTD(1)),
    `received_at`   DateTime64(3, 'UTC') COMMENT 'When the sink received the notification.',
    `written_at`    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(starts_at)
ORDER BY (fingerprint, starts_at, status)
SETTINGS non_replicated_deduplication_window = 1000;
