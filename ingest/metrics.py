"""Gateway metrics (``millstream_gateway_*``), beside the shared ones in :mod:`sinks.metrics`.

The producer updates these in batches (every ``poll_every`` messages and on flush), never per
message: a Prometheus counter increment costs about as much as producing the message.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES = Counter(
    "millstream_gateway_messages",
    "Kafka messages by delivery outcome: produced (queued), acknowledged, failed.",
    ["outcome"],
)
DELIVERY_FAILURES = Counter(
    "millstream_gateway_delivery_failures",
    "Messages the broker did not acknowledge, by librdkafka error name.",
    ["reason"],
)
VALUES = Counter("millstream_gateway_values", "Sensor values produced (each becomes one Reading).")
SCANS = Counter("millstream_gateway_scans", "Machine scans read from devices (or simulated).")
BACKPRESSURE_WAITS = Counter(
    "millstream_gateway_backpressure_waits",
    "Times the local send queue was full and the gateway waited for deliveries instead of dropping.",
)
THROTTLED_SECONDS = Counter(
    "millstream_gateway_throttled_seconds", "Seconds the gateway waited on its rate limit."
)
IN_FLIGHT = Gauge(
    "millstream_gateway_in_flight_messages", "Messages queued or sent but not yet acknowledged."
)
FAULTS_INJECTED = Counter(
    "millstream_gateway_simulated_faults", "Faults the plant simulator injected, by kind.", ["kind"]
)
