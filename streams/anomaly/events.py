"""The record an anomaly detector emits; engine adapters publish it (e.g. to the anomalies topic)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MACHINE = "machine"  # ``sensor`` of an event raised by the multivariate detector


@dataclass(frozen=True)
class AnomalyEvent:
    """One anomaly incident of a machine.

    Emitted twice: when it opens (``end_ms`` is None) and when it closes (``end_ms`` set, ``score``
    the peak over the incident). Times are epoch milliseconds (UTC).
    """

    machine_id: str
    sensor: str  # the sensor whose own detector scored highest, or "machine" (multivariate detector)
    score: float  # calibrated score in [0, 1] (peak so far)
    threshold: float  # score that opened the event
    start_ms: int
    end_ms: int | None = None
    model_id: str = ""
    # at the onset: readings (value.<sensor>) and per-detector scores (score.<detector>); on close also
    # peak.<detector> for every detector that reached the enter threshold during the event
    features: dict[str, float] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.end_ms is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def opened_by_kind(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many of these published event records (``state``, ``sensor``) open an event, by detector
    kind: ``machine`` (the multivariate detector) or ``sensor``, the labels of
    ``millstream_anomaly_events``."""
    out = {"sensor": 0, "machine": 0}
    for r in records:
        if r["state"] == "open":
            out["machine" if r["sensor"] == MACHINE else "sensor"] += 1
    return out
