"""Window spec parsing and validation."""

from __future__ import annotations

import pytest

from streams.windows import WindowSpec, WindowSpecError, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("tumbling:10s", WindowSpec("tumbling", size_ms=10_000)),
        ("tumbling:250ms", WindowSpec("tumbling", size_ms=250)),
        ("hopping:60s/10s", WindowSpec("hopping", size_ms=60_000, step_ms=10_000)),
        ("hopping:1h/15m", WindowSpec("hopping", size_ms=3_600_000, step_ms=900_000)),
        ("sliding:10s", WindowSpec("sliding", size_ms=10_000)),
        ("session:30s", WindowSpec("session", gap_ms=30_000)),
        (" Session : 2m ", WindowSpec("session", gap_ms=120_000)),
    ],
)
def test_parse(text: str, spec: WindowSpec) -> None:
    assert WindowSpec.parse(text) == spec
    assert WindowSpec.parse(str(spec)) == spec


def test_keyword_construction_matches_interface() -> None:
    spec = WindowSpec(kind="tumbling", size_ms=10_000, step_ms=None, gap_ms=None)
    assert str(spec) == "tumbling:10s"
    assert str(WindowSpec("tumbling", size_ms=1_500)) == "tumbling:1500ms"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tumbling",
        "tumbling:",
        "tumbling:10",
        "tumbling:0s",
        "tumbling:-5s",
        "tumbling:1.5s",
        "hopping:60s",
        "hopping:10s/60s",
        "weekly:1h",
        "session:10d",
        "sliding:10s/5s",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(WindowSpecError):
        WindowSpec.parse(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "tumbling"},
        {"kind": "tumbling", "size_ms": 10, "gap_ms": 5},
        {"kind": "hopping", "size_ms": 10},
        {"kind": "session", "size_ms": 10},
        {"kind": "sliding", "size_ms": 0},
        {"kind": "tumbling", "size_ms": True},
        {"kind": "nope", "size_ms": 10},
    ],
)
def test_constructor_rejects(kwargs: dict) -> None:
    with pytest.raises(WindowSpecError):
        WindowSpec(**kwargs)


def test_durations() -> None:
    assert [parse_duration_ms(t) for t in ("1ms", "1s", "1m", "1h")] == [1, 1_000, 60_000, 3_600_000]
    assert issubclass(WindowSpecError, ValueError)  # pydantic validators turn it into a settings error
