-- Anomaly incidents (an open event and, once it ended, its close event) ranked by peak score, then
-- duration. peak_score is the close event's score (the peak over the incident) or, while the
-- incident is open, the score that opened it. Duplicate-insensitive aggregates: no FINAL needed.
-- A machine has one incident open at a time, so an incident without a close event that is followed
-- by a later incident of its machine has ended (its close was lost when the anomaly state started
-- over: a switch of engine, a new app id): not open, ended_at NULL (unknown), duration_s up to the
-- start of the next incident.
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
        machine_id, sensor, started_at, plant, line, ended_at,
        closes = 0 AND next_start IS NULL AS is_open,
        dateDiff('second', started_at, coalesce(ended_at, next_start, now64(3))) AS duration_s,
        peak_score, threshold, model_id, features
    FROM
    (
        SELECT
            *,
            leadInFrame(toNullable(started_at)) OVER (
                PARTITION BY machine_id ORDER BY started_at ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING
            ) AS next_start
        FROM
        (
            SELECT
                machine_id, sensor, started_at,
                any(plant) AS plant,
                any(line) AS line,
                countIf(state = 'close') AS closes,
                if(closes = 0, NULL, maxIf(event_time, state = 'close')) AS ended_at,
                max(score) AS peak_score,
                any(threshold) AS threshold,
                any(model_id) AS model_id,
                anyIf(features, state = 'open') AS features
            FROM anomalies
            GROUP BY machine_id, sensor, started_at
        )
    )
)
ORDER BY rank;
