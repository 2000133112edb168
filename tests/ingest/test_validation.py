"""Edge validation: unit normalisation against published values, range and clock-skew flags, schema
checks; MQTT topic patterns and payloads; what a rejected value becomes (a DeadLetter)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.procs import free_port
from ingest.bridge import Emitter
from ingest.config import SpoolSettings
from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
from ingest.mqtt import MqttConfig, MqttGateway, PayloadFormat, TopicMapping, TopicPattern, parse_time
from ingest.validation import (
    CLOCK_SKEW,
    UNIT_ERROR,
    Invalid,
    RangeRule,
    Sample,
    ValidationConfig,
    Validator,
)
from schemas.config import KafkaSettings
from schemas.exceptions import DECODE_ERROR, INVALID_RECORD
from schemas.serde import Serde

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def sample(**kw: Any) -> Sample:
    base: dict[str, Any] = {
        "source": "plant/p1/line/l1/machine/m001/temperature",
        "payload": b"{}",
        "plant": "p1",
        "line": "l1",
        "machine_id": "m001",
        "sensor": "temperature",
        "unit": "Cel",
        "value": 20.0,
        "event_time": NOW,
        "quality": "GOOD",
    }
    return Sample(**{**base, **kw})


# Published values: NIST SP 811 (2008): 1 in = 25.4 mm exactly; 1 psi = 6.894757 kPa, so
# 1 bar = 14.503 77 psi; water boils at 212 degF = 100 degC and freezes at 32 degF = 0 degC;
# -40 degF = -40 degC; 0 degC = 273.15 K. Standard atmosphere: 1013.25 mbar = 1.01325 bar.
@pytest.mark.parametrize(
    ("unit", "value", "canonical", "expected"),
    [
        ("degF", 212.0, "Cel", 100.0),
        ("°F", 32.0, "Cel", 0.0),
        ("[degF]", -40.0, "Cel", -40.0),
        ("K", 273.15, "Cel", 0.0),
        ("psi", 14.503774, "bar", 1.0),
        ("mbar", 1013.25, "bar", 1.01325),
        ("kPa", 101.325, "bar", 1.01325),
        ("in/s", 1.0, "mm/s", 25.4),
        ("[in_i]/s", 0.5, "mm/s", 12.7),
        ("mA", 250.0, "A", 0.25),
        ("Wh", 1500.0, "kWh", 1.5),
        ("Cel", 61.5, "Cel", 61.5),
    ],
)
def test_units_are_normalised_to_published_values(
    unit: str, value: float, canonical: str, expected: float
) -> None:
    r = Validator().check(sample(unit=unit, value=value), NOW)
    assert r["unit"] == canonical
    assert r["value"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_unknown_units_are_dead_letters_unless_passed_and_expected_units_are_enforced() -> None:
    with pytest.raises(Invalid) as e:
        Validator().check(sample(unit="Celsius"), NOW)
    assert e.value.code == UNIT_ERROR
    assert (
        Validator(ValidationConfig(unknown_units="pass")).check(sample(unit="Celsius"), NOW)["unit"]
        == "Celsius"
    )
    aliased = Validator(ValidationConfig(unit_aliases={"C": "Cel"}))
    assert aliased.check(sample(unit="C"), NOW)["unit"] == "Cel"
    strict = Validator(ValidationConfig(expected_units={"temperature": "Cel"}))
    assert strict.check(sample(unit="degF", value=212.0), NOW)["unit"] == "Cel"
    with pytest.raises(Invalid, match="not convertible") as e:
        strict.check(sample(unit="psi"), NOW)
    assert e.value.code == UNIT_ERROR


def test_ranges_lower_quality_and_never_raise_it() -> None:
    v = Validator(
        ValidationConfig(
            ranges={"temperature": RangeRule(uncertain_outside=(0.0, 100.0), bad_outside=(-50.0, 400.0))}
        )
    )
    assert v.check(sample(value=50.0), NOW)["quality"] == "GOOD"
    assert v.check(sample(value=150.0), NOW)["quality"] == "UNCERTAIN"
    assert v.check(sample(value=500.0), NOW)["quality"] == "BAD"
    assert v.check(sample(value=-60.0), NOW)["quality"] == "BAD"
    assert v.check(sample(value=50.0, quality="BAD"), NOW)["quality"] == "BAD"
    assert v.check(sample(value=150.0, quality="BAD"), NOW)["quality"] == "BAD"
    # the rule is in canonical units: 302 degF = 150 degC
    assert v.check(sample(value=302.0, unit="degF"), NOW)["quality"] == "UNCERTAIN"
    assert v.range_flagged == 4


def test_clock_skew_is_measured_and_flagged() -> None:
    v = Validator(ValidationConfig(max_clock_ahead_s=5, max_clock_behind_s=60), gateway_id="skew-test")
    assert v.check(sample(event_time=NOW - 30_000), NOW)["quality"] == "GOOD"
    assert CLOCK_SKEW.labels("skew-test")._value.get() == -30.0
    assert v.check(sample(event_time=NOW + 10_000), NOW)["quality"] == "UNCERTAIN"
    assert CLOCK_SKEW.labels("skew-test")._value.get() == 10.0
    assert v.check(sample(event_time=NOW - 120_000), NOW)["quality"] == "UNCERTAIN"
    assert v.check(sample(event_time=NOW - 120_000, quality="BAD"), NOW)["quality"] == "BAD"
    assert v.skew_flagged == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"machine_id": ""}, INVALID_RECORD),
        ({"sensor": None}, INVALID_RECORD),
        ({"value": "21.5"}, INVALID_RECORD),
        ({"value": float("nan")}, INVALID_RECORD),
        ({"value": None}, INVALID_RECORD),
        ({"event_time": "yesterday"}, INVALID_RECORD),
        ({"event_time": 1_700_000_000}, INVALID_RECORD),  # seconds, not milliseconds: year 1970
        ({"quality": "OK"}, INVALID_RECORD),
        ({"unit": None}, UNIT_ERROR),
    ],
)
def test_schema_violations_are_rejected_with_a_reason_code(change: dict[str, Any], code: str) -> None:
    with pytest.raises(Invalid) as e:
        Validator().check(sample(**change), NOW)
    assert e.value.code == code and e.value.reason


def test_a_bad_value_without_a_number_is_kept_as_nan() -> None:
    r = Validator().check(sample(value=None, quality="BAD"), NOW)
    assert math.isnan(r["value"]) and r["quality"] == "BAD"
    assert math.isnan(Validator().check(sample(value=float("inf"), quality="BAD"), NOW)["value"])
    with pytest.raises(Invalid):
        Validator().check(sample(value=None, quality="UNCERTAIN"), NOW)


def test_booleans_and_integers_are_numbers_and_quality_is_case_insensitive() -> None:
    r = Validator().check(sample(value=True, unit="1", quality="uncertain"), NOW)
    assert r["value"] == 1.0 and r["quality"] == "UNCERTAIN"
    assert Validator().check(sample(value=7), NOW)["value"] == 7.0


@given(st.floats(min_value=-1e6, max_value=1e6))
def test_fahrenheit_conversion_is_the_published_formula(f: float) -> None:
    r = Validator().check(sample(unit="degF", value=f), NOW)
    assert r["value"] == pytest.approx((f - 32.0) * 5.0 / 9.0, rel=1e-12, abs=1e-9)


# ------------------------------------------------------------------------------------------ MQTT side
def test_topic_patterns_capture_and_subscribe() -> None:
    p = TopicPattern(TopicMapping(pattern="plant/{plant}/line/{line}/machine/{machine}/{sensor}"))
    assert p.filter == "plant/+/line/+/machine/+/+"
    assert p.match("plant/p1/line/l2/machine/m007/pressure") == {
        "plant": "p1",
        "line": "l2",
        "machine": "m007",
        "sensor": "pressure",
    }
    assert p.match("plant/p1/line/l2/machine/m007") is None
    assert p.match("site/p1/line/l2/machine/m007/pressure") is None
    fixed = TopicPattern(TopicMapping(pattern="hall2/+/{machine}/{sensor}", plant="p2", line="l9"))
    assert fixed.filter == "hall2/+/+/+"
    assert fixed.match("hall2/x/m1/temp") == {"plant": "p2", "line": "l9", "machine": "m1", "sensor": "temp"}
    with pytest.raises(ValueError, match="captures no"):
        TopicPattern(TopicMapping(pattern="a/{machine}/{sensor}"))
    with pytest.raises(ValueError, match="unknown placeholder"):
        TopicPattern(TopicMapping(pattern="a/{plant}/{line}/{machine}/{sensr}"))


def test_payload_times() -> None:
    assert parse_time(1_767_225_600_123, "epoch_ms") == 1_767_225_600_123
    assert parse_time(1_767_225_600.5, "epoch_s") == 1_767_225_600_500
    assert parse_time("2026-01-01T00:00:00.250+00:00", "iso8601") == NOW + 250
    assert parse_time("2026-01-01T01:00:00+01:00", "iso8601") == NOW
    assert isinstance(parse_time("2026-01-01T00:00:00", "iso8601"), str), "no offset: not guessed"
    assert parse_time("soon", "epoch_ms") == "soon"


@pytest.fixture()
def emitter(tmp_path: Path) -> Iterator[Emitter]:
    """An Emitter on a forwarder that is never started (nothing is sent)."""
    fwd = Forwarder(
        KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"),
        {READINGS: "readings", DEAD_LETTERS: "dlq"},
        SpoolSettings(dir=tmp_path),
    )
    yield Emitter(fwd, Validator(gateway_id="mqtt-test"), seq_start=1)
    fwd.link.close(timeout=0.1)


def test_mqtt_messages_become_readings_or_dead_letters(emitter: Emitter) -> None:
    config = MqttConfig(
        gateway_id="mqtt-test",
        topics=[
            {
                "pattern": "plant/{plant}/line/{line}/machine/{machine}/{sensor}",
                "units": {"temperature": "Cel"},
            }
        ],
    )
    gw = MqttGateway(config, emitter)
    serde = Serde()
    topic = "plant/p1/line/l1/machine/m001/temperature"

    def run(payload: Any, t: str = topic) -> tuple[int, bytes | None, dict[str, Any]]:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        kind, key, value = gw.prepare(t, raw)
        return kind, key, serde.decode(value).record

    kind, key, rec = run({"value": 212, "ts": NOW, "unit": "degF", "quality": "GOOD"})
    assert (kind, key) == (READINGS, b"m001")
    assert rec["value"] == pytest.approx(100.0) and rec["unit"] == "Cel" and rec["event_time"] == NOW
    assert rec["gateway_id"] == "mqtt-test" and rec["seq"] == 1
    kind, _, rec = run(21.5)  # a bare number: unit from the mapping, time from the gateway clock
    assert kind == READINGS and rec["unit"] == "Cel" and abs(rec["event_time"] - time.time() * 1000) < 60_000
    for payload, code in [
        (b"{not json", DECODE_ERROR),
        (b"\xff\xfe", DECODE_ERROR),
        (["a", "list"], DECODE_ERROR),
        ({"ts": NOW}, INVALID_RECORD),
        ({"value": "hot", "ts": NOW}, INVALID_RECORD),
        ({"value": 1.0, "ts": NOW, "unit": "furlong/fortnight"}, UNIT_ERROR),
    ]:
        kind, key, dl = run(payload)
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        assert kind == DEAD_LETTERS and key == b"m001"
        assert dl["stage"] == "gateway" and dl["reason_code"] == code and dl["payload"] == raw
        assert dl["topic"] == topic and dl["partition"] == -1 and dl["reason"]
    kind, key, dl = run({"value": 1}, t="some/other/topic")
    assert kind == DEAD_LETTERS and key is None and dl["reason_code"] == INVALID_RECORD
    assert emitter.read == 9 and emitter.readings == 2 and emitter.dead_letters == 7


def test_a_rejected_opcua_value_carries_its_description_as_payload(emitter: Emitter) -> None:
    built = []

    def payload() -> bytes:
        built.append(1)
        return b'{"node": "ns=2;s=p1/l1/m001/temperature", "value": "\'warm\'"}'

    kind, key, value = emitter.prepare(sample(value="warm", payload=payload), NOW)
    dl = Serde().decode(value).record
    assert (
        kind == DEAD_LETTERS
        and key == b"m001"
        and dl["payload"] == payload()
        and dl["reason_code"] == INVALID_RECORD
    )
    kind, _, _ = emitter.prepare(sample(payload=payload), NOW)
    assert kind == READINGS and len(built) == 2, "the description is built only for a dead letter"


@pytest.mark.parametrize(
    ("event_time", "hint"),
    [
        (NOW // 1000, "epoch seconds?"),
        (NOW * 1000, "epoch microseconds?"),
        (NOW * 1_000_000, "epoch nanoseconds?"),
        (5, None),
    ],
)
def test_an_event_time_in_another_unit_is_named_in_the_reason(event_time: int, hint: str | None) -> None:
    with pytest.raises(Invalid) as caught:
        Validator().check(sample(event_time=event_time), NOW)
    assert "is not between 2000 and 2100" in caught.value.reason
    if hint is None:
        assert "?" not in caught.value.reason
    else:
        assert hint in caught.value.reason


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        (b"[" * 100_000, DECODE_ERROR, "nested too deeply"),
        (b'{"value": 1' + b"0" * 400 + b"}", INVALID_RECORD, "beyond a float"),
        (b'{"value": 1.0, "ts": 1e306}', INVALID_RECORD, "not epoch milliseconds"),
    ],
)
def test_payloads_that_used_to_raise_become_dead_letters(
    emitter: Emitter, payload: bytes, code: str, words: str
) -> None:
    """Each raised out of MqttGateway.prepare (RecursionError, OverflowError), which in the MQTT
    callback ended the client's network thread (see test_hostile_payloads.py for the whole path)."""
    config = MqttConfig(
        topics=[TopicMapping(pattern="p/{plant}/{line}/{machine}/{sensor}", unit="bar")],
        payload=PayloadFormat(time_format="epoch_s"),
    )
    gateway = MqttGateway(config, emitter)
    kind, _, value = gateway.prepare("p/p1/l1/m1/pressure", payload)
    record = Serde().decode(value).record
    assert kind == DEAD_LETTERS and record["reason_code"] == code and words in record["reason"]


def test_a_reading_too_large_for_kafka_becomes_a_bounded_dead_letter(emitter: Emitter) -> None:
    """A lot id of a megabyte used to make a Reading over message.max.bytes (1 MB): refused by the
    producer, taken for a broker outage, replayed first for ever (see test_hostile_payloads.py)."""
    config = MqttConfig(topics=[TopicMapping(pattern="p/{plant}/{line}/{machine}/{sensor}", unit="bar")])
    payload = json.dumps(
        {"value": 1.0, "ts": time.time_ns() // 1_000_000, "lot_id": "L" * 1_000_000}
    ).encode()
    kind, key, value = MqttGateway(config, emitter).prepare("p/p1/l1/m1/pressure", payload)
    record = Serde().decode(value).record
    assert kind == DEAD_LETTERS and key == b"m1" and record["reason_code"] == INVALID_RECORD
    assert "the encoded reading has" in record["reason"] and "cut to its first 65536" in record["reason"]
    assert record["payload"] == payload[:65536] and len(value) < 100_000
