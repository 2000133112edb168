-- Latest state per (machine, sensor): the most recent window (highest version of it) seen in the
-- last 7 days (from window_latest, which inserts into window_aggregates keep up to date: a row per
-- key), its age, the specification limits from `machines`, whether the mean is within them, SPC
-- signals in the last 24 h and whether the machine has an open anomaly.
-- Duplicate-insensitive aggregates (argMax, uniqExact, countIf > 0), so no FINAL is needed.
-- Inner aliases (latest_*) differ from column names: an alias would otherwise shadow its column.
CREATE OR REPLACE VIEW v_machine_latest AS
SELECT
    l.latest_plant AS plant, l.latest_line AS line, l.machine_id AS machine_id, l.sensor AS sensor,
    l.latest_unit AS unit, l.latest_window_kind AS window_kind, l.latest_window_start AS window_start,
    l.latest_window_end AS window_end, l.latest_count AS count, l.latest_mean AS mean,
    l.latest_min AS min,
    l.latest_max AS max, l.latest_std AS std, l.latest_last AS last, l.latest_version AS version,
    dateDiff('second', l.latest_window_end, now64(3)) AS age_s,
    m.lsl AS lsl, m.usl AS usl, m.description AS description,
    if(m.lsl IS NULL AND m.usl IS NULL, NULL,
       (m.lsl IS NULL OR l.latest_mean >= m.lsl) AND (m.usl IS NULL OR l.latest_mean <= m.usl)) AS in_spec,
    s.signals AS spc_signals_24h,
    a.open_anomalies > 0 AS anomaly_open
FROM
(
    SELECT
        machine_id, sensor,
        argMaxMerge(l_plant) AS latest_plant,
        argMaxMerge(l_line) AS latest_line,
        argMaxMerge(l_unit) AS latest_unit,
        argMaxMerge(l_window_kind) AS latest_window_kind,
        argMaxMerge(l_window_start) AS latest_window_start,
        max(l_window_end) AS latest_window_end,
        argMaxMerge(l_count) AS latest_count,
        argMaxMerge(l_mean) AS latest_mean,
        argMaxMerge(l_min) AS latest_min,
        argMaxMerge(l_max) AS latest_max,
        argMaxMerge(l_std) AS latest_std,
        argMaxMerge(l_last) AS latest_last,
        argMaxMerge(l_version) AS latest_version
    FROM window_latest
    GROUP BY machine_id, sensor
    HAVING latest_window_end >= now64(3) - INTERVAL 7 DAY
) AS l
LEFT JOIN
(
    SELECT machine_id, sensor, lsl, usl, description FROM machines FINAL
) AS m ON l.machine_id = m.machine_id AND l.sensor = m.sensor
LEFT JOIN
(
    SELECT machine_id, sensor, uniqExact(chart, rule, point_index, point_start) AS signals
    FROM spc_signals
    WHERE coalesce(window_end, emitted_at) >= now64(3) - INTERVAL 24 HOUR
    GROUP BY machine_id, sensor
) AS s ON l.machine_id = s.machine_id AND l.sensor = s.sensor
LEFT JOIN
(
    -- A machine has one incident open at a time: it is open while its latest incident has no close
    -- (an older one without a close lost it when the anomaly state started over).
    SELECT machine_id, toUInt64(argMax(closes, started_at) = 0) AS open_anomalies
    FROM
    (
        SELECT machine_id, sensor, started_at, countIf(state = 'close') AS closes
        FROM anomalies
        GROUP BY machine_id, sensor, started_at
    )
    GROUP BY machine_id
) AS a ON l.machine_id = a.machine_id;
