-- Data gaps of tumbling windows within the last lookback_hours:
--   kind 'gap':   two consecutive windows of a (machine, sensor) start more than gap_factor window
--                 sizes apart (gap_start = end of the window before, gap_end = start of the next);
--   kind 'stale': no window has ended in the last stale_minutes (gap_end NULL: still open), for
--                 every (machine, sensor) seen in the lookback or listed in `machines`
--                 (gap_start, gap_s and window_s NULL: no window at all in the lookback).
-- v_data_gaps_p takes the three parameters: SELECT * FROM v_data_gaps_p(gap_factor = 3,
-- stale_minutes = 10, lookback_hours = 24); v_data_gaps is that call with those defaults.
CREATE OR REPLACE VIEW v_data_gaps_p AS
WITH
    now64(3) AS now_,
    windows AS
    (
        SELECT machine_id, sensor, window_start, window_end, any(plant) AS plant, any(line) AS line
        FROM window_aggregates
        WHERE window_kind = 'tumbling'
          AND window_end >= now64(3) - toIntervalHour({lookback_hours:UInt32})
        GROUP BY machine_id, sensor, window_start, window_end
    )
SELECT
    plant, line, machine_id, sensor, 'gap' AS kind,
    CAST(prev_end, 'Nullable(DateTime64(3, \'UTC\'))') AS gap_start,
    CAST(window_start, 'Nullable(DateTime64(3, \'UTC\'))') AS gap_end,
    dateDiff('millisecond', prev_end, window_start) / 1000 AS gap_s,
    dateDiff('millisecond', window_start, window_end) / 1000 AS window_s,
    toUInt64(round(dateDiff('millisecond', prev_start, window_start) / dateDiff('millisecond', window_start, window_end)) - 1)
        AS missing_windows
FROM
(
    SELECT
        *,
        lagInFrame(toNullable(window_start)) OVER w AS prev_start,
        lagInFrame(toNullable(window_end)) OVER w AS prev_end
    FROM windows
    WINDOW w AS (PARTITION BY machine_id, sensor ORDER BY window_start ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE prev_start IS NOT NULL
  AND window_end > window_start
  AND dateDiff('millisecond', prev_start, window_start)
      > {gap_factor:Float64} * dateDiff('millisecond', window_start, window_end)
UNION ALL
SELECT
    plant, line, machine_id, sensor, 'stale' AS kind,
    if(last_end = toDateTime64(0, 3, 'UTC'), NULL, last_end) AS gap_start,
    CAST(NULL, 'Nullable(DateTime64(3, \'UTC\'))') AS gap_end,
    if(gap_start IS NULL, NULL, dateDiff('millisecond', last_end, now_) / 1000) AS gap_s,
    if(window_ms = 0, NULL, window_ms / 1000) AS window_s,
    CAST(NULL, 'Nullable(UInt64)') AS missing_windows
FROM
(
    SELECT
        coalesce(nullIf(w.plant, ''), m.plant) AS plant,
        coalesce(nullIf(w.line, ''), m.line) AS line,
        if(w.machine_id = '', m.machine_id, w.machine_id) AS machine_id,
        if(w.machine_id = '', m.sensor, w.sensor) AS sensor,
        w.last_end AS last_end,
        w.window_ms AS window_ms
    FROM
    (
        SELECT machine_id, sensor, any(plant) AS plant, any(line) AS line, max(window_end) AS last_end,
               any(dateDiff('millisecond', window_start, window_end)) AS window_ms
        FROM windows
        GROUP BY machine_id, sensor
    ) AS w
    FULL OUTER JOIN (SELECT plant, line, machine_id, sensor FROM machines FINAL) AS m
        ON w.machine_id = m.machine_id AND w.sensor = m.sensor
)
WHERE last_end < now_ - toIntervalMinute({stale_minutes:UInt32});

CREATE OR REPLACE VIEW v_data_gaps AS
SELECT * FROM v_data_gaps_p(gap_factor = 3, stale_minutes = 10, lookback_hours = 24);
