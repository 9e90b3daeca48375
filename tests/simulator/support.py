"""Helpers for the simulator tests: a standard-library client (urllib only), waits, a fake clock."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any, Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def call(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.headers, e.read())


class Vast:
    """The calls a Vast client makes, against a base URL, plus the simulator's admin routes."""

    def __init__(self, base: str, *, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = headers or {}

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return call(method, self.base + path, body, headers=headers, **kwargs)

    def search(self, body: Any = None, **kwargs: Any) -> Reply:
        return self.call("POST", "/api/v0/bundles/", {} if body is None else body, **kwargs)

    def offers(self, **query: Any) -> list[dict[str, Any]]:
        reply = self.search(query)
        assert reply.status == 200, reply.text
        offers: list[dict[str, Any]] = reply.json()["offers"]
        return offers

    def rent(self, offer_id: int, body: Any = None, **kwargs: Any) -> Reply:
        payload = {"client_id": "me", "image": "vastai/test:latest", "disk": 10} if body is None else body
        return self.call("PUT", f"/api/v0/asks/{offer_id}/", payload, **kwargs)

    def instance(self, instance_id: int) -> dict[str, Any] | None:
        reply = self.call("GET", f"/api/v0/instances/{instance_id}/")
        assert reply.status == 200, reply.text
        found: dict[str, Any] | None = reply.json()["instances"]
        return found

    def destroy(self, instance_id: int) -> Reply:
        return self.call("DELETE", f"/api/v0/instances/{instance_id}/", {})

    def update(self, instance_id: int, body: Any) -> Reply:
        return self.call("PUT", f"/api/v0/instances/{instance_id}/", body)

    def list(self, **params: Any) -> Reply:
        query = {k: v if isinstance(v, (str, int)) else json.dumps(v) for k, v in params.items()}
        return self.call("GET", "/api/v1/instances/?" + urllib.parse.urlencode(query))

    def admin(self, path: str, body: Any = None) -> Reply:
        return call("POST" if body is not None else "GET", f"{self.base}/_sim/{path}", body)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.admin("state").json()
        return state


def wait_for(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.01) -> T:
    """The first truthy value of `probe()`; fails after `timeout` seconds (generous: a loaded
    machine only makes a passing wait slower)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def refuses(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connect to the port is refused."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def host_port(instance: dict[str, Any], key: str = "8000/tcp") -> int:
    return int(instance["ports"][key][0]["HostPort"])


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def port_offer(vast: Vast, *, ports: int = 2, **extra: Any) -> dict[str, Any]:
    """The cheapest rentable offer with at least `ports` direct ports."""
    offers = vast.offers(
        direct_port_count={"gte": ports}, rentable={"eq": True}, limit=1, order=[["dph_total", "asc"]], **extra
    )
    assert offers, "no offer with direct ports in the test market"
    return offers[0]


def rent_body(**overrides: Any) -> dict[str, Any]:
    """A rent body as a client sends it, with one port mapping (8000/tcp)."""
    body: dict[str, Any] = {
        "client_id": "me",
        "image": "vastai/test:latest",
        "disk": 10,
        "label": "test",
        "env": {"HF_TOKEN": "x", "-p 8000:8000": "1"},
        "runtype": "args",
        "args": ["-c", "serve"],
    }
    body.update(overrides)
    return body


def rent_running(vast: Vast, **overrides: Any) -> dict[str, Any]:
    """Rent a port offer and wait until the instance runs; the running instance."""
    offer = port_offer(vast)
    reply = vast.rent(offer["id"], rent_body(**overrides))
    assert reply.status == 200, reply.text
    instance_id = reply.json()["new_contract"]
    return wait_for(lambda: running(vast, instance_id))


def running(vast: Vast, instance_id: int) -> dict[str, Any] | None:
    """The instance if it is running now, else None."""
    instance = vast.instance(instance_id)
    return instance if instance and instance["actual_status"] == "running" else None
