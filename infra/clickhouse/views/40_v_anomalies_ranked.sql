-- Anomaly incidents (an open event and, once it ended, its close event) ranked by peak score, then
-- duration. peak_score is the close event's score (the peak over the incident) or, while the
-- incident is open, the score that opened it. Duplicate-insensitive aggregates: no FINAL needed.
CREATE OR REPLACE VIEW v_anomalies_ranked AS
SELECT
    row_number() OVER (ORDER BY peak_score DESC, duration_s DESC, started_at DESC, machine_id, sensor) AS rank,
    row_number() OVER (PARTITION BY machine_id ORDER BY peak_score DESC, duration_s DESC, started_at DESC, sensor)
        AS rank_in_machine,
    plant, line, machine_id, sensor, started_at, ended_at, is_open, duration_s,
    peak_score, threshold, peak_score - threshold AS excess, model_id, features
FROM
(
    SELECT
        machine_id, sensor, started_at,
        any(plant) AS plant,
        any(line) AS line,
        countIf(state = 'close') = 0 AS is_open,
        if(is_open, NULL, maxIf(event_time, state = 'close')) AS ended_at,
        dateDiff('second', started_at, coalesce(ended_at, now64(3))) AS duration_s,
        max(score) AS peak_score,
        any(threshold) AS threshold,
        any(model_id) AS model_id,
        anyIf(features, state = 'open') AS features
    FROM anomalies
    GROUP BY machine_id, sensor, started_at
)
ORDER BY rank;
