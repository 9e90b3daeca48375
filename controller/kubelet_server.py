"""The HTTPS shell of the virtual node's kubelet API: sockets, TLS, HTTP/1.1 — decisions elsewhere.

A thread accepts connections; each one is served in its own thread, which does the TLS handshake
(a client certificate is asked for and verified when given), hands the request to
:meth:`controller.kubelet_api.KubeletApi.answer` and writes the answer: a plain-text body with
its length, or — for ``follow=true`` — a chunked stream that it extends every
``follow_interval`` seconds with what :meth:`~controller.kubelet_api.LogFollow.poll` returns. It
waits on the socket in between (never a busy loop), and stops as soon as the client closes the
connection or the server stops. One request per connection. Logs name the caller, method, path
and status, never the query (an exec command may hold a secret).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from serving.http_server import LiteralHTTPServer
from vastmarket.errors import ConfigError

from .kubelet_api import Answer, KubeletApi, LogFollow
from .kubelet_tls import identity_of

log = logging.getLogger("kube_vast.controller.kubelet")

HANDSHAKE_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
WAKE_EVERY = 0.5  # a follow looks at the stop flag at least this often


class _Server(LiteralHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], api: KubeletApi, context: ssl.SSLContext,
                 stopping: threading.Event) -> None:
        self.api = api
        self.context = context
        self.stopping = stopping
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("kubelet api: TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            conn.settimeout(READ_TIMEOUT)
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("kubelet api: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "kube-vast"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # _serve logs each request, without its query

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _serve(self) -> None:
        self.close_connection = True
        url = urlsplit(self.path)
        identity = identity_of(self.connection.getpeercert())
        try:
            answer = self.server.api.answer(identity, self.command, url.path,
                                            parse_qs(url.query, keep_blank_values=True))
        except Exception:
            log.exception("kubelet api bug: %s %s", self.command, url.path)
            answer = Answer.error(500, "Internal Server Error")
        log.info("kubelet api: user=%s %s %s -> %d%s", identity.user if identity else "-", self.command, url.path,
                 answer.status, " (following)" if answer.follow else "")
        if answer.follow is None:
            self._send(answer)
            return
        try:
            self._stream(answer, answer.follow)
        finally:
            answer.follow.close()

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _stream(self, answer: Answer, follow: LogFollow) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self._chunk(answer.body)
            while not self._client_gone(follow.interval):
                data, done = follow.poll()
                self._chunk(data)
                if done:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ValueError):  # the client went away while we wrote
            pass

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _client_gone(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the client closed the connection (or the server
        is stopping). A client that is waiting for the answer sends nothing, so a readable socket
        means it closed."""
        conn = self.connection
        deadline = time.monotonic() + seconds
        while not self.server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([conn], [], [], min(WAKE_EVERY, left))
            if readable and _spoke(conn):
                return True
        return True


def _spoke(conn: Any) -> bool:
    """Whether the client closed the connection or sent something (it has no business to while
    it waits for the answer); False when the readable bytes were only part of a TLS record."""
    try:
        conn.settimeout(0.0)
        try:
            conn.recv(1)
            return True
        finally:
            conn.settimeout(READ_TIMEOUT)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (ssl.SSLError, OSError):
        return True


class KubeletServer:
    """Serves ``api`` over HTTPS on ``host:port`` in background threads until :meth:`stop`."""

    def __init__(self, api: KubeletApi, context: ssl.SSLContext, *, host: str, port: int) -> None:
        self.api = api
        self.stopping = threading.Event()
        try:
            self._httpd = _Server((host, port), api, context, self.stopping)
        except OSError as exc:
            raise ConfigError(f"kubelet API: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="kubelet-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> KubeletServer:
        self._thread.start()
        log.info("kubelet api: serving HTTPS on %s:%d", self._httpd.server_address[0], self.port)
        return self

    def stop(self) -> None:
        """Stop accepting, end every follow within ``WAKE_EVERY`` seconds, close the socket."""
        self.stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
