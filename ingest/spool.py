"""The store-and-forward spool: a durable, size-bounded, append-only log of Kafka messages.

While the broker is unreachable a gateway appends its messages here and replays them, in order,
once the broker is back (:mod:`ingest.forwarder` decides when). Files: :mod:`ingest.segments`
(length + CRC-32 framed records in segment files, a cursor file, a lock).

* **Append-only.** A segment rolls over at ``segment_bytes``; a new run never appends to an old
  segment. A segment is deleted only when every record in it was acknowledged by the broker.
* **Durability** (``fsync``): records are staged in memory and written with one ``write`` +
  ``fsync`` per :meth:`Spool.commit` (group commit). ``always``: a record counts as spooled
  (:attr:`Spool.durable`) only after its fsync; ``interval``: after the next fsync, at most
  ``fsync_interval_ms`` later; ``never``: once written to the OS. A kill -9 loses only records not
  yet committed, i.e. never one that was reported spooled; an OS crash or power loss also loses
  the unsynced ones under ``interval`` (at most one interval) and ``never`` (whatever the OS had
  not written back).
* **Crash recovery.** A torn frame at the end of the newest segment (crash mid-write) is cut off;
  a CRC mismatch inside a segment drops the rest of that segment (counted as ``corrupt``). The
  cursor is rewritten at most once a second, so a restart may replay a few acknowledged records
  again (at-least-once; downstream dedup by machine, sensor and event time removes them).
* **Bound** (``max_bytes``, ``overflow``): ``drop-oldest`` deletes the oldest segment,
  ``drop-newest`` refuses the new record, ``block`` raises :class:`SpoolFull` so the caller stops
  taking input. Every dropped record is counted.
* **A full disk** (ENOSPC, EDQUOT) is a smaller bound: a partly written batch is cut back to its
  last whole frame (``ftruncate`` needs no space); ``drop-oldest`` deletes the oldest written
  segments (never the one being written nor one with records out for replay) and writes again, and
  drops the unwritten records when nothing is left to delete; ``drop-newest`` drops them;
  ``block`` keeps them staged and raises :class:`SpoolFull` until a write succeeds again. Staged
  records dropped this way had positions: :meth:`Spool.take_dropped` tells the owner which, so it
  reports them dropped, never durable. Opening needs no free space.
* **Per-key order.** :attr:`Spool.pending_keys` counts unacknowledged records per key (machine)
  of the tracked kinds, so a forwarder can send a machine's new readings behind its spooled ones.

Not thread-safe: one owner thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from ingest import segments
from ingest.config import SpoolSettings
from ingest.exceptions import GatewayError
from ingest.segments import FRAME, MAGIC, Frame, Pos, Segment, decode_body, encode_frame, parse_frame

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20
CURSOR_EVERY_S = 1.0
FULL_RETRY_S = 1.0  # a full disk: drop-newest and block try a write again after this long
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

SPOOLED = PromCounter("millstream_gateway_spooled", "Records written to the store-and-forward spool.")
SPOOL_DROPPED = PromCounter(
    "millstream_gateway_spool_dropped",
    "Spooled records lost on purpose or by damage: overflow (policy) or corrupt (CRC mismatch).",
    ["reason"],
)
for _reason in ("overflow", "corrupt"):  # at 0 from the start: rate() sees the first drop
    SPOOL_DROPPED.labels(_reason)
SPOOL_BYTES = Gauge("millstream_gateway_spool_bytes", "Bytes in the spool's segment files.")
SPOOL_RECORDS = Gauge("millstream_gateway_spool_records", "Spooled records not yet acknowledged.")


class SpoolError(GatewayError):
    """The spool folder cannot be used (locked by another gateway, unwritable)."""


class SpoolFull(GatewayError):
    """overflow='block' and the record does not fit (bound or full disk): stop taking input until
    replay frees space."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    pos: Pos
    end: int
    kind: int
    key: bytes | None
    value: bytes


class Spool:
    """Append, commit, read in order, acknowledge. See the module docstring for the guarantees."""

    def __init__(self, settings: SpoolSettings, tracked_kinds: frozenset[int] = frozenset({0})) -> None:
        self.settings = settings
        if settings.dir is None:
            msg = "no spool folder: set --spool-dir, spool.dir in the gateway file or MILLSTREAM_SPOOL_DIR"
            raise GatewayError(msg)
        self.dir: Path = settings.dir
        self.tracked = tracked_kinds
        self._segments: dict[int, Segment] = {}  # ascending ids
        self._writer: Segment | None = None
        self._wfd: int | None = None
        self._wbuf = bytearray()
        self._staged: deque[tuple[int, int, int, int, bytes | None]] = deque()  # (index, off, n, kind, key)
        self._written = 0  # index of the last record written to the OS
        self._dropped: list[tuple[int, Pos]] = []  # staged records dropped by a full disk: (index, pos)
        self._full = False  # the last write failed for lack of space
        self._full_logged = False
        self._retry_at = 0.0
        self._rseg = 0
        self._roff = len(MAGIC)
        self._rfd: tuple[int, int] | None = None  # (segment id, fd)
        self._outstanding: deque[tuple[int, int, int]] = deque()  # read, not yet passed: (seg, off, end)
        self._acked: set[Pos] = set()  # outstanding ones already acknowledged
        self._preacked: set[Pos] = set()  # acknowledged before they were read
        self._cursor: Pos = (0, len(MAGIC))
        self._cursor_saved: Pos = self._cursor
        self._cursor_at = 0.0
        self._cursor_failing = False
        self._lock_fd: int | None = None
        self._last_fsync = time.monotonic()
        self._unsynced = False
        self.pending_keys: Counter[bytes] = Counter()
        self.pending = 0  # records not yet acknowledged
        self.total_bytes = 0
        self.appended = 0  # records appended in this run (also the index of the last one)
        self.durable = 0  # records up to this index are durable per the fsync policy
        self.dropped_overflow = 0
        self.dropped_corrupt = 0
        self.recovered = 0  # records found at open

    # ------------------------------------------------------------------------------------ open/close
    def open(self) -> Spool:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            msg = f"cannot use the spool folder {self.dir}: {exc}"
            raise SpoolError(msg) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            msg = f"the spool folder {self.dir} is in use by another gateway (each needs its own)"
            raise SpoolError(msg) from exc
        self._cursor = self._cursor_saved = segments.load_cursor(self.dir)
        paths = sorted(self.dir.glob("*.seg"))
        for i, path in enumerate(paths):
            try:
                seg_id = int(path.stem)
            except ValueError:
                continue
            if seg_id < self._cursor[0]:
                path.unlink()  # entirely before the cursor: acknowledged
                continue
            self._recover(seg_id, path, last=i == len(paths) - 1)
        first = next(iter(self._segments), None)
        if first is not None and first == self._cursor[0]:
            self._rseg, self._roff = self._cursor
        elif first is not None:
            self._rseg, self._roff = first, len(MAGIC)
        self.recovered = self.pending
        self._check_free_space()
        if self.pending:
            logger.info(
                "spool %s holds %d records (%d bytes) to replay", self.dir, self.pending, self.total_bytes
            )
        self._publish()
        return self

    def _check_free_space(self) -> None:
        """A disk that fills before ``max_bytes`` makes the spool smaller than configured (the
        overflow policy then applies at the disk's size): say so at start."""
        try:
            free = shutil.disk_usage(self.dir).free
        except OSError:
            return
        if free + self.total_bytes < self.settings.max_bytes:
            logger.warning(
                "spool %s: max_bytes is %d but only %d bytes are free there: a long broker outage would "
                "fill the disk first and the overflow policy (%s) would apply at that smaller size; "
                "lower spool.max_bytes or free space",
                self.dir,
                self.settings.max_bytes,
                free + self.total_bytes,
                self.settings.overflow,
            )

    def _recover(self, seg_id: int, path: Path, last: bool) -> None:
        seg, data, damaged = segments.recover(path, seg_id, last)
        if damaged:
            self._count_corrupt(1)
        if seg is None:
            return
        start = self._cursor[1] if seg_id == self._cursor[0] else len(MAGIC)
        for off, _, body in segments.scan(data):
            if off >= start:
                kind, key, _ = decode_body(body)
                self._count_in(seg, kind, key)
        self._segments[seg_id] = seg
        self.total_bytes += seg.size
        if seg.records == 0:  # everything in it was acknowledged
            self._delete(seg)

    def close(self) -> None:
        """Write and fsync what is staged, save the cursor, release the folder."""
        if self._lock_fd is None:
            return
        self._finish_writer()
        self._close_reader()
        self._save_cursor(force=True)
        self._publish()
        os.close(self._lock_fd)
        self._lock_fd = None

    # ------------------------------------------------------------------------------------ writing
    def append(self, kind: int, key: bytes | None, value: bytes, *, force: bool = False) -> Pos | None:
        """Stage one record; returns its position, or None when overflow='drop-newest' refused it.

        ``force`` ignores the size bound (for the few messages already handed to the producer); on
        a full disk it may still return None, uncounted. Raises :class:`SpoolFull` with
        overflow='block'."""
        frame = encode_frame(kind, key, value)
        n = len(frame)
        policy = self.settings.overflow
        if not force and self._full and policy != "drop-oldest" and time.monotonic() < self._retry_at:
            self._refuse()
            return None
        if not force and self.total_bytes + n > self.settings.max_bytes:
            policy = self.settings.overflow
            if policy == "drop-newest":
                self.dropped_overflow += 1
                SPOOL_DROPPED.labels("overflow").inc()
                return None
            if policy == "block":
                msg = f"the spool {self.dir} is full ({self.total_bytes} bytes)"
                raise SpoolFull(msg)
            while self.total_bytes + n > self.settings.max_bytes and self._drop_oldest():
                pass
        seg = self._writer
        if seg is None or seg.size + n > self.settings.segment_bytes:
            if self._wbuf and not force and policy == "block":
                self.commit()  # rolling would drop what the full disk did not take yet
                if self._wbuf:
                    self._refuse()
            seg = self._roll()
            if seg is None:  # no room for a new segment
                self._refuse(force)
                return None
        pos = (seg.seg_id, seg.size)
        self._wbuf += frame
        seg.size += n
        self.total_bytes += n
        self._count_in(seg, kind, key)
        self.appended += 1
        self._staged.append((self.appended, pos[1], n, kind, key))
        if len(self._wbuf) >= _READ_CHUNK:
            self.commit()
        return pos

    def _refuse(self, force: bool = False) -> None:
        """The disk is full and nothing could be freed: block, or drop the new record. A forced
        record is the caller's to count (:meth:`count_overflow`): it may still be delivered."""
        if force:
            return
        if self.settings.overflow == "block":
            msg = f"the spool {self.dir} is full (no space left on its disk)"
            raise SpoolFull(msg)
        self.count_overflow()

    def count_overflow(self, n: int = 1) -> None:
        """Count records lost to a full spool or disk."""
        self.dropped_overflow += n
        SPOOL_DROPPED.labels("overflow").inc(n)

    def _count_in(self, seg: Segment, kind: int, key: bytes | None) -> None:
        seg.records += 1
        self.pending += 1
        if key is not None and kind in self.tracked:
            seg.keys[key] += 1
            self.pending_keys[key] += 1

    def _roll(self) -> Segment | None:
        """A new writer segment; None when the disk is full and nothing could be freed."""
        self._finish_writer()
        while True:
            seg_id = max(self._segments, default=self._cursor[0]) + 1
            try:
                seg, fd = segments.create(self.dir, seg_id, sync=self.settings.fsync != "never")
                break
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    msg = f"cannot create a spool segment in {self.dir}: {exc}"
                    raise SpoolError(msg) from exc
                self._filled(exc)
                if not (self.settings.overflow == "drop-oldest" and self._free_oldest()):
                    return None
        self._segments[seg_id] = seg
        self._writer, self._wfd = seg, fd
        self.total_bytes += len(MAGIC)
        if self._rseg not in self._segments:  # the reader's segment is gone: the oldest one left
            self._rseg, self._roff = next(iter(self._segments)), len(MAGIC)
        return seg

    def _finish_writer(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self.commit(sync=self.settings.fsync != "never")
        if self._wbuf:  # the disk is full (overflow='block'): a closed writer cannot keep them
            self._drop_staged()
        if self._wfd is not None:
            os.close(self._wfd)
        self._writer, self._wfd = None, None
        self._maybe_delete(writer)  # every record already acknowledged

    def commit(self, sync: bool | None = None) -> int:
        """Write staged records to the OS and fsync per policy (``sync`` forces the choice).

        Returns :attr:`durable`: every record appended up to that index is spooled for good, except
        those :meth:`take_dropped` reports (a full disk refused them)."""
        if self._wbuf and self._wfd is not None and self._writer is not None:
            self._write_staged(self._writer, self._wfd)
        policy = self.settings.fsync
        if sync is None:
            now = time.monotonic()
            sync = policy == "always" or (
                policy == "interval" and now - self._last_fsync >= self.settings.fsync_interval_ms / 1000
            )
        if sync and self._unsynced and self._wfd is not None:
            os.fsync(self._wfd)
            self._last_fsync = time.monotonic()
            self._unsynced = False
        if policy == "never" or not self._unsynced:
            self.durable = self._written
        return self.durable

    def _write_staged(self, writer: Segment, fd: int) -> None:
        """Write the staged frames; on a full disk cut a torn frame off and apply the policy."""
        while self._wbuf:
            done = 0
            view = memoryview(self._wbuf)
            try:
                while done < len(view):
                    done += os.write(fd, view[done:])
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    msg = f"cannot write to the spool {self.dir}: {exc}"
                    raise SpoolError(msg) from exc
                full: OSError | None = exc
            else:
                full = None
            finally:
                view.release()
            if full is None:
                self._written_out(writer, len(self._staged), done)
                self._full = False
                self._space_back()
                return
            kept = cut = 0  # the whole frames the disk took
            for _, _, n, _, _ in self._staged:
                if cut + n > done:
                    break
                kept, cut = kept + 1, cut + n
            if cut < done:
                try:
                    os.ftruncate(fd, writer.written + cut)  # O_APPEND: the next write goes here
                except OSError as exc:
                    msg = f"cannot cut a torn write off the spool segment {writer.path}: {exc}"
                    raise SpoolError(msg) from exc
            self._written_out(writer, kept, cut)
            self._filled(full)
            policy = self.settings.overflow
            if policy == "drop-oldest" and self._free_oldest():
                continue
            if policy != "block":
                self._drop_staged()
            return

    def _written_out(self, writer: Segment, records: int, nbytes: int) -> None:
        if not records:
            return
        for _ in range(records):
            self._written = self._staged.popleft()[0]
        del self._wbuf[:nbytes]
        writer.written += nbytes
        self._unsynced = True
        SPOOLED.inc(records)

    def _drop_staged(self) -> None:
        """The disk took none of the staged records: forget them, count them, tell the owner."""
        writer = self._writer
        if writer is None:
            return
        for index, off, n, kind, key in self._staged:
            writer.records -= 1
            self.pending -= 1
            if key is not None and kind in self.tracked:
                writer.keys[key] -= 1
                if writer.keys[key] <= 0:
                    del writer.keys[key]
                self.pending_keys[key] -= 1
                if self.pending_keys[key] <= 0:
                    del self.pending_keys[key]
            writer.size -= n
            self.total_bytes -= n
            self._dropped.append((index, (writer.seg_id, off)))
        lost = len(self._staged)
        self.dropped_overflow += lost
        SPOOL_DROPPED.labels("overflow").inc(lost)
        self._staged.clear()
        self._wbuf.clear()

    def take_dropped(self) -> list[tuple[int, Pos]]:
        """Records :meth:`append` accepted that a full disk then refused: (append index, position).

        Each is reported once; it was never durable, and its position may be given out again."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def _filled(self, exc: OSError) -> None:
        self._full = True
        self._retry_at = time.monotonic() + FULL_RETRY_S
        if not self._full_logged:
            self._full_logged = True
            logger.warning(
                "spool %s: the disk is full (%s): the spool holds what fits there; overflow policy %s "
                "(pending %d records, %d bytes)",
                self.dir,
                exc.strerror,
                self.settings.overflow,
                self.pending,
                self.total_bytes,
            )

    def _space_back(self) -> None:
        """After the disk was full: once a segment fits again, say so (drop-oldest keeps the disk
        nearly full during an outage, so a successful write alone does not tell)."""
        if not self._full_logged:
            return
        try:
            free = shutil.disk_usage(self.dir).free
        except OSError:
            return
        if free >= self.settings.segment_bytes:
            self._full_logged = False
            logger.warning("spool %s: space on its disk again (%d bytes free)", self.dir, free)

    # ------------------------------------------------------------------------------------ reading
    def read(self, max_records: int) -> list[SpoolRecord]:
        """The next committed records in append order (acknowledged ones skipped)."""
        out: list[SpoolRecord] = []
        while len(out) < max_records:
            seg = self._segments.get(self._rseg)
            if seg is None:
                if not self._next_segment():
                    break
                continue
            if self._roff >= seg.written:
                if seg is self._writer:
                    break
                self._maybe_delete(seg)
                if not self._next_segment():
                    break
                continue
            self._read_chunk(seg, out, max_records)
        return out

    def _next_segment(self) -> bool:
        later = [s for s in self._segments if s > self._rseg]
        self._close_reader()
        if not later:
            return False
        self._rseg, self._roff = later[0], len(MAGIC)
        return True

    def _reader_fd(self, seg: Segment) -> int:
        if self._rfd is None or self._rfd[0] != seg.seg_id:
            self._close_reader()
            self._rfd = (seg.seg_id, os.open(seg.path, os.O_RDONLY))
        return self._rfd[1]

    def _close_reader(self) -> None:
        if self._rfd is not None:
            os.close(self._rfd[1])
            self._rfd = None

    def _read_chunk(self, seg: Segment, out: list[SpoolRecord], max_records: int) -> None:
        fd = self._reader_fd(seg)
        base = self._roff
        data = os.pread(fd, min(_READ_CHUNK, seg.written - base), base)
        off = 0
        while len(out) < max_records and off < len(data):
            status, end, body = parse_frame(data, off)
            if status is Frame.INCOMPLETE and len(data) < seg.written - base:  # cut by the chunk
                if off == 0:  # a frame larger than the chunk
                    data = os.pread(fd, max(end, FRAME.size), base)
                    continue
                break  # read the rest with the next chunk
            if status is not Frame.OK:
                self._corrupt_tail(seg, base + off)
                return
            pos = (seg.seg_id, base + off)
            if pos in self._preacked:
                self._preacked.discard(pos)
                self._outstanding.append((seg.seg_id, base + off, base + end))
                self._acked.add(pos)
            else:
                kind, key, value = decode_body(body)
                out.append(SpoolRecord(pos, base + end, kind, key, value))
                self._outstanding.append((seg.seg_id, base + off, base + end))
            off = end
        self._roff = base + off
        self._advance()

    def _corrupt_tail(self, seg: Segment, at: int) -> None:
        logger.error("spool segment %s is damaged at offset %d: the rest of it is dropped", seg.path, at)
        self._count_corrupt(1)
        self._roff = seg.written
        if seg is not self._writer:
            # what was not read is lost: forget its counts (keys stay approximate until the delete)
            self.pending -= seg.records
            self.pending_keys.subtract(seg.keys)
            self.pending_keys = +self.pending_keys
            seg.records, seg.keys = 0, Counter()

    def _count_corrupt(self, n: int) -> None:
        self.dropped_corrupt += n
        SPOOL_DROPPED.labels("corrupt").inc(n)

    # ------------------------------------------------------------------------------------ acknowledging
    def ack(self, pos: Pos, kind: int, key: bytes | None) -> None:
        """The broker acknowledged the record at ``pos``: it never needs replaying."""
        seg = self._segments.get(pos[0])
        if seg is None:
            return  # dropped (overflow) or already gone
        seg.records -= 1
        self.pending -= 1
        if key is not None and kind in self.tracked:
            seg.keys[key] -= 1
            if seg.keys[key] <= 0:
                del seg.keys[key]
            self.pending_keys[key] -= 1
            if self.pending_keys[key] <= 0:
                del self.pending_keys[key]
        if self._outstanding and self._is_read(pos):
            self._acked.add(pos)
            self._advance()
        else:
            self._preacked.add(pos)
        if seg.records == 0:
            self._maybe_delete(seg)

    def _is_read(self, pos: Pos) -> bool:
        return (pos[0], pos[1]) < (self._rseg, self._roff) and (
            (self._outstanding[0][0], self._outstanding[0][1]) <= pos
        )

    def _advance(self) -> None:
        while self._outstanding:
            seg_id, off, end = self._outstanding[0]
            if (seg_id, off) not in self._acked:
                break
            self._outstanding.popleft()
            self._acked.discard((seg_id, off))
            self._cursor = (seg_id, end)
        self._save_cursor()

    def rewind(self) -> None:
        """Read again from the oldest record not acknowledged (after a failed replay).

        Call only when none of the records read is still waiting for its outcome."""
        if self._outstanding:
            seg_id, off, _ = self._outstanding[0]
            self._preacked.update(self._acked)
            self._acked.clear()
            self._outstanding.clear()
            self._rseg, self._roff = seg_id, off

    def _maybe_delete(self, seg: Segment) -> None:
        if seg is not self._writer and seg.records == 0 and seg.seg_id in self._segments:
            self._delete(seg)
            self._space_back()  # acknowledged, not dropped: the disk may have room again

    def _delete(self, seg: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        self._retry_at = 0.0  # space freed: a full disk may take a write again
        del self._segments[seg.seg_id]
        self.total_bytes -= seg.size
        if self._preacked:
            self._preacked = {p for p in self._preacked if p[0] != seg.seg_id}
        if self._rseg == seg.seg_id:
            self._next_segment()

    def _free_oldest(self) -> bool:
        """A full disk, drop-oldest: delete the oldest segment unless it is the one being written
        or has records out for replay (their outcome is pending). False: nothing to free."""
        oldest = next(iter(self._segments), None)
        if oldest is None or self._segments[oldest] is self._writer:
            return False
        if any(e[0] == oldest for e in self._outstanding):
            return False
        return self._drop_oldest()

    def _drop_oldest(self) -> bool:
        """Overflow: delete the oldest segment with its unacknowledged records. False: nothing left."""
        if not self._segments:
            return False
        oldest = self._segments[next(iter(self._segments))]
        if oldest is self._writer:
            if oldest.records == 0:
                return False
            self._finish_writer()
        lost = oldest.records
        self.dropped_overflow += lost
        SPOOL_DROPPED.labels("overflow").inc(lost)
        self.pending -= lost
        self.pending_keys.subtract(oldest.keys)
        self.pending_keys = +self.pending_keys
        logger.warning("spool full: dropped the oldest segment %s (%d records)", oldest.path.name, lost)
        if self._outstanding:
            self._outstanding = deque(e for e in self._outstanding if e[0] != oldest.seg_id)
            self._acked = {p for p in self._acked if p[0] != oldest.seg_id}
        oldest.records = 0
        self._delete(oldest)
        self._advance()
        return True

    # ------------------------------------------------------------------------------------ state
    def _save_cursor(self, force: bool = False) -> None:
        if self._cursor == self._cursor_saved:
            return
        now = time.monotonic()
        if not force and now - self._cursor_at < CURSOR_EVERY_S:
            return
        err = segments.save_cursor(self.dir, self._cursor)
        self._cursor_at = now
        if err is None:
            self._cursor_saved = self._cursor
            self._cursor_failing = False
        elif not self._cursor_failing:  # once, not every second while the disk is full
            self._cursor_failing = True
            logger.warning(
                "cannot save the spool cursor in %s: %s (until it can, a restart replays acknowledged "
                "records of partly acknowledged segments again)",
                self.dir,
                err,
            )

    def _publish(self) -> None:
        SPOOL_BYTES.set(self.total_bytes)
        SPOOL_RECORDS.set(self.pending)

    def publish(self) -> None:
        """Refresh the spool gauges (the owner calls this now and then)."""
        self._publish()
        self._save_cursor()

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def has_unread(self) -> bool:
        """True while some committed record was not read yet."""
        seg = self._segments.get(self._rseg)
        if seg is None:
            return any(s > self._rseg for s in self._segments)
        return self._roff < seg.written or any(s > self._rseg for s in self._segments)
