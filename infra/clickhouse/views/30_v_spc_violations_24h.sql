-- SPC signals whose point lies in the last 24 hours of event time (window_end; emitted_at when the
-- signal has no window), newest first, with the rule in words (as streams/spc/rules.py says it).
CREATE OR REPLACE VIEW v_spc_violations_24h AS
SELECT
    plant, line, machine_id, sensor, chart, rule,
    transform(
        toString(rule),
        ['LIMIT', 'WE1', 'WE2', 'WE3', 'WE4', 'N1', 'N2', 'N3', 'N4', 'N5', 'N6', 'N7', 'N8'],
        ['beyond a control limit', '1 point beyond a control limit', '2 of 3 beyond 2 sigma, same side',
         '4 of 5 beyond 1 sigma, same side', '8 in a row on one side of the center',
         '1 point beyond a control limit', '9 in a row on one side of the center',
         '6 in a row steadily increasing or decreasing', '14 in a row alternating up and down',
         '2 of 3 beyond 2 sigma, same side', '4 of 5 beyond 1 sigma, same side',
         '15 in a row within 1 sigma', '8 in a row beyond 1 sigma, either side'],
        ''
    ) AS rule_description,
    point_index, value, center, lcl, ucl, window_start, window_end,
    coalesce(window_end, emitted_at) AS event_time,
    emitted_at
FROM spc_signals FINAL
WHERE coalesce(window_end, emitted_at) >= now64(3) - INTERVAL 24 HOUR
ORDER BY event_time DESC, machine_id, sensor, chart, rule;
