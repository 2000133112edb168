-- Process capability per (machine, sensor) and period against the specification limits of `machines`,
-- from the tumbling windows (their newest versions) that started in the last lookback_hours. Each
-- window is one rational subgroup of its readings:
--   sigma_within  = pooled standard deviation within the windows, sqrt(sum((n_i - 1) s_i^2) / d) with
--                   d = sum(n_i - 1), divided by c4(d + 1) (unbiased, as Minitab's default);
--   sigma_overall = standard deviation of all the period's readings (between windows included).
-- cp/cpk use sigma_within, pp/ppk sigma_overall. With one limit only, cpk/ppk come from that side and
-- cp/pp are NULL; an index whose sigma is 0 (or, for sigma_within, windows of one reading only) is
-- NULL. The indices assume an in-control, roughly normal process: read them with the control chart.
-- Windows of idle or stopped machines count too; keep them out with a WHERE on your own data.
-- v_capability_p(period_minutes = 60, lookback_hours = 24); v_capability is that call.
CREATE OR REPLACE VIEW v_capability_p AS
SELECT
    plant, line, machine_id, sensor, period_start, windows, n, mean, sigma_within, sigma_overall, lsl, usl,
    if(sigma_within > 0, (usl - lsl) / (6 * sigma_within), NULL) AS cp,
    if(sigma_within > 0, least(coalesce((usl - mean) / (3 * sigma_within), inf),
                               coalesce((mean - lsl) / (3 * sigma_within), inf)), NULL) AS cpk,
    if(sigma_overall > 0, (usl - lsl) / (6 * sigma_overall), NULL) AS pp,
    if(sigma_overall > 0, least(coalesce((usl - mean) / (3 * sigma_overall), inf),
                                coalesce((mean - lsl) / (3 * sigma_overall), inf)), NULL) AS ppk
FROM
(
    SELECT
        w.p_plant AS plant, w.p_line AS line, w.machine_id AS machine_id, w.sensor AS sensor,
        w.p_start AS period_start, w.p_windows AS windows, w.p_n AS n, w.p_mean AS mean,
        if(w.df = 0, CAST(NULL, 'Nullable(Float64)'),
           sqrt(w.ss_within / w.df) / (sqrt(2 / w.df) * exp(lgamma((w.df + 1) / 2) - lgamma(w.df / 2))))
            AS sigma_within,
        if(w.p_n < 2, CAST(NULL, 'Nullable(Float64)'),
           sqrt(greatest(w.ss_within + w.sum_n_mean_sq - w.p_n * w.p_mean * w.p_mean, 0) / (w.p_n - 1)))
            AS sigma_overall,
        m.lsl AS lsl, m.usl AS usl
    FROM
    (
        SELECT
            machine_id, sensor,
            toStartOfInterval(window_start, toIntervalMinute({period_minutes:UInt32})) AS p_start,
            any(plant) AS p_plant, any(line) AS p_line,
            count() AS p_windows,
            sum(count) AS p_n,
            sum(count * mean) / p_n AS p_mean,
            sum((count - 1) * std * std) AS ss_within,
            sum(count - 1) AS df,
            sum(count * mean * mean) AS sum_n_mean_sq
        FROM window_aggregates FINAL
        WHERE window_kind = 'tumbling'
          AND window_start >= now64(3) - toIntervalHour({lookback_hours:UInt32})
        GROUP BY machine_id, sensor, p_start
    ) AS w
    INNER JOIN
    (
        SELECT machine_id, sensor, lsl, usl FROM machines FINAL WHERE lsl IS NOT NULL OR usl IS NOT NULL
    ) AS m ON w.machine_id = m.machine_id AND w.sensor = m.sensor
);

CREATE OR REPLACE VIEW v_capability AS
SELECT * FROM v_capability_p(period_minutes = 60, lookback_hours = 24);
