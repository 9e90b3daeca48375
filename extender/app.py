"""The extender's Flask shell: decode → decide → encode. Errors are JSON: a body that cannot be
understood is a 400 with a message; anything else is a bug, logged once and answered 500."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
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
        # Encoded for every request: at scale kube-scheduler sends each pod another sample of the
        # feasible nodes, and keeping earlier replies to reuse made distinct requests slower (old
        # lists of thousands of names to keep, compare and free) while a repeated one gained little.
        result = encode_filter_result(args, decision.passed, decision.failed, decision.unresolvable)
        data = json.dumps(result, separators=(",", ":")).encode()
        metrics.ok["filter"].inc()
        metrics.took["filter"].observe(time.perf_counter() - start)
        return Response(data, status=200, mimetype="application/json")

    @app.post("/prioritize")
    def prioritize_route() -> Response:
        start = time.perf_counter()
        args = decode_args(body(), validate=False)  # validated where the pod is read
        result = priorities(args, context(), placements)
        reply = priorities_body(result.names, result.virtual_at, result.virtual_score, result.real_score)
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
