-- Latest state per (machine, sensor): the most recent window (highest version of it) seen in the
-- last 7 days, its age, the specification limits from `machines`, whether the mean is within them,
-- SPC signals in the last 24 h and whether the machine has an open anomaly.
-- Duplicate-insensitive aggregates (argMax, uniqExact, countIf > 0), so no FINAL is needed.
-- Inner aliases (l_*) differ from column names: an alias would otherwise shadow its column.
CREATE OR REPLACE VIEW v_machine_latest AS
SELECT
    l.l_plant AS plant, l.l_line AS line, l.machine_id AS machine_id, l.sensor AS sensor,
    l.l_unit AS unit, l.l_window_kind AS window_kind, l.l_window_start AS window_start,
    l.l_window_end AS window_end, l.l_count AS count, l.l_mean AS mean, l.l_min AS min,
    l.l_max AS max, l.l_std AS std, l.l_last AS last, l.l_version AS version,
    dateDiff('second', l.l_window_end, now64(3)) AS age_s,
    m.lsl AS lsl, m.usl AS usl, m.description AS description,
    if(m.lsl IS NULL AND m.usl IS NULL, NULL,
       (m.lsl IS NULL OR l.l_mean >= m.lsl) AND (m.usl IS NULL OR l.l_mean <= m.usl)) AS in_spec,
    s.signals AS spc_signals_24h,
    a.open_anomalies > 0 AS anomaly_open
FROM
(
    SELECT
        machine_id, sensor,
        argMax(plant, (window_end, version)) AS l_plant,
        argMax(line, (window_end, version)) AS l_line,
        argMax(unit, (window_end, version)) AS l_unit,
        argMax(window_kind, (window_end, version)) AS l_window_kind,
        argMax(window_start, (window_end, version)) AS l_window_start,
        max(window_end) AS l_window_end,
        argMax(count, (window_end, version)) AS l_count,
        argMax(mean, (window_end, version)) AS l_mean,
        argMax(min, (window_end, version)) AS l_min,
        argMax(max, (window_end, version)) AS l_max,
        argMax(std, (window_end, version)) AS l_std,
        argMax(last, (window_end, version)) AS l_last,
        argMax(version, (window_end, version)) AS l_version
    FROM window_aggregates
    WHERE window_end >= now64(3) - INTERVAL 7 DAY
    GROUP BY machine_id, sensor
) AS l
LEFT JOIN
(
    SELECT machine_id, sensor, lsl, usl, description FROM machines FINAL
) AS m ON l.machine_id = m.machine_id AND l.sensor = m.sensor
LEFT JOIN
(
    SELECT machine_id, sensor, uniqExact(chart, rule, point_index) AS signals
    FROM spc_signals
    WHERE coalesce(window_end, emitted_at) >= now64(3) - INTERVAL 24 HOUR
    GROUP BY machine_id, sensor
) AS s ON l.machine_id = s.machine_id AND l.sensor = s.sensor
LEFT JOIN
(
    SELECT machine_id, countIf(closes = 0) AS open_anomalies
    FROM
    (
        SELECT machine_id, sensor, started_at, countIf(state = 'close') AS closes
        FROM anomalies
        GROUP BY machine_id, sensor, started_at
    )
    GROUP BY machine_id
) AS a ON l.machine_id = a.machine_id;
