"""The standard library's threading HTTP server, bound without a name lookup.

:class:`ThreadingHTTPServer`'s ``server_bind`` asks ``socket.getfqdn`` for the host's name, which
goes to the resolver (and can stall for seconds when it is slow or unreachable). The servers
built on the standard library — the simulator's and the virtual node's kubelet API — subclass
:class:`LiteralHTTPServer` instead: its ``server_name`` is the address it was given, and nothing
is resolved.
"""

from __future__ import annotations

import socketserver
from http.server import ThreadingHTTPServer


class LiteralHTTPServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` whose ``server_name`` is its literal bound address."""

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
