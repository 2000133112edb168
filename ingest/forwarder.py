"""Store-and-forward: every gateway message goes to Kafka, or to the spool while Kafka is away.

One :class:`Forwarder` per gateway owns the producer core (:mod:`ingest.producer`) and the spool
(:mod:`ingest.spool`) and runs in its own thread; the protocol side only calls :meth:`submit`.

Routing, per message:

* **online** and the machine (the Kafka key) has nothing in the spool: straight to the producer;
* otherwise (offline, or the machine still has spooled records): appended to the spool, behind
  what is there, so a machine's messages reach Kafka in the order they were read.

The broker counts as unreachable (offline) on the first of: a delivery failure, librdkafka
reporting all brokers down, a message unacknowledged for ``offline_after_ms``, or a local queue
that stays full that long. Going offline copies every message the producer still holds (sent, not
acknowledged) into the spool in send order; whichever way those end (acknowledged late: the copy
is skipped; failed: the copy is replayed) nothing is lost or sent twice. While offline the
forwarder asks for metadata every ``probe_interval_ms``; once the broker answers it replays the
spool in order (at most ``replay_window`` unacknowledged) while live traffic continues. A spool
record is acknowledged, and its segment eventually deleted, only after the broker acknowledged it.

Each message may carry a ``done`` callback, called once from the forwarder thread with the
:class:`Outcome`: DELIVERED (broker acknowledged), SPOOLED (durable in the spool per its fsync
policy), DROPPED (a full spool or a full disk refused it, overflow='drop-newest', or a full disk
that drop-oldest could not free; also a record staged for the spool that the disk then refused).
MQTT acknowledges a message only then.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError
from prometheus_client import Counter, Gauge

from ingest.config import ForwarderSettings, ProducerSettings, SpoolSettings
from ingest.exceptions import GatewayError
from ingest.forward_types import Done, ForwardReport, Item, Live, Outcome
from ingest.kafka_link import KafkaLink, MessageRefused
from ingest.metrics import DELIVERY_FAILURES, THROTTLED_SECONDS
from ingest.ratelimit import TokenBucket
from ingest.spool import Spool, SpoolFull, SpoolRecord
from schemas.config import KafkaSettings
from schemas.serde import Serde

logger = logging.getLogger(__name__)

__all__ = ["DEAD_LETTERS", "READINGS", "Done", "ForwardReport", "Forwarder", "Item", "Outcome"]

READINGS = 0  # spool kinds: which topic a message belongs to (stable on disk)
DEAD_LETTERS = 1

REPLAYED = Counter("millstream_gateway_replayed", "Spooled records delivered after an outage.")
BROKER_ONLINE = Gauge(
    "millstream_gateway_broker_online", "1 while the gateway sends to Kafka, 0 while spooling."
)
OUTAGES = Counter("millstream_gateway_broker_outages", "Times the gateway found the broker unreachable.")


class Forwarder:
    """Routes messages to Kafka or the spool, replays the spool. Thread-safe :meth:`submit`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Mapping[int, str],
        spool: SpoolSettings,
        producer: ProducerSettings | None = None,
        settings: ForwarderSettings | None = None,
        serde: Serde | None = None,
    ) -> None:
        self.settings = settings or ForwarderSettings()
        self.topics = dict(topics)
        producer = producer or ProducerSettings()
        self.link = KafkaLink(
            kafka,
            self.topics[READINGS],
            producer,
            serde,
            self.settings.reconnect_backoff_max_ms,
        )
        # max_values_per_s: live messages by their values, replayed ones one each (the spool does not
        # keep the count); the wait serves delivery reports. The producer's own limit does not apply
        # to the tracked sends used here.
        self._bucket: TokenBucket | None = None
        if producer.max_values_per_s:
            self._bucket = TokenBucket(producer.max_values_per_s, producer.burst_values, wait=self._throttle)
        self.throttled_s = 0.0
        self.spool = Spool(spool, tracked_kinds=frozenset({READINGS}))
        self._queue: queue.Queue[Item] = queue.Queue(self.settings.queue_size)
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._live: dict[int, Live] = {}
        self._next_id = 0
        self._shadowed = 0  # live messages with a copy in the spool
        self._tokens: deque[tuple[int, Done]] = deque()  # (spool index, done) waiting for durability
        self._dropped: set[int] = set()  # spool indexes a full disk refused after they were staged
        self._held: Item | None = None  # overflow='block': the record that did not fit
        self._online = True
        self._online_at = time.monotonic()
        self._offline_since = 0.0
        self._next_probe = 0.0
        self._replay_inflight = 0
        self._rewind_needed = False
        self._next_check = 0.0
        self._next_publish = 0.0
        self.submitted = self.spooled = self.replayed = self.failures = 0
        self.lost = self.outages = 0

    # ------------------------------------------------------------------------------------ public
    def start(self) -> Forwarder:
        self.spool.open()
        BROKER_ONLINE.set(1)
        self._thread.start()
        return self

    def submit(
        self,
        kind: int,
        key: bytes | None,
        value: bytes,
        n_values: int = 1,
        done: Done | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Hand one encoded message over; blocks while the queue is full (backpressure) up to
        ``timeout``. False: not taken (timeout, or the forwarder is closing)."""
        self.check()
        if self._closing.is_set():
            return False
        try:
            self._queue.put((kind, key, value, n_values, done), timeout=timeout)
        except queue.Full:
            return False
        return True

    def check(self) -> None:
        """Raise GatewayError when the forwarder thread has stopped on an error."""
        if self._error is not None:
            msg = f"the forwarder stopped: {self._error}"
            raise GatewayError(msg) from self._error

    @property
    def online(self) -> bool:
        return self._online

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> ForwardReport:
        """Stop taking messages, deliver what can be delivered within ``close_timeout_s``, keep
        the rest in the spool. Safe to call twice."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._error is not None:
            msg = f"the forwarder failed: {self._error}"
            raise GatewayError(msg) from self._error
        return self.report()

    def state(self) -> dict[str, Any]:
        """Internal state, for diagnostics (read from another thread: approximate)."""
        return {
            "online": self._online,
            "live": len(self._live),
            "shadowed": self._shadowed,
            "replay_inflight": self._replay_inflight,
            "rewind_needed": self._rewind_needed,
            "tokens": len(self._tokens),
            "durable": self.spool.durable,
            "appended": self.spool.appended,
            "held": self._held is not None,
            "queued": self._queue.qsize(),
            "spool_pending": self.spool.pending,
            "spool_unread": self.spool.has_unread,
            "thread_alive": self._thread.is_alive(),
        }

    def report(self) -> ForwardReport:
        produced, acknowledged = self.link.totals()
        return ForwardReport(
            submitted=self.submitted,
            produced=produced,
            acknowledged=acknowledged,
            delivery_failures=self.failures,
            spooled=self.spooled,
            replayed=self.replayed,
            dropped=self.spool.dropped_overflow + self.spool.dropped_corrupt,
            pending=self.spool.pending,
            lost=self.lost,
            outages=self.outages,
        )

    # ------------------------------------------------------------------------------------ loop
    def _run(self) -> None:
        try:
            while True:
                if self._held is not None:
                    self._retry_held()
                else:
                    self._take(0.0 if self._busy() else 0.02)
                self._service()
                if self._closing.is_set() and self._held is None and self._queue.empty():
                    break
        except BaseException as exc:  # surfaced by submit()/close()
            logger.exception("the forwarder stopped")
            self._error = exc
        finally:
            try:
                self._shutdown()
            except Exception as exc:  # surfaced by close(), like an error of the loop
                if self._error is None:
                    logger.exception("the forwarder could not shut down")
                    self._error = exc
                else:  # the same trouble again (e.g. the spool's disk is still full): logged above
                    logger.debug("shutting down after the error: %r", exc)

    def _busy(self) -> bool:
        """More replay can start right away (no reason to sleep on the input queue)."""
        return (
            self._online
            and self._shadowed == 0
            and self._replay_inflight < self.settings.replay_window
            and self.spool.has_unread
        )

    def _take(self, wait: float) -> None:
        q = self._queue
        try:
            item = q.get(timeout=wait) if wait > 0 else q.get_nowait()
        except queue.Empty:
            return
        for _ in range(1999):  # a batch, then service the producer and the spool
            if not self._route(item):
                return
            try:
                item = q.get_nowait()
            except queue.Empty:
                return
        self._route(item)

    def _retry_held(self) -> None:
        item, self._held = self._held, None
        if item is not None:
            self._route(item)
        if self._held is not None:
            time.sleep(0.01)

    def _route(self, item: Item) -> bool:
        kind, key, _, _, _ = item
        if self._online and (key is None or kind != READINGS or key not in self.spool.pending_keys):
            self._send_live(item)
            return True
        return self._to_spool(item)

    def _to_spool(self, item: Item, force: bool = False) -> bool:
        kind, key, value, _, done = item
        try:
            pos = self.spool.append(kind, key, value, force=force)
        except SpoolFull:
            self._held = item
            return False
        self.submitted += 1
        if pos is None:  # counted by the spool (dropped_overflow), a forced one here
            if force:
                self.spool.count_overflow()
            if done is not None:
                done(Outcome.DROPPED)
            return True
        self.spooled += 1
        if done is not None:
            self._tokens.append((self.spool.appended, done))
        return True

    def _send_live(self, item: Item) -> None:
        kind, key, value, n, done = item
        e = Live(self._next_id, kind, key, value, done)
        self._next_id += 1
        callback = functools.partial(self._on_live, e)
        topic = self.topics[kind]
        if self._bucket is not None:
            self._admit(self._bucket, n)
        try:
            sent = self.link.send(topic, key, value, n, callback) or self._wait_for_room(
                lambda: self.link.send(topic, key, value, n, callback)
            )
        except MessageRefused as exc:
            self.submitted += 1
            self._refused(exc, len(value))
            if done is not None:
                done(Outcome.DROPPED)
            return
        if not sent:
            if self._online:
                self._go_offline("the producer refused or its local queue stayed full")
            self._to_spool(item, force=True)
            return
        self.submitted += 1
        self._live[e.ident] = e

    def _admit(self, bucket: TokenBucket, n: int) -> None:
        waited = bucket.acquire(n)
        if waited:
            self.throttled_s += waited
            THROTTLED_SECONDS.inc(waited)

    def _throttle(self, seconds: float) -> None:
        self.link.poll(min(seconds, 0.05))

    def _wait_for_room(self, send: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.settings.offline_after_ms / 1000
        while self._online and not self.link.broken and time.monotonic() < deadline:
            self.link.poll(0.05)
            if send():
                return True
        return False

    # ------------------------------------------------------------------------------------ outcomes
    def _on_live(self, e: Live, err: KafkaError | None) -> None:
        self._take_dropped()  # e's spool copy may be gone: its position must not be acknowledged
        if err is None:
            if e.pos is not None:
                self.spool.ack(e.pos, e.kind, e.key)
                self._shadowed -= 1
            if e.done is not None:
                e.done(Outcome.DELIVERED)
                e.done = None
            if not self._online and not self._closing.is_set():
                self._go_online("a late acknowledgement arrived")
        else:
            self.failures += 1
            self.link.failed(err)
            if e.pos is None:
                if self._online and not self._closing.is_set():
                    self._go_offline(f"delivery failed: {err.name()}")
                else:
                    self._shadow_live()  # copies e (still live) in send order
            if e.pos is not None:
                self._shadowed -= 1
            elif e.done is not None:  # failed, and the full disk took no copy
                self.spool.count_overflow()
                e.done(Outcome.DROPPED)
                e.done = None
        self._live.pop(e.ident, None)

    def _on_replay(self, r: SpoolRecord, err: KafkaError | None) -> None:
        self._replay_inflight -= 1
        if err is None:
            self.spool.ack(r.pos, r.kind, r.key)
            self.replayed += 1
            REPLAYED.inc()
            return
        self.failures += 1
        self.link.failed(err)
        self._rewind_needed = True
        if self._online and not self._closing.is_set():
            self._go_offline(f"replay delivery failed: {err.name()}")

    def _refused(self, exc: MessageRefused, size: int) -> None:
        """A message Kafka will never take: counted lost (``failed`` in the summary), not an outage."""
        self.lost += 1
        DELIVERY_FAILURES.labels("MSG_SIZE_TOO_LARGE").inc()
        logger.error("a message of %d bytes was dropped: %s", size, exc)

    def _reset_producer(self) -> None:
        """Replace a producer that cannot continue; whatever it held stays in the spool."""
        if self._online:
            self._go_offline("the producer must be replaced")
        self._shadow_live()
        self.link.replace()  # the purged messages' outcomes arrive during this (copies stay spooled)
        # no outcome came: their spool copies will be replayed
        self._shadowed -= sum(1 for e in self._live.values() if e.pos is not None)
        self._live.clear()
        if self._replay_inflight:
            self._replay_inflight = 0
            self._rewind_needed = True

    # ------------------------------------------------------------------------------------ state
    def _go_offline(self, reason: str) -> None:
        if not self._online:
            return
        self._online = False
        self._offline_since = time.monotonic()
        self._next_probe = self._offline_since + self.settings.probe_interval_ms / 1000
        self.outages += 1
        OUTAGES.inc()
        BROKER_ONLINE.set(0)
        copied = self._shadow_live()
        logger.warning(
            "broker unreachable (%s): spooling to %s (%d unacknowledged messages copied)",
            reason,
            self.spool.dir,
            copied,
        )

    def _shadow_live(self) -> int:
        """Copy every live message without a spool copy into the spool, in send order."""
        copied = 0
        for e in self._live.values():  # insertion order = send order
            if e.pos is None:
                e.pos = self.spool.append(e.kind, e.key, e.value, force=True)
                if e.pos is None:  # a full disk took no copy; e may still succeed (counted if not)
                    continue
                self._shadowed += 1
                self.spooled += 1
                copied += 1
                if e.done is not None:
                    self._tokens.append((self.spool.appended, e.done))
                    e.done = None
        return copied

    def _go_online(self, why: str) -> None:
        now = time.monotonic()
        self._online, self._online_at, self.link.all_down = True, now, False
        BROKER_ONLINE.set(1)
        logger.warning(
            "broker reachable again after %.1f s (%s); %d spooled records to replay",
            now - self._offline_since,
            why,
            self.spool.pending,
        )

    def _service(self) -> None:
        self.link.poll(0)
        if self.link.broken:
            self._reset_producer()
        now = time.monotonic()
        if self._online:
            if self.link.all_down:
                # librdkafka also says so when a redundant connection closes: ask before believing it
                self.link.all_down = False
                if not self.link.reachable(0.5):
                    self._go_offline("all brokers down")
            elif now >= self._next_check:
                self._next_check = now + 0.1
                oldest = next(iter(self._live.values()), None)
                if oldest is not None:
                    waiting = now - max(oldest.sent_at, self._online_at)  # since the broker counts as up
                    if waiting > self.settings.offline_after_ms / 1000:
                        self._go_offline(f"no acknowledgement for {waiting:.1f} s")
        elif now >= self._next_probe and not self._closing.is_set():
            if self.link.reachable(min(1.0, self.settings.probe_interval_ms / 1000)):
                self._go_online("metadata request answered")
            self._next_probe = time.monotonic() + self.settings.probe_interval_ms / 1000
        if self._online and self._shadowed == 0 and not self._closing.is_set():
            self._replay()
        self._complete(self.spool.commit())
        if now >= self._next_publish:
            self._next_publish = now + 1.0
            self.spool.publish()

    def _complete(self, durable: int) -> None:
        self._take_dropped()
        tokens, dropped = self._tokens, self._dropped
        while tokens:
            index = tokens[0][0]
            if index in dropped:
                dropped.discard(index)
                tokens.popleft()[1](Outcome.DROPPED)
            elif index <= durable:
                tokens.popleft()[1](Outcome.SPOOLED)
            else:
                break
        if dropped and (not tokens or min(dropped) < tokens[0][0]):
            first = tokens[0][0] if tokens else self.spool.appended + 1
            self._dropped = {i for i in dropped if i > first}  # those without a done callback

    def _take_dropped(self) -> None:
        """Records the spool staged and a full disk then refused: never durable (see Spool.take_dropped)."""
        gone = self.spool.take_dropped()
        if not gone:
            return
        self.spooled -= len(gone)
        self._dropped.update(index for index, _ in gone)
        positions = {pos for _, pos in gone}
        for e in self._live.values():
            if e.pos in positions:  # its copy is gone (the position may be given out again)
                e.pos = None
                self._shadowed -= 1

    def _replay(self) -> None:
        if self._rewind_needed:
            if self._replay_inflight:
                return
            self.spool.rewind()
            self._rewind_needed = False
        budget = self.settings.replay_window - self._replay_inflight
        if budget <= 0 or not self.spool.has_unread:
            return
        for r in self.spool.read(min(budget, 2000)):
            callback = functools.partial(self._on_replay, r)
            topic = self.topics[r.kind]

            def send(r: SpoolRecord = r, cb: Any = callback, topic: str = topic) -> bool:
                return self.link.send(topic, r.key, r.value, 1, cb)

            if self._bucket is not None:
                self._admit(self._bucket, 1)
            try:
                sent = send() or self._wait_for_room(send)
            except MessageRefused as exc:  # e.g. spooled by an older version: it would block replay forever
                self._refused(exc, len(r.value))
                self.spool.ack(r.pos, r.kind, r.key)
                continue
            if not sent:
                self._rewind_needed = True  # read but not sent: read again later
                if self._online:
                    self._go_offline("the producer's local queue stayed full during replay")
                return
            self._replay_inflight += 1

    def _shutdown(self) -> None:
        """Route what is queued, wait for outcomes, keep everything unacknowledged in the spool."""
        try:
            if self._held is not None:
                self._to_spool(self._held, force=True)
                self._held = None
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not self._route(item):  # overflow='block' and full: keep it anyway
                    self._to_spool(item, force=True)
                    self._held = None
            deadline = time.monotonic() + self.settings.close_timeout_s
            while (self._live or self._replay_inflight) and time.monotonic() < deadline:
                self.link.poll(0.1)
                self._complete(self.spool.commit())
            self._shadow_live()
            self._complete(self.spool.commit(sync=self.spool.settings.fsync != "never"))
            self.link.close(timeout=0.5)  # purges the rest: their copies stay spooled
            self._complete(self.spool.commit())
        finally:
            self.spool.close()
            self._complete(self.spool.durable)
            self.spool.publish()
