-- The identity of an SPC signal gains the start of its point's window (`point_start`). point_index
-- counts from 1 again whenever a key's SPC monitor starts over (a new MILLSTREAM_STREAM_APP_ID, a
-- switch between Faust and Flink, which carries no SPC state over: docs/scaling-out.md), and with
-- (machine, sensor, chart, rule, point_index) alone the new signal of a number replaced the older
-- one of that number at the next merge: signal history was lost. A replayed signal keeps its window,
-- so it still collapses into one row. ClickHouse only lets a column added in the same ALTER, without
-- a default, extend the sorting key, so rows written before this migration hold 1970-01-01 (a
-- signal re-emitted right across the upgrade may then show twice). Applying it again changes nothing.
ALTER TABLE spc_signals
    ADD COLUMN IF NOT EXISTS `point_start` DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
        COMMENT 'window_start of the point (1970-01-01 without one): part of the identity.',
    MODIFY ORDER BY (machine_id, sensor, chart, rule, point_index, point_start);
