"""The extender's Flask shell: decode → decide → encode. Errors are JSON: a body that cannot be
understood is a 400 with a message; anything else is a bug, logged once and answered 500."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from serving.bodies import BadBody, decode_json
from serving.snapshot_metrics import register_snapshot_metrics
from vastmarket.config import SelectionConfig
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot

from .decisions import Context, filter_nodes, priorities
from .logbook import SelectionLogbook
from .placements import RecentPlacements
from .protocol import BadRequest, decode_args, encode_filter_result, priorities_body
from .settings import ExtenderSettings

log = logging.getLogger("kube_vast.extender")

SnapshotSource = Callable[[], OfferSnapshot | None]


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("kube_vast_extender_requests", "Extender requests by verb and outcome",
                                ["verb", "outcome"], registry=registry)
        self.latency = Histogram("kube_vast_extender_request_seconds", "Extender request latency",
                                 ["verb"], registry=registry,
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
        self.decisions = Counter("kube_vast_extender_virtual_node_decisions",
                                 "Filter decisions on virtual Vast nodes", ["result"], registry=registry)
        # the children every answered request touches, looked up once (labels() takes a lock)
        self.ok = {verb: self.requests.labels(verb, "ok") for verb in ("filter", "prioritize")}
        self.took = {verb: self.latency.labels(verb) for verb in ("filter", "prioritize")}
        self.virtual = {ok: self.decisions.labels("pass" if ok else "fail") for ok in (True, False)}


class _ReplyCache:
    """Encoded reply bodies for the last two distinct answers, by node list and what else the
    answer depends on. A burst of like pods gets the same node list pod after pod, and at
    thousands of nodes encoding the reply is most of the work. Only the last two: at scale
    kube-scheduler sends each pod another sample of the feasible nodes (it rotates where its
    search starts), so older lists seldom come back, and keeping them costs memory and, when
    they go, the freeing of thousands of names no longer in the CPU's cache.

    The names are never hashed: a request's freshly decoded strings have no hash yet, and hashing
    5,000 of them costs more than a miss. An entry is found by the list's length, three of its
    names and the rest of the answer, and then the whole list is compared (first in, first out)."""

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._data: dict[Hashable, tuple[tuple[str, ...], bytes]] = {}
        self._lock = threading.Lock()

    def get(self, names: tuple[str, ...], rest: Hashable, build: Callable[[], bytes]) -> bytes:
        middle = len(names) // 2
        probe = (len(names), names[:1], names[middle:middle + 1], names[-1:], rest)
        hit = self._data.get(probe)
        if hit is not None and hit[0] == names:
            return hit[1]
        data = build()
        with self._lock:
            self._data.pop(probe, None)
            self._data[probe] = (names, data)
            while len(self._data) > self._size:
                del self._data[next(iter(self._data))]
        return data


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status, mimetype="application/json")


def create_app(
    settings: ExtenderSettings,
    *,
    config: SelectionConfig,
    snapshots: SnapshotSource,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
) -> Flask:
    app = Flask("kube_vast.extender")
    app.url_map.strict_slashes = False  # never redirect: kube-scheduler would turn POST into GET
    registry = registry or CollectorRegistry()
    metrics = _Metrics(registry)
    register_snapshot_metrics(registry, snapshots, clock)
    logbook = SelectionLogbook(log)
    policy = ScoringPolicy.from_config(config)
    placements = RecentPlacements()  # prioritize asks about the pod filter just judged

    def context() -> Context:
        return Context(snapshot=snapshots(), now=clock(), config=config, policy=policy,
                       virtual=settings.virtual, max_snapshot_age=settings.max_snapshot_age,
                       burst_policy=settings.burst_policy, real_node_score=settings.real_node_score)

    def body() -> Any:
        try:
            return decode_json(request.get_data(cache=False))
        except BadBody as exc:
            raise BadRequest(str(exc)) from None

    @app.post("/filter")
    def filter_route() -> Response:
        start = time.perf_counter()
        args = decode_args(body(), validate=False)  # validated where the pod is read
        decision = filter_nodes(args, context(), placements)
        if decision.placement is not None:
            logbook.record(args.pod, decision.virtual[0], decision.placement)
            metrics.virtual[decision.placement.ok].inc()
        def reply() -> bytes:
            result = encode_filter_result(args, decision.passed, decision.failed, decision.unresolvable)
            return json.dumps(result, separators=(",", ":")).encode()

        if args.nodes is None:  # names only: the same answer recurs pod after pod
            # the names passed are the names asked about less the failed ones
            failed = (tuple(sorted(decision.failed.items())), tuple(sorted(decision.unresolvable.items())))
            data = filter_replies.get(args.names, failed, reply)
        else:
            data = reply()
        metrics.ok["filter"].inc()
        metrics.took["filter"].observe(time.perf_counter() - start)
        return Response(data, status=200, mimetype="application/json")

    priority_replies = _ReplyCache()
    filter_replies = _ReplyCache()

    @app.post("/prioritize")
    def prioritize_route() -> Response:
        start = time.perf_counter()
        args = decode_args(body(), validate=False)  # validated where the pod is read
        result = priorities(args, context(), placements)
        reply = priority_replies.get(
            result.names, (result.virtual, result.virtual_score, result.real_score),
            lambda: priorities_body(result.names, result.virtual, result.virtual_score, result.real_score))
        metrics.ok["prioritize"].inc()
        metrics.took["prioritize"].observe(time.perf_counter() - start)
        return Response(reply, status=200, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        snapshot = snapshots()
        if snapshot is None:
            return _json({"status": "not ready", "reason": "no offer snapshot yet"}, 503)
        now = clock()
        too_old = snapshot.stale_reason(now, settings.max_snapshot_age)
        if too_old is not None:
            return _json({"status": "not ready", "reason": too_old}, 503)
        body: dict[str, Any] = {"status": "ready", "offers": len(snapshot),
                                "snapshot_age_seconds": round(snapshot.age(now), 1)}
        stale = snapshot.staleness(now, settings.max_snapshot_age)
        if stale is not None:  # served all the same: searches are paused (Vast's search quota)
            body.update(snapshot="stale", reason=stale)
        return _json(body)

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> Response:
        verb = request.path.strip("/") or "?"
        metrics.requests.labels(verb, "bad_request").inc()
        log.warning("bad %s request: %s", verb, exc)
        return _json({"error": str(exc)}, 400)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _json({"error": exc.description or exc.name}, exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("extender bug while handling %s", request.path)
        metrics.requests.labels(request.path.strip("/") or "?", "error").inc()
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    return app
