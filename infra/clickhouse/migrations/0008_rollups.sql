-- Rollups 1 minute -> 1 hour -> 1 day, kept up to date by materialized views on insert:
-- window_aggregates -> mv_rollup_1m -> rollup_1m -> mv_rollup_1h -> rollup_1h -> mv_rollup_1d -> rollup_1d.
-- Columns hold aggregate states (-State); read them with -Merge, or through v_rollup_1m/1h/1d.
--
-- What goes in: tumbling windows at their first emission (version 0) only, bucketed by window_start.
-- A late update of a window (version 1, 2, ...) does not change the rollups: they hold the values
-- at first close (late readings are bounded by the allowed lateness). Overlapping window kinds
-- (hopping, sliding) and sessions are left out: they would count readings more than once.
-- A retried insert (same deduplication token) is dropped here too (the writer inserts with
-- deduplicate_blocks_in_dependent_materialized_views = 1, the rollups keep a deduplication window).
-- A version-0 window written twice by different inserts (a sink crash replayed with another batch
-- cut, a stream worker restored from a snapshot) counts twice. `millstream rollups rebuild` recomputes
-- whole days exactly from window_aggregates FINAL (late updates included). See docs/clickhouse.md.
--
-- sum_sq is the sum of squared readings, rebuilt from each window as std^2 (n-1) + n mean^2, so
-- that any bucket's sample standard deviation is sqrt((sum_sq - sum^2/n) / (n-1)).
CREATE TABLE IF NOT EXISTS rollup_1m
(
    `machine_id` String,
    `sensor`     LowCardinality(String),
    `bucket`     DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    `plant`      SimpleAggregateFunction(any, LowCardinality(String)),
    `line`       SimpleAggregateFunction(any, LowCardinality(String)),
    `unit`       SimpleAggregateFunction(any, LowCardinality(String)),
    `windows`    AggregateFunction(count),
    `n`          AggregateFunction(sum, UInt64),
    `sum`        AggregateFunction(sum, Float64),
    `sum_sq`     AggregateFunction(sum, Float64),
    `min`        AggregateFunction(min, Float64),
    `max`        AggregateFunction(max, Float64),
    `first`      AggregateFunction(argMin, Float64, DateTime64(3, 'UTC')),
    `last`       AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(bucket)
ORDER BY (machine_id, sensor, bucket)
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS rollup_1h
(
    `machine_id` String,
    `sensor`     LowCardinality(String),
    `bucket`     DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    `plant`      SimpleAggregateFunction(any, LowCardinality(String)),
    `line`       SimpleAggregateFunction(any, LowCardinality(String)),
    `unit`       SimpleAggregateFunction(any, LowCardinality(String)),
    `windows`    AggregateFunction(count),
    `n`          AggregateFunction(sum, UInt64),
    `sum`        AggregateFunction(sum, Float64),
    `sum_sq`     AggregateFunction(sum, Float64),
    `min`        AggregateFunction(min, Float64),
    `max`        AggregateFunction(max, Float64),
    `first`      AggregateFunction(argMin, Float64, DateTime64(3, 'UTC')),
    `last`       AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (machine_id, sensor, bucket)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS rollup_1d
(
    `machine_id` String,
    `sensor`     LowCardinality(String),
    `bucket`     Date,
    `plant`      SimpleAggregateFunction(any, LowCardinality(String)),
    `line`       SimpleAggregateFunction(any, LowCardinality(String)),
    `unit`       SimpleAggregateFunction(any, LowCardinality(String)),
    `windows`    AggregateFunction(count),
    `n`          AggregateFunction(sum, UInt64),
    `sum`        AggregateFunction(sum, Float64),
    `sum_sq`     AggregateFunction(sum, Float64),
    `min`        AggregateFunction(min, Float64),
    `max`        AggregateFunction(max, Float64),
    `first`      AggregateFunction(argMin, Float64, DateTime64(3, 'UTC')),
    `last`       AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(bucket)
ORDER BY (machine_id, sensor, bucket)
SETTINGS non_replicated_deduplication_window = 1000;

-- Views are created after their target tables, the 1 h and 1 d ones before the 1 m one, so that no
-- insert can reach rollup_1m while its cascade is still missing.
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_1d TO rollup_1d AS
SELECT
    machine_id,
    sensor,
    toDate(bucket) AS bucket,
    any(plant) AS plant,
    any(line) AS line,
    any(unit) AS unit,
    countMergeState(windows) AS windows,
    sumMergeState(n) AS n,
    sumMergeState(sum) AS sum,
    sumMergeState(sum_sq) AS sum_sq,
    minMergeState(min) AS min,
    maxMergeState(max) AS max,
    argMinMergeState(first) AS first,
    argMaxMergeState(last) AS last
FROM rollup_1h
GROUP BY machine_id, sensor, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_1h TO rollup_1h AS
SELECT
    machine_id,
    sensor,
    toStartOfHour(bucket) AS bucket,
    any(plant) AS plant,
    any(line) AS line,
    any(unit) AS unit,
    countMergeState(windows) AS windows,
    sumMergeState(n) AS n,
    sumMergeState(sum) AS sum,
    sumMergeState(sum_sq) AS sum_sq,
    minMergeState(min) AS min,
    maxMergeState(max) AS max,
    argMinMergeState(first) AS first,
    argMaxMergeState(last) AS last
FROM rollup_1m
GROUP BY machine_id, sensor, bucket;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_1m TO rollup_1m AS
SELECT
    machine_id,
    sensor,
    toStartOfMinute(window_start) AS bucket,
    any(plant) AS plant,
    any(line) AS line,
    any(unit) AS unit,
    countState() AS windows,
    sumState(count) AS n,
    sumState(sum) AS sum,
    sumState(if(count > 1, std * std * (count - 1), 0) + count * mean * mean) AS sum_sq,
    minState(min) AS min,
    maxState(max) AS max,
    argMinState(first, first_ts) AS first,
    argMaxState(last, last_ts) AS last
FROM window_aggregates
WHERE version = 0 AND window_kind = 'tumbling'
GROUP BY machine_id, sensor, bucket;
