"""The spool's files: segment layout, frame codec, crash recovery of one segment, the cursor file.

::

    <dir>/LOCK                      flock'ed by the one gateway that owns the folder
    <dir>/00000000000000000007.seg  a segment: 8-byte magic "MSSPOOL1", then frames
    <dir>/CURSOR                    "<segment> <offset>": everything before it was acknowledged

    frame = length:u32be crc32(body):u32be body
    body  = kind:u8 key_length:u16be (0xFFFF: no key) key value

A frame is valid when its whole body is there and its CRC-32 matches; the first invalid frame
ends what can be trusted in a segment.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

MAGIC = b"MSSPOOL1"
FRAME = struct.Struct(">II")
_HEAD = struct.Struct(">BH")
_NO_KEY = 0xFFFF
MAX_BODY = 64 << 20

Pos = tuple[int, int]  # (segment id, offset of the frame)


class Frame(enum.Enum):
    OK = 0
    INCOMPLETE = 1  # more bytes needed (a torn write at the end, or a read chunk boundary)
    CORRUPT = 2


class Segment:
    """One segment file and the counts of its unacknowledged records."""

    __slots__ = ("seg_id", "path", "size", "written", "records", "keys")

    def __init__(self, seg_id: int, path: Path, size: int) -> None:
        self.seg_id = seg_id
        self.path = path
        self.size = size  # bytes including the staged, unwritten ones
        self.written = size  # bytes the OS has
        self.records = 0  # appended and not yet acknowledged
        self.keys: Counter[bytes] = Counter()  # the same, per key of a tracked kind


def segment_path(directory: Path, seg_id: int) -> Path:
    return directory / f"{seg_id:020d}.seg"


def encode_frame(kind: int, key: bytes | None, value: bytes) -> bytes:
    if key is not None and len(key) >= _NO_KEY:
        msg = f"a spool key is at most {_NO_KEY - 1} bytes"
        raise ValueError(msg)
    body = _HEAD.pack(kind, _NO_KEY if key is None else len(key)) + (key or b"") + value
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def decode_body(body: bytes) -> tuple[int, bytes | None, bytes]:
    kind, klen = _HEAD.unpack_from(body)
    if klen == _NO_KEY:
        return kind, None, body[_HEAD.size :]
    return kind, body[_HEAD.size : _HEAD.size + klen], body[_HEAD.size + klen :]


def parse_frame(data: bytes, off: int) -> tuple[Frame, int, bytes]:
    """The frame at ``off``: (status, end offset, body)."""
    if off + FRAME.size > len(data):
        return Frame.INCOMPLETE, off, b""
    length, crc = FRAME.unpack_from(data, off)
    end = off + FRAME.size + length
    if length > MAX_BODY:
        return Frame.CORRUPT, off, b""
    if end > len(data):
        return Frame.INCOMPLETE, end, b""
    body = data[off + FRAME.size : end]
    if zlib.crc32(body) != crc:
        return Frame.CORRUPT, off, b""
    return Frame.OK, end, body


def scan(data: bytes, start: int = len(MAGIC)) -> Iterator[tuple[int, int, bytes]]:
    """(offset, end, body) of every valid frame from ``start`` until the first invalid one."""
    off = start
    while True:
        status, end, body = parse_frame(data, off)
        if status is not Frame.OK:
            return
        yield off, end, body
        off = end


def recover(path: Path, seg_id: int, last: bool) -> tuple[Segment | None, bytes, bool]:
    """Open an existing segment after a restart: (segment, its valid bytes, was it damaged).

    A torn frame at the end of the newest segment is a crash mid-write and is cut off quietly;
    anything invalid elsewhere is damage: the rest of that segment is cut off and reported. A file
    without the magic is moved aside as ``.corrupt`` (segment None)."""
    data = path.read_bytes()
    if last and len(data) < len(MAGIC) and MAGIC.startswith(data):
        # created just before a crash or power cut, its header not (all) on disk: it held nothing
        logger.warning("spool segment %s: removed, created but never written (%d bytes)", path, len(data))
        path.unlink()
        return None, b"", False
    if data[: len(MAGIC)] != MAGIC:
        logger.error("spool segment %s has no spool header; moved aside as .corrupt", path)
        path.rename(path.with_suffix(".corrupt"))
        return None, b"", True
    valid = len(MAGIC)
    for _, end, _ in scan(data):
        valid = end
    damaged = False
    if valid < len(data):
        if last:
            logger.warning("spool segment %s: cut %d bytes of a torn last write", path, len(data) - valid)
        else:
            logger.error("spool segment %s: %d damaged bytes dropped", path, len(data) - valid)
            damaged = True
        with open(path, "r+b") as fh:
            fh.truncate(valid)
    return Segment(seg_id, path, valid), data[:valid], damaged


def create(directory: Path, seg_id: int, sync: bool) -> tuple[Segment, int]:
    """A new, empty segment (magic only) and its append fd; ``sync`` fsyncs file and directory."""
    path = segment_path(directory, seg_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        if os.write(fd, MAGIC) != len(MAGIC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if sync:
            os.fsync(fd)
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the new file's directory entry
            finally:
                os.close(dfd)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()  # a full disk: leave no empty or headless segment behind
        raise
    return Segment(seg_id, path, len(MAGIC)), fd


def load_cursor(directory: Path) -> Pos:
    try:
        seg, off = (directory / "CURSOR").read_text().split()
        return int(seg), int(off)
    except (OSError, ValueError):
        return (0, len(MAGIC))


def save_cursor(directory: Path, cursor: Pos) -> OSError | None:
    """Atomically replace the cursor file (not fsynced: losing it only replays a little more).

    Returns the error when it cannot (e.g. a full disk); the caller decides what to log."""
    tmp = directory / "CURSOR.tmp"
    try:
        tmp.write_text(f"{cursor[0]} {cursor[1]}\n")
        os.replace(tmp, directory / "CURSOR")
    except OSError as exc:
        return exc
    return None
