"""A gateway run's settings from their three sources, with errors that name the source.

Precedence: environment (``MILLSTREAM_*``) < configuration file (``--config``) < command line.
Every problem becomes one line naming where the bad value came from, so the right thing gets
fixed::

    gw.yaml: spool.fsync: Input should be 'always', 'interval' or 'never'
    gw.yaml: spool.max_byte: unknown key (did you mean 'max_bytes'?)
    MILLSTREAM_SPOOL_FSYNC='sometimes': Input should be 'always', 'interval' or 'never'
    --machines 0: Input should be greater than or equal to 1

The settings classes read the environment with ``extra="ignore"`` (unrelated variables are not an
error); the keys of a file section are checked here against the class's fields instead.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsError

from infra.settings import env_name, masked
from ingest.config import ForwarderSettings, ProducerSettings, SpoolSettings, load_config_file
from schemas.exceptions import ConfigError

SECTIONS = ("spool", "producer", "forwarder")  # configuration-file sections every kind understands
SPOOL_FLAGS = {"dir": "spool_dir", "fsync": "fsync", "max_bytes": "spool_max_bytes", "overflow": "overflow"}
PRODUCER_FLAGS = {"max_values_per_s": "max_values_per_s"}
SIMULATOR_FLAGS = {  # field -> argparse dest (the flag is --dest with '-' for '_')
    "machines": "machines",
    "sensors": "sensors",
    "rate_hz": "rate",
    "seed": "seed",
    "labels_path": "labels",
    "metadata_path": "metadata",
    "duration_s": "duration",
    "max_scans": "max_scans",
    "fault_probability": "fault_probability",
    "start_ms": "start_ms",
    "fast_forward": "fast_forward",
    "gateway_id": "gateway_id",
    "quiet_machines": "quiet_machines",
    "fault_schedule": "fault",
}
_PREFIXES = ("Value error, ", "Assertion failed, ")
_HIDDEN = frozenset({"extra"})  # values never echoed (may hold credentials, e.g. sasl.password)

Flags = dict[str, tuple[str, Any]]  # field -> (flag as typed, its value)
M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=BaseSettings)


class Problems:
    """Collects configuration problems, one line each; :meth:`check` raises them together."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def check(self) -> None:
        """Raise :class:`ConfigError` listing every problem (a single one on one line)."""
        if len(self.lines) == 1:
            raise ConfigError(self.lines[0])
        if self.lines:
            msg = "invalid configuration:\n" + "\n".join(f"  {line}" for line in self.lines)
            raise ConfigError(msg)

    # ---------------------------------------------------------------------------------- sources
    def read_file(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The configuration file (if any) without its generic sections, and those sections."""
        data = load_config_file(self.file) if self.file is not None else {}
        sections: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            section = data.pop(name, None) or {}
            if not isinstance(section, dict):
                self.add(f"{self.file}: {name}: must be a mapping, not {type(section).__name__}")
                section = {}
            sections[name] = section
        return data, sections

    def model(self, cls: type[M], data: dict[str, Any]) -> M | None:
        """A model read from the file alone (a protocol bridge's configuration)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                for message in _messages(err):
                    path = _path(err["loc"])
                    self.add(f"{self.file}: {path}: {message}" if path else f"{self.file}: {message}")
        return None

    def settings(
        self, cls: type[S], section: str | None, file_values: dict[str, Any], flags: Flags
    ) -> S | None:
        """``cls`` from the environment, overridden by ``file_values`` (the file's ``section``, or
        its top level when None), overridden by ``flags`` (see :func:`given_flags`)."""
        fields = cls.model_fields
        prefix = f"{section}." if section else ""
        for key in file_values:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(f"{self.file}: {prefix}{key}: unknown key{hint}")
        values = {k: v for k, v in file_values.items() if k in fields}
        values.update({k: v for k, (_, v) in flags.items()})
        try:
            return cls(**values)
        except ValidationError as exc:
            for err in exc.errors():
                where = self._source(cls, err, prefix, set(file_values), flags)
                for message in _messages(err):
                    self.add(f"{where}: {message}")
        except SettingsError as exc:  # a JSON-valued variable that does not parse
            self.add(_unparsable(cls, exc))
        return None

    def _source(
        self, cls: type[BaseSettings], err: Any, prefix: str, file_keys: set[str], flags: Flags
    ) -> str:
        loc = err["loc"]
        if not loc:
            return cls.__name__
        field = str(loc[0])
        if field in flags:
            flag, value = flags[field]
            return flag if value is True else f"{flag} {shlex.quote(str(value))}"
        if field in file_keys:
            return f"{self.file}: {prefix}{_path(loc)}"
        info = cls.model_fields.get(field)
        prefix_var = f"{cls.model_config.get('env_prefix', '')}{field}".upper()
        var = env_name(cls, field, info) if info else prefix_var
        name = next((k for k in os.environ if k.upper() == var), None)
        if name is None:
            return f"{var} (unset, default {info.default if info else None})"
        # the same masking as `millstream config` and the other commands' errors (URL passwords ...)
        return var if field in _HIDDEN else f"{var}={masked(os.environ[name], field)!r}"


def given_flags(args: argparse.Namespace, dests: dict[str, str]) -> Flags:
    """The flags the user gave (value not None) among ``dests`` (field -> argparse dest)."""
    out: Flags = {}
    for field, dest in dests.items():
        value = getattr(args, dest, None)
        if value is not None:
            out[field] = (
                f"--{dest.replace('_', '-')}",
                ",".join(value) if isinstance(value, list) else value,
            )
    return out


def _path(loc: tuple[int | str, ...]) -> str:
    """('nodes', 3, 'unit') -> 'nodes[3].unit'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _messages(err: Any) -> list[str]:
    """pydantic's message without its 'Value error, ' prefix, one entry per line."""
    if err["type"] == "extra_forbidden":
        return ["unknown key"]
    msg = str(err["msg"])
    for prefix in _PREFIXES:
        msg = msg.removeprefix(prefix)
    return [line for line in msg.splitlines() if line.strip()] or [msg]


def _unparsable(cls: type[BaseSettings], exc: SettingsError) -> str:
    m = re.search(r'field "(\w+)"', str(exc))
    field = m.group(1) if m else "?"
    var = f"{cls.model_config.get('env_prefix', '')}{field}".upper()
    return f"{var}: not valid JSON ({exc.__cause__ or exc})"


def forwarding_settings(
    args: argparse.Namespace, sections: dict[str, dict[str, Any]], problems: Problems
) -> tuple[SpoolSettings | None, ProducerSettings | None, ForwarderSettings | None]:
    """Spool, producer and forwarder settings: environment < file sections < command line."""
    spool = problems.settings(SpoolSettings, "spool", sections["spool"], given_flags(args, SPOOL_FLAGS))
    producer = problems.settings(
        ProducerSettings, "producer", sections["producer"], given_flags(args, PRODUCER_FLAGS)
    )
    forwarder = problems.settings(ForwarderSettings, "forwarder", sections["forwarder"], {})
    return spool, producer, forwarder


def spool_for(spool: SpoolSettings, gateway_id: str) -> SpoolSettings:
    """The spool settings with the folder filled in: one folder per gateway when none was given."""
    if spool.dir is not None:
        return spool
    return spool.model_copy(update={"dir": Path(".millstream") / "spool" / gateway_id})
