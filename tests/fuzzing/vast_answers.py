"""Real Vast answers to start the fuzzers from, captured once from the simulator over HTTP: an offer
search, one instance (``GET /api/v0/instances/{id}/``) and a page of the instance list (one running,
one exited with a code, one still loading); and :class:`Canned`, a loopback HTTP server that
answers every request with the body it is given (the Vast client under test talks to it)."""

from __future__ import annotations

import functools
import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vastmarket.client import VastClient, broad_query
from vastmarket.instances import RentRequest
from vastsim import SimulatorServer


@dataclass(frozen=True)
class Answers:
    search: dict[str, Any]
    instance: dict[str, Any]
    listing: dict[str, Any]


def _get(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data else "GET")) as reply:
        return json.loads(reply.read())


@functools.cache
def answers() -> Answers:
    with SimulatorServer(seed=3, offers=80, boot_seconds=(0.02, 0.03)) as sim:
        client = VastClient(sim.url)
        try:
            offers = [o for o in client.search_offers(broad_query(), limit=80).offers if o.direct_port_count > 2]
            exits = {"KUBE_VAST_SIM_EXIT_CODE": "3", "KUBE_VAST_SIM_EXIT_AFTER": "0"}
            ids = [client.rent(o.id, RentRequest(image="ghcr.io/example/app:1", label=f"kv:fz:{i}", ports=(8000,),
                                                 env=exits if i else {}))
                   for i, o in enumerate(offers[:2])]
            deadline = time.monotonic() + 10
            while [_state(client, i) for i in ids] != ["running", "exited"]:
                assert time.monotonic() < deadline, [_state(client, i) for i in ids]
                time.sleep(0.02)
            ids.append(client.rent(offers[2].id, RentRequest(image="ghcr.io/example/app:1", label="kv:fz:2")))
            found = _get(f"{sim.url}/api/v0/bundles/", {"type": "on-demand"})
            search = {**found, "offers": found["offers"][:8]}  # a few offers: mutations spread over them
            instance = _get(f"{sim.url}/api/v0/instances/{ids[0]}/?owner=me")
            listing = _get(f"{sim.url}/api/v1/instances/?limit=25")
        finally:
            client.close()
    return Answers(search, instance, listing)


def _state(client: VastClient, instance_id: int) -> str | None:
    inst = client.get_instance(instance_id)
    return None if inst is None else inst.actual_status


class Canned:
    """``with Canned() as vast: vast.body = b'...'; VastClient(vast.url)…``: every request gets
    HTTP 200 with ``body`` (JSON); ``requests`` counts them."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.requests = 0
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                canned.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Canned:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
