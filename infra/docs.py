"""Generated documentation: the configuration tables in README.md and docs/.

``python -m infra.docs`` rewrites the block between the markers in each document from the settings
classes themselves (``infra.settings``); ``--check`` fails when a document is stale (a test does too).
The README has the pipeline's settings; the anomaly detector's and Flink's are beside their docs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from infra.settings import SETTINGS, env_name, settings_classes

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"
# document -> the settings classes (by class name) whose table it holds
DOCUMENTS = {
    README: [name for _, name in SETTINGS if name not in ("AnomalySettings", "FlinkSettings")],
    ROOT / "docs" / "anomaly.md": ["AnomalySettings"],
    ROOT / "docs" / "scaling-out.md": ["FlinkSettings"],
}


def config_table(classes: list[type[BaseSettings]] | None = None) -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    seen: set[str] = set()
    for cls in settings_classes() if classes is None else classes:
        for name, field in cls.model_fields.items():
            var = env_name(cls, name, field)
            if var in seen:  # read by two groups (MILLSTREAM_DATA_DIR): one row
                continue
            seen.add(var)
            desc = (field.description or "").strip()
            desc = re.sub(rf"^{re.escape(var)}:\s*", "", desc).replace("|", "\\|").replace("\n", " ")
            default = field.get_default(call_default_factory=True)
            shown = "" if default is None or default == {} else str(default)
            if field.annotation is not None and "SecretStr" in str(field.annotation):
                shown = "(secret)"
            rows.append(f"| `{var}` | `{shown}` | {desc} |" if shown else f"| `{var}` | | {desc} |")
    return "\n".join(rows)


def render(text: str, path: Path = README) -> str:
    """``text`` (the document at ``path``) with its table block regenerated."""
    names = DOCUMENTS[path]
    classes = [c for c in settings_classes() if c.__name__ in names]
    block = f"{BEGIN}\n{config_table(classes)}\n{END}"
    if BEGIN not in text:
        return text
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


def main() -> int:
    stale = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        new = render(text, path)
        if new == text:
            continue
        if "--check" in sys.argv:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(new, encoding="utf-8")
    if stale:
        print(f"config table stale in {', '.join(stale)}: run python -m infra.docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
