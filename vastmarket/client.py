"""The Vast.ai REST client — the only module that speaks HTTP to Vast.

Every call has a timeout and every JSON body goes with ``Content-Type: application/json``.
Idempotent calls (search, get, list, destroy, relabel) are retried a bounded number of times with
exponential backoff and full jitter on 429 (plain-text or JSON body), 502/503/504 and connection
errors; a 429 with ``Retry-After`` waits that long instead (a wait longer than
``RetryPolicy.max_retry_after`` is not taken inline: :class:`~vastmarket.errors.RateLimited` says how
long). The search quota answer (429 ``search_quota_exceeded``) is never retried:
:class:`~vastmarket.errors.SearchQuotaExceeded` carries when to search again. Renting is *not*
idempotent: it is retried only when Vast certainly did not act (429, or a connection that was
never established); any other failure raises :class:`~vastmarket.errors.VastUnavailable` with
``uncertain=True`` and the caller must look the instance up by its label before renting again.

The API key is sent as ``Authorization: Bearer``; it never appears in a log line, an exception
or a ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.parse
from email.utils import parsedate_to_datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .errors import (
    AuthenticationFailed, ConfigError, InvalidResponse, OfferGone, RateLimited, SearchQuotaExceeded,
    VastRejected, VastUnavailable,
)
from .instances import Instance, RentRequest, parse_instance
from .offers import Offer, ParsedOffers, parse_search_response
from .pacing import Pacer, endpoint_of

log = logging.getLogger(__name__)

DEFAULT_URL = "https://console.vast.ai"
QUERY_OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in", "notin"})
OFFER_TYPES = frozenset({"on-demand", "bid", "reserved"})
_BODY_LIMIT = 200


class ApiKey:
    """A Vast API key that refuses to show itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value or any(c.isspace() for c in value):
            raise ConfigError("the Vast API key is empty or contains whitespace")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(****)"

    __str__ = __repr__

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ApiKey | None:
        """``VAST_API_KEY``, or the file named by ``VAST_API_KEY_FILE`` (a mounted Secret)."""
        path = environ.get("VAST_API_KEY_FILE", "").strip()
        if path:
            try:
                return cls(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"VAST_API_KEY_FILE={path}: cannot read the key file: {exc.strerror}") from None
        value = environ.get("VAST_API_KEY", "")
        return cls(value) if value.strip() else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 8.0
    max_retry_after: float = 60.0  # the longest Retry-After waited out inline (the official client's)

    def delay(self, attempt: int, rng: Callable[[], float]) -> float:
        """Full jitter: a random delay up to the exponential cap for this attempt."""
        cap = min(self.max_delay, self.base_delay * self.factor ** attempt)
        return cap * rng()


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True, slots=True)
class LogPolling:
    """How the uploaded log is waited for (the official client: 30 tries, 0.3 s apart), and the
    most of it that is kept."""

    attempts: int = 30
    interval: float = 0.3
    max_bytes: int = 8 * 1024 * 1024


def _query_value(value: Any) -> str:
    return urllib.parse.quote(json.dumps(value, separators=(",", ":")))


def validate_query(query: Mapping[str, Any]) -> None:
    """Check a ``{field: {op: value}}`` search filter before it is sent."""
    for fld, cond in query.items():
        if not isinstance(cond, Mapping) or not cond:
            raise ValueError(f"filter on {fld!r} must be a mapping of operator to value")
        for op, value in cond.items():
            if op not in QUERY_OPS:
                raise ValueError(f"unknown operator {op!r} on {fld!r}; expected one of {sorted(QUERY_OPS)}")
            if op in ("in", "notin") and not isinstance(value, list):
                raise ValueError(f"operator {op!r} on {fld!r} needs a list")


def broad_query(*, verified_only: bool = False, include_external: bool = False) -> dict[str, Any]:
    """Everything rentable and not rented: the official CLI's defaults (``rentable``, ``rented``,
    ``external: false`` unless ``include_external``) without ``verified``, which kube-vast applies
    itself per pod (``verified_only``)."""
    query: dict[str, Any] = {"rentable": {"eq": True}, "rented": {"eq": False}}
    if not include_external:
        query["external"] = {"eq": False}
    if verified_only:
        query["verified"] = {"eq": True}
    return query


def _error_code(response: requests.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, Mapping) else None
    return error if isinstance(error, str) else None


def retry_after(response: requests.Response, now: float) -> float | None:
    """Seconds to wait that a 429 asks for: ``Retry-After`` (seconds or an HTTP date), else
    ``X-RateLimit-Reset`` (epoch seconds, what Vast sends with its search quota); ``None``
    when neither is there or readable."""
    raw = response.headers.get("Retry-After", "").strip()
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(raw).timestamp() - now)
            except (TypeError, ValueError, IndexError):
                pass
    reset = response.headers.get("X-RateLimit-Reset", "").strip()
    try:
        return max(0.0, float(reset) - now) if reset else None
    except ValueError:
        return None


def _describe_body(response: requests.Response) -> tuple[str | None, str]:
    """(``error`` code, human message) from a Vast error body, truncated."""
    try:
        data = response.json()
    except ValueError:
        return None, response.text.strip()[:_BODY_LIMIT] or f"HTTP {response.status_code}"
    if isinstance(data, Mapping):
        error = data.get("error")
        message = data.get("msg") or data.get("detail") or data.get("message") or error
        return (str(error) if error else None), str(message or f"HTTP {response.status_code}")[:_BODY_LIMIT]
    return None, str(data)[:_BODY_LIMIT]


class VastClient:
    """Talks to the Vast REST API (or the simulator) at ``base_url``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: ApiKey | None = None,
        *,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        pacer: Pacer | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"Vast API URL {base_url!r} is not an http(s) URL")
        if parsed.username or parsed.password or parsed.query:
            raise ConfigError("Vast API URL must not carry credentials or a query; use the API key setting")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeouts = timeouts
        self._retry = retry
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._session = session or requests.Session()
        self.calls = 0
        self.pacer = pacer  # waits for each endpoint's turn under Vast's rate limits (vastmarket.pacing)

    def __repr__(self) -> str:
        return f"VastClient({self.base_url!r}, api_key={'set' if self._key else 'unset'})"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ, **kwargs: Any) -> VastClient:
        url = environ.get("VAST_API_URL") or environ.get("VAST_URL") or DEFAULT_URL
        return cls(url, ApiKey.from_environment(environ), **kwargs)

    def close(self) -> None:
        self._session.close()

    # --- transport ----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        if not path.startswith("/api/"):
            path = "/api/v0" + path
        return self.base_url + path

    def _request(self, method: str, path: str, *, body: Any = None, params: str = "",
                 idempotent: bool = True, what: str) -> tuple[int, Any, requests.Response]:
        url = self._url(path) + (f"?{params}" if params else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        last_problem = ""
        asked: float | None = None  # the wait the last 429 asked for (Retry-After)
        for attempt in range(self._retry.attempts):
            if attempt:
                delay = asked if asked is not None else self._retry.delay(attempt - 1, self._rng)
                log.info("vast %s: retrying in %.2fs after %s (attempt %d/%d)", what, delay,
                         last_problem, attempt + 1, self._retry.attempts)
                self._sleep(delay)
            if self.pacer is not None:
                self.pacer.wait_turn(endpoint_of(method, path))
            self.calls += 1
            try:
                response = self._session.request(
                    method, url, headers=headers,
                    data=None if body is None else json.dumps(body),
                    timeout=(self._timeouts.connect, self._timeouts.read),
                    allow_redirects=False,
                )
            except requests.ConnectTimeout:
                last_problem = "a connect timeout"
                continue
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not idempotent:
                    raise VastUnavailable(f"vast {what}: connection failed; the outcome is unknown",
                                          uncertain=True) from _scrub(exc)
                last_problem = f"a connection error ({type(exc).__name__})"
                continue
            status = response.status_code
            asked = None
            if status == 429:
                wait = retry_after(response, self._clock())
                if _error_code(response) == "search_quota_exceeded":
                    _, message = _describe_body(response)
                    raise SearchQuotaExceeded(f"vast {what}: the search quota is used up ({message}); "
                                              + ("no search before Vast's reset" if wait is None else
                                                 f"no search for {wait:.0f}s"), retry_after=wait)
                if wait is not None and wait > self._retry.max_retry_after:
                    raise RateLimited(f"vast {what}: rate limited; Vast asks to wait {wait:.0f}s", retry_after=wait)
                asked = wait
                last_problem = "HTTP 429 (rate limited)" + (f", Retry-After {wait:g}s" if wait is not None else "")
                continue
            if status >= 500 and not idempotent:  # a 500 too: Vast may have acted before failing
                raise VastUnavailable(f"vast {what}: HTTP {status}; the outcome is unknown", uncertain=True)
            if status in (502, 503, 504):
                last_problem = f"HTTP {status}"
                continue
            return status, _json_or_none(response), response
        if last_problem.startswith("HTTP 429"):
            raise RateLimited(f"vast {what}: still rate limited after {self._retry.attempts} attempts")
        raise VastUnavailable(f"vast {what}: {last_problem} after {self._retry.attempts} attempts")

    def _ok(self, what: str, status: int, data: Any, response: requests.Response) -> Any:
        if status == 401 or (status == 403 and "key" in response.text.lower()):
            raise AuthenticationFailed(f"vast {what}: the API key was refused", status=status, error="auth_error")
        if status >= 400:
            error, message = _describe_body(response)
            raise VastRejected(f"vast {what}: {message}", status=status, error=error)
        if data is None:
            raise InvalidResponse(f"vast {what}: the answer is not JSON (HTTP {status})")
        if isinstance(data, Mapping) and data.get("success") is False:
            error, message = _describe_body(response)
            raise VastRejected(f"vast {what}: {message}", status=status, error=error)
        return data

    # --- offers -------------------------------------------------------------------------------

    def search_offers(self, query: Mapping[str, Any] | None = None, *,
                      order: list[tuple[str, str]] | None = None, offer_type: str = "on-demand",
                      limit: int | None = None, allocated_storage: float | None = None) -> ParsedOffers:
        """``POST /api/v0/bundles/`` with a ``{field: {op: value}}`` filter."""
        query = dict(query if query is not None else broad_query())
        validate_query(query)
        if offer_type not in OFFER_TYPES:
            raise ValueError(f"offer type must be one of {sorted(OFFER_TYPES)}")
        body: dict[str, Any] = {**query, "type": offer_type}
        body["order"] = [list(o) for o in (order or [("score", "desc")])]
        if limit is not None:
            body["limit"] = int(limit)
        if allocated_storage is not None:
            body["allocated_storage"] = allocated_storage
        status, data, response = self._request("POST", "/bundles/", body=body, what="search offers")
        return parse_search_response(self._ok("search offers", status, data, response))

    def gpu_names(self) -> tuple[str, ...]:
        """The GPU model names on the market, as Vast spells them (``GET /api/v0/gpu_names/unique/``,
        what the official CLI reads to check ``--gpu-name``). Not a search: it costs no quota."""
        status, data, response = self._request("GET", "/gpu_names/unique/", what="gpu names")
        data = self._ok("gpu names", status, data, response)
        names = data.get("gpu_names") if isinstance(data, Mapping) else None
        if not isinstance(names, list):
            raise InvalidResponse("vast gpu names: no 'gpu_names' list in the answer")
        return tuple(sorted({n.strip() for n in names if isinstance(n, str) and n.strip()}))

    def get_offer(self, offer_id: int) -> Offer | None:
        """Look one offer up by id; ``None`` if it is no longer offered."""
        found = self.search_offers({"id": {"eq": int(offer_id)}, "rentable": {"eq": True},
                                    "rented": {"eq": False}}, limit=1)
        return next((o for o in found.offers if o.id == offer_id), None)

    # --- instances ----------------------------------------------------------------------------

    def rent(self, offer_id: int, request: RentRequest) -> int:
        """Rent ``offer_id``; returns the new instance id.

        Raises :class:`OfferGone` when the offer was taken, :class:`VastRejected` with Vast's
        message otherwise, or :class:`VastUnavailable` (``uncertain`` when Vast may have acted).
        A failed low bid that still created a stopped instance is destroyed before raising.
        """
        try:
            request.validate()
        except ValueError as exc:
            raise VastRejected(f"vast rent {offer_id}: {exc}", status=0, error="invalid_args") from None
        what = f"rent offer {offer_id}"
        status, data, response = self._request("PUT", f"/asks/{int(offer_id)}/", body=request.body(),
                                               idempotent=False, what=what)
        failed = status >= 400 or (isinstance(data, Mapping) and data.get("success") is False)
        if failed and status not in (401, 403):
            error, message = _describe_body(response)
            stray = data.get("new_contract") if isinstance(data, Mapping) else None
            if isinstance(stray, int):
                log.warning("vast %s failed but created instance %d; destroying it", what, stray)
                self.destroy(stray)
            if status in (404, 410) or error == "no_such_ask" or "no_such_ask" in message:
                raise OfferGone(f"vast {what}: {message}", status=status, error="no_such_ask")
        data = self._ok(what, status, data, response)
        contract = data.get("new_contract") if isinstance(data, Mapping) else None
        if not isinstance(contract, int) or isinstance(contract, bool):
            raise InvalidResponse(f"vast {what}: no instance id (new_contract) in the answer", uncertain=True)
        return contract

    def get_instance(self, instance_id: int) -> Instance | None:
        """``GET /api/v0/instances/{id}/``; ``None`` when the instance is gone."""
        what = f"get instance {instance_id}"
        status, data, response = self._request("GET", f"/instances/{int(instance_id)}/",
                                               params="owner=me", what=what)
        if status == 404:
            return None
        data = self._ok(what, status, data, response)
        if not isinstance(data, Mapping) or "instances" not in data:
            raise InvalidResponse(f"vast {what}: no 'instances' in the answer")
        raw = data["instances"]
        if raw is None:  # the documented answer for an instance that is gone
            return None
        if isinstance(raw, list):  # some deployments answer a one-element list
            raw = raw[0] if raw else None
            if raw is None:
                return None
        if not isinstance(raw, Mapping):
            raise InvalidResponse(f"vast {what}: 'instances' is a {type(raw).__name__}, not an instance")
        return parse_instance(raw)

    def list_instances(self, *, label: str | None = None,
                       filters: Mapping[str, Any] | None = None, page_size: int = 25) -> list[Instance]:
        """Every instance of the account (``GET /api/v1/instances/``, following ``next_token``)."""
        select: dict[str, Any] = dict(filters or {})
        if label is not None:
            select["label"] = {"eq": label}
        validate_query(select)
        out: list[Instance] = []
        token: Any = None
        seen: set[str] = set()
        for _page in range(10_000):
            params = [f"select_filters={_query_value(select)}", f"limit={min(page_size, 25)}",
                      f"order_by={_query_value([{'col': 'id', 'dir': 'asc'}])}"]
            if token is not None:
                params.append(f"after_token={urllib.parse.quote(str(token))}")
            status, data, response = self._request("GET", "/api/v1/instances/", params="&".join(params),
                                                    what="list instances")
            data = self._ok("list instances", status, data, response)
            items = data.get("instances") if isinstance(data, Mapping) else None
            if not isinstance(items, list):
                raise InvalidResponse("vast list instances: no 'instances' list in the answer")
            out.extend(parse_instance(item) for item in items)
            seen.add(json.dumps(token))
            token = data.get("next_token")
            if not token or not items:
                return out
            if json.dumps(token) in seen:  # a token seen before would page forever
                raise InvalidResponse("vast list instances: next_token repeats an earlier page's")
        raise InvalidResponse("vast list instances: pagination did not end")

    def destroy(self, instance_id: int) -> None:
        """Destroy an instance; an instance that is already gone counts as destroyed."""
        what = f"destroy instance {instance_id}"
        status, data, response = self._request("DELETE", f"/instances/{int(instance_id)}/", body={},
                                               what=what)
        error, _ = _describe_body(response) if status >= 400 or (
            isinstance(data, Mapping) and data.get("success") is False) else (None, "")
        if error == "no_such_instance" or (status == 404 and error is None):
            return
        self._ok(what, status, data, response)

    def instance_logs(self, instance_id: int, *, tail: int | None = None, daemon: bool = False,
                      poll: LogPolling = LogPolling()) -> str:
        """The container log of an instance (its last ``tail`` lines), as text.

        ``PUT /api/v0/instances/request_logs/{id}/`` asks Vast to upload the log and answers a
        ``result_url``; that URL (on a storage host, not Vast's API) is polled with a plain GET
        — never with the API key — until it answers 200, at most ``poll.attempts`` times. The
        text is cut to its last ``poll.max_bytes`` bytes. Raises :class:`VastRejected` when Vast
        refuses (an unknown instance), :class:`VastUnavailable` when the log never arrives.
        """
        what = f"logs of instance {instance_id}"
        body: dict[str, str] = {}
        if tail is not None:
            if tail < 0:
                raise ValueError("tail must be 0 or more lines")
            body["tail"] = str(int(tail))
        if daemon:
            body["daemon_logs"] = "true"
        status, data, response = self._request("PUT", f"/instances/request_logs/{int(instance_id)}/",
                                               body=body, what=what)
        data = self._ok(what, status, data, response)
        url = data.get("result_url") if isinstance(data, Mapping) else None
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https") \
                or not urllib.parse.urlsplit(url).netloc:
            raise InvalidResponse(f"vast {what}: no usable result_url in the answer")
        last = "no answer"
        for attempt in range(poll.attempts):
            if attempt:
                self._sleep(poll.interval)
            self.calls += 1
            try:
                with self._session.get(url, timeout=(self._timeouts.connect, self._timeouts.read),
                                       stream=True) as reply:
                    if reply.status_code == 200:
                        return _tail_text(reply, poll.max_bytes)
                    last = f"HTTP {reply.status_code}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"a connection error ({type(exc).__name__})"
        raise VastUnavailable(f"vast {what}: the log was not ready after {poll.attempts} tries "
                              f"({poll.interval:g}s apart; last {last})")

    def relabel(self, instance_id: int, label: str) -> None:
        if len(label) > 256:
            raise VastRejected("label longer than 256 characters", status=0, error="label_too_long")
        what = f"relabel instance {instance_id}"
        status, data, response = self._request("PUT", f"/instances/{int(instance_id)}/",
                                               body={"label": label}, what=what)
        self._ok(what, status, data, response)

    def set_bid(self, instance_id: int, price: float) -> None:
        """Change an interruptible instance's bid (``PUT /api/v0/instances/bid_price/{id}/``
        ``{"client_id": "me", "price": X}``, $/h for its GPUs). An outbid (paused) instance runs
        again once its bid is at least the market's ``min_bid``. Raises :class:`VastRejected`."""
        if not (isinstance(price, (int, float)) and 0.001 <= price <= 128.0):
            raise VastRejected(f"vast bid on instance {instance_id}: price must be from 0.001 to 128 $/h",
                               status=0, error="invalid_price")
        what = f"bid on instance {instance_id}"
        status, data, response = self._request("PUT", f"/instances/bid_price/{int(instance_id)}/",
                                               body={"client_id": "me", "price": round(float(price), 6)}, what=what)
        self._ok(what, status, data, response)

    def stop(self, instance_id: int) -> None:
        """Stop an instance (``PUT {"state": "stopped"}``): its container gets SIGTERM; the data
        and the storage bill stay. Asking again is harmless. Raises :class:`VastRejected`
        (``error="no_such_instance"`` when it is gone)."""
        self._set_state(instance_id, "stopped")

    def start(self, instance_id: int) -> None:
        """Start a stopped instance again (``PUT {"state": "running"}``): a new run of its
        container, on new host ports. Raises :class:`VastRejected` (e.g. when the host has no
        room: "Required resources are currently unavailable")."""
        self._set_state(instance_id, "running")

    def _set_state(self, instance_id: int, state: str) -> None:
        what = f"set instance {instance_id} {state}"
        status, data, response = self._request("PUT", f"/instances/{int(instance_id)}/",
                                               body={"state": state}, what=what)
        self._ok(what, status, data, response)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _tail_text(reply: requests.Response, max_bytes: int) -> str:
    """The body as text, keeping only its last ``max_bytes`` bytes (from a whole line on)."""
    kept = b""
    cut = False
    for chunk in reply.iter_content(64 * 1024):
        kept += chunk
        if len(kept) > 2 * max_bytes:
            kept, cut = kept[-max_bytes:], True
    if len(kept) > max_bytes:
        kept, cut = kept[-max_bytes:], True
    if cut:
        kept = kept[kept.find(b"\n") + 1:]
    return kept.decode("utf-8", "replace")


def _scrub(exc: Exception) -> Exception:
    """A requests exception reduced to its type: its text may include headers or URLs."""
    return VastUnavailable(type(exc).__name__)
