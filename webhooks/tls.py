"""Serving TLS from certificate and key files that get renewed (cert-manager, a rotated Secret)
without restarting the webhook.

:class:`ReloadingCertificate` holds one ``ssl.SSLContext`` and, at every TLS handshake, looks at
the files' stamps (two ``stat`` calls): when they changed, it loads the new pair into a new
context and uses that from then on; connections already open keep the old one. A pair caught
half-written (the new certificate beside the old key) does not load: the old context stays,
a warning is logged, and the next change of either file is tried again.

:meth:`ReloadingCertificate.gunicorn_hook` is gunicorn's ``ssl_context`` server hook, which
gunicorn calls for every accepted connection.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vastmarket.errors import ConfigError

log = logging.getLogger("kube_vast.webhook.tls")

Stamp = tuple[tuple[int, int, int], tuple[int, int, int]]


def new_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for the pair: TLS 1.2 or newer, no client certificates asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return context


def _stat(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)  # follows symlinks: a Secret volume swaps its ..data link
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ReloadingCertificate:
    """An ``SSLContext`` that follows a certificate and key file pair."""

    def __init__(self, cert: Path | str, key: Path | str) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self._lock = threading.Lock()
        self.reloads = 0
        try:
            self._stamp: Stamp | None = self._stamps()
            self._context = new_server_context(self.cert, self.key)
        except FileNotFoundError as exc:
            raise ConfigError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS: {self.cert} and {self.key} are not a usable certificate and key: {exc}") from None
        self._failed: Stamp | None = None

    def _stamps(self) -> Stamp:
        return (_stat(self.cert), _stat(self.key))

    def context(self) -> ssl.SSLContext:
        """The context for a new connection, reloaded first if the files changed."""
        try:
            stamp = self._stamps()
        except OSError:
            return self._context  # mid-rotation (a file briefly missing): keep serving the old pair
        if stamp == self._stamp or stamp == self._failed:
            return self._context
        with self._lock:
            if stamp == self._stamp or stamp == self._failed:
                return self._context
            try:
                context = new_server_context(self.cert, self.key)
            except (OSError, ssl.SSLError) as exc:
                self._failed = stamp
                log.warning("TLS certificate not reloaded, still serving the previous one: cert=%s key=%s error=%s",
                            self.cert, self.key, exc)
                return self._context
            self._context, self._stamp, self._failed = context, stamp, None
            self.reloads += 1
            log.info("TLS certificate reloaded: cert=%s", self.cert)
            return context

    def gunicorn_hook(self) -> Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
        """gunicorn's ``ssl_context(config, default_ssl_context_factory)`` server hook."""
        def ssl_context(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            return self.context()
        return ssl_context
