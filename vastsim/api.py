"""The Vast REST routes: decode the request, call the market, encode the answer.

`VastApi.handle(request)` is the whole HTTP surface below `/api/`; it never raises. Every call
passes, in order: routing (404/405), call counting, injected latency (or a hold until released),
injected failures (429/5xx),
authentication (401), the rate limit (429), reading the body (only as `application/json`: a
body of another content type is not seen), then the route, then what faults do to an answer
once the action is done (commit then fail: a 5xx, a dropped connection or a late answer; a slow
answer). An ApiError becomes its JSON answer; anything else becomes a logged 500 `internal_error`.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable

from vastsim.account import DEFAULT_CREDIT, current_user
from vastsim.catalog import GPU_MODELS
from vastsim.faults import THRESHOLDS, Failure, Faults
from vastsim.filters import QueryError
from vastsim.listing import parse_list_query
from vastsim.logs import RESULTS_PATH, select_lines
from vastsim.market import OFFER_FIELDS, Market
from vastsim.rental import MAX_LABEL, parse_rent_request
from vastsim.responses import (
    HTML,
    ApiError,
    Request,
    Response,
    decode_json_object,
    json_response,
    text_response,
)
from vastsim.quota import QuotaRefusal, SearchLimits
from vastsim.search import parse_offer_query

log = logging.getLogger(__name__)

Handler = Callable[[Request, "re.Match[str]"], Response]
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?")  # the Host header, as a result_url may carry it


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Handler


def rate_limit_body(form: str, threshold: float) -> Response:
    """A 429 in one of the shapes the service sends; never with a Retry-After header."""
    msg = f"API requests too frequent endpoint threshold={threshold:g}"
    if form == "detail":
        return json_response(429, {"detail": msg})
    if form == "error":
        return json_response(429, {"error": "rate_limit_exceeded"})
    if form == "json":
        return json_response(429, {"success": False, "error": "rate_limit_exceeded", "msg": msg})
    return text_response(429, msg)


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def quota_response(refusal: QuotaRefusal) -> Response:
    """429 `search_quota_exceeded`, with `Retry-After` and `X-RateLimit-Reset` as the service sends."""
    wait = math.ceil(refusal.retry_after)
    reset = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(refusal.reset_at))
    body = json_response(429, {"success": False, "error": "search_quota_exceeded",
                               "msg": f"search quota of {refusal.rows} rows per {refusal.period:g}s exceeded; "
                                      f"it resets at {reset}"})
    return replace(body, headers={"Retry-After": str(wait), "X-RateLimit-Reset": str(math.ceil(refusal.reset_at))})


def failure_response(failure: Failure, endpoint: str) -> Response:
    """The answer for an injected failure."""
    if failure.status == 429:
        return rate_limit_body(failure.body, THRESHOLDS.get(endpoint, 1.0))
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}
    phrase = reason.get(failure.status, "Error")
    if failure.body == "html":
        page = (
            f"<html>\r\n<head><title>{failure.status} {phrase}</title></head>\r\n<body>\r\n"
            f"<center><h1>{failure.status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return text_response(failure.status, page, HTML)
    if failure.body in ("text", "detail", "error"):
        return text_response(failure.status, f"{failure.status} {phrase}")
    return json_response(failure.status, {"success": False, "error": "server_error", "msg": phrase})


class CallCounter:
    """Calls received per endpoint, and answers given per endpoint and status. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._answers: Counter[tuple[str, int | str]] = Counter()

    def call(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def answer(self, endpoint: str, status: int | str) -> None:
        """`status`: the HTTP status, or "dropped" for a connection closed unanswered."""
        with self._lock:
            self._answers[(endpoint, status)] += 1

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._answers.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            answers: dict[str, dict[str, int]] = {}
            for (endpoint, status), n in sorted(self._answers.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
                answers.setdefault(endpoint, {})[str(status)] = n
            return {"calls": dict(self._calls), "answers": answers}


class VastApi:
    def __init__(
        self,
        market: Market,
        faults: Faults,
        *,
        api_key: str | None,
        clock: Callable[[], float],
        wait: Callable[[float], object],
    ) -> None:
        self._market = market
        self._faults = faults
        self._api_key = api_key
        self._clock = clock
        self._wait = wait
        self.counter = CallCounter()
        self.search_limits = SearchLimits(clock)  # row cap and search row quota (vastsim.quota)
        self.credit = DEFAULT_CREDIT  # the account's starting credit, drawn down by rentals
        self._routes = [
            Route("GET", re.compile(r"/api/v0/users/current/?"), "user", self._current_user),
            Route("GET", re.compile(r"/api/v0/gpu_names/unique/"), "gpu_names", self._gpu_names),
            Route("POST", re.compile(r"/api/v0/bundles/"), "search", self._search),
            Route("GET", re.compile(r"/api/v0/bundles/"), "search", self._search_legacy),
            Route("PUT", re.compile(r"/api/v0/search/asks/"), "search", self._search_asks),
            Route("PUT", re.compile(r"/api/v0/asks/(\d+)/"), "create", self._create),
            Route("PUT", re.compile(r"/api/v0/instances/request_logs/(\d+)/"), "request_logs", self._request_logs),
            Route("PUT", re.compile(r"/api/v0/instances/bid_price/(\d+)/"), "update", self._bid_price),
            Route("GET", re.compile(r"/api/v0/instances/(\d+)/"), "get_instance", self._get_instance),
            Route("PUT", re.compile(r"/api/v0/instances/(\d+)/"), "update", self._update),
            Route("DELETE", re.compile(r"/api/v0/instances/(\d+)/"), "destroy", self._destroy),
            Route("GET", re.compile(r"/api/v0/instances/"), "list_instances_v0", self._deprecated_list),
            Route("GET", re.compile(r"/api/v1/instances/"), "list_instances", self._list),
        ]

    def handle(self, request: Request) -> Response:
        route, match = self._route(request)
        if route is None or match is None:
            return self._unrouted(request)
        endpoint = route.endpoint
        self.counter.call(endpoint)
        response = self._handle(request, route, match)
        self.counter.answer(endpoint, "dropped" if response.dropped else response.status)
        return response

    def _handle(self, request: Request, route: Route, match: re.Match[str]) -> Response:
        endpoint = route.endpoint
        delay = self._faults.latency(endpoint)
        if delay > 0:
            self._wait(delay)
        gate = self._faults.held(endpoint)
        while gate is not None and not gate.is_set() and not self._wait(0.02):
            pass  # held until released, or the simulator stops
        failure = self._faults.take_failure(endpoint)
        if failure is not None:
            return failure_response(failure, endpoint)
        key = self._presented_key(request)
        if self._api_key is not None and (key is None or not hmac.compare_digest(key, self._api_key)):
            return json_response(401, {"success": False, "error": "auth_error", "msg": "Invalid user key"})
        limit = self._faults.check_rate(endpoint, f"{key or ''}@{request.client}", self._clock())
        if limit is not None:
            return rate_limit_body(limit.body, limit.interval)
        if request.body.strip() and not _is_json(request.headers.get("content-type", "")):
            # The service reads a body by its content type: without application/json it sees none.
            log.info("body without Content-Type: application/json ignored endpoint=%s", endpoint)
            request = replace(request, body=b"")
        try:
            response = route.handler(request, match)
        except ApiError as e:
            response = e.response()
        except QueryError as e:
            response = ApiError(400, "invalid_args", str(e)).response()
        except Exception:
            log.exception("simulator bug endpoint=%s method=%s path=%s", endpoint, request.method, request.path)
            return ApiError(500, "internal_error", "internal simulator error").response()
        return self._answer(endpoint, response)

    def _answer(self, endpoint: str, response: Response) -> Response:
        """The answer as the faults leave it once the action is done: lost (commit then fail) if it
        took effect, then held back by a slow answer."""
        if response.status < 300:
            lost = self._faults.take_lost_answer(endpoint)
            if lost is not None:
                log.info("commit then fail endpoint=%s: the action took effect; answer %s", endpoint,
                         lost.status if lost.answer == "status" else lost.answer)
                if lost.answer == "status":
                    response = failure_response(Failure(lost.status, lost.body), endpoint)
                elif lost.answer == "drop":
                    return Response(0, b"", dropped=True)
                else:
                    self._wait(lost.seconds)
        delay = self._faults.slow_answer(endpoint)
        if delay > 0:
            self._wait(delay)
        return response

    def _route(self, request: Request) -> tuple[Route | None, re.Match[str] | None]:
        for route in self._routes:
            if route.method == request.method:
                match = route.pattern.fullmatch(request.path)
                if match is not None:
                    return route, match
        return None, None

    def _unrouted(self, request: Request) -> Response:
        if any(route.pattern.fullmatch(request.path) for route in self._routes):
            return ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}").response()
        hint = "" if request.path.endswith("/") else " (paths end in '/')"
        return ApiError(404, "not_found", f"no endpoint at {request.path}{hint}").response()

    @staticmethod
    def _presented_key(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return request.param("api_key")

    # --- routes --------------------------------------------------------------------------------
    def _search(self, request: Request, match: re.Match[str]) -> Response:
        return self._offers(request, decode_json_object(request.body, empty={}))

    def _search_legacy(self, request: Request, match: re.Match[str]) -> Response:
        raw = request.param("q") or ""
        return self._offers(request, decode_json_object(raw.encode("utf-8"), empty={}))

    def _search_asks(self, request: Request, match: re.Match[str]) -> Response:
        body = decode_json_object(request.body, empty={})
        q = body.get("q", {})
        if not isinstance(q, dict):
            raise ApiError(400, "invalid_request", "Invalid json body: q must be an object")
        return self._offers(request, q, success=True)

    def _offers(self, request: Request, body: dict[str, Any], *, success: bool = False) -> Response:
        """The search answer, cut to the row cap (`truncated`), or the quota's 429."""
        query = parse_offer_query(body, fields=OFFER_FIELDS)
        who = self._presented_key(request) or request.client
        refusal = self.search_limits.check(who)
        if refusal is not None:
            return quota_response(refusal)
        answer = self._market.search(query, cap=self.search_limits.row_cap())
        self.search_limits.record(who, len(answer.offers))
        payload: dict[str, Any] = {"success": True} if success else {}
        payload["offers"] = answer.offers
        if answer.truncated:
            payload["truncated"] = True
        return json_response(200, payload)

    def _current_user(self, request: Request, match: re.Match[str]) -> Response:
        ledger = self._market.snapshot()["instances"]
        return json_response(200, current_user(self.credit, ledger, self._clock()))

    def _gpu_names(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"gpu_names": sorted({m.name for m in GPU_MODELS})})

    def _create(self, request: Request, match: re.Match[str]) -> Response:
        offer_id = int(match.group(1))
        try:
            rent = parse_rent_request(decode_json_object(request.body))
            rental = self._market.rent(offer_id, rent)
        except ApiError as e:
            e.extra.setdefault("ask_id", offer_id)
            raise
        if rental.error is not None:
            return rental.error.response()
        return json_response(
            200, {"success": True, "new_contract": rental.instance_id, "instance_api_key": rental.api_key}
        )

    def _get_instance(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, {"instances": self._market.get_instance(int(match.group(1)))})

    def _update(self, request: Request, match: re.Match[str]) -> Response:
        instance_id = int(match.group(1))
        body = decode_json_object(request.body, empty={})
        if "label" not in body and "state" not in body:
            raise ApiError(400, "invalid_args", "nothing to update: give label or state")
        state = body.get("state")
        if "state" in body and state not in ("running", "stopped"):
            raise ApiError(400, "invalid_args", f"state must be 'running' or 'stopped', got {state!r}")
        label = body.get("label")
        if "label" in body:
            if label is not None and not isinstance(label, str):
                raise ApiError(400, "invalid_args", "label must be a string")
            if label is not None and len(label) > MAX_LABEL:
                raise ApiError(400, "label_too_long", f"label must be at most {MAX_LABEL} characters")
            self._market.relabel(instance_id, label)
        if isinstance(state, str):
            self._market.set_state(instance_id, state)
        return json_response(200, {"success": True})

    def _bid_price(self, request: Request, match: re.Match[str]) -> Response:
        """`{"client_id": "me", "price": X}`: the interruptible instance's new bid (vastsim.bids)."""
        body = decode_json_object(request.body)
        self._market.set_bid(int(match.group(1)), body.get("price"))
        return json_response(200, {"success": True})

    def _destroy(self, request: Request, match: re.Match[str]) -> Response:
        decode_json_object(request.body, empty={})
        self._market.destroy(int(match.group(1)))
        return json_response(200, {"success": True})

    def _request_logs(self, request: Request, match: re.Match[str]) -> Response:
        body = decode_json_object(request.body, empty={})
        tail = body.get("tail")
        if tail is not None and not (isinstance(tail, (str, int)) and not isinstance(tail, bool)
                                     and str(tail).strip().isdigit()):
            raise ApiError(400, "invalid_args", f"tail must be a number of lines such as \"1000\", got {tail!r}")
        grep = body.get("filter")
        if grep is not None and not isinstance(grep, str):
            raise ApiError(400, "invalid_args", "filter must be a string")
        daemon = body.get("daemon_logs") in ("true", True)
        lines = self._market.instance_log(int(match.group(1)), daemon=daemon)
        text = "".join(f"{line}\n" for line in select_lines(
            lines, tail=None if tail is None else int(str(tail).strip()), grep=grep or None))
        token = self._market.logs.upload(text)
        host = request.headers.get("host", "")
        if not _HOST.fullmatch(host):
            host = "127.0.0.1"
        return json_response(200, {"success": True, "result_url": f"http://{host}{RESULTS_PATH}{token}.log",
                                    "msg": "Log upload requested; fetch result_url when it is ready."})

    def _deprecated_list(self, request: Request, match: re.Match[str]) -> Response:
        raise ApiError(
            410,
            "deprecated_endpoint",
            "GET /api/v0/instances/ is deprecated and no longer lists instances. Use /api/v1/instances/ instead.",
        )

    def _list(self, request: Request, match: re.Match[str]) -> Response:
        params = {name: request.param(name) for name in request.query}
        return json_response(200, self._market.list_instances(parse_list_query(params)))
