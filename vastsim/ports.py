"""Real listening sockets for the ports of running instances, all served by one thread.

`PortHub.listen(binding)` opens a TCP socket on a free (or given) port (on the binding's own host
address when it has one, e.g. a simulated host's network namespace) and answers every HTTP
request on it with the binding's `Health`: by default 200 and a small JSON body naming the
instance and container port; or another status; or, in mode `hang`, it accepts and never
answers. `close(binding)` closes the socket and its open connections, so a connect is refused.
UDP mappings get a bound, unserved socket so their port is really taken.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable

from vastsim.faults import Health

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
SEND_TIMEOUT = 1.0


@dataclass
class Binding:
    """One `-p` mapping of one instance: container port → host port."""

    instance_id: int
    container_port: int
    proto: str = "tcp"
    host_port: int = 0  # 0 until first opened; kept across close/reopen
    health: Health = field(default_factory=Health)
    host: str | None = None  # the address to listen on; None: the hub's
    port_range: tuple[int, int] | None = None  # the machine's direct ports: the host port is one of them
    avoid: frozenset[int] = frozenset()  # host ports not to take again (the previous run's)
    sock: socket.socket | None = None

    @property
    def listening(self) -> bool:
        return self.sock is not None


@dataclass
class _Connection:
    binding: Binding
    buffer: bytearray = field(default_factory=bytearray)
    peer: str = ""


# Told of every request a port answers: (instance id, client address, method, path, status).
RequestListener = Callable[[int, str, str, str, int], None]
# Makes an unbound socket of a kind (SOCK_STREAM, SOCK_DGRAM) for a binding's own host address,
# e.g. inside the network namespace of a simulated host (vastsim.hostnet).
SocketFactory = Callable[[int], socket.socket]


class PortHub:
    """Opens, serves and closes instance ports. Thread-safe; `stop()` closes everything."""

    def __init__(self, host: str = "127.0.0.1", *, on_request: RequestListener | None = None,
                 socket_factory: SocketFactory | None = None) -> None:
        self.host = host
        self._socket_factory = socket_factory
        self._on_request = on_request
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listeners: dict[socket.socket, Binding] = {}
        self._udp: dict[socket.socket, Binding] = {}
        self._connections: dict[socket.socket, _Connection] = {}
        self._hanging: dict[socket.socket, _Connection] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="vastsim-ports", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every socket; the hub cannot be restarted."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            for binding in list(self._listeners.values()) + list(self._udp.values()):
                self._close_locked(binding)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def listen(self, binding: Binding) -> int:
        """Open `binding` on its host port and return that port; on its own host address (made by
        the socket factory) when it has one. A binding without a host port yet gets a free one of
        its `port_range` (the machine's direct ports, as on Vast), else any free one."""
        ports = [binding.host_port]
        if not binding.host_port and binding.port_range is not None:
            first, last = binding.port_range
            size = last - first + 1
            offset = (binding.instance_id * 7 + binding.container_port) % size
            with self._lock:  # ports this hub already serves on that address (UDP would share one)
                taken = {b.host_port for b in [*self._listeners.values(), *self._udp.values()]
                         if (b.host or self.host) == (binding.host or self.host)} | binding.avoid
            ports = [p for p in (first + (offset + i) % size for i in range(size)) if p not in taken] + [0]
        for port in ports:
            try:
                sock = self._bind(binding, port)
                break
            except OSError:
                if port == ports[-1]:
                    raise
        if ports[-1] == 0 and len(ports) > 1 and sock.getsockname()[1] not in ports:
            log.warning("instance %s: every direct port %s is taken on this machine; host port %s is outside it",
                        binding.instance_id, binding.port_range, sock.getsockname()[1])
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                raise RuntimeError("the port hub is stopped")
            binding.sock = sock
            binding.host_port = sock.getsockname()[1]
            if binding.proto == "tcp":
                self._listeners[sock] = binding
                self._selector.register(sock, selectors.EVENT_READ)
            else:
                self._udp[sock] = binding
        self._wake()
        return binding.host_port

    def _bind(self, binding: Binding, port: int) -> socket.socket:
        kind = socket.SOCK_STREAM if binding.proto == "tcp" else socket.SOCK_DGRAM
        factory = self._socket_factory if binding.host is not None else None
        sock = factory(kind) if factory is not None else socket.socket(socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((binding.host or self.host, port))
            if binding.proto == "tcp":
                sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self, binding: Binding) -> None:
        """Close `binding`'s socket and any connection it accepted; connects are refused after."""
        with self._lock:
            self._close_locked(binding)

    def open_sockets(self) -> int:
        with self._lock:
            return len(self._listeners) + len(self._udp)

    # --- the serving thread ----------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                events = self._selector.select(timeout=0.5)
            except (OSError, ValueError):  # a socket closed under select(); look again
                continue
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self._wake_r:
                        self._drain_wake()
                    elif sock in self._listeners:
                        self._accept(sock, self._listeners[sock])
                    elif sock in self._connections:
                        self._read(sock)

    def _accept(self, listener: socket.socket, binding: Binding) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            self._connections[conn] = _Connection(binding, peer=str(peer[0]))
            self._selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        state = self._connections[conn]
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        state.buffer += data
        if b"\r\n\r\n" not in state.buffer and len(state.buffer) < MAX_REQUEST:
            return
        health = state.binding.health
        if health.mode == "hang":
            self._selector.unregister(conn)
            del self._connections[conn]
            self._hanging[conn] = state
            return
        self._respond(conn, state, health.status)

    def _respond(self, conn: socket.socket, state: _Connection, status: int) -> None:
        line = bytes(state.buffer).split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        method = parts[0] if parts else "GET"
        path = parts[1] if len(parts) > 1 else "/"
        body = json.dumps(
            {
                "instance_id": state.binding.instance_id,
                "container_port": state.binding.container_port,
                "path": path,
                "status": status,
            }
        ).encode()
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        try:
            conn.setblocking(True)
            conn.settimeout(SEND_TIMEOUT)
            conn.sendall(head if method == "HEAD" else head + body)
        except OSError:
            pass
        self._drop(conn)
        if self._on_request is not None:
            try:
                self._on_request(state.binding.instance_id, state.peer, method, path, status)
            except Exception:
                log.exception("request listener failed instance=%s", state.binding.instance_id)

    def _drop(self, conn: socket.socket) -> None:
        if self._connections.pop(conn, None) is not None:
            self._selector.unregister(conn)
        self._hanging.pop(conn, None)
        try:
            conn.close()
        except OSError:
            pass

    def _close_locked(self, binding: Binding) -> None:
        sock = binding.sock
        if sock is None:
            return
        binding.sock = None
        if self._listeners.pop(sock, None) is not None:
            self._selector.unregister(sock)
        self._udp.pop(sock, None)
        sock.close()
        for conn, state in list(self._connections.items()) + list(self._hanging.items()):
            if state.binding is binding:
                self._drop(conn)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
