"""Child processes of the test control plane: started in their own process group, logged to a
file, and always stopped (SIGTERM to the group, then SIGKILL) by :meth:`ManagedProcess.stop`,
by :func:`stop_all` (registered with ``atexit``), and — should the Python process itself be
killed — by the kernel through ``PR_SET_PDEATHSIG``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

_REGISTRY: list["ManagedProcess"] = []
_REGISTRY_LOCK = threading.Lock()

_PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-glibc platforms
    _LIBC = None


def _child_setup() -> None:
    # Runs in the child between fork and exec: die with the parent (SIGKILL) even if the parent is
    # SIGKILLed and cannot run its own cleanup. (start_new_session already made us a group leader.)
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError as e:
        return f"<cannot read {path}: {e}>"


class ProcessDied(RuntimeError):
    pass


class ManagedProcess:
    """One control-plane process, its log file, and its shutdown."""

    def __init__(self, name: str, argv: Sequence[str | os.PathLike[str]], log_path: Path, *, env: dict[str, str] | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False  # True once stop() was called: exiting after that is not a failure

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup,
                env=self.env,
                close_fds=True,
            )
        with _REGISTRY_LOCK:
            _REGISTRY.append(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def died_unexpectedly(self) -> bool:
        return self.proc is not None and not self.stopped and self.proc.poll() is not None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def describe_failure(self, what: str, lines: int = 40) -> str:
        rc = self.proc.poll() if self.proc else None
        state = f"exited with code {rc}" if rc is not None else "still running"
        return (
            f"{self.name} {what} ({state}); log {self.log_path}, last {lines} lines:\n"
            f"{self.log_tail(lines)}"
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessDied(self.describe_failure("died"))

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str = "to become ready") -> None:
        """Poll ``ready()`` until true; fail fast if the process exits, with its log tail."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        delay = 0.05
        while True:
            self.check_alive()
            try:
                if ready():
                    return
            except Exception as e:  # noqa: BLE001 - any probe error means "not yet"
                last_error = e
            if time.monotonic() > deadline:
                extra = f" (last probe error: {last_error!r})" if last_error else ""
                raise TimeoutError(self.describe_failure(f"did not {what} within {timeout:.0f}s{extra}"))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds; idempotent."""
        self.stopped = True
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            _signal_group(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Still there: kill the whole group (the process and anything it spawned). Only
                # while the leader is unreaped, so the group id cannot have been reused.
                _signal_group(p.pid, signal.SIGKILL)
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                    pass
        with _REGISTRY_LOCK:
            if self in _REGISTRY:
                _REGISTRY.remove(self)

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} log={self.log_path}>"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def running_processes() -> list[ManagedProcess]:
    with _REGISTRY_LOCK:
        return list(_REGISTRY)


def stop_all(timeout: float = 5.0) -> None:
    """Stop every process started through this module, newest first."""
    for p in reversed(running_processes()):
        p.stop(timeout=timeout)


atexit.register(stop_all)
