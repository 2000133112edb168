-- Daily partitions expire whole: with ttl_only_drop_parts a TTL (set by `millstream migrate` from
-- the MILLSTREAM_CLICKHOUSE_TTL_* settings) drops a part once all its rows expired instead of
-- rewriting it. MODIFY SETTING is idempotent.
ALTER TABLE window_aggregates MODIFY SETTING ttl_only_drop_parts = 1;
