"""Every settings class, the environment variable of each field, and masking of secrets.

One list serves the generated configuration tables (``infra.docs``), ``millstream config`` and the
warning about ``MILLSTREAM_*`` variables that no setting reads (a typo in a manifest is otherwise
silent: the setting keeps its default).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings

# (module, class); each group's rows go to the table of the document named in infra.docs.
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
    ("streams.anomaly.config", "AnomalySettings"),
    ("streams.flink.config", "FlinkSettings"),
]
PREFIX = "MILLSTREAM_"
MASK = "***"
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret|token|credential|api[._-]?key|private[._-]?key", re.IGNORECASE
)


def settings_classes(names: Iterable[tuple[str, str]] = SETTINGS) -> list[type[BaseSettings]]:
    """The settings classes of the installed packages (an optional part that is not installed is left out)."""
    out: list[type[BaseSettings]] = []
    for mod, name in names:
        try:
            cls = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
        out.append(cls)
    return out


def env_name(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from."""
    alias = field.validation_alias
    prefix = str(cls.model_config.get("env_prefix", ""))
    return (alias if isinstance(alias, str) else f"{prefix}{name}").upper()


def known_env_names() -> set[str]:
    return {env_name(cls, n, f) for cls in settings_classes() for n, f in cls.model_fields.items()}


def unknown_env_names(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``MILLSTREAM_*`` variables that no setting reads, each with the closest known name or None."""
    known = known_env_names()
    out: list[tuple[str, str | None]] = []
    for var in sorted(v.upper() for v in environ if v.upper().startswith(PREFIX)):
        if var not in known:
            close = difflib.get_close_matches(var, known, n=1, cutoff=0.8)
            out.append((var, close[0] if close else None))
    return out


def masked(value: Any, name: str = "") -> Any:
    """``value`` fit to print: the password of a URL, and values of secret-looking names, as ***."""
    if value is None:
        return None
    if _SECRET_KEY.search(name):
        return MASK
    if isinstance(value, Mapping):
        return {k: masked(v, str(k)) for k, v in value.items()}
    text = str(value)
    if "://" in text and "@" in text:
        try:
            parts = urlsplit(text)
            if parts.password is not None:
                host = parts.netloc.rsplit("@", 1)[1]
                netloc = f"{parts.username}:{MASK}@{host}"
                return urlunsplit(parts._replace(netloc=netloc))
        except ValueError:  # not a URL after all
            return text
    return value
