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

-- Days of a plant's own time zone: v_rollup_1d's days are UTC days (rollup_1d buckets by the UTC
-- date), which for a plant at UTC+1 run from 01:00 to 01:00. SELECT * FROM v_rollup_1d_p(tz =
-- 'Europe/Berlin') merges rollup_1h's hours into the local days instead (daylight saving included:
-- a local day has 23, 24 or 25 hours). Hours cannot be cut, so a zone whose offset is not a whole
-- number of hours (Asia/Kolkata, +05:30) is refused; group v_rollup_1m by toDate(bucket, tz) there.
-- Kept as long as rollup_1h (MILLSTREAM_CLICKHOUSE_TTL_ROLLUP_1H_DAYS).
CREATE OR REPLACE VIEW v_rollup_1d_p AS
SELECT
    machine_id, sensor, day AS bucket, plant, line, unit, windows,
    n AS count, s AS sum, s / n AS mean,
    if(n > 1, sqrt(greatest(ss - s * s / n, 0) / (n - 1)), 0) AS std,
    lo AS min, hi AS max, f AS first, l AS last
FROM
(
    SELECT
        machine_id, sensor, toDate(bucket, {tz:String}) AS day,
        any(plant) AS plant, any(line) AS line, any(unit) AS unit,
        countMerge(windows) AS windows, sumMerge(n) AS n, sumMerge(sum) AS s, sumMerge(sum_sq) AS ss,
        minMerge(min) AS lo, maxMerge(max) AS hi, argMinMerge(first) AS f, argMaxMerge(last) AS l
    FROM rollup_1h
    WHERE throwIf(
        timeZoneOffset(toTimeZone(bucket, {tz:String})) % 3600 != 0,
        'v_rollup_1d_p: this time zone is not a whole number of hours from UTC; group v_rollup_1m by toDate(bucket, tz)'
    ) = 0
    GROUP BY machine_id, sensor, day
);
