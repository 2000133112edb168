"""ClickHouse client factory: the embedded engine (chdb) by default, a ClickHouse server by URL.

Both are the same clickhouse-connect ``Client`` API, so nothing above this module knows which one
it talks to. The embedded engine keeps its data in one folder that only one process may open at a
time (the engine locks it): run ``millstream sql`` while the sink runs and the second process gets a
:class:`~sinks.exceptions.SinkError` saying so. Point ``MILLSTREAM_CLICKHOUSE_URL`` at a server
(``http://user:password@host:8123/database``) to share the data between processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import struct
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sinks.config import ClickHouseSettings
from sinks.exceptions import SinkError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

__all__ = [
    "ClickHouseSettings",
    "backoff_seconds",
    "classify_error",
    "connect",
    "error_text",
]

# ClickHouse error codes worth another attempt: the same insert can succeed later (timeouts, network,
# too many parts, memory, replicas/keeper, unknown status of insert).
TRANSIENT_CODES = frozenset(
    {
        3,
        32,
        159,
        164,
        202,
        203,
        209,
        210,
        236,
        241,
        242,
        252,
        285,
        319,
        394,
        425,
        999,
        1000,
    }
)
# Codes that mean "these values do not fit the column": retrying cannot help.
ROW_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 469})

_LOCKED = "Error initializing EmbeddedServer"
_OTHER_PATH = "already initialized with path"


def connect(settings: ClickHouseSettings | None = None, *, create_database: bool = True) -> Client:
    """A clickhouse-connect client on the configured database, created first when missing.

    Raises :class:`SinkError` with a clear message when the target cannot be opened or reached.
    """
    settings = settings or ClickHouseSettings()
    client = _open_embedded(settings) if settings.embedded else _open_server(settings)
    database = settings.resolved_database()
    try:
        if create_database:
            client.command("CREATE DATABASE IF NOT EXISTS {db:Identifier}", parameters={"db": database})
        client.database = database
        client.command("SELECT 1")
    except Exception as exc:
        client.close()
        detail = _scrub(str(exc), settings)
        msg = f"cannot use database {database!r} on ClickHouse at {settings.display_url()}: {detail}"
        raise SinkError(msg) from exc
    logger.info("ClickHouse at %s, database %s", settings.display_url(), database)
    return client


def _open_embedded(settings: ClickHouseSettings) -> Client:
    try:
        import clickhouse_connect
    except ImportError as exc:  # pragma: no cover - depends on the install
        msg = "the ClickHouse sink needs clickhouse-connect: pip install 'clickhouse-connect>=0.8'"
        raise SinkError(msg) from exc
    path = settings.embedded_path()
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
    dsn = f"chdb://{path}" if path is not None else "chdb://memory"
    printed: list[str] = []
    try:
        with _stderr_captured(printed):  # the engine prints its own errors; ours below say more
            client = clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")
        if printed[0].strip():
            sys.stderr.write(printed[0])  # not an error of ours: pass it on
        return client
    except ImportError as exc:
        msg = "embedded ClickHouse needs the chdb package: pip install 'chdb>=3.6'"
        raise SinkError(msg) from exc
    except Exception as exc:
        text = str(exc)
        if _LOCKED in text:
            msg = (
                f"embedded ClickHouse at {path} is in use by another process (a running sink?); "
                "stop it or set MILLSTREAM_CLICKHOUSE_URL to a ClickHouse server"
            )
        elif _OTHER_PATH in text:
            msg = (
                f"this process already has an embedded ClickHouse open at another path; one process "
                f"can open one path (wanted {path}); close the other clients first"
            )
        else:
            msg = f"cannot open embedded ClickHouse at {path or 'memory'}: {text}"
        raise SinkError(msg) from exc


@contextlib.contextmanager
def _stderr_captured(into: list[str]) -> Iterator[None]:
    """What the process writes to file descriptor 2 in the block (C code too), appended to ``into``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            into.append(tmp.read().decode(errors="replace"))
            if into[-1].strip():
                logger.debug("embedded ClickHouse printed: %s", into[-1].strip())


def _open_server(settings: ClickHouseSettings) -> Client:
    import clickhouse_connect

    scheme = urlsplit(settings.url or "").scheme.lower()
    kwargs: dict[str, Any] = {
        "dsn": settings.server_dsn(),
        "interface": "https" if scheme in {"https", "clickhouses"} else "http",
        "connect_timeout": settings.connect_timeout_s,
        "send_receive_timeout": settings.send_receive_timeout_s,
        "tz_mode": "aware",
        "autogenerate_session_id": False,  # the writer may be used from the metrics thread too
    }
    if settings.user:
        kwargs["username"] = settings.user
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    try:
        return clickhouse_connect.get_client(**kwargs)
    except Exception as exc:
        detail = _scrub(f"{type(exc).__name__}: {exc}", settings)
        msg = f"cannot connect to ClickHouse at {settings.display_url()}: {detail}"
        raise SinkError(msg) from exc


def _scrub(text: str, settings: ClickHouseSettings) -> str:
    """Remove passwords (settings and URL) from an error text before it is shown or logged."""
    secrets = [settings.password.get_secret_value()] if settings.password is not None else []
    url_password = urlsplit(settings.url or "").password
    if url_password:
        secrets += [url_password, unquote(url_password)]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


_CODE_RE = re.compile(r"Code: (?P<code>\d+)\. DB::Exception: ")
_VERSION_RE = re.compile(r"\s*\(version \d[^\n]*\s*$")


def error_text(exc: BaseException) -> str:
    """ClickHouse's own message of a failed query, without driver wrapping or the server version.

    ``Code: 47. DB::Exception: Unknown expression identifier `nope` … (UNKNOWN_IDENTIFIER)`` becomes
    ``ClickHouse error 47: Unknown expression identifier `nope` … (UNKNOWN_IDENTIFIER)``. Other
    errors (network, driver) are returned as ``Type: message``.
    """
    text = str(exc)
    matches = list(_CODE_RE.finditer(text))
    if not matches:
        return f"{type(exc).__name__}: {text}".strip()
    last = matches[-1]
    detail = _VERSION_RE.sub("", text[last.end() :]).replace("\n FORMAT Native", "").strip()
    return f"ClickHouse error {last['code']}: {detail}"


def classify_error(exc: BaseException) -> str:
    """'transient' (retry), 'row' (the values were refused) or 'fatal' (stop) for an insert error."""
    from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

    # The client serialises values itself: a value that does not fit its column fails here.
    if isinstance(exc, DataError | ValueError | TypeError | OverflowError | struct.error):
        return "row"
    code = getattr(exc, "code", None)
    if code in ROW_CODES:
        return "row"
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError):
        return "transient"
    if isinstance(exc, DatabaseError) and code in TRANSIENT_CODES:
        return "transient"
    return "fatal"


def backoff_seconds(attempt: int, settings: ClickHouseSettings, rng: random.Random) -> float:
    """Delay before retry ``attempt`` (0-based): exponential, capped, with "equal jitter"."""
    ceiling = min(settings.retry_backoff_max_ms, settings.retry_backoff_ms * (2**attempt)) / 1000
    return float(ceiling / 2 + rng.uniform(0, ceiling / 2))
