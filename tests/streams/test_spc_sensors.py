"""Only the sensors a quality engineer chose get control charts (MILLSTREAM_SPC_SENSORS); the windows
of every sensor still come out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.serde import Serde
from streams.config import StreamSettings
from streams.pipeline import Outputs, PartitionProcessor
from streams.spc.config import SpcSettings

T0 = 1_700_000_000_000


def run(spc: SpcSettings) -> Outputs:
    """Two sensors of one machine, 40 one-reading windows each; the last windows jump 10 sigma."""
    serde = Serde()
    encode = serde.encoder("Reading", "readings")
    stream = StreamSettings(window="tumbling:1s", idle_timeout_ms=0)
    proc = PartitionProcessor(stream, serde, 0, "readings", spc)
    out = Outputs()
    for i in range(40):
        for sensor, base in (("temperature", 60.0), ("part_count", 100.0)):
            value = base + (0.1 if i % 2 else -0.1) + (10.0 if i >= 35 else 0.0)
            record = {
                "plant": "p1", "line": "l1", "machine_id": "m001", "sensor": sensor, "unit": "x",
                "event_time": T0 + 1000 * i, "value": value, "quality": "GOOD", "gateway_id": "gw",
                "seq": 2 * i, "lot_id": None,
            }  # fmt: skip
            out.extend(proc.handle(encode(record), i, b"m001", wall_ms=T0 + 1000 * i))
    out.extend(proc.close_all())
    return out


def test_every_sensor_is_charted_by_default() -> None:
    out = run(SpcSettings(phase1_count=20))
    assert {s["sensor"] for s in out.spc_signals} == {"temperature", "part_count"}


def test_only_the_chosen_sensors_are_charted() -> None:
    out = run(SpcSettings(phase1_count=20, sensors=" temperature "))
    assert out.spc_signals and {s["sensor"] for s in out.spc_signals} == {"temperature"}
    assert {w["sensor"] for w in out.windows} == {"temperature", "part_count"}


def test_a_malformed_sensor_list_is_a_clear_config_error() -> None:
    with pytest.raises(ValidationError, match="empty sensor name"):
        SpcSettings(sensors="temperature,,pressure")
