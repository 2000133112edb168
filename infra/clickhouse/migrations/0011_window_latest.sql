-- The newest window of each (machine, sensor), kept up to date on insert, for v_machine_latest (which
-- dashboards query every 30 s): reading it costs one row per key instead of scanning 7 days of
-- window_aggregates (about 145 million rows at 300 machines x 8 sensors x 10 s windows).
-- Columns hold argMax states by (window_end, version): the newest window, its highest version. A
-- window inserted twice (a replay, a retried insert) changes nothing; the backfill at the end may
-- overlap inserts that arrive meanwhile, for the same reason harmlessly. Keys of machines that no
-- longer report stay (one row each); the view shows the last 7 days. Column names differ from
-- window_aggregates' (l_*): an alias equal to a column it reads would shadow that column.
CREATE TABLE IF NOT EXISTS window_latest
(
    `machine_id`     String,
    `sensor`         LowCardinality(String),
    `l_plant`        AggregateFunction(argMax, LowCardinality(String), Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_line`         AggregateFunction(argMax, LowCardinality(String), Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_unit`         AggregateFunction(argMax, LowCardinality(String), Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_window_kind`  AggregateFunction(argMax, LowCardinality(String), Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_window_start` AggregateFunction(argMax, DateTime64(3, 'UTC'), Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_count`        AggregateFunction(argMax, UInt64, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_mean`         AggregateFunction(argMax, Float64, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_min`          AggregateFunction(argMax, Float64, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_max`          AggregateFunction(argMax, Float64, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_std`          AggregateFunction(argMax, Float64, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_last`         AggregateFunction(argMax, Float64, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_version`      AggregateFunction(argMax, UInt32, Tuple(DateTime64(3, 'UTC'), UInt32)),
    `l_window_end`   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (machine_id, sensor);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_window_latest TO window_latest AS
SELECT
    machine_id,
    sensor,
    argMaxState(plant, (window_end, version)) AS l_plant,
    argMaxState(line, (window_end, version)) AS l_line,
    argMaxState(unit, (window_end, version)) AS l_unit,
    argMaxState(window_kind, (window_end, version)) AS l_window_kind,
    argMaxState(window_start, (window_end, version)) AS l_window_start,
    argMaxState(count, (window_end, version)) AS l_count,
    argMaxState(mean, (window_end, version)) AS l_mean,
    argMaxState(min, (window_end, version)) AS l_min,
    argMaxState(max, (window_end, version)) AS l_max,
    argMaxState(std, (window_end, version)) AS l_std,
    argMaxState(last, (window_end, version)) AS l_last,
    argMaxState(version, (window_end, version)) AS l_version,
    max(window_end) AS l_window_end
FROM window_aggregates
GROUP BY machine_id, sensor;

INSERT INTO window_latest
SELECT
    machine_id,
    sensor,
    argMaxState(plant, (window_end, version)) AS l_plant,
    argMaxState(line, (window_end, version)) AS l_line,
    argMaxState(unit, (window_end, version)) AS l_unit,
    argMaxState(window_kind, (window_end, version)) AS l_window_kind,
    argMaxState(window_start, (window_end, version)) AS l_window_start,
    argMaxState(count, (window_end, version)) AS l_count,
    argMaxState(mean, (window_end, version)) AS l_mean,
    argMaxState(min, (window_end, version)) AS l_min,
    argMaxState(max, (window_end, version)) AS l_max,
    argMaxState(std, (window_end, version)) AS l_std,
    argMaxState(last, (window_end, version)) AS l_last,
    argMaxState(version, (window_end, version)) AS l_version,
    max(window_end) AS l_window_end
FROM window_aggregates
WHERE window_end >= now64(3) - INTERVAL 7 DAY
GROUP BY machine_id, sensor;
