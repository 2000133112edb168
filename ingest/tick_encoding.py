"""Encode one scan of every machine of a scan cycle at once: the gateway's bulk path.

:class:`ingest.encoding.ScanEncoder` encodes a scan in about 0.6 µs, as much as handing the message
to librdkafka costs. A scan cycle of a plant is many machines at one event time with consecutive
sequence numbers, and from one cycle to the next only three things change in those messages: the
event time, the sequence numbers and the doubles. :class:`TickEncoder` therefore keeps the whole
cycle's messages as one byte template and, per cycle, writes just those three with numpy:

* the event time's varint bytes into every message (one broadcast assignment);
* the sequence numbers' varints, computed for the whole cycle at once (one assignment);
* the values matrix's little-endian doubles (one assignment),

then cuts the buffer into the messages. The result is byte-identical to ``ScanEncoder.encode_scan``
(a test compares them over lot changes, qualities and varint-length boundaries). A new lot id of
the same encoded length is written into the template in place; the template is rebuilt when
anything else changes (a lot id's length, the varint length of the time or of a sequence number).
Qualities are the byte after each double (GOOD 0, UNCERTAIN 2, BAD 4: the enum index as a
zig-zag varint), so a cycle with non-GOOD qualities is written the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.encoding import MachineLayout, ScanEncoder, encode_long, encode_lot, varint
from schemas.exceptions import EncodeError

logger = logging.getLogger(__name__)

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_QUALITY_BYTES = np.array([0, 2, 4], np.uint8)  # quality enum index -> its zig-zag varint byte


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


class TickEncoder:
    """Bulk encoder for a fixed list of machines (one :class:`MachineLayout` each, same order as the
    rows of the values matrix). Belongs to one thread, like the ScanEncoder it wraps."""

    def __init__(self, encoder: ScanEncoder, layouts: Sequence[MachineLayout]) -> None:
        self.encoder = encoder
        self.layouts = tuple(layouts)
        self.n = len(self.layouts)
        self.keys = [m.key for m in self.layouts]
        self.n_values = [m.n_values for m in self.layouts]
        self.values_per_cycle = sum(self.n_values)
        self.sensors = {m.n_values for m in self.layouts}
        self.rebuilds = 0
        # The template (see _build); the empty ranges force a build on the first cycle.
        self._et_range = (0, 0)
        self._seq_lo, self._seq_hi = 0, 0
        self._et_len, self._seq_len = 0, 0
        self._lots: list[str | None] = []
        self._lot_at: list[int] = []  # where machine i's lot id starts in the template, and its length
        self._lot_len: list[int] = []
        self._buf: npt.NDArray[np.uint8] = np.zeros(0, np.uint8)
        self._var_pos: npt.NDArray[np.intp] = np.zeros(0, np.intp)
        self._var: npt.NDArray[np.uint8] = np.zeros(0, np.uint8)
        self._n_et = self._n_et_seq = 0
        self._bounds: list[tuple[int, int]] = []
        self._shifts: npt.NDArray[np.uint64] = np.zeros(0, np.uint64)
        self._cont: npt.NDArray[np.uint64] = np.zeros(0, np.uint64)
        self._twice_i: npt.NDArray[np.uint64] = np.zeros(0, np.uint64)
        self._q_pos: npt.NDArray[np.intp] = np.zeros(0, np.intp)
        self._q_dirty = False

    def encode(
        self,
        event_time: int,
        first_seq: int,
        lots: Sequence[str | None],
        values: npt.NDArray[np.float64],
        qualities: Any = None,
    ) -> list[bytes]:
        """The messages of one cycle: machine i gets sequence number ``first_seq + i`` and row i of
        ``values`` (shape machines x sensors). ``qualities``: None (all GOOD), a machines x sensors
        matrix of 0 GOOD / 1 UNCERTAIN / 2 BAD, or one entry per machine (None or a list)."""
        enc = self.encoder
        n = self.n
        values = np.ascontiguousarray(values, dtype="<f8")  # once: also the bytes written below
        if not enc.fast or len(self.sensors) != 1 or values.shape != (n, next(iter(self.sensors), 0)):
            return self._one_by_one(event_time, first_seq, lots, values, qualities)
        last_seq = first_seq + n - 1
        if not (_LONG_MIN <= event_time <= _LONG_MAX and 0 <= first_seq and last_seq <= _LONG_MAX):
            return self._one_by_one(event_time, first_seq, lots, values, qualities)
        lo, hi = self._et_range
        if not lo <= event_time < hi or not self._seq_lo <= first_seq <= last_seq < self._seq_hi:
            et_len = len(varint(_zigzag(event_time)))
            seq_len = len(varint(_zigzag(first_seq)))
            if len(varint(_zigzag(last_seq))) != seq_len:  # the cycle crosses a varint length: rare
                return self._one_by_one(event_time, first_seq, lots, values, qualities)
            self._build(event_time, first_seq, lots, et_len, seq_len)
        elif lots != self._lots and not self._patch_lots(lots):
            self._build(event_time, first_seq, lots, self._et_len, self._seq_len)
        buf = self._buf
        # Zig-zag of a seq >= 0 is 2 * seq; its varint: 7-bit groups, continuation bit on all but the last.
        z = self._twice_i + np.uint64(2 * first_seq)
        groups = np.right_shift(z[:, None], self._shifts)
        np.bitwise_and(groups, np.uint64(0x7F), out=groups)
        np.bitwise_or(groups, self._cont, out=groups)
        self._var[self._n_et : self._n_et_seq] = groups.ravel()
        self._var[: self._n_et] = np.frombuffer(encode_long(event_time) * n, np.uint8)
        self._var[self._n_et_seq :] = values.view(np.uint8).ravel()
        buf[self._var_pos] = self._var
        q = self._quality_matrix(qualities, values.shape)
        if q is not None:
            buf[self._q_pos] = q
            self._q_dirty = True
        elif self._q_dirty:
            buf[self._q_pos] = 0
            self._q_dirty = False
        data = buf.tobytes()
        out = [data[a:b] for a, b in self._bounds]
        return out

    def _quality_matrix(self, qualities: Any, shape: tuple[int, ...]) -> npt.NDArray[np.uint8] | None:
        """Quality bytes (2 x enum index) for the template, None when all GOOD."""
        if qualities is None:
            return None
        if isinstance(qualities, np.ndarray):
            q = qualities
        else:
            if len(qualities) != shape[0]:
                msg = f"a cycle of {shape[0]} machines got {len(qualities)} quality rows"
                raise EncodeError(msg)
            if not any(x is not None for x in qualities):
                return None
            q = np.zeros(shape, np.int64)
            for i, row in enumerate(qualities):
                if row is not None:
                    q[i] = row
        if q.shape != shape:
            msg = f"quality matrix of shape {q.shape} for values of shape {shape}"
            raise EncodeError(msg)
        try:  # as uint8 a negative index is out of range too
            return _QUALITY_BYTES.take(q.astype(np.uint8).ravel())
        except IndexError:
            msg = "qualities must be 0 (GOOD), 1 (UNCERTAIN) or 2 (BAD)"
            raise EncodeError(msg) from None

    def _patch_lots(self, lots: Sequence[str | None]) -> bool:
        """Write changed lot ids into the template in place; False when one's encoding has another
        length (then the template must be rebuilt). Lot ids of a machine usually have a fixed width."""
        if len(lots) != self.n:
            return False
        changed = [
            (i, encode_lot(lot))
            for i, (lot, old) in enumerate(zip(lots, self._lots, strict=True))
            if lot != old
        ]
        if any(len(b) != self._lot_len[i] for i, b in changed):
            return False
        for i, b in changed:
            at = self._lot_at[i]
            self._buf[at : at + len(b)] = np.frombuffer(b, np.uint8)
            self._lots[i] = lots[i]
        return True

    def _one_by_one(
        self,
        event_time: int,
        first_seq: int,
        lots: Sequence[str | None],
        values: npt.NDArray[np.float64],
        qualities: Any,
    ) -> list[bytes]:
        n = self.n
        if len(lots) != n or len(values) != n or (qualities is not None and len(qualities) != n):
            msg = f"a cycle of {self.n} machines got {len(lots)} lots, {len(values)} value rows"
            raise EncodeError(msg)
        if isinstance(qualities, np.ndarray):
            qualities = [row.tolist() if row.any() else None for row in qualities]
        qs = qualities if qualities is not None else [None] * self.n
        encode = self.encoder.encode_scan
        return [
            encode(m, event_time, first_seq + i, lots[i], values[i].tolist(), qs[i])
            for i, m in enumerate(self.layouts)
        ]

    def _build(
        self, event_time: int, first_seq: int, lots: Sequence[str | None], et_len: int, seq_len: int
    ) -> None:
        """Template of a cycle: every message encoded once with zero doubles, and where the event time,
        the sequence number and each double sit in it."""
        if len(lots) != self.n:
            msg = f"a cycle of {self.n} machines got {len(lots)} lots"
            raise EncodeError(msg)
        enc = self.encoder
        parts: list[bytes] = []
        et_pos: list[int] = []
        seq_pos: list[int] = []
        dbl_pos: list[int] = []
        q_pos: list[int] = []
        bounds = []
        lot_at: list[int] = []
        lot_len: list[int] = []
        offset = 0
        for i, m in enumerate(self.layouts):
            msg_bytes = enc.encode_scan(m, event_time, first_seq + i, lots[i], [0.0] * m.n_values, None)
            # head | event time | gateway | seq | lot | values block (see MachineLayout)
            at = offset + len(m._head)
            et_pos.extend(range(at, at + et_len))
            at += et_len + len(m._gateway)
            seq_pos.extend(range(at, at + seq_len))
            at += seq_len
            lot_at.append(at)
            lot_len.append(len(encode_lot(lots[i])))
            at += lot_len[-1]
            at += len(m._args[0])
            for seg in m._all_good:
                dbl_pos.extend(range(at, at + 8))
                q_pos.append(at + 8)  # each segment after a double starts with that value's quality
                at += 8 + len(seg)
            if at != offset + len(msg_bytes):
                msg = f"tick template of {m.machine_id} does not match its encoding"
                raise EncodeError(msg)
            bounds.append((offset, at))
            parts.append(msg_bytes)
            offset = at
        self._buf = np.frombuffer(b"".join(parts), np.uint8).copy()
        # One fancy assignment per cycle writes all variable bytes: event times, seqs, doubles.
        self._var_pos = np.array(et_pos + seq_pos + dbl_pos, np.intp)
        self._var = np.zeros(len(self._var_pos), np.uint8)
        self._n_et, self._n_et_seq = len(et_pos), len(et_pos) + len(seq_pos)
        self._bounds = bounds
        self._q_pos = np.array(q_pos, np.intp)
        self._q_dirty = False  # the template is all GOOD
        self._shifts = np.arange(seq_len, dtype=np.uint64) * np.uint64(7)
        self._cont = np.array([0x80] * (seq_len - 1) + [0], np.uint64)
        self._twice_i = np.arange(self.n, dtype=np.uint64) * np.uint64(2)
        # The event times and sequence numbers whose varints have the lengths of this template.
        self._et_len, self._seq_len = et_len, seq_len
        self._et_range = _same_length_range(event_time, et_len)
        self._seq_lo, self._seq_hi = _same_length_range(first_seq, seq_len)
        self._lots = list(lots)
        self._lot_at, self._lot_len = lot_at, lot_len
        self.rebuilds += 1


def _same_length_range(n: int, length: int) -> tuple[int, int]:
    """[lo, hi) of the integers around ``n`` (same sign) whose zig-zag varint has ``length`` bytes."""
    z_lo, z_hi = (0 if length == 1 else 1 << (7 * (length - 1))), 1 << (7 * length)
    if n >= 0:  # zig-zag 2n
        return (z_lo + 1) // 2, (z_hi + 1) // 2
    return (-(z_hi + 1)) // 2 + 1, (-(z_lo + 1)) // 2 + 1  # zig-zag -2n-1
