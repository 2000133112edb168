"""Generated documentation: the configuration table in README.md.

``python -m infra.docs`` rewrites the block between the markers in README.md from the settings
classes themselves; a test fails when the README is stale.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"

SETTINGS = [
    ("schemas.config", "KafkaSettings"),
    ("schemas.config", "TopicSettings"),
    ("schemas.config", "SerdeSettings"),
    ("infra.stack", "StackSettings"),
    ("ingest.config", "ProducerSettings"),
    ("ingest.config", "SimulatorSettings"),
    ("ingest.config", "SpoolSettings"),
    ("ingest.config", "ForwarderSettings"),
    ("streams.config", "StreamSettings"),
    ("sinks.config", "ClickHouseSettings"),
    ("sinks.config", "SinkSettings"),
    ("sinks.domain_metrics", "MetricsSettings"),
    ("streams.spc.config", "SpcSettings"),
]


def settings_classes() -> list[type[BaseSettings]]:
    out: list[type[BaseSettings]] = []
    for mod, name in SETTINGS:
        try:
            cls = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
        out.append(cls)
    return out


def config_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            var = (alias if isinstance(alias, str) else f"{prefix}{name}").upper()
            desc = (field.description or "").strip()
            desc = re.sub(rf"^{re.escape(var)}:\s*", "", desc).replace("|", "\\|").replace("\n", " ")
            default = field.default
            shown = "" if default is None else str(default)
            if field.annotation is not None and "SecretStr" in str(field.annotation):
                shown = "(secret)"
            rows.append(f"| `{var}` | `{shown}` | {desc} |" if shown else f"| `{var}` | | {desc} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    block = f"{BEGIN}\n{config_table()}\n{END}"
    if BEGIN not in readme:
        return readme
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md config table is stale: run python -m infra.docs", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
