"""The README's configuration table is generated from the settings classes and must be current."""

from __future__ import annotations

from infra import docs


def test_readme_config_table_is_current() -> None:
    text = docs.README.read_text()
    assert docs.BEGIN in text and docs.END in text
    assert docs.render(text) == text, "README config table is stale: run `make docs`"


def test_every_settings_field_is_in_the_table() -> None:
    table = docs.config_table()
    for cls in docs.settings_classes():
        for name in cls.model_fields:
            assert f"{name}".upper() in table.upper(), f"{cls.__name__}.{name} missing from the table"
