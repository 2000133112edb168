-- Machine and sensor metadata, loaded with `millstream metadata load FILE.csv`. One row per
-- (machine, sensor); loading again replaces a row (the latest loaded_at wins). lsl/usl are the
-- specification limits analysts compare window means with (v_machine_latest.in_spec).
CREATE TABLE IF NOT EXISTS machines
(
    `plant`       LowCardinality(String),
    `line`        LowCardinality(String),
    `machine_id`  String,
    `sensor`      LowCardinality(String),
    `unit`        LowCardinality(String),
    `lsl`         Nullable(Float64) COMMENT 'Lower specification limit.',
    `usl`         Nullable(Float64) COMMENT 'Upper specification limit.',
    `description` String,
    `loaded_at`   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (machine_id, sensor);
