"""A schema registry that cannot be asked is not a bad record: nothing is dead-lettered meanwhile.

The outage is real (confluent-kafka's registry client against a closed local port). The "no such id"
case uses confluent-kafka's in-memory ``MockSchemaRegistryClient``: no registry server can run here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

import schemas.serde as serde_module
from infra.procs import free_port
from schemas.config import SerdeSettings
from schemas.exceptions import UNKNOWN_SCHEMA, DecodeError, RegistryUnavailableError
from schemas.registry import SCHEMA_DIR, SchemaSet
from schemas.serde import Serde
from streams.config import StreamSettings
from streams.flink.keyed import KeyExtractor
from streams.pipeline import PartitionProcessor

CONFLUENT_ID_7 = b"\x00\x00\x00\x00\x07" + b"\x02a"  # Confluent framing, schema id 7, some body


@pytest.fixture()
def unreachable() -> Serde:
    return Serde(SerdeSettings(schema_registry_url=f"http://127.0.0.1:{free_port()}"))


def test_unreachable_registry_is_not_a_decode_error(unreachable: Serde) -> None:
    with pytest.raises(RegistryUnavailableError, match="schema id 7"):
        unreachable.decode(CONFLUENT_ID_7)


def test_stream_job_does_not_dead_letter_during_an_outage(unreachable: Serde) -> None:
    # Both engines: the Faust job's processor and the Flink job's step before key_by.
    proc = PartitionProcessor(StreamSettings(), unreachable, 0, "readings")
    with pytest.raises(RegistryUnavailableError):
        proc.handle(CONFLUENT_ID_7, 0, b"m-1")
    with pytest.raises(RegistryUnavailableError):
        KeyExtractor(unreachable, "readings").machine_of(CONFLUENT_ID_7, 0, 0, b"m-1")


def test_event_time_of_an_unreachable_schema_is_unknown(unreachable: Serde) -> None:
    assert unreachable.event_time(CONFLUENT_ID_7) is None


def test_id_the_registry_does_not_know_is_still_unknown_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://millstream-outage"})
    monkeypatch.setattr(serde_module, "_registry_client", lambda _settings: client)
    serde = Serde(SerdeSettings(schema_registry_url="mock://millstream-outage"))
    with pytest.raises(DecodeError) as info:
        serde.decode(CONFLUENT_ID_7)
    assert info.value.code == UNKNOWN_SCHEMA


def test_a_writer_schema_this_reader_cannot_resolve_says_upgrade_readers_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A new writer dropped a field the old reader requires: the bytes are fine, the order of the
    # upgrade is not. It was reported as a corrupt body (decode_error).
    client = SchemaRegistryClient.new_client({"url": "mock://millstream-resolve"})
    monkeypatch.setattr(serde_module, "_registry_client", lambda _settings: client)
    settings = SerdeSettings(schema_registry_url="mock://millstream-resolve")
    v2 = json.loads((SCHEMA_DIR / "reading.v1.avsc").read_text())
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "gateway_id"]
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path)
    (tmp_path / "reading.v2.avsc").write_text(json.dumps(v2))
    record = {
        "plant": "p1", "line": "l1", "machine_id": "m-7", "sensor": "t", "unit": "Cel",
        "event_time": 1_700_000_000_000, "value": 63.5, "quality": "GOOD", "seq": 9, "lot_id": None,
    }  # fmt: skip
    data = Serde(settings, SchemaSet(tmp_path)).encode("Reading", "readings", record)
    with pytest.raises(DecodeError) as info:
        Serde(settings).decode(data)
    assert info.value.code == UNKNOWN_SCHEMA
    assert "upgrade the readers (stream job, sink) before the writers" in info.value.reason
