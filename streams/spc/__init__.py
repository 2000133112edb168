"""Statistical process control: control charts, run rules, capability and a streaming monitor.

Plain Python objects with explicit JSON-serialisable state (``snapshot()``/``restore()``); no engine
imports. The offline CLI (``millstream spc``) and :class:`SpcMonitor` drive the same
:class:`~streams.spc.charts.Chart` core: ``fit`` (phase I) then ``judge`` (phase II).

Names are imported lazily so that ``streams.spc.cli`` stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Chart": "streams.spc.charts",
    "ChartConfig": "streams.spc.charts",
    "Count": "streams.spc.charts",
    "Point": "streams.spc.charts",
    "Subgroup": "streams.spc.charts",
    "chart_types": "streams.spc.charts",
    "make_chart": "streams.spc.charts",
    "Capability": "streams.spc.capability",
    "capability": "streams.spc.capability",
    "c4": "streams.spc.constants",
    "d2": "streams.spc.constants",
    "d3": "streams.spc.constants",
    "RuleTracker": "streams.spc.rules",
    "RULE_SETS": "streams.spc.rules",
    "MonitorConfig": "streams.spc.monitor",
    "SpcMonitor": "streams.spc.monitor",
    "SpcSignal": "streams.spc.monitor",
    "SpcOperator": "streams.spc.operator",
    "SpcSettings": "streams.spc.config",
    "SpcError": "streams.spc.exceptions",
    "stateful_classes": "streams.spc.state",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'streams.spc' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)
