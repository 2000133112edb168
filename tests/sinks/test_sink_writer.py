"""BatchWriter against the real embedded ClickHouse: replacing semantics, injection-proof values,
idempotent retries, row rejection and dead letters."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from sinks.clickhouse import backoff_seconds
from sinks.config import ClickHouseSettings
from sinks.exceptions import SinkError
from sinks.tables import DEAD_LETTERS, WINDOW_AGGREGATES, Source, TableSpec
from sinks.writer import BatchWriter, dedup_token

_offsets = itertools.count(1)


def src(topic: str = "windows", partition: int = 0, payload: bytes | None = None) -> Source:
    """A distinct Kafka position per call (tokens name blocks by position and bytes)."""
    offset = next(_offsets)
    return Source(topic, partition, offset, b"k", payload if payload is not None else f"v{offset}".encode())


def final_rows(client: Any, columns: str = "machine_id, sensor, version, mean") -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in client.query(
            f"SELECT {columns} FROM window_aggregates FINAL ORDER BY machine_id, sensor, window_start"
        ).result_rows
    ]


def count(client: Any, table: str = "window_aggregates", final: bool = False) -> int:
    return int(client.command(f"SELECT count() FROM {table}{' FINAL' if final else ''}"))


def test_same_window_keeps_highest_version(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    ch.command("SYSTEM STOP MERGES window_aggregates")  # keep the parts apart until OPTIMIZE
    w = BatchWriter(ch, ch_settings)
    # Separate flushes: separate parts, so only the engine's replacing merge can reconcile them.
    for version, mean in [(0, 2.0), (0, 2.0), (2, 2.5), (1, 2.25)]:  # a late v1 arrives after v2
        w.add(WINDOW_AGGREGATES, make_window(version=version, mean=mean), src())
        w.add(WINDOW_AGGREGATES, make_window(machine_id="m2", version=0, mean=7.0), src())
        w.flush()
    # Nothing merged yet: every insert is its own part. The repeated version-0 windows (m1 once, m2
    # three times) were not inserted again (sinks.replays): m1 v0, v2, v1 and m2 v0 remain.
    assert count(ch) == 4
    assert final_rows(ch) == [("m1", "temperature", 2, 2.5), ("m2", "temperature", 0, 7.0)]
    assert count(ch, final=True) == 2
    ch.command("SYSTEM START MERGES window_aggregates")
    ch.command("OPTIMIZE TABLE window_aggregates FINAL")
    assert count(ch) == count(ch, final=True) == 2


def test_grid_of_windows_round_trips_every_field(
    ch: Any, ch_settings: ClickHouseSettings, make_grid: Any
) -> None:
    records = make_grid(machines=3, sensors=4, windows=5)
    w = BatchWriter(ch, ch_settings)
    for r in records:
        assert w.add(WINDOW_AGGREGATES, r, src())
    result = w.flush()
    assert result.rows == {"window_aggregates": len(records)}
    cols = ", ".join(f"toUnixTimestamp64Milli({c})" if c in _TS else c for c in WINDOW_AGGREGATES.columns)
    got = ch.query(f"SELECT {cols} FROM window_aggregates FINAL").result_rows
    expected = sorted(tuple(r[c] for c in WINDOW_AGGREGATES.columns) for r in records)
    assert sorted(tuple(g) for g in got) == expected


_TS = {"window_start", "window_end", "first_ts", "last_ts", "emitted_at"}

HOSTILE = [
    "'); DROP TABLE x; --",
    "m'1",
    'm"2',
    "back\\slash",
    "\\'",
    "trailing\\",
    "`tick`",
    "{placeholder}",
    "%(name)s",
    "?",
    "semi;colon",
    "new\nline\ttab",
    "nul\x00byte",
    "ünïcødé ✓ 机器",
    "",
]


def test_hostile_names_round_trip_exactly(ch: Any, ch_settings: ClickHouseSettings, make_window: Any) -> None:
    ch.command("CREATE TABLE x (a UInt8) ENGINE = MergeTree ORDER BY a")
    w = BatchWriter(ch, ch_settings)
    for i, name in enumerate(HOSTILE):
        w.add(
            WINDOW_AGGREGATES,
            make_window(
                machine_id=name,
                sensor=name,
                plant=name,
                unit=name,
                window_start=1_767_225_600_000 + i * 60_000,
            ),
            src(),
        )
    w.flush()
    got = ch.query("SELECT machine_id, sensor, plant, unit FROM window_aggregates").result_rows
    assert sorted(tuple(r) for r in got) == sorted((n, n, n, n) for n in HOSTILE)
    tables = {r[0] for r in ch.query("SHOW TABLES").result_rows}
    assert {"x", "window_aggregates", "dead_letters", "schema_migrations"} <= tables


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(max_size=40), min_size=1, max_size=8, unique=True))
def test_any_text_round_trips(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any, names: list[str]
) -> None:
    ch.command("TRUNCATE TABLE window_aggregates")
    w = BatchWriter(ch, ch_settings)
    for name in names:
        w.add(WINDOW_AGGREGATES, make_window(machine_id=name, sensor=name[::-1]), src())
    w.flush()
    got = ch.query("SELECT machine_id, sensor FROM window_aggregates").result_rows
    assert sorted(tuple(r) for r in got) == sorted((n, n[::-1]) for n in names)


class LostResponses:
    """The real client, except that the first ``n`` inserts raise after ClickHouse stored the rows
    (a response lost on the way back) or before (``before=True``: the server was unreachable)."""

    def __init__(self, client: Any, n: int, before: bool = False) -> None:
        self.client, self.left, self.before = client, n, before
        self.calls = 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.left > 0 and self.before:
            self.left -= 1
            raise OperationalError("connection refused")
        result = self.client.insert(*args, **kwargs)
        if self.left > 0:
            self.left -= 1
            raise OperationalError("connection reset by peer while reading the response")
        return result

    def __getattr__(self, name: str) -> Any:  # everything but insert: the real client
        return getattr(self.client, name)


def _retries(table: str) -> float:
    return REGISTRY.get_sample_value("millstream_sink_retries_total", {"table": table}) or 0.0


def test_retry_after_lost_response_writes_once(
    ch: Any, ch_settings: ClickHouseSettings, make_grid: Any
) -> None:
    flaky = LostResponses(ch, n=2)
    w = BatchWriter(flaky, ch_settings, sleep=lambda s: None)  # type: ignore[arg-type]
    records = make_grid(machines=2, sensors=2, windows=10)
    for r in records:
        w.add(WINDOW_AGGREGATES, r, src())
    before = _retries("window_aggregates")
    w.flush()
    assert flaky.calls == 3
    assert _retries("window_aggregates") - before == 2
    # The deduplication token dropped the two repeats: exact, without FINAL or a merge.
    assert count(ch) == len(records)


def test_retry_when_unreachable_then_succeeds(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    flaky = LostResponses(ch, n=3, before=True)
    delays: list[float] = []
    w = BatchWriter(flaky, ch_settings, sleep=delays.append)  # type: ignore[arg-type]
    w.add(WINDOW_AGGREGATES, make_window(), src())
    w.flush()
    assert len(delays) == 3 and count(ch) == 1


def test_retries_exhausted_raise_and_keep_batch(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    s = ch_settings.model_copy(update={"max_retries": 2})
    flaky = LostResponses(ch, n=100, before=True)
    w = BatchWriter(flaky, s, sleep=lambda _: None)  # type: ignore[arg-type]
    w.add(WINDOW_AGGREGATES, make_window(), src())
    with pytest.raises(SinkError, match="after 3 attempt"):
        w.flush()
    assert flaky.calls == 3
    assert w.pending_rows == 1  # nothing is forgotten: the caller must not commit
    flaky.left = 0
    assert w.flush().rows == {"window_aggregates": 1}


def test_fatal_error_is_not_retried(ch: Any, ch_settings: ClickHouseSettings, make_window: Any) -> None:
    missing = TableSpec("no_such_table", WINDOW_AGGREGATES.columns, WINDOW_AGGREGATES.to_row)
    delays: list[float] = []
    w = BatchWriter(ch, ch_settings, sleep=delays.append)
    w.add(missing, make_window(), src())
    with pytest.raises(SinkError, match="no_such_table"):
        w.flush()
    assert delays == []


def test_rejected_rows_are_isolated_into_dead_letters(
    ch: Any, ch_settings: ClickHouseSettings, make_grid: Any
) -> None:
    # A table spec without validation, so that ClickHouse's client-side typing is what refuses.
    raw = TableSpec("window_aggregates", WINDOW_AGGREGATES.columns, WINDOW_AGGREGATES.to_row)
    unchecked = TableSpec(
        "window_aggregates",
        raw.columns,
        lambda r: [r[c] for c in raw.columns],
    )
    records = make_grid(machines=1, sensors=1, windows=9)
    bad_index = {2, 7}
    w = BatchWriter(ch, ch_settings)
    payloads = {}
    for i, r in enumerate(records):
        if i in bad_index:
            r = {**r, "mean": "not a number"}
        s = src(payload=f"payload-{i}".encode())
        payloads[i] = s
        w.add(unchecked, r, s)
    result = w.flush()
    assert result.rows == {"window_aggregates": 7, "dead_letters": 2}
    assert result.rejected == 2
    got = ch.query(
        "SELECT stage, reason_code, topic, partition, offset, payload FROM dead_letters ORDER BY offset",
        column_formats={"payload": "bytes"},
    ).result_rows
    expected = sorted((payloads[i].offset, payloads[i].payload) for i in bad_index)
    assert [(r[4], r[5]) for r in got] == expected
    assert {(r[0], r[1], r[2], r[3]) for r in got} == {("sink", "sink_rejected", "windows", 0)}


def test_invalid_records_become_dead_letters(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    w = BatchWriter(ch, ch_settings)
    year_2500 = 16_725_225_600_000  # 2500-01-01T00:00:00Z, beyond DateTime64's range (ends 2299)
    assert not w.add(WINDOW_AGGREGATES, make_window(window_start=year_2500), src())
    assert not w.add(WINDOW_AGGREGATES, make_window(count=-1), src())
    assert not w.add(WINDOW_AGGREGATES, {"machine_id": "m"}, src())
    assert w.add(WINDOW_AGGREGATES, make_window(), src())
    w.flush()
    assert count(ch) == 1
    codes = ch.query("SELECT reason_code, reason FROM dead_letters ORDER BY offset").result_rows
    assert [c for c, _ in codes] == ["invalid_record"] * 3
    assert "outside DateTime64" in codes[0][1] and "count" in codes[1][1]


def test_dead_letter_records_are_stored(ch: Any, ch_settings: ClickHouseSettings) -> None:
    dl = {
        "stage": "windows",
        "topic": "readings",
        "partition": 2,
        "offset": 41,
        "key": b"\xffk",
        "payload": b"\x00\x01\xfe'); DROP TABLE dead_letters; --",
        "payload_json": '{"value": "NaN"}',
        "reason_code": "too_late",
        "reason": "event time 1 < watermark 2",
        "failed_at": 1_767_225_600_123,
    }
    w = BatchWriter(ch, ch_settings)
    w.add(DEAD_LETTERS, dl, src(topic="dead-letters"))
    w.add(DEAD_LETTERS, dl, src(topic="dead-letters"))  # a replayed copy
    w.flush()
    got = ch.query(
        f"SELECT {', '.join(DEAD_LETTERS.columns[:-1])}, toUnixTimestamp64Milli(failed_at) "
        "FROM dead_letters FINAL",
        column_formats={"payload": "bytes", "key": "bytes"},
    ).result_rows
    assert [tuple(r) for r in got] == [tuple(dl[c] for c in DEAD_LETTERS.columns)]


def test_batches_are_due_by_rows_and_by_age(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    by_rows = BatchWriter(ch, ch_settings.model_copy(update={"batch_rows": 3, "batch_age_ms": 3_600_000}))
    assert not by_rows.due()
    for i in range(3):
        assert not by_rows.due()
        by_rows.add(WINDOW_AGGREGATES, make_window(window_start=1_767_225_600_000 + i * 60_000), src())
    assert by_rows.due()
    by_age = BatchWriter(ch, ch_settings.model_copy(update={"batch_rows": 1000, "batch_age_ms": 0}))
    assert not by_age.due()
    by_age.add(WINDOW_AGGREGATES, make_window(), src())
    assert by_age.due()
    offsets = by_rows.flush().offsets
    assert not by_rows.pending and not by_rows.due()
    assert offsets == {("windows", 0): max(offsets.values())}


def test_flush_reports_next_offsets_per_partition(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    w = BatchWriter(ch, ch_settings)
    positions = [("windows", 0, 5), ("windows", 0, 3), ("windows", 1, 9), ("dead-letters", 2, 0)]
    for i, (topic, part, off) in enumerate(positions):
        w.add(
            WINDOW_AGGREGATES,
            make_window(window_start=1_767_225_600_000 + i * 60_000),
            Source(topic, part, off, None, b"x%d" % i),
        )
    assert w.flush().offsets == {("windows", 0): 6, ("windows", 1): 10, ("dead-letters", 2): 1}


def test_latency_is_observed_per_written_window(
    ch: Any, ch_settings: ClickHouseSettings, make_grid: Any
) -> None:
    def n() -> float:
        return REGISTRY.get_sample_value("millstream_end_to_end_latency_ms_count", {"stage": "sink"}) or 0.0

    before = n()
    w = BatchWriter(ch, ch_settings)
    records = make_grid(machines=1, sensors=2, windows=3)
    for r in records:
        w.add(WINDOW_AGGREGATES, r, src())
    w.flush()
    assert n() - before == len(records)


def test_dedup_token_names_the_records() -> None:
    a = [Source("t", 0, 1, None, b"a"), Source("t", 1, 7, None, b"b")]
    assert dedup_token("window_aggregates", a) == dedup_token("window_aggregates", list(a))
    assert dedup_token("window_aggregates", a) != dedup_token("dead_letters", a)
    # Same offsets, other bytes (a re-created topic): another block.
    assert dedup_token("window_aggregates", a) != dedup_token(
        "window_aggregates", [a[0], Source("t", 1, 7, None, b"c")]
    )
    assert dedup_token("window_aggregates", a) != dedup_token("window_aggregates", a[:1])


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    s = ClickHouseSettings(retry_backoff_ms=100, retry_backoff_max_ms=1000)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        delays = [backoff_seconds(attempt, s, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not constant


def test_take_and_write_let_the_next_batch_fill_meanwhile(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    w = BatchWriter(ch, ch_settings)
    w.add(WINDOW_AGGREGATES, make_window(), Source("windows", 0, 5, None, b"a"))
    batch = w.take()
    assert (w.pending_rows, w.backlog_rows, w.pending) == (0, 1, False)
    w.add(WINDOW_AGGREGATES, make_window(machine_id="m2"), Source("windows", 0, 6, None, b"b"))
    assert w.backlog_rows == 2
    result = w.write(batch)  # only the taken rows, only their offsets
    assert (result.rows, result.offsets) == ({"window_aggregates": 1}, {("windows", 0): 6})
    assert (w.pending_rows, w.backlog_rows) == (1, 1)
    assert w.flush().offsets == {("windows", 0): 7}
    assert count(ch) == 2 and w.backlog_rows == 0


def test_retrying_is_flagged_while_an_insert_waits_for_its_next_attempt(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    flaky = LostResponses(ch, n=2, before=True)
    seen: list[bool] = []
    w = BatchWriter(flaky, ch_settings, sleep=lambda _: seen.append(w.retrying.is_set()))  # type: ignore[arg-type]
    assert not w.retrying.is_set()
    w.add(WINDOW_AGGREGATES, make_window(), src())
    w.flush()
    assert seen == [True, True] and not w.retrying.is_set()
