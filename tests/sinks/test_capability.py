"""v_capability_p: Cp, Cpk, Pp and Ppk per (machine, sensor) and period from the stored windows and the
specification limits of `machines`, checked against a numpy computation from the readings themselves."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_machine_latest import write

from sinks import metadata
from sinks.config import ClickHouseSettings

MINUTE = 60_000
HOUR = 60 * MINUTE
COLUMNS = "machine_id, sensor, toUnixTimestamp(period_start) * 1000, windows, n, mean, sigma_within, " \
    "sigma_overall, cp, cpk, pp, ppk"  # fmt: skip


def windows_of(readings: list[np.ndarray], start: int, make_window: Any, **key: Any) -> list[dict[str, Any]]:
    """One tumbling minute window per array of readings, its statistics computed by numpy."""
    out = []
    for i, r in enumerate(readings):
        ws = start + i * MINUTE
        out.append(
            make_window(
                window_start=ws,
                window_end=ws + MINUTE,
                count=len(r),
                sum=float(r.sum()),
                mean=float(r.mean()),
                min=float(r.min()),
                max=float(r.max()),
                std=float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                first=float(r[0]),
                last=float(r[-1]),
                **key,
            )  # fmt: skip
        )
    return out


def expected(readings: list[np.ndarray], lsl: float | None, usl: float | None) -> dict[str, Any]:
    """The textbook indices: sigma within = pooled s / c4(d + 1), sigma overall = s of all readings."""
    d = sum(len(r) - 1 for r in readings)
    pooled = math.sqrt(sum((len(r) - 1) * r.var(ddof=1) for r in readings if len(r) > 1) / d)
    c4 = math.sqrt(2 / d) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    within = pooled / c4
    allr = np.concatenate(readings)
    mean, overall = float(allr.mean()), float(allr.std(ddof=1))

    def k(sigma: float) -> float:
        return min(
            (usl - mean) if usl is not None else math.inf, (mean - lsl) if lsl is not None else math.inf
        ) / (3 * sigma)

    two = lsl is not None and usl is not None
    return {
        "n": len(allr), "mean": mean, "sigma_within": within, "sigma_overall": overall,
        "cp": (usl - lsl) / (6 * within) if two else None, "cpk": k(within),  # type: ignore[operator]
        "pp": (usl - lsl) / (6 * overall) if two else None, "ppk": k(overall),  # type: ignore[operator]
    }  # fmt: skip


def rows(ch: Any, sql: str = "SELECT {c} FROM v_capability") -> dict[tuple[str, str, int], dict[str, Any]]:
    names = [c.strip().split("(")[-1].split(")")[0] for c in COLUMNS.split(",")]
    out = {}
    for r in ch.query(sql.format(c=COLUMNS)).result_rows:
        rec = dict(zip(names, r, strict=True))
        out[(rec["machine_id"], rec["sensor"], rec["period_start"])] = rec
    return out


def test_indices_per_hour_match_a_computation_from_the_readings(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(42)
    now = int(time.time() * 1000)
    hour = now - now % (2 * HOUR) - 2 * HOUR  # 2-4 h ago: two whole hours, one 2-hour period
    # Pressure: mean drifting between windows (overall spread > within), both limits.
    press = [6.0 + 0.1 * rng.standard_normal() + 0.05 * rng.standard_normal(12) for _ in range(60)]
    # Vibration: upper limit only, windows of different sizes, one of a single reading.
    vib = [2.5 + 0.3 * rng.standard_normal(int(rng.integers(2, 20))) for _ in range(59)] + [np.array([2.4])]
    # Current: no limits at all (not in the view); noise: a machine not in `machines`.
    # Window 7 of the first hour is written below: first 6 of its readings, then all as a late update.
    records = windows_of(press, hour, make_window, sensor="pressure", unit="bar")
    records = [r for r in records if r["window_start"] != hour + 7 * MINUTE]
    records += windows_of(press[:30], hour + HOUR, make_window, sensor="pressure", unit="bar")
    records += windows_of(vib, hour, make_window, sensor="vibration_rms", unit="mm/s")
    records += windows_of(vib[:10], hour, make_window, sensor="current", unit="A")
    records += windows_of(vib[:10], hour, make_window, machine_id="m9", sensor="noise", unit="dB")
    # Left out: a hopping window and a window older than the lookback.
    records += windows_of(
        [np.array([99.0, 101.0])], hour, make_window, sensor="pressure", window_kind="hopping"
    )
    records += windows_of([np.array([99.0, 101.0])], now - 30 * HOUR, make_window, sensor="pressure")
    write(
        ch,
        ch_settings,
        windows_of([press[7][:6]], hour + 7 * MINUTE, make_window, sensor="pressure", unit="bar"),
    )
    write(ch, ch_settings, records)
    write(
        ch, ch_settings, windows_of([press[7]], hour + 7 * MINUTE, make_window, sensor="pressure", version=1)
    )
    spec = tmp_path / "machines.csv"
    spec.write_text(
        "plant,line,machine_id,sensor,unit,lsl,usl\n"
        "p1,l1,m1,pressure,bar,5.0,7.0\n"
        "p1,l1,m1,vibration_rms,mm/s,,4.5\n"
        "p1,l1,m1,current,A,,\n"
    )
    metadata.load(ch, spec)

    got = rows(ch)
    assert set(got) == {
        ("m1", "pressure", hour),
        ("m1", "pressure", hour + HOUR),
        ("m1", "vibration_rms", hour),
    }
    for key, readings, lsl, usl in [
        (("m1", "pressure", hour), press, 5.0, 7.0),
        (("m1", "pressure", hour + HOUR), press[:30], 5.0, 7.0),
        (("m1", "vibration_rms", hour), vib, None, 4.5),
    ]:
        want = expected(readings, lsl, usl)
        row = got[key]
        assert row["windows"] == len(readings), key
        for name, value in want.items():
            if value is None:
                assert row[name] is None, (key, name)
            else:
                assert row[name] == pytest.approx(value, rel=1e-9), (key, name)
    # The drifting mean makes the process less capable overall than within its windows.
    p = got[("m1", "pressure", hour)]
    assert p["sigma_overall"] > p["sigma_within"] and p["ppk"] < p["cpk"]
    # Other periods and lookbacks: one 2-hour period holds both hours' readings.
    sql = "SELECT {c} FROM v_capability_p(period_minutes = 120, lookback_hours = 5) WHERE sensor = 'pressure'"
    (two,) = rows(ch, sql).values()
    assert (two["period_start"], two["windows"]) == (hour, 90)
    assert two["sigma_overall"] == pytest.approx(
        float(np.concatenate(press + press[:30]).std(ddof=1)), rel=1e-9
    )


def test_a_period_without_spread_has_no_indices(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any, tmp_path: Path
) -> None:
    """A stuck sensor (every reading equal): sigma 0, the indices are NULL rather than infinite."""
    now = int(time.time() * 1000)
    hour = now - now % HOUR - HOUR
    write(
        ch, ch_settings, windows_of([np.full(5, 6.0)] * 3, hour, make_window, sensor="pressure", unit="bar")
    )
    spec = tmp_path / "machines.csv"
    spec.write_text("plant,line,machine_id,sensor,unit,lsl,usl\np1,l1,m1,pressure,bar,5.0,7.0\n")
    metadata.load(ch, spec)
    (row,) = rows(ch).values()
    assert (row["sigma_within"], row["sigma_overall"]) == (0.0, 0.0)
    assert (row["cp"], row["cpk"], row["pp"], row["ppk"]) == (None, None, None, None)
