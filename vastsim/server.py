"""`SimulatorServer`: the simulated Vast API on a real local HTTP port, with its admin routes.

The HTTP shell is thin: it decodes a request into `responses.Request`, hands it to the Vast routes
(`api.VastApi`) or the admin routes (`admin.SimAdmin`), and writes the `Response` back. Threads:
one accepting HTTP, one per request being served, one ticking the market clock, one serving
instance ports. `stop()` joins all of them and closes every socket.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from serving.http_server import LiteralHTTPServer
from vastsim.admin import PREFIX, SimAdmin
from vastsim.api import VastApi
from vastsim.faults import Faults
from vastsim.hostnet import HostNetwork
from vastsim.logs import access_line
from vastsim.market import Market
from vastsim.ports import PortHub
from vastsim.responses import ApiError, Request, Response
from vastsim.sites import NO_NETWORK, NoHostNetwork, Sites

log = logging.getLogger("vastsim")

MAX_BODY = 1024 * 1024
_SECRET_PARAM = re.compile(r"(api_key=)[^&\s]*", re.IGNORECASE)


class _HttpServer(LiteralHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the request threads
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 resets connections under a burst of parallel clients

    def __init__(self, address: tuple[str, int], app: Callable[[Request], Response]) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at stop()
    timeout = 10.0

    def version_string(self) -> str:
        return "vastsim"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body_or_error = self._body()
        if isinstance(body_or_error, Response):
            response = body_or_error
        else:
            request = Request(
                method=self.command,
                path=url.path,
                query=parse_qs(url.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body_or_error,
                client=str(self.client_address[0]),
            )
            response = self.server.app(request)
        if response.dropped:
            self.close_connection = True  # nothing written: the client sees the connection close
            log.debug("%s %s -> dropped", self.command, url.path)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
        log.debug("%s %s -> %d", self.command, url.path, response.status)  # never the query: it may hold the key

    def _body(self) -> bytes | Response:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return ApiError(411, "invalid_request", "chunked bodies are not supported; send Content-Length").response()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            return ApiError(400, "invalid_request", "bad Content-Length").response()
        if length < 0 or length > MAX_BODY:
            return ApiError(413, "invalid_request", f"body larger than {MAX_BODY} bytes").response()
        return self.rfile.read(length)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _serve logs, without the query string

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: %s", _SECRET_PARAM.sub(r"\1***", format % args))


class SimulatorServer:
    """The Vast marketplace simulator.

    `boot_seconds=(to_loading, to_running)`: seconds from the rental until `actual_status` turns
    from null to `loading`, and until it turns `running` (a restart takes the difference). `clock` (epoch seconds; default `time.time`)
    drives every status change and timestamp. `public_ip` is what instances advertise in
    `public_ipaddr` (default: `host`, or 127.0.0.1 when `host` is a wildcard); their ports listen
    on `host`. `rate_limits` ({endpoint: seconds}) sets minimum intervals between calls from the
    start (none by default); `faults.THRESHOLDS` holds the published ones. `search_row_cap` and
    `search_quota_rows` (per day) set the search limits of `vastsim.quota` (`search_limits`);
    `credit` the account's starting credit (`GET /api/v0/users/current`). With `network` (a
    `vastsim.hostnet.HostNetwork`), instances listen on and advertise the address of their
    machine's host in that network instead, and `partition()` cuts a host off (`vastsim.sites`).

    Fault injection: `faults` (next calls, next rentals) and `market` (one given offer or
    instance); inspection: `state()`; `reset()`. The same over HTTP under `/_sim/`.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        offers: int = 500,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        boot_seconds: tuple[float, float] = (1.0, 2.0),
        clock: Callable[[], float] | None = None,
        public_ip: str | None = None,
        rate_limits: Mapping[str, float] | None = None,
        tick_seconds: float = 0.02,
        network: HostNetwork | None = None,
        search_row_cap: int | None = None,
        search_quota_rows: int | None = None,
        credit: float | None = None,
    ) -> None:
        wildcard = host in ("", "0.0.0.0")
        self.host = host
        self.public_ip = public_ip or ("127.0.0.1" if wildcard else host)
        self.boot_seconds = boot_seconds
        self._requested_port = port
        self._clock = clock or time.time
        self._tick = tick_seconds
        self._stopping = threading.Event()
        self.faults = Faults()
        for endpoint, interval in (rate_limits or {}).items():
            self.faults.rate_limit(endpoint, interval)
        self.sites = Sites(network)
        self.hub = PortHub("0.0.0.0" if wildcard else host, on_request=self._log_request,
                           socket_factory=network.socket if network is not None else None)
        self.market = Market(
            seed=seed,
            offers=offers,
            clock=self._clock,
            boot_seconds=boot_seconds,
            faults=self.faults,
            hub=self.hub,
            public_ip=self.public_ip,
            host_for=self.sites.host_for if network is not None else None,
        )
        self._api = VastApi(self.market, self.faults, api_key=api_key, clock=self._clock, wait=self._stopping.wait)
        self.search_limits = self._api.search_limits  # row cap and search row quota (vastsim.quota)
        self.search_limits.configure(row_cap=search_row_cap, quota_rows=search_quota_rows)
        if credit is not None:
            self._api.credit = float(credit)
        self._admin = SimAdmin(market=self.market, faults=self.faults, state=self.state, reset=self.reset,
                               partition=self.partition, heal=self.heal, search_limits=self.search_limits)
        self._httpd: _HttpServer | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SimulatorServer:
        """Bind and serve in background threads; returns self."""
        if self._httpd is not None or self._stopping.is_set():
            raise RuntimeError("a SimulatorServer starts once")
        self._httpd = _HttpServer((self.host, self._requested_port), self._dispatch)
        self.hub.start()
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="vastsim-http", daemon=True
            ),
            threading.Thread(target=self._run_ticker, name="vastsim-ticker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, join every thread, close every socket (instance ports included). Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self.market.close()
        self.hub.stop()
        self.sites.heal_all_quietly()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """e.g. `http://127.0.0.1:41234` (no trailing slash)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    # --- inspection and control ----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Every instance ever rented, market and call counters, pending faults."""
        snapshot = self.market.snapshot()
        snapshot["counters"].update(self._api.counter.snapshot())
        snapshot["counters"]["open_sockets"] = self.hub.open_sockets()
        snapshot["counters"]["log_downloads"] = self.market.logs.downloads
        snapshot["counters"]["log_downloads_with_key"] = self.market.logs.downloads_with_credentials
        snapshot["faults"] = self.faults.snapshot()
        snapshot["network"] = self.sites.snapshot()
        snapshot["search"] = self.search_limits.snapshot()
        return snapshot

    def partition(self, instance_id: int) -> str:
        """Cut the host of live instance `instance_id` off from this machine (its link goes down:
        its ports stop answering, the Vast API still reports it); returns the host's address.
        Raises `sites.NoHostNetwork` (a ValueError) without a host network, KeyError if not live."""
        if self.sites.network is None:
            raise NoHostNetwork(NO_NETWORK)
        address = self.market.host_of(instance_id)
        if address is None:
            raise ValueError(f"instance {instance_id} has no host of its own to cut off")
        self.sites.partition(address)
        return address

    def heal(self, instance_id: int | None = None) -> list[str]:
        """Bring the host of `instance_id` (every host cut off: None) back; returns the addresses
        healed. The host of a destroyed instance is found from the ledger."""
        if instance_id is None:
            return self.sites.heal()
        record = next((i for i in self.market.snapshot()["instances"] if i["id"] == instance_id), None)
        if record is None:
            raise KeyError(f"no instance {instance_id}")
        if record["host"] is None:
            raise ValueError(f"instance {instance_id} has no host of its own")
        return self.sites.heal(record["host"])

    def reset(self, *, regenerate: bool = False, seed: int | None = None, offers: int | None = None) -> None:
        """Clear every fault and the call counters; with `regenerate` (implied by `seed` or
        `offers`) also destroy every instance and draw the market again."""
        if not isinstance(regenerate, bool):
            raise ValueError(f"regenerate must be true or false, got {regenerate!r}")
        for name, value in (("seed", seed), ("offers", offers)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        self.faults.clear()
        self.search_limits.clear()
        self._api.counter.clear()
        if regenerate or seed is not None or offers is not None:
            self.market.reset(seed=seed, offers=offers)

    # --- inside ----------------------------------------------------------------------------------
    def _dispatch(self, request: Request) -> Response:
        try:
            if request.path.startswith(PREFIX):
                return self._admin.handle(request)
            return self._api.handle(request)
        except Exception:
            log.exception("simulator bug method=%s path=%s", request.method, request.path)
            return ApiError(500, "internal_error", "internal simulator error").response()

    def _log_request(self, instance_id: int, client: str, method: str, path: str, status: int) -> None:
        """A request an instance port answered, as a line of that instance's container log."""
        self.market.logs.append(instance_id, access_line(client, method, path, status, self._clock()))

    def _run_ticker(self) -> None:
        while not self._stopping.wait(self._tick):
            try:
                self.market.advance()
            except Exception:
                log.exception("simulator ticker failed")
