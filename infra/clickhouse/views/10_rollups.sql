-- Finalised rollups: one row per (machine, sensor, bucket) with plain values. Filter on
-- machine_id, sensor and bucket; ClickHouse pushes those filters below the GROUP BY.
-- std is the sample standard deviation of the readings in the bucket (0 for a single reading).
CREATE OR REPLACE VIEW v_rollup_1m AS
SELECT
    machine_id, sensor, bucket, plant, line, unit, windows,
    n AS count, s AS sum, s / n AS mean,
    if(n > 1, sqrt(greatest(ss - s * s / n, 0) / (n - 1)), 0) AS std,
    lo AS min, hi AS max, f AS first, l AS last
FROM
(
    SELECT
        machine_id, sensor, bucket,
        any(plant) AS plant, any(line) AS line, any(unit) AS unit,
        countMerge(windows) AS windows, sumMerge(n) AS n, sumMerge(sum) AS s, sumMerge(sum_sq) AS ss,
        minMerge(min) AS lo, maxMerge(max) AS hi, argMinMerge(first) AS f, argMaxMerge(last) AS l
    FROM rollup_1m
    GROUP BY machine_id, sensor, bucket
);

CREATE OR REPLACE VIEW v_rollup_1h AS
SELECT
    machine_id, sensor, bucket, plant, line, unit, windows,
    n AS count, s AS sum, s / n AS mean,
    if(n > 1, sqrt(greatest(ss - s * s / n, 0) / (n - 1)), 0) AS std,
    lo AS min, hi AS max, f AS first, l AS last
FROM
(
    SELECT
        machine_id, sensor, bucket,
        any(plant) AS plant, any(line) AS line, any(unit) AS unit,
        countMerge(windows) AS windows, sumMerge(n) AS n, sumMerge(sum) AS s, sumMerge(sum_sq) AS ss,
        minMerge(min) AS lo, maxMerge(max) AS hi, argMinMerge(first) AS f, argMaxMerge(last) AS l
    FROM rollup_1h
    GROUP BY machine_id, sensor, bucket
);

CREATE OR REPLACE VIEW v_rollup_1d AS
SELECT
    machine_id, sensor, bucket, plant, line, unit, windows,
    n AS count, s AS sum, s / n AS mean,
    if(n > 1, sqrt(greatest(ss - s * s / n, 0) / (n - 1)), 0) AS std,
    lo AS min, hi AS max, f AS first, l AS last
FROM
(
    SELECT
        machine_id, sensor, bucket,
        any(plant) AS plant, any(line) AS line, any(unit) AS unit,
        countMerge(windows) AS windows, sumMerge(n) AS n, sumMerge(sum) AS s, sumMerge(sum_sq) AS ss,
        minMerge(min) AS lo, maxMerge(max) AS hi, argMinMerge(first) AS f, argMaxMerge(last) AS l
    FROM rollup_1d
    GROUP BY machine_id, sensor, bucket
);
