"""Edge validation: what a gateway checks before a device value becomes a ``Reading``.

In order, for every value a protocol bridge extracted (a :class:`Sample`):

1. **Schema**: plant, line, machine and sensor are non-empty strings; the quality is GOOD,
   UNCERTAIN or BAD; the value is a finite number (booleans count as 0/1) -- except that a BAD
   value may be missing or non-finite (an OPC UA Bad status carries no value, Part 4 7.7.1): it is
   kept as NaN with quality BAD, so the outage of a sensor stays visible; the event time is an
   integer epoch-ms between 2000 and 2100; a unit is given. Otherwise: dead letter
   ``invalid_record``.
2. **Units**, table-driven (:data:`CONVERSIONS`, extendable per gateway): aliases (``degF``,
   ``°F``, ``psi``, ``in/s``, ...) are mapped to UCUM codes, then converted to the canonical unit of
   their quantity (``[degF]`` -> ``Cel``, ``[psi]`` / ``mbar`` -> ``bar``, ``[in_i]/s`` -> ``mm/s``,
   ...). A unit that is neither canonical nor convertible, or that converts to something else than
   the sensor's ``expected_units`` entry, is a dead letter ``unit_error`` (``unknown_units: pass``
   lets unknown units through unchanged).
3. **Ranges** per sensor (in canonical units): outside ``uncertain_outside`` the quality becomes at
   least UNCERTAIN, outside ``bad_outside`` BAD. Quality is only ever lowered.
4. **Clock skew**: device time minus gateway time, as a gauge per gateway; beyond
   ``max_clock_ahead_s`` (device clock in the future) or ``max_clock_behind_s`` (older than that)
   the value is flagged: quality at least UNCERTAIN and a counter. "Behind" also grows with
   transport delay (an MQTT session replayed after a gateway outage), hence the wider default.

Rejected values go to the dead-letter topic (``DeadLetter``, stage ``gateway``) with the original
payload: never silently dropped (:class:`ingest.bridge.Emitter` encodes both kinds and hands them
to the forwarder).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.exceptions import INVALID_RECORD

UNIT_ERROR = "unit_error"
QUALITIES = ("GOOD", "UNCERTAIN", "BAD")
_RANK = {q: i for i, q in enumerate(QUALITIES)}
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z

UNIT_CONVERSIONS = Counter(
    "millstream_gateway_unit_conversions", "Values converted to a canonical unit.", ["from_unit", "to_unit"]
)
RANGE_FLAGS = Counter(
    "millstream_gateway_range_flags",
    "Values whose quality a range rule lowered, by new quality.",
    ["quality"],
)
CLOCK_SKEW = Gauge(
    "millstream_gateway_clock_skew_seconds",
    "Device time minus gateway time of the last value (positive: device clock ahead).",
    ["gateway"],
)
CLOCK_SKEW_FLAGS = Counter(
    "millstream_gateway_clock_skew_flags", "Values flagged UNCERTAIN for clock skew.", ["gateway"]
)


class Conversion(BaseModel):
    """``value_in_to = value * scale + offset``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str
    scale: float
    offset: float = 0.0


# Sources: 1 in = 25.4 mm exactly and 1 lbf/in2 = 6894.757293168 Pa (NIST SP 811, 2008, appendix B.8);
# t/degC = (t/degF - 32) * 5/9 and t/degC = T/K - 273.15 (NIST SP 811, 4.2.1.1); 1 bar = 1e5 Pa.
CONVERSIONS: dict[str, Conversion] = {
    "[degF]": Conversion(to="Cel", scale=5.0 / 9.0, offset=-32.0 * 5.0 / 9.0),
    "K": Conversion(to="Cel", scale=1.0, offset=-273.15),
    "[psi]": Conversion(to="bar", scale=6894.757293168e-5),
    "mbar": Conversion(to="bar", scale=1e-3),
    "hPa": Conversion(to="bar", scale=1e-3),
    "kPa": Conversion(to="bar", scale=1e-2),
    "Pa": Conversion(to="bar", scale=1e-5),
    "MPa": Conversion(to="bar", scale=10.0),
    "[in_i]/s": Conversion(to="mm/s", scale=25.4),
    "m/s": Conversion(to="mm/s", scale=1000.0),
    "mA": Conversion(to="A", scale=1e-3),
    "Wh": Conversion(to="kWh", scale=1e-3),
    "MWh": Conversion(to="kWh", scale=1e3),
}
ALIASES: dict[str, str] = {
    "degF": "[degF]",
    "°F": "[degF]",
    "degC": "Cel",
    "°C": "Cel",
    "psi": "[psi]",
    "in/s": "[in_i]/s",
    "ips": "[in_i]/s",
    "kelvin": "K",
}
CANONICAL = frozenset(
    {"Cel", "bar", "mm/s", "A", "kWh", "dB", "1", "%", "V", "W", "kW", "Hz", "s", "mm", "kg"}
)


class RangeRule(BaseModel):
    """Plausible ranges of one sensor, in its canonical unit: ``[low, high]`` with low <= high."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uncertain_outside: tuple[float, float] | None = None
    bad_outside: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        for name in ("uncertain_outside", "bad_outside"):
            bounds = getattr(self, name)
            if bounds is not None and not bounds[0] <= bounds[1]:  # also catches NaN
                low, high = bounds
                msg = f"{name} [{low:g}, {high:g}]: the low end is above the high end; write [low, high]"
                raise ValueError(msg)
        return self


class ValidationConfig(BaseModel):
    """The ``validation:`` section of a gateway configuration file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unknown_units: Literal["reject", "pass"] = "reject"
    unit_aliases: dict[str, str] = Field(default_factory=dict)
    conversions: dict[str, Conversion] = Field(default_factory=dict)
    canonical_units: list[str] = Field(default_factory=list)
    expected_units: dict[str, str] = Field(default_factory=dict)
    ranges: dict[str, RangeRule] = Field(default_factory=dict)
    max_clock_ahead_s: float = Field(5.0, gt=0)
    max_clock_behind_s: float = Field(600.0, gt=0)

    def unit_tables(self) -> tuple[dict[str, str], dict[str, Conversion], frozenset[str]]:
        """(aliases, conversions, canonical units): the built-in tables extended by this section."""
        conversions = {**CONVERSIONS, **self.conversions}
        canonical = CANONICAL | set(self.canonical_units) | {conv.to for conv in conversions.values()}
        return {**ALIASES, **self.unit_aliases}, conversions, frozenset(canonical)

    def static_unit_problem(self, unit: str, sensor: str | None = None) -> str | None:
        """Why a unit fixed in the configuration (not sent by the device) would make every value of
        ``sensor`` a dead letter; None when it is fine. Same rules as :meth:`Validator.check`."""
        aliases, conversions, canonical = self.unit_tables()
        u = aliases.get(unit, unit)
        conv = conversions.get(u)
        if conv is None and u not in canonical and self.unknown_units == "reject":
            known = sorted({*aliases, *conversions, *canonical})
            close = difflib.get_close_matches(unit, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return (
                f"unknown unit {unit!r}{hint}: add it with unit_aliases, conversions or canonical_units, "
                "or set validation.unknown_units: pass"
            )
        expected = self.expected_units.get(sensor) if sensor is not None else None
        to = conv.to if conv is not None else u
        if expected is not None and to != expected:
            return f"unit {unit!r} is not convertible to {expected!r} (validation.expected_units)"
        return None


class Invalid(Exception):  # noqa: N818 - a verdict, not an error of the gateway
    """A value that cannot become a Reading; ``code`` is the dead letter's reason code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(slots=True)
class Sample:
    """One value as a protocol bridge extracted it, not yet trusted."""

    source: str  # MQTT topic or OPC UA node id
    payload: bytes | Callable[[], bytes]  # the original bytes for a dead letter (or how to make them)
    plant: Any
    line: Any
    machine_id: Any
    sensor: Any
    unit: Any
    value: Any
    event_time: Any
    quality: Any = "GOOD"
    lot_id: Any = None


class Validator:
    """Applies a :class:`ValidationConfig` to samples. One per gateway; not thread-safe."""

    def __init__(self, config: ValidationConfig | None = None, gateway_id: str = "gateway") -> None:
        self.config = c = config or ValidationConfig()
        self.gateway_id = gateway_id
        self.aliases, self.conversions, self.canonical = c.unit_tables()
        self.ranges = c.ranges
        self._ahead_ms = c.max_clock_ahead_s * 1000
        self._behind_ms = c.max_clock_behind_s * 1000
        self._skew = CLOCK_SKEW.labels(gateway_id)
        self._skew_flags = CLOCK_SKEW_FLAGS.labels(gateway_id)
        self.skew_flagged = 0
        self.range_flagged = 0

    def normalise_unit(self, unit: str, value: float) -> tuple[str, float]:
        """The canonical unit and the value in it; raises :class:`Invalid` for unknown units."""
        u = self.aliases.get(unit, unit)
        conv = self.conversions.get(u)
        if conv is not None:
            UNIT_CONVERSIONS.labels(u, conv.to).inc()
            return conv.to, value * conv.scale + conv.offset
        if u in self.canonical or self.config.unknown_units == "pass":
            return u, value
        raise Invalid(UNIT_ERROR, f"unknown unit {unit!r}")

    def check(self, s: Sample, now_ms: int) -> dict[str, Any]:
        """The Reading (without ``seq``) for a sample, or :class:`Invalid`."""
        for name in ("plant", "line", "machine_id", "sensor"):
            v = getattr(s, name)
            if not isinstance(v, str) or not v:
                raise Invalid(INVALID_RECORD, f"{name} missing or not a non-empty string: {v!r}")
        quality = s.quality.upper() if isinstance(s.quality, str) else s.quality
        if quality not in _RANK:
            raise Invalid(INVALID_RECORD, f"{s.sensor}: quality {s.quality!r} is not GOOD, UNCERTAIN or BAD")
        value = s.value
        if isinstance(value, bool):
            value = float(value)
        elif isinstance(value, int | float):
            try:
                value = float(value)
            except OverflowError:  # an integer beyond the float range (JSON allows any length)
                digits = int(value.bit_length() * math.log10(2)) + 1
                reason = f"{s.sensor}: value is an integer of about {digits} digits, beyond a float"
                raise Invalid(INVALID_RECORD, reason) from None
            if not math.isfinite(value):
                if quality != "BAD":
                    raise Invalid(INVALID_RECORD, f"{s.sensor}: value is {value}")
                value = math.nan
        elif value is None and quality == "BAD":
            value = math.nan  # a Bad status carries no value (OPC UA Part 4, 7.7.1): kept as NaN + BAD
        else:
            raise Invalid(INVALID_RECORD, f"{s.sensor}: value is not a number: {value!r}")
        t = s.event_time
        if isinstance(t, bool) or not isinstance(t, int):
            raise Invalid(INVALID_RECORD, f"{s.sensor}: event time is not epoch milliseconds: {t!r}")
        if not MIN_EVENT_MS <= t < MAX_EVENT_MS:
            raise Invalid(
                INVALID_RECORD, f"{s.sensor}: event time {t} is not between 2000 and 2100{_unit_hint(t)}"
            )
        if not isinstance(s.unit, str) or not s.unit:
            raise Invalid(UNIT_ERROR, f"{s.sensor}: no unit")
        unit, value = self.normalise_unit(s.unit, value)
        expected = self.config.expected_units.get(s.sensor)
        if expected is not None and unit != expected:
            raise Invalid(UNIT_ERROR, f"{s.sensor}: unit {s.unit!r} is not convertible to {expected!r}")
        rule = self.ranges.get(s.sensor)
        if rule is not None:
            lowered = _range_quality(rule, value)
            if _RANK[lowered] > _RANK[quality]:
                quality = lowered
                self.range_flagged += 1
                RANGE_FLAGS.labels(quality).inc()
        skew = t - now_ms
        self._skew.set(skew / 1000)
        if (skew > self._ahead_ms or -skew > self._behind_ms) and quality == "GOOD":
            quality = "UNCERTAIN"
            self.skew_flagged += 1
            self._skew_flags.inc()
        lot = s.lot_id if isinstance(s.lot_id, str) and s.lot_id else None
        return {
            "plant": s.plant,
            "line": s.line,
            "machine_id": s.machine_id,
            "sensor": s.sensor,
            "unit": unit,
            "event_time": t,
            "value": value,
            "quality": quality,
            "gateway_id": self.gateway_id,
            "seq": 0,
            "lot_id": lot,
        }


def _unit_hint(t: int) -> str:
    """Why an event time is out of range, when it is a plausible time in another unit."""
    if MIN_EVENT_MS // 1000 <= t < MAX_EVENT_MS // 1000:
        return " (epoch seconds? the gateway expects milliseconds: see the time format setting)"
    if MIN_EVENT_MS * 1000 <= t < MAX_EVENT_MS * 1000:
        return " (epoch microseconds? the gateway expects milliseconds)"
    if MIN_EVENT_MS * 1_000_000 <= t < MAX_EVENT_MS * 1_000_000:
        return " (epoch nanoseconds? the gateway expects milliseconds)"
    return ""


def _range_quality(rule: RangeRule, value: float) -> str:
    if rule.bad_outside is not None and not rule.bad_outside[0] <= value <= rule.bad_outside[1]:
        return "BAD"
    if (
        rule.uncertain_outside is not None
        and not rule.uncertain_outside[0] <= value <= rule.uncertain_outside[1]
    ):
        return "UNCERTAIN"
    return "GOOD"
