"""The configuration tables (README.md, docs/anomaly.md, docs/scaling-out.md) are generated from the
settings classes and must be current and complete."""

from __future__ import annotations

import pytest

from infra import docs
from infra.settings import SETTINGS, env_name, settings_classes


@pytest.mark.parametrize("path", list(docs.DOCUMENTS), ids=lambda p: p.name)
def test_config_table_is_current(path: docs.Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert docs.BEGIN in text and docs.END in text, f"{path.name} has no config table block"
    assert docs.render(text, path) == text, f"{path.name} config table is stale: run `make docs`"


def test_every_setting_of_every_class_is_in_one_table() -> None:
    classes = settings_classes()
    assert len(classes) == len(SETTINGS)  # every group is installed and listed
    assigned = [name for names in docs.DOCUMENTS.values() for name in names]
    assert sorted(assigned) == sorted(name for _, name in SETTINGS)  # each group in exactly one document
    tables = "\n".join(p.read_text(encoding="utf-8") for p in docs.DOCUMENTS)
    for cls in classes:
        for name, field in cls.model_fields.items():
            assert f"| `{env_name(cls, name, field)}` |" in tables, f"{cls.__name__}.{name} missing"
