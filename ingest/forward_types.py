"""The forwarder's vocabulary: what happened to a message (:class:`Outcome`), the callback that
hears it (:data:`Done`), a queued message (:data:`Item`), one message in the producer (:class:`Live`)
and the counts of a run (:class:`ForwardReport`)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


class Outcome(enum.IntEnum):
    DELIVERED = 0
    SPOOLED = 1
    DROPPED = 2


Done = Callable[[Outcome], None]
Item = tuple[int, bytes | None, bytes, int, Done | None]


@dataclass(frozen=True)
class ForwardReport:
    submitted: int
    produced: int
    acknowledged: int
    delivery_failures: int
    spooled: int
    replayed: int
    dropped: int
    pending: int  # records still in the spool (delivered on the next start)
    lost: int  # neither acknowledged nor kept in the spool (refused by the producer as too large)
    outages: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Live:
    __slots__ = ("ident", "kind", "key", "value", "done", "pos", "sent_at")

    def __init__(self, ident: int, kind: int, key: bytes | None, value: bytes, done: Done | None) -> None:
        self.ident, self.kind, self.key, self.value, self.done = ident, kind, key, value, done
        self.pos: tuple[int, int] | None = None  # its copy in the spool, once offline
        self.sent_at = time.monotonic()
