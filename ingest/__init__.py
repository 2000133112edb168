"""Device gateways: protocol bridges (OPC UA, MQTT), the plant simulator and the Kafka producer.

Every gateway hands machine scans to one producer core (:mod:`ingest.producer`): idempotent,
keyed by machine id (order per machine), Avro-encoded, with delivery accounting and backpressure.
"""

from __future__ import annotations
