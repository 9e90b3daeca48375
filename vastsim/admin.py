"""The `/_sim/` admin routes: fault injection and inspection over HTTP, for tests and the demo.

Not authenticated by the Vast key. Each route decodes a JSON body and calls the same Python method
a test would call on `SimulatorServer` (`faults.*`, `market.*`, `state()`, `reset()`); a bad
argument is a 400 `invalid_args`, an unknown instance or offer a 404. See docs/simulator.md.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from vastsim.faults import Faults
from vastsim.logs import RESULTS_PATH
from vastsim.market import Market
from vastsim.quota import SearchLimits
from vastsim.responses import ApiError, Request, Response, decode_json_object, json_response, text_response

log = logging.getLogger(__name__)

PREFIX = "/_sim/"
NO_SUCH_KEY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    "<Message>The specified key does not exist.</Message></Error>"
)


class SimAdmin:
    def __init__(
        self,
        *,
        market: Market,
        faults: Faults,
        state: Callable[[], dict[str, Any]],
        reset: Callable[..., None],
        partition: Callable[[int], str] | None = None,
        heal: Callable[..., list[str]] | None = None,
        search_limits: SearchLimits | None = None,
    ) -> None:
        self._market = market
        self._faults = faults
        self._state = state
        self._reset = reset
        self._partition = partition
        self._heal = heal
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any]], Response]] = {
            ("GET", "state"): lambda _: json_response(200, self._state()),
            ("GET", "instances"): lambda _: json_response(200, self._state()),
            ("GET", "faults"): lambda _: json_response(200, self._faults.snapshot()),
            ("POST", "reset"): self._reset_route,
            ("POST", "faults/fail"): self._pending(self._faults.fail_next),
            ("POST", "faults/rate_limit"): self._pending(self._faults.rate_limit),
            ("POST", "faults/latency"): self._pending(self._faults.set_latency),
            ("POST", "faults/hold"): self._pending(self._faults.hold),
            ("POST", "faults/release"): self._pending(self._faults.release),
            ("POST", "faults/slow_answer"): self._pending(self._faults.set_slow_answer),
            ("POST", "faults/commit_then_fail"): self._pending(self._faults.commit_then_fail),
            ("POST", "faults/listing_lag"): self._pending(self._faults.set_listing_lag),
            ("POST", "faults/price"): self._pending(self._faults.drift_next_price),
            ("POST", "faults/vanish"): self._vanish,
            ("POST", "faults/fate"): self._aimed(self._market.set_fate, self._faults.fate_next),
            ("POST", "faults/health"): self._aimed(self._market.set_health, self._faults.health_next),
            ("POST", "market/prices"): self._move_prices,
            ("POST", "faults/outbid"): self._outbid,
            ("POST", "faults/partition"): self._partition_route,
            ("POST", "faults/heal"): self._heal_route,
            ("POST", "logs"): self._append_log,
            ("POST", "logs/upload_delay"): self._upload_delay,
        }
        if search_limits is not None:  # row cap and quota (vastsim.quota); GET state shows them
            self._routes[("POST", "search_limits")] = self._call(search_limits.configure)
            self._routes[("POST", "search_limits/exhaust")] = self._call(search_limits.exhaust)

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path.startswith(RESULTS_PATH):
            keyed = "authorization" in request.headers or request.param("api_key") is not None
            return self._log_result(request.path[len(RESULTS_PATH) :], keyed)
        name = request.path[len(PREFIX) :].strip("/")
        route = self._routes.get((request.method, name))
        if route is None:
            known = sorted(f"{m} {PREFIX}{n}" for m, n in self._routes)
            return ApiError(404, "not_found", f"no admin route {request.method} {request.path}; known: {', '.join(known)}").response()
        try:
            body = decode_json_object(request.body, empty={}) if request.method == "POST" else {}
            return route(body)
        except ApiError as e:
            return e.response()
        except KeyError as e:
            return ApiError(404, "not_found", str(e.args[0]) if e.args else "not found").response()
        except (TypeError, ValueError) as e:
            return ApiError(400, "invalid_args", str(e)).response()

    @staticmethod
    def _call(method: Callable[..., None]) -> Callable[[dict[str, Any]], Response]:
        """A route whose body is the method's keyword arguments."""

        def route(body: dict[str, Any]) -> Response:
            method(**body)
            return json_response(200, {"success": True})

        return route

    def _reset_route(self, body: dict[str, Any]) -> Response:
        self._reset(**body)
        return json_response(200, {"success": True})

    def _pending(self, method: Callable[..., None]) -> Callable[[dict[str, Any]], Response]:
        """A route for a fault on the next calls/rentals: the body is the method's arguments."""

        def route(body: dict[str, Any]) -> Response:
            method(**body)
            return json_response(200, {"success": True, "faults": self._faults.snapshot()})

        return route

    def _aimed(
        self, at_instance: Callable[..., None], at_next: Callable[..., None]
    ) -> Callable[[dict[str, Any]], Response]:
        """A route for a fault on a given `instance_id`, or else on the next rentals."""

        def route(body: dict[str, Any]) -> Response:
            args = dict(body)
            if "instance_id" in args:
                instance_id = _int(args.pop("instance_id"), "instance_id")
                at_instance(instance_id, **args)
                return json_response(200, {"success": True})
            at_next(**args)
            return json_response(200, {"success": True, "faults": self._faults.snapshot()})

        return route

    def _move_prices(self, body: dict[str, Any]) -> Response:
        """`{"fraction": 0.1, "spread": 0.2, "seed": 1}`: move some offers' prices."""
        return json_response(200, {"success": True, "moved": self._market.move_prices(**body)})

    def _outbid(self, body: dict[str, Any]) -> Response:
        """`{"instance_id": N, "price": X}` (price optional): other renters outbid that
        interruptible instance; its machine's min_bid becomes X and it is paused."""
        args = dict(body)
        instance_id = _int(args.pop("instance_id", None), "instance_id")
        price = args.pop("price", None)
        if args:
            raise ValueError(f"unexpected arguments: {', '.join(args)}; give instance_id and optionally price")
        return json_response(200, {"success": True, "min_bid": self._market.outbid(instance_id, price=price)})

    def _partition_route(self, body: dict[str, Any]) -> Response:
        """`{"instance_id": N}`: cut that instance's host off from this machine."""
        args = dict(body)
        instance_id = _int(args.pop("instance_id", None), "instance_id")
        if args or self._partition is None:
            raise ValueError(f"unexpected arguments: {', '.join(args)}; give instance_id" if args
                             else "this simulator has no host network")
        return json_response(200, {"success": True, "partitioned": self._partition(instance_id)})

    def _heal_route(self, body: dict[str, Any]) -> Response:
        """`{}`: every host cut off comes back; `{"instance_id": N}`: that instance's host."""
        args = dict(body)
        instance_id = _int(args.pop("instance_id"), "instance_id") if "instance_id" in args else None
        if args or self._heal is None:
            raise ValueError(f"unexpected arguments: {', '.join(args)}; give instance_id or nothing" if args
                             else "this simulator has no host network")
        return json_response(200, {"success": True, "healed": self._heal(instance_id)})

    def _append_log(self, body: dict[str, Any]) -> Response:
        args = dict(body)
        instance_id = _int(args.pop("instance_id", None), "instance_id")
        lines = args.pop("lines", None)
        if args:
            raise ValueError(f"unexpected arguments: {', '.join(args)}; give instance_id and lines")
        self._market.append_log(instance_id, lines)
        return json_response(200, {"success": True})

    def _upload_delay(self, body: dict[str, Any]) -> Response:
        self._market.logs.set_upload_seconds(**body)
        return json_response(200, {"success": True})

    def _log_result(self, name: str, keyed: bool) -> Response:
        """An uploaded log (a `result_url`): the text, or S3's 404 while it is not there."""
        token = name[: -len(".log")] if name.endswith(".log") else ""
        text = self._market.logs.download(token, with_credentials=keyed)
        if text is None:
            return text_response(404, NO_SUCH_KEY, "application/xml")
        return text_response(200, text)

    def _vanish(self, body: dict[str, Any]) -> Response:
        args = dict(body)
        if "offer_id" in args:
            offer_id = _int(args.pop("offer_id"), "offer_id")
            if args:
                raise ValueError(f"unexpected arguments with offer_id: {', '.join(args)}")
            if not self._market.vanish_offer(offer_id):
                raise KeyError(f"no offer {offer_id} on the market")
            return json_response(200, {"success": True})
        self._faults.vanish_next_rent(**args)
        return json_response(200, {"success": True, "faults": self._faults.snapshot()})


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value
