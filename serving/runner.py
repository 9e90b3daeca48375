"""Serving a WSGI app factory under gunicorn, in-process (no config files, no shell).

The factory runs inside each worker after the fork, so the threads it starts (the snapshot
follower) belong to the worker that serves the requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Any], options: Mapping[str, Any]) -> None:
        self._factory = factory
        self._options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        # gunicorn >= 25 opens a control socket under $HOME by default: read-only in the image
        # (readOnlyRootFilesystem, HOME=/nonexistent) and shared by every server of one user.
        # Nothing here uses it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        return self._factory()


def serve(factory: Callable[[], Any], *, host: str, port: int, workers: int = 1, threads: int = 4,
          certfile: str | None = None, keyfile: str | None = None,
          ssl_context: Callable[..., Any] | None = None, name: str = "kube-vast") -> None:
    """Run gunicorn until SIGTERM/SIGINT. TLS when ``certfile`` and ``keyfile`` are given;
    ``ssl_context`` is gunicorn's hook for building the server's SSL context (the webhook uses it
    to reload a renewed certificate without a restart)."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 30,
        "proc_name": name,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "preload_app": False,
    }
    if certfile and keyfile:
        options.update(certfile=certfile, keyfile=keyfile)
        if ssl_context is not None:
            options["ssl_context"] = ssl_context
    _Gunicorn(factory, options).run()
