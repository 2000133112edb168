"""The spool's disk fills during a broker outage: a full disk is a smaller spool, the overflow
policy applies and the gateway keeps running. The disk is real: a tmpfs of a few pages mounted in a
user + mount namespace (no root needed) and reached through /proc/<pid>/root, so the kernel refuses
writes with ENOSPC. Another write error (the file size limit, RLIMIT_FSIZE: EFBIG) still stops the
gateway with a clear error and its summary line, leaving unacknowledged every MQTT message it did
not spool, so the broker delivers it again."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from infra.procs import free_port, wait_until
from ingest.config import ForwarderSettings, SpoolSettings
from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder, Outcome
from ingest.mqtt import MqttConfig, MqttGateway
from ingest.segments import MAGIC
from ingest.spool import Spool, SpoolFull
from schemas.config import KafkaSettings, TopicSettings

REPO = Path(__file__).resolve().parents[2]
FILE_LIMIT = 256 * 1024


def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


@pytest.mark.integration
def test_a_write_error_other_than_a_full_disk_stops_the_gateway_with_a_summary_and_loses_nothing(
    tmp_path: Path,
    own_mosquitto: Any,
    kafka: KafkaSettings,
    topics: TopicSettings,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(
        json.dumps(
            {
                "gateway_id": "mqtt-disk",
                "port": own_mosquitto.port,
                "client_id": "gw-disk",
                "topics": [{"pattern": "p/{plant}/{line}/{machine}/{sensor}", "unit": "bar"}],
            }
        )
    )
    spool_dir = tmp_path / "spool"
    env = {
        **os.environ,
        "MILLSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody listens: an outage
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "infra.cli", "gateway", "mqtt", "--config", str(cfg), "--spool-dir"]
    proc = subprocess.Popen(
        [*argv, str(spool_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_file_size,  # setrlimit must run in the child
    )
    try:
        wait_until(lambda: (spool_dir / "LOCK").exists(), 30, "the gateway to start")
        time.sleep(1.0)  # subscribed
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-disk")
        pub.connect("127.0.0.1", own_mosquitto.port)
        pub.loop_start()
        now = time.time_ns() // 1_000_000
        for i in range(4000):  # ~600 KB of spool records: more than the file limit
            payload = json.dumps({"value": float(i), "ts": now + i, "lot_id": "x" * 80}).encode()
            pub.publish(f"p/p1/l1/m{i % 3}/pressure", payload, qos=1)
        out, err = proc.communicate(timeout=60)
        pub.disconnect()
        pub.loop_stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err[-2000:]
    assert "millstream: error: the forwarder failed: cannot write to the spool" in err
    assert "Exception in thread" not in err, "one error, not a traceback per thread"
    summary = json.loads(out.strip().splitlines()[-1])  # the summary line still goes out
    assert summary["spooled"] > 0 and summary["read"] > 0

    # Restarted with the broker back (and room on the disk): the spool is replayed and Mosquitto
    # delivers again what was not acknowledged. Every published value arrives.
    config = MqttConfig.model_validate(json.loads(cfg.read_text()))
    run = gateway_run(MqttGateway, config, kafka, topics, SpoolSettings(dir=spool_dir))
    wait_until(lambda: run.forwarder.report().replayed + run.emitter.readings >= 4000, 60, "replay")
    report = run.close()
    assert report.lost == 0 and report.pending == 0
    records = read_topic(kafka, topics.topic_readings, 4000)
    assert {r["value"] for r in records} == {float(i) for i in range(4000)}, "nothing lost"


@pytest.mark.integration
def test_a_full_disk_drops_the_newest_and_keeps_the_gateway_running(
    tmp_path: Path,
    tiny_fs: Callable[[int], Path],
    own_mosquitto: Any,
    kafka: KafkaSettings,
    topics: TopicSettings,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(
        json.dumps(
            {
                "gateway_id": "mqtt-full",
                "port": own_mosquitto.port,
                "client_id": "gw-full",
                "topics": [{"pattern": "p/{plant}/{line}/{machine}/{sensor}", "unit": "bar"}],
            }
        )
    )
    spool_dir = tiny_fs(256 * 1024)
    env = {
        **os.environ,
        "MILLSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody listens: an outage
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "infra.cli", "gateway", "mqtt", "--config", str(cfg), "--overflow"]
    proc = subprocess.Popen(
        [*argv, "drop-newest", "--spool-dir", str(spool_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: (spool_dir / "LOCK").exists(), 30, "the gateway to start")
        time.sleep(1.0)  # subscribed
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-full")
        pub.connect("127.0.0.1", own_mosquitto.port)
        pub.loop_start()
        now = time.time_ns() // 1_000_000
        for i in range(4000):  # ~600 KB of spool records: more than the disk
            payload = json.dumps({"value": float(i), "ts": now + i, "lot_id": "x" * 80}).encode()
            pub.publish(f"p/p1/l1/m{i % 3}/pressure", payload, qos=1)
        wait_until(lambda: os.statvfs(spool_dir).f_bavail == 0, 60, "the disk to fill")
        time.sleep(2.0)  # a retry after FULL_RETRY_S fails too
        assert proc.poll() is None, "a full disk does not stop the gateway"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pub.disconnect()
        pub.loop_stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert err.count("the disk is full") == 1, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["spooled"] > 0 and summary["dropped"] > 0, summary

    assert summary["read"] == summary["spooled"] + summary["dropped"] == 4000, summary

    # Restarted on the still-full disk with the broker back: it comes up and replays exactly what it
    # kept, the oldest messages (drop-newest), each once. The dropped ones were counted and
    # acknowledged to Mosquitto (Outcome.DROPPED, as at max_bytes): they are not redelivered.
    config = MqttConfig.model_validate(json.loads(cfg.read_text()))
    run = gateway_run(MqttGateway, config, kafka, topics, SpoolSettings(dir=spool_dir))
    kept = summary["spooled"]
    wait_until(lambda: run.forwarder.report().replayed >= kept, 60, "replay")
    report = run.close()
    assert report.lost == 0 and report.pending == 0 and report.replayed == kept
    records = read_topic(kafka, topics.topic_readings, kept)
    assert sorted(r["value"] for r in records) == [float(i) for i in range(kept)]


def test_a_spool_bound_above_the_free_disk_space_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        Spool(SpoolSettings(dir=tmp_path / "spool", max_bytes=1 << 60)).open().close()
    assert any("bytes are free there" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        Spool(SpoolSettings(dir=tmp_path / "spool2", max_bytes=1 << 20, segment_bytes=1 << 18)).open().close()
    assert not caplog.records


FS_BYTES = 128 * 1024
VALUE = 500
N = 600  # ~300 KB of frames: more than twice the disk


@pytest.fixture()
def tiny_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """make(size) -> a folder on a fresh tmpfs of ``size`` bytes, gone at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def make(size: int) -> Path:
        mnt = tmp_path / f"fs{len(procs)}"
        mnt.mkdir()
        script = 'mount -t tmpfs -o size="$1" millstream-test "$2" && echo ready && exec sleep 3600'
        cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(size)]
        cmd.append(str(mnt))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
        procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.wait(5)
            assert proc.stderr is not None
            pytest.fail(f"cannot mount a small tmpfs in a user namespace: {proc.stderr.read()}")
        return Path(f"/proc/{proc.pid}/root{mnt}") / "spool"

    yield make
    for proc in procs:
        proc.kill()
        proc.wait()


def dropped_total() -> float:
    return REGISTRY.get_sample_value("millstream_gateway_spool_dropped_total", {"reason": "overflow"}) or 0.0


def open_spool(path: Path, overflow: str) -> Spool:
    settings = SpoolSettings(
        dir=path, max_bytes=1 << 20, segment_bytes=16 * 1024, fsync="always", overflow=overflow
    )
    return Spool(settings).open()


def value(i: int) -> bytes:
    return i.to_bytes(4, "big") + b"v" * (VALUE - 4)


def produce(spool: Spool, first: int, last: int) -> tuple[list[int], int | None]:
    """Append like the forwarder (a commit every 10 records): (indexes reported spooled, where
    SpoolFull stopped the producer). A record whose position a full disk then took back (see
    take_dropped) is not spooled; every such record is reported once, none is reported durable."""
    accepted: dict[int, int] = {}  # spool index -> record
    refused: set[int] = set()
    stopped = None
    for i in range(first, last):
        try:
            pos = spool.append(0, b"m%d" % (i % 3), value(i))
        except SpoolFull:
            stopped = i
            break
        if pos is not None:
            accepted[spool.appended] = i
        if i % 10 == 9:
            spool.commit()
        taken = {index for index, _ in spool.take_dropped()}
        assert all(index > spool.durable for index in taken), "a record taken back was never durable"
        refused |= taken
    spool.commit()
    refused.update(index for index, _ in spool.take_dropped())
    assert refused <= set(accepted), "only records given a position are taken back"
    return [r for index, r in sorted(accepted.items()) if index not in refused], stopped


def replay(spool: Spool) -> list[int]:
    out: list[int] = []
    while batch := spool.read(50):
        for r in batch:
            out.append(int.from_bytes(r.value[:4], "big"))
            spool.ack(r.pos, r.kind, r.key)
    return out


def on_disk(path: Path) -> list[int]:
    """What a restart would replay: every record in the segment files, in order (not acknowledged)."""
    spool = Spool(SpoolSettings(dir=path, max_bytes=1 << 20, segment_bytes=16 * 1024)).open()
    try:
        out: list[int] = []
        while batch := spool.read(50):
            out.extend(int.from_bytes(r.value[:4], "big") for r in batch)
        return out
    finally:
        spool.close()


def full_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("the disk is full" in r.getMessage() for r in caplog.records)


def test_drop_oldest_deletes_old_segments_to_make_room_and_keeps_the_newest(
    tiny_fs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_fs(FS_BYTES)
    before = dropped_total()
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        spool = open_spool(path, "drop-oldest")
        spooled, stopped = produce(spool, 0, N)
        assert stopped is None
        kept = spool.pending
        assert 0 < kept < N // 2, "the disk, not max_bytes, was the bound"
        assert spool.dropped_overflow == N - kept == dropped_total() - before
        spool.close()
    assert full_warnings(caplog) == 1, "one warning when the disk fills, not one per record"
    assert on_disk(path) == list(range(N - kept, N)), "the newest records, each once, in order"
    assert spooled[-kept:] == list(range(N - kept, N))
    assert not list(path.glob("*.corrupt"))

    # a restart on the still-full disk comes up and keeps working: old segments make room again
    spool = open_spool(path, "drop-oldest")
    assert spool.pending == kept
    spooled, _ = produce(spool, N, N + 100)
    assert spooled[-1] == N + 99
    total = spool.pending
    assert spool.dropped_overflow == kept + 100 - total
    got = replay(spool)
    assert got == list(range(N + 100 - total, N + 100))
    spool.close()
    assert on_disk(path) == []


def test_drop_newest_drops_what_does_not_fit_and_a_restart_replays_the_rest(
    tiny_fs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_fs(FS_BYTES)
    before = dropped_total()
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        spool = open_spool(path, "drop-newest")
        spooled, stopped = produce(spool, 0, N)
        assert stopped is None
        kept = spool.pending
        assert 0 < kept < N // 2
        assert spooled == list(range(kept)), "the oldest records stay; the ones that did not fit are dropped"
        assert spool.dropped_overflow == N - kept == dropped_total() - before
        spool.close()
    assert full_warnings(caplog) == 1
    assert on_disk(path) == list(range(kept)), "no torn frame: every kept record once, in order"

    spool = open_spool(path, "drop-newest")  # still full: comes up, drops the new records
    assert spool.pending == kept
    spooled, _ = produce(spool, N, N + 50)
    assert spooled == [] and spool.dropped_overflow == 50
    assert replay(spool) == list(range(kept))
    spool.close()


def test_block_raises_spool_full_until_replay_frees_space_and_loses_nothing(
    tiny_fs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_fs(FS_BYTES)
    before = dropped_total()
    delivered: list[int] = []
    spooled: list[int] = []
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        spool = open_spool(path, "block")
        first, rounds = 0, 0
        while first < N:
            got, stopped = produce(spool, first, N)
            spooled += got
            if stopped is None:
                break
            rounds += 1
            assert rounds < 50
            first = stopped
            delivered += replay(spool)[:]  # the broker is back for a while: acknowledgements free space
        assert rounds >= 1, "the producer was told to stop (SpoolFull)"
        assert spool.dropped_overflow == 0 == dropped_total() - before
        spool.close()
    assert full_warnings(caplog) >= 1
    assert any("space on its disk again" in r.getMessage() for r in caplog.records)
    assert spooled == list(range(N)), "every record accepted, in order"
    assert delivered + on_disk(path) == list(range(N)), "every record once, in order"

    # fill it again and restart on the full disk: SpoolFull at once, what is there is replayed
    spool = open_spool(path, "block")
    kept = spool.pending
    got, stopped = produce(spool, N, 2 * N)
    assert stopped is not None and spool.dropped_overflow == 0
    spool.close()  # staged records the full disk did not take cannot wait any longer: dropped, reported
    late = len(spool.take_dropped())
    assert spool.dropped_overflow == late
    got = got[: len(got) - late]
    spool = open_spool(path, "block")
    assert spool.pending == kept + len(got)
    with pytest.raises(SpoolFull):
        for i in range(10):
            spool.append(0, b"m", value(i))
            spool.commit()
    assert spool.dropped_overflow == 0
    spool.close()
    assert on_disk(path) == list(range(N - kept, N)) + got


def test_a_segment_cannot_be_created_on_a_full_disk_leaves_no_file(tiny_fs: Callable[[int], Path]) -> None:
    path = tiny_fs(4096)
    spool = open_spool(path, "drop-newest")
    produce(spool, 0, 20)  # the first segment takes the only page
    spool.close()
    assert all(p.read_bytes()[: len(MAGIC)] == MAGIC for p in path.glob("*.seg"))


@pytest.mark.parametrize("overflow", ["drop-newest", "drop-oldest"])
def test_the_forwarder_reports_every_record_once_and_a_dropped_one_never_as_spooled(
    tiny_fs: Callable[[int], Path], overflow: str
) -> None:
    path = tiny_fs(FS_BYTES)
    settings = SpoolSettings(
        dir=path, max_bytes=1 << 20, segment_bytes=16 * 1024, fsync="always", overflow=overflow
    )
    forwarder = Forwarder(
        KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"),  # nobody listens: an outage
        {READINGS: "readings", DEAD_LETTERS: "dlq"},
        settings,
        settings=ForwarderSettings(offline_after_ms=300, probe_interval_ms=60_000, close_timeout_s=1),
    ).start()
    outcomes: dict[int, list[Outcome]] = {i: [] for i in range(N)}
    for i in range(N):
        assert forwarder.submit(READINGS, b"m%d" % (i % 3), value(i), done=outcomes[i].append, timeout=10)
    time.sleep(2)  # offline: the producer's messages are copied to the spool, where they fit
    report = forwarder.close()  # copies the disk refused: still live until the close purges them
    assert all(len(o) == 1 for o in outcomes.values()), "each message reported once"
    spooled = [i for i, o in outcomes.items() if o == [Outcome.SPOOLED]]
    dropped = [i for i, o in outcomes.items() if o == [Outcome.DROPPED]]
    assert len(spooled) + len(dropped) == N
    kept = on_disk(path)
    assert not set(kept) & set(dropped), "a record reported dropped is not in the spool"
    assert len(kept) == len(set(kept)) and kept == sorted(kept)
    if overflow == "drop-newest":
        assert kept == spooled == list(range(len(kept))), "exactly what was reported spooled is kept"
    else:
        assert set(kept) <= set(spooled) and kept[-1] == spooled[-1]
    assert report.dropped == N - len(kept), "every record not kept is counted"
    assert report.pending == len(kept)
