"""Child processes that never outlive their parent's intent: own process group, SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from infra.exceptions import StackError

logger = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (``kill``, a closed terminal, a cancelled job) interrupt the block like
    Ctrl-C, so the code that stops its child processes runs: they run in sessions of their own, so
    the terminal's signals never reach them. In the main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; raise StackError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the check may fail while the service starts
            last_exc = exc
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    msg = f"timed out after {timeout:.0f}s waiting for {what}{detail}"
    raise StackError(msg)


class ManagedProcess:
    """A child process in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout_path: Path | None = None,
    ) -> None:
        self.name = name
        self.stdout_path = stdout_path
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0  # where this run's lines begin in the (appended) log

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.log_start = log.tell()
        out = self.stdout_path.open("wb") if self.stdout_path else None
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out or log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            msg = f"cannot start {self.name} ({self.argv[0]}): {exc}"
            raise StackError(msg) from exc
        finally:
            log.close()
            if out is not None:
                out.close()
        logger.info("started %s pid=%s log=%s", self.name, self.proc.pid, self.log_path)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise StackError with the log tail when the process has died."""
        if self.proc is not None and self.proc.poll() is not None:
            msg = f"{self.name} exited with code {self.proc.returncode}; last log lines:\n{self.log_tail()}"
            raise StackError(msg)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines this run wrote (the log is appended to across runs)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_start)
                text = fh.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"

    def signal(self, sig: int) -> None:
        if self.alive() and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the group, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0fs; killing", self.name, timeout)
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        # Reap anything left in the group (helpers the child started).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, no grace: for crash tests."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
