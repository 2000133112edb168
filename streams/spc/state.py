"""Explicit, JSON-serialisable operator state.

Every class that keeps state between records subclasses :class:`Stateful`: ``snapshot()`` returns a
plain dict of JSON types (no NaN or infinity) and ``restore(state)`` loads one into an instance, so an
engine can persist it anywhere and a restarted worker continues exactly where it stopped. Subclasses
register themselves; :func:`stateful_classes` lets a contract test discover every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from streams.spc.exceptions import SpcStateError

_REGISTRY: dict[str, type[Stateful]] = {}


class Stateful:
    """Base of every SPC object with state. ``state_type`` names it inside its snapshots."""

    state_type: ClassVar[str] = ""
    state_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.state_type:
            _REGISTRY[cls.state_type] = cls

    def snapshot(self) -> dict[str, Any]:  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def restore(self, state: Mapping[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _header(self) -> dict[str, Any]:
        return {"type": self.state_type, "v": self.state_version}

    def _check_header(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            msg = f"{self.state_type} snapshot must be a mapping, got {type(state).__name__}"
            raise SpcStateError(msg)
        if state.get("type") != self.state_type or state.get("v") != self.state_version:
            msg = (
                f"cannot restore a {state.get('type')!r} v{state.get('v')} snapshot into "
                f"{self.state_type!r} v{self.state_version}"
            )
            raise SpcStateError(msg)


def stateful_classes() -> dict[str, type[Stateful]]:
    """Every registered stateful class, by ``state_type`` (imports the modules that define them)."""
    from streams.spc import attributes, memory, monitor, operator, rules, shewhart  # noqa: F401  (registration)

    return dict(_REGISTRY)


def json_float(x: float | None) -> float | None:
    """``x`` if finite, else None: snapshots and JSON output never carry NaN, infinity or -0.0."""
    if x is None or not math.isfinite(x):
        return None
    return float(x) + 0.0  # -0.0 + 0.0 == +0.0
