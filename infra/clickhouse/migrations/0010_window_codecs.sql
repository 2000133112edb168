-- Float codecs of window_aggregates, chosen by measurement (benchmarks/bench_codecs.py, results in
-- benchmarks/results/codecs.json, quoted in docs/clickhouse.md): Gorilla before ZSTD(1) makes the
-- level-like statistics (sum, mean, min, max, first, last, percentiles) 3-7 % smaller than ZSTD(1)
-- alone; std and slope stay ZSTD(1), where Gorilla costs ~6 %. Timestamps keep DoubleDelta/Delta.
-- A codec change is metadata only: new parts use it, older parts are re-compressed as they merge.
ALTER TABLE window_aggregates MODIFY COLUMN `sum` Float64 CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `mean` Float64 CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `min` Float64 CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `max` Float64 CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `first` Float64 CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `last` Float64 CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `p50` Nullable(Float64) CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `p95` Nullable(Float64) CODEC(Gorilla, ZSTD(1));
ALTER TABLE window_aggregates MODIFY COLUMN `p99` Nullable(Float64) CODEC(Gorilla, ZSTD(1));
