"""Batching, idempotent ClickHouse writer.

Rows are buffered per table together with the Kafka position they came from. :meth:`BatchWriter.flush`
inserts each table's rows with clickhouse-connect ``insert()`` (values travel as typed columns in
Native format; no SQL is ever built from data) and returns the offsets the batch covers. The caller
commits those offsets only after ``flush`` returned, so a crash in between replays the batch.
Replays and retries are harmless:

* every insert carries an ``insert_deduplication_token`` derived from the table and the
  topic/partition/offset ranges of its rows; ClickHouse drops a block whose token it has seen (tables
  set ``non_replicated_deduplication_window``; Replicated* engines keep such a window by default).
  That covers a retry of the same batch after a lost response;
* a replay after a crash may cut batches differently, so tokens differ; the tables'
  ReplacingMergeTree sorting keys then collapse the duplicates (read with FINAL), and version-0
  tumbling windows already stored are not inserted again (:mod:`sinks.replays`), so that the
  rollups do not count them twice.

The deduplication reaches the rollups' materialized views too (the inserts set
``deduplicate_blocks_in_dependent_materialized_views``): a retried block is not rolled up twice.

:meth:`BatchWriter.take` detaches the pending batch and :meth:`BatchWriter.write` writes it, so a
caller may write one batch on another thread while it keeps buffering the next (sinks.runner does);
``flush`` is both in one call. :attr:`BatchWriter.retrying` is set while an insert is being retried.

Errors: transient ones (network, timeouts, too many parts, memory) are retried with exponential
backoff and jitter, then :class:`SinkError`. Rows ClickHouse rejects (type or range errors) are
isolated by bisecting the batch and go to ``dead_letters`` with reason ``sink_rejected``. Anything
else (missing table, permissions) stops the sink without committing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sinks.clickhouse import backoff_seconds, classify_error
from sinks.exceptions import SinkError
from sinks.metrics import END_TO_END_LATENCY, RECORDS_OUT
from sinks.replays import Identity, drop_rolled_up, stored_first_emissions
from sinks.sink_metrics import (
    SINK_BATCH_ROWS,
    SINK_INSERT_SECONDS,
    SINK_PENDING_ROWS,
    SINK_REJECTED,
    SINK_RETRIES,
)
from sinks.tables import DEAD_LETTERS, WINDOW_AGGREGATES, Source, TableSpec, dead_letter_record

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from sinks.config import ClickHouseSettings

logger = logging.getLogger(__name__)

STAGE = "sink"
T = TypeVar("T")


@dataclass
class FlushResult:
    """What one flush wrote: rows per table and the offsets to commit (next offset to read)."""

    rows: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: int = 0

    @property
    def written(self) -> int:
        return sum(self.rows.values())


class _Rejected(Exception):
    """ClickHouse or the client refused the values of a block."""


@dataclass
class _Buffer:
    table: TableSpec
    rows: list[list[Any]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)


@dataclass
class Batch:
    """Rows taken from the writer for one write, and the Kafka offsets they cover."""

    buffers: dict[str, _Buffer] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rows: int = 0

    def append(self, table: TableSpec, row: list[Any], source: Source) -> None:
        buf = self.buffers.get(table.name)
        if buf is None:
            buf = self.buffers[table.name] = _Buffer(table)
        buf.rows.append(row)
        buf.sources.append(source)
        self.rows += 1


class BatchWriter:
    """Buffers rows per table; flushes by row count and age; idempotent, retried inserts."""

    def __init__(
        self,
        client: Client,
        settings: ClickHouseSettings,
        *,
        sleep: Callable[[float], None] | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        describe: Callable[[bytes | str], str | None] = lambda _: None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.describe = describe  # a dead letter's payload as JSON (payload_json), None if unknown
        self.stopping = threading.Event()  # set by the runner's stop(): a retry ends at once
        self._sleep = sleep or self.stopping.wait
        self._clock_ms = clock_ms
        self._batch = Batch()
        self._first_at: float | None = None
        self._writing = 0  # rows of batches being written (on any thread)
        self._rng = random.Random()  # jitter only; not security relevant
        self.retrying = threading.Event()  # set while an insert waits for its next attempt

    # ------------------------------------------------------------------ buffering
    @property
    def pending_rows(self) -> int:
        """Rows buffered, not yet taken for a write."""
        return self._batch.rows

    @property
    def backlog_rows(self) -> int:
        """Rows buffered plus rows being written."""
        return self._batch.rows + self._writing

    @property
    def pending(self) -> bool:
        """True when rows or offsets wait for a flush."""
        return bool(self._batch.offsets) or self._batch.rows > 0

    def add(self, table: TableSpec, record: dict[str, Any], source: Source) -> bool:
        """Buffer one record for ``table``. An invalid record becomes a dead letter; returns False then."""
        try:
            row = table.to_row(record)
        except (ValueError, TypeError, KeyError) as exc:
            self.add_dead_letter("invalid_record", f"not a valid {table.name} row: {exc}", source)
            return False
        self._append(table, row, source)
        return True

    def add_dead_letter(self, reason_code: str, reason: str, source: Source) -> None:
        """Buffer a dead letter for a record this sink could not handle (stage ``sink``)."""
        self._append(DEAD_LETTERS, self._dead_letter_row(reason_code, reason, source), source)

    def _dead_letter_row(self, reason_code: str, reason: str, source: Source) -> list[Any]:
        record = dead_letter_record(STAGE, reason_code, reason, source, self._clock_ms())
        record["payload_json"] = self.describe(source.payload)
        return DEAD_LETTERS.to_row(record)

    def track(self, source: Source) -> None:
        """Count a record that produced no row as covered by the next flush (its offset is committed)."""
        self._touch(source)

    def due(self) -> bool:
        """True when the batch is full or its oldest entry is older than ``batch_age_ms``."""
        if self.pending_rows >= self.settings.batch_rows:
            return True
        if self._first_at is None:
            return False
        return (time.monotonic() - self._first_at) * 1000 >= self.settings.batch_age_ms

    def _append(self, table: TableSpec, row: list[Any], source: Source) -> None:
        self._batch.append(table, row, source)
        self._touch(source)
        SINK_PENDING_ROWS.inc()

    def _touch(self, source: Source) -> None:
        tp = (source.topic, source.partition)
        offsets = self._batch.offsets
        if source.offset > offsets.get(tp, -1):
            offsets[tp] = source.offset
        if self._first_at is None:
            self._first_at = time.monotonic()

    # ------------------------------------------------------------------ flushing
    def take(self) -> Batch:
        """Detach the pending batch (for :meth:`write`); the writer starts an empty one."""
        batch, self._batch = self._batch, Batch()
        self._first_at = None
        self._writing += batch.rows
        return batch

    def write(self, batch: Batch) -> FlushResult:
        """Write a taken batch; return what was written and the offsets now safe to commit.

        Safe on another thread than the one buffering. Raises :class:`SinkError` when the batch
        cannot be written; nothing of it may then be committed (writing it again is harmless).
        """
        taken = batch.rows
        try:
            return self._write_batch(batch)
        finally:
            self._writing -= taken
            SINK_PENDING_ROWS.dec(taken)

    def flush(self) -> FlushResult:
        """Write every buffered row (:meth:`take` + :meth:`write`).

        Raises :class:`SinkError` when a batch cannot be written; the rows are then buffered again
        (ahead of any newer ones) and nothing may be committed.
        """
        batch = self.take()
        try:
            return self.write(batch)
        except SinkError:
            self._restore(batch)
            raise

    def _restore(self, batch: Batch) -> None:
        newer, self._batch = self._batch, Batch()
        for older in (batch, newer):
            for buf in older.buffers.values():
                for row, source in zip(buf.rows, buf.sources, strict=True):
                    self._batch.append(buf.table, row, source)
            for tp, offset in older.offsets.items():
                self._batch.offsets[tp] = max(offset, self._batch.offsets.get(tp, -1))
        SINK_PENDING_ROWS.set(self.backlog_rows)
        if self._batch.rows or self._batch.offsets:
            self._first_at = time.monotonic()

    def _write_batch(self, batch: Batch) -> FlushResult:
        result = FlushResult()
        for buf in list(batch.buffers.values()):
            if buf.table.name == DEAD_LETTERS.name:
                continue  # dead letters last: rows rejected from the other tables join them
            buf = self._unreplayed(buf)
            written, rejected = self._write_table(buf)
            result.rows[buf.table.name] = written
            for index, reason in rejected:
                source = buf.sources[index]
                row = self._dead_letter_row("sink_rejected", f"{buf.table.name}: {reason}", source)
                batch.append(DEAD_LETTERS, row, source)
            result.rejected += len(rejected)
        dead = batch.buffers.get(DEAD_LETTERS.name)
        if dead is not None and dead.rows:
            written, rejected = self._write_table(dead)
            if rejected:
                msg = f"ClickHouse rejected {len(rejected)} dead letter(s): {rejected[0][1]}"
                raise SinkError(msg)
            result.rows[DEAD_LETTERS.name] = written
        result.offsets = {tp: offset + 1 for tp, offset in batch.offsets.items()}
        return result

    def _write_table(self, buf: _Buffer) -> tuple[int, list[tuple[int, str]]]:
        if not buf.rows:
            return 0, []
        token = dedup_token(buf.table.name, buf.sources)
        rejected = self._write_block(buf.table, buf.rows, 0, token)
        written = len(buf.rows) - len(rejected)
        if rejected:
            SINK_REJECTED.labels(buf.table.name).inc(len(rejected))
            logger.warning("%s: %d row(s) rejected, sent to dead letters", buf.table.name, len(rejected))
        if written:
            RECORDS_OUT.labels(STAGE).inc(written)
            self._observe_latency(buf, {i for i, _ in rejected})
        return written, rejected

    def _write_block(
        self, table: TableSpec, rows: Sequence[list[Any]], start: int, token: str
    ) -> list[tuple[int, str]]:
        """Insert ``rows``; returns the (index, reason) of rows that were rejected (bisection)."""
        try:
            self._insert(table, rows, token)
            return []
        except _Rejected as exc:
            if len(rows) == 1:
                return [(start, str(exc.__cause__ or exc))]
        mid = len(rows) // 2
        return self._write_block(table, rows[:mid], start, f"{token}/a") + self._write_block(
            table, rows[mid:], start + mid, f"{token}/b"
        )

    def _insert(self, table: TableSpec, rows: Sequence[list[Any]], token: str) -> None:
        settings: dict[str, Any] = {
            "insert_deduplicate": 1,
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "max_partitions_per_insert_block": self.settings.max_partitions_per_insert,
        }
        try:
            self._attempt(table, rows, settings)
        finally:
            self.retrying.clear()

    def _attempt(self, table: TableSpec, rows: Sequence[list[Any]], settings: dict[str, Any]) -> None:
        """Insert, retrying transient errors with backoff; ``retrying`` is set while waiting."""
        started = time.monotonic()

        def insert() -> None:
            self.client.insert(table.name, list(rows), column_names=list(table.columns), settings=settings)

        self._retrying(f"insert into {table.name}", table.name, insert, rejectable=True)
        SINK_BATCH_ROWS.labels(table.name).observe(len(rows))
        SINK_INSERT_SECONDS.labels(table.name).observe(time.monotonic() - started)

    def _retrying(self, what: str, table: str, call: Callable[[], T], *, rejectable: bool = False) -> T:
        """``call()``, retrying transient errors with backoff; raises _Rejected (rejectable) or SinkError."""
        attempt = 0
        while True:
            try:
                return call()
            except Exception as exc:
                kind = classify_error(exc)
                if kind == "row" and rejectable:
                    raise _Rejected(str(exc)) from exc
                if kind != "transient":
                    msg = f"{what} failed: {type(exc).__name__}: {exc}"
                    raise SinkError(msg) from exc
                if attempt >= self.settings.max_retries:
                    last = f"{type(exc).__name__}: {exc}"
                    msg = f"{what} failed after {attempt + 1} attempt(s); last error: {last}"
                    raise SinkError(msg) from exc
                delay = backoff_seconds(attempt, self.settings, self._rng)
                logger.warning(
                    "%s failed (%s: %s); retry %d/%d in %.2fs",
                    what,
                    type(exc).__name__,
                    exc,
                    attempt + 1,
                    self.settings.max_retries,
                    delay,
                )
                SINK_RETRIES.labels(table).inc()
                self.retrying.set()
                self._sleep(delay)
                if self.stopping.is_set():
                    msg = (
                        f"{what}: stopped while retrying ({attempt + 1} attempt(s); last error: "
                        f"{type(exc).__name__}: {exc}); the batch is read again at the next start"
                    )
                    raise SinkError(msg) from exc
                attempt += 1

    def _unreplayed(self, buf: _Buffer) -> _Buffer:
        """``buf`` without windows the rollups already counted (:mod:`sinks.replays`)."""
        if buf.table.name != WINDOW_AGGREGATES.name:
            return buf

        def stored(rows: Sequence[Sequence[Any]]) -> set[Identity]:
            lookup = partial(stored_first_emissions, self.client, rows)
            try:
                return self._retrying("looking up stored windows", buf.table.name, lookup)
            finally:
                self.retrying.clear()

        keep = drop_rolled_up(buf.rows, stored)
        if len(keep) == len(buf.rows):
            return buf
        return _Buffer(buf.table, [buf.rows[i] for i in keep], [buf.sources[i] for i in keep])

    def _observe_latency(self, buf: _Buffer, rejected: set[int]) -> None:
        index = buf.table.latency_column_index
        if index is None:
            return
        now = self._clock_ms()
        hist = END_TO_END_LATENCY.labels(STAGE)
        for i, row in enumerate(buf.rows):
            if i not in rejected:
                hist.observe(max(0, now - int(row[index])))


def dedup_token(table: str, sources: Sequence[Source]) -> str:
    """A token naming a block by its table and the Kafka records its rows came from.

    The same records always give the same token, so ClickHouse drops a retried insert. The record
    bytes are part of it, not just the offsets: a topic deleted and re-created (the local in-memory
    broker restarts empty) reuses offsets for other data, which must not be mistaken for a retry.
    """
    h = hashlib.sha256(f"{table}|{len(sources)}".encode())
    for s in sources:
        h.update(f"|{s.topic}/{s.partition}/{s.offset}/{len(s.payload)}|".encode())
        h.update(s.payload)
    return f"millstream:{table}:{h.hexdigest()[:40]}"
