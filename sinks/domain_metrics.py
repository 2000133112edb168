"""Domain metrics (what the plant does, not what the pipeline does), with a cardinality guard.

Per-(machine, sensor) series are what operators want on a dashboard, but an unbounded fleet must
not take Prometheus down. The guard admits at most ``MILLSTREAM_METRICS_MAX_SERIES`` distinct label
sets per metric; updates for further label sets are dropped and counted in
``millstream_metrics_series_dropped_total{metric}``.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import Counter, Gauge
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MetricsSettings(BaseSettings):
    """Limits of the domain metrics."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_METRICS_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    max_series: int = Field(
        5000,
        ge=1,
        description="MILLSTREAM_METRICS_MAX_SERIES: most label sets per domain metric (cardinality guard).",
    )


WINDOW_MEAN = Gauge(
    "millstream_window_mean", "Mean of the latest closed window.", ["plant", "line", "machine_id", "sensor"]
)
LAST_READING = Gauge(
    "millstream_last_reading_timestamp_seconds",
    "Event time of the newest reading of a machine (time() minus this = seconds since last reading).",
    ["plant", "line", "machine_id"],
)
ANOMALY_SCORE = Gauge(
    "millstream_anomaly_score",
    'Latest calibrated anomaly score (0-1) per detector: a sensor\'s own, or sensor="machine".',
    ["plant", "line", "machine_id", "sensor"],
)
SERIES_DROPPED = Counter(
    "millstream_metrics_series_dropped", "Domain metric updates dropped by the cardinality guard.", ["metric"]
)


class CardinalityGuard:
    """Admit a bounded number of label sets per metric."""

    def __init__(self, max_series: int | None = None) -> None:
        self.max_series = max_series if max_series is not None else MetricsSettings().max_series
        self._seen: dict[str, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def admit(self, metric: str, labels: tuple[str, ...]) -> bool:
        with self._lock:
            seen = self._seen.setdefault(metric, set())
            if labels in seen:
                return True
            if len(seen) >= self.max_series:
                SERIES_DROPPED.labels(metric).inc()
                return False
            seen.add(labels)
            return True

    def release(self, metric: str, machine_ids: set[str], position: int) -> list[tuple[str, ...]]:
        """Forget the label sets of ``metric`` whose ``position``-th label is one of ``machine_ids``."""
        with self._lock:
            seen = self._seen.get(metric, set())
            gone = [labels for labels in seen if labels[position] in machine_ids]
            seen.difference_update(gone)
            return gone


class DomainMetrics:
    """The domain metrics of one process."""

    def __init__(self, guard: CardinalityGuard | None = None) -> None:
        self.guard = guard or CardinalityGuard()
        self._last_reading: dict[tuple[str, ...], int] = {}

    def forget(self, machine_ids: set[str]) -> None:
        """Remove the series of these machines: their partition moved to another worker, which
        exports them from now on (left here, they would show frozen values beside the live ones)."""
        for gauge, name in (
            (WINDOW_MEAN, "millstream_window_mean"),
            (LAST_READING, "millstream_last_reading_timestamp_seconds"),
            (ANOMALY_SCORE, "millstream_anomaly_score"),
        ):
            for labels in self.guard.release(name, machine_ids, 2):  # machine_id is the 3rd label
                gauge.remove(*labels)
        for key in [k for k in self._last_reading if k[2] in machine_ids]:
            del self._last_reading[key]

    def window(self, plant: str, line: str, machine_id: str, sensor: str, mean: float) -> None:
        labels = (plant, line, machine_id, sensor)
        if self.guard.admit("millstream_window_mean", labels):
            WINDOW_MEAN.labels(*labels).set(mean)

    def reading(self, plant: str, line: str, machine_id: str, event_time_ms: int) -> None:
        labels = (plant, line, machine_id)
        if event_time_ms <= self._last_reading.get(labels, -1):
            return
        self._last_reading[labels] = event_time_ms
        if self.guard.admit("millstream_last_reading_timestamp_seconds", labels):
            LAST_READING.labels(*labels).set(event_time_ms / 1000)

    def anomaly_score(self, plant: str, line: str, machine_id: str, sensor: str, score: float) -> None:
        labels = (plant, line, machine_id, sensor)
        if self.guard.admit("millstream_anomaly_score", labels):
            ANOMALY_SCORE.labels(*labels).set(score)


def seconds_since(ts_ms: int) -> float:
    return time.time() - ts_ms / 1000
