"""The spool on its own: order, acknowledgement, recovery after crashes and damage, size bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.config import SpoolSettings
from ingest.spool import MAGIC, Spool, SpoolError, SpoolFull, encode_frame

REPO = Path(__file__).resolve().parents[2]

records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=1),
        st.one_of(st.none(), st.binary(min_size=1, max_size=8)),
        st.binary(max_size=300),
    ),
    max_size=200,
)


def open_spool(path: Path, **kw: object) -> Spool:
    defaults: dict[str, object] = {"dir": path, "max_bytes": 1 << 20, "segment_bytes": 4096, "fsync": "never"}
    return Spool(SpoolSettings(**{**defaults, **kw})).open()


def drain(spool: Spool, ack: bool = True) -> list[tuple[int, bytes | None, bytes]]:
    out = []
    while batch := spool.read(37):
        for r in batch:
            out.append((r.kind, r.key, r.value))
            if ack:
                spool.ack(r.pos, r.kind, r.key)
    return out


@settings(max_examples=40, deadline=None)
@given(recs=records, segment=st.integers(min_value=256, max_value=3000), split=st.integers(0, 200))
def test_what_is_appended_is_read_back_in_order_and_gone_once_acknowledged(
    recs: list[tuple[int, bytes | None, bytes]], segment: int, split: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spool = open_spool(Path(tmp), segment_bytes=segment)
        for kind, key, value in recs[:split]:
            spool.append(kind, key, value)
        spool.commit()
        first = drain(spool)
        for kind, key, value in recs[split:]:
            spool.append(kind, key, value)
        spool.commit()
        second = drain(spool)
        assert first + second == recs
        assert spool.pending == 0 and not spool.pending_keys
        spool.close()
        assert not list(Path(tmp).glob("*.seg")), "acknowledged segments are deleted"


@settings(max_examples=25, deadline=None)
@given(recs=records.filter(lambda r: len(r) > 0), acked=st.integers(0, 200))
def test_a_restart_replays_exactly_the_unacknowledged_suffix(
    recs: list[tuple[int, bytes | None, bytes]], acked: int
) -> None:
    acked = min(acked, len(recs))
    with tempfile.TemporaryDirectory() as tmp:
        spool = open_spool(Path(tmp))
        for kind, key, value in recs:
            spool.append(kind, key, value)
        spool.commit()
        read = spool.read(len(recs))
        for r in read[:acked]:
            spool.ack(r.pos, r.kind, r.key)
        spool.close()  # saves the cursor
        again = open_spool(Path(tmp))
        assert again.pending == len(recs) - acked
        assert drain(again) == recs[acked:]
        again.close()


def test_per_key_counts_follow_appends_and_acks(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    for i in range(10):
        spool.append(0, b"m1" if i % 2 else b"m2", b"x")
    spool.append(1, b"m3", b"dead letter: not tracked")
    spool.append(0, None, b"no key")
    spool.commit()
    assert dict(spool.pending_keys) == {b"m1": 5, b"m2": 5}
    for r in spool.read(4):
        spool.ack(r.pos, r.kind, r.key)
    assert dict(spool.pending_keys) == {b"m1": 3, b"m2": 3}
    drain(spool)
    assert not spool.pending_keys and spool.pending == 0
    spool.close()


def test_acknowledged_before_read_is_skipped_and_rewind_reads_only_the_unacknowledged(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    pos = [spool.append(0, b"m", b"%d" % i) for i in range(6)]
    spool.commit()
    spool.ack(pos[1], 0, b"m")  # delivered another way (the live copy was acknowledged late)
    first = spool.read(3)
    assert [r.value for r in first] == [b"0", b"2", b"3"]
    spool.ack(first[1].pos, 0, b"m")  # "2" acknowledged, "0" and "3" failed
    spool.rewind()
    assert [r.value for r in spool.read(10)] == [b"0", b"3", b"4", b"5"]
    spool.close()


def test_torn_last_write_is_cut_and_earlier_records_survive(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    for i in range(5):
        spool.append(0, b"m", b"value-%d" % i)
    spool.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    frame = encode_frame(0, b"m", b"value-5")
    with seg.open("ab") as fh:
        fh.write(frame[: len(frame) // 2])  # a crash in the middle of a write
    again = open_spool(tmp_path)
    assert [v for _, _, v in drain(again)] == [b"value-%d" % i for i in range(5)]
    assert again.dropped_corrupt == 0
    again.close()


@pytest.mark.parametrize("header", [b"", b"MSSP"], ids=["empty", "half-header"])
def test_a_newest_segment_created_just_before_a_power_cut_is_not_damage(
    tmp_path: Path, header: bytes
) -> None:
    """A segment whose header never reached the disk held no record: removed quietly, not counted
    corrupt (it used to be moved aside as .corrupt with an error and a corrupt count)."""
    spool = open_spool(tmp_path)
    for i in range(5):
        spool.append(0, b"m", b"value-%d" % i)
    spool.close()
    newest = sorted(tmp_path.glob("*.seg"))[-1]
    torn = newest.with_name(f"{int(newest.stem) + 1:020d}.seg")
    torn.write_bytes(header)
    again = open_spool(tmp_path)
    assert [v for _, _, v in drain(again, ack=False)] == [b"value-%d" % i for i in range(5)]
    assert again.dropped_corrupt == 0
    assert not torn.exists() and not list(tmp_path.glob("*.corrupt"))
    again.append(0, b"m", b"value-5")  # and the spool goes on
    again.close()
    assert [v for _, _, v in drain(open_spool(tmp_path))] == [b"value-%d" % i for i in range(6)]


def test_damage_inside_an_older_segment_drops_its_rest_and_is_counted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=400)
    for i in range(60):
        spool.append(0, b"m", b"value-%02d" % i)
    spool.close()
    segs = sorted(tmp_path.glob("*.seg"))
    assert len(segs) >= 3
    data = bytearray(segs[0].read_bytes())
    data[len(MAGIC) + 30] ^= 0xFF  # inside the second frame's body
    segs[0].write_bytes(bytes(data))
    again = open_spool(tmp_path, segment_bytes=400)
    values = [v for _, _, v in drain(again)]
    assert again.dropped_corrupt == 1
    assert values[0] == b"value-00" and b"value-01" not in values
    assert values[-1] == b"value-59"
    assert values == sorted(values), "what survives keeps its order"
    again.close()


def test_overflow_drop_newest_refuses_and_counts(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=2048, segment_bytes=512, overflow="drop-newest")
    kept = [i for i in range(100) if spool.append(0, b"m", b"v%03d" % i + b"." * 40) is not None]
    spool.commit()
    assert spool.dropped_overflow == 100 - len(kept) > 0
    assert spool.total_bytes <= 2048
    assert [v[:4] for _, _, v in drain(spool)] == [b"v%03d" % i for i in kept] and kept == list(
        range(len(kept))
    )
    spool.close()


def test_overflow_drop_oldest_deletes_whole_old_segments_and_counts(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=2048, segment_bytes=512, overflow="drop-oldest")
    for i in range(100):
        assert spool.append(0, b"m", b"v%03d" % i + b"." * 40) is not None
    spool.commit()
    assert spool.total_bytes <= 2048
    values = [int(v[1:4]) for _, _, v in drain(spool)]
    assert values == list(range(100 - len(values), 100)), "the newest records are kept, in order"
    assert spool.dropped_overflow == 100 - len(values) > 0
    assert spool.pending == 0 and not spool.pending_keys
    spool.close()


def test_overflow_block_raises_until_acknowledgements_free_space(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=2048, segment_bytes=512, overflow="block")
    n = 0
    with pytest.raises(SpoolFull):
        while True:
            spool.append(0, b"m", b"." * 50)
            n += 1
    spool.commit()
    assert spool.dropped_overflow == 0
    for r in spool.read(n):
        spool.ack(r.pos, r.kind, r.key)
    assert spool.append(0, b"m", b"." * 50) is not None, "acknowledged segments were deleted"
    spool.close()


def test_one_gateway_per_folder(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        open_spool(tmp_path)
    spool.close()
    open_spool(tmp_path).close()


def test_durable_index_follows_the_fsync_policy(tmp_path: Path) -> None:
    always = open_spool(tmp_path / "a", fsync="always")
    always.append(0, b"m", b"x")
    assert always.durable == 0, "staged is not durable"
    assert always.commit() == 1
    always.close()
    interval = open_spool(tmp_path / "i", fsync="interval", fsync_interval_ms=300)
    interval.commit()  # resets nothing: the interval runs from open
    time.sleep(0.35)
    interval.append(0, b"m", b"x")
    assert interval.commit() == 1, "the interval had passed: fsynced at once"
    interval.append(0, b"m", b"y")
    assert interval.commit() == 1, "within the interval: written, not yet synced"
    time.sleep(0.35)
    assert interval.commit() == 2
    interval.close()
    never = open_spool(tmp_path / "n", fsync="never")
    never.append(0, b"m", b"x")
    assert never.commit() == 1
    never.close()


CHILD = """
import sys
from pathlib import Path
from ingest.config import SpoolSettings
from ingest.spool import Spool
spool = Spool(SpoolSettings(dir=Path(sys.argv[1]), fsync="always", segment_bytes=2048)).open()
i = 0
while True:
    spool.append(0, b"m%d" % (i % 3), b"record-%06d" % i)
    if spool.commit() == spool.appended:  # fsynced: report it as spooled
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
    i += 1
"""


def test_kill_9_loses_nothing_reported_spooled_with_fsync_always(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    spool = open_spool(tmp_path, segment_bytes=2048)
    values = [v for _, _, v in drain(spool)]
    spool.close()
    assert values[: len(acked)] == [b"record-%06d" % i for i in acked]
    assert values == [b"record-%06d" % i for i in range(len(values))], "in order, nothing in between lost"


def test_records_across_read_chunks_and_larger_than_a_chunk(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=64 << 20, segment_bytes=16 << 20)
    values = [bytes([i % 251]) * (1000 + i % 7) for i in range(2500)]  # ~2.5 MB: several 1 MB chunks
    values.insert(1200, b"x" * (3 << 20))  # one record larger than a read chunk
    for v in values:
        spool.append(0, b"m", v)
    spool.commit()
    assert [v for _, _, v in drain(spool)] == values
    spool.close()
