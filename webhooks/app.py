"""The webhook's Flask shell: decode → decide → encode, plus metrics and one log line per pod.

Every error is JSON through one error handler: a body that is not an AdmissionReview is a 400
with a message (the apiserver then applies the ``failurePolicy``); anything else unexpected is
a bug, logged once with its traceback and answered 500.
"""

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

from .admission import AdmissionRequest, BadReview, Verdict, build_response
from .budgets import BudgetTracker
from .decisions import DENIED, Context, Decision, decide
from .settings import WebhookSettings

log = logging.getLogger("kube_vast.webhook")

SnapshotSource = Callable[[], OfferSnapshot | None]


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "kube_vast_webhook_requests", "AdmissionReviews by outcome "
            "(mutated, allowed_untouched, denied, bad_request, error)", ["outcome"], registry=registry)
        self.latency = Histogram("kube_vast_webhook_request_seconds", "Time to answer an AdmissionReview",
                                 registry=registry,
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0))
        self.selections = Counter("kube_vast_webhook_selections", "Offer selections for admitted pods "
                                  "(dry runs not counted)", ["result"], registry=registry)
        self.selection_errors = Counter("kube_vast_webhook_selection_errors", "Pods admitted or denied "
                                        "without an offer, by reason (dry runs not counted)", ["reason"],
                                        registry=registry)
        self.dry_runs = Counter("kube_vast_webhook_dry_run_requests", "Dry-run AdmissionReviews",
                                registry=registry)

    def observe(self, review: AdmissionRequest, decision: Decision) -> None:
        self.requests.labels(decision.outcome).inc()
        if review.dry_run:
            self.dry_runs.inc()
            return
        if decision.selected:
            self.selections.labels("offer" if decision.selection_error is None else "no_offer").inc()
        if decision.selection_error is not None:
            self.selection_errors.labels(decision.selection_error).inc()


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status, mimetype="application/json")


def _log_decision(review: AdmissionRequest, decision: Decision) -> None:
    level = logging.DEBUG if decision.placement is None and decision.outcome != DENIED else logging.INFO
    log.log(level, "pod=%s uid=%s outcome=%s dry_run=%s %s%s", decision.pod, review.uid, decision.outcome,
            str(review.dry_run).lower(), decision.note,
            " (dry run: no side effects)" if review.dry_run else "")


def create_app(
    settings: WebhookSettings,
    *,
    config: SelectionConfig,
    snapshots: SnapshotSource,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
    budgets: BudgetTracker | None = None,
) -> Flask:
    app = Flask("kube_vast.webhook")
    app.url_map.strict_slashes = False  # answer /mutate/ too, never with a redirect
    registry = registry or CollectorRegistry()
    metrics = _Metrics(registry)
    register_snapshot_metrics(registry, snapshots, clock)
    policy = ScoringPolicy.from_config(config)

    def judge(review: AdmissionRequest) -> Verdict:
        decision = decide(review, Context(snapshot=snapshots(), now=clock(), config=config, policy=policy,
                                          settings=settings, budgets=budgets.view() if budgets else None))
        if budgets is not None and decision.budget_charge and not review.dry_run and decision.outcome != DENIED:
            budgets.charge(*decision.budget_charge)
        metrics.observe(review, decision)
        _log_decision(review, decision)
        return decision.verdict

    @app.post("/mutate")
    def mutate_route() -> Response:
        start = time.perf_counter()
        try:
            body = decode_json(request.get_data(cache=False))
        except BadBody as exc:
            raise BadReview(str(exc)) from None
        reply = build_response(body, judge)
        metrics.latency.observe(time.perf_counter() - start)
        return _json(reply)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        # Ready without a fresh snapshot too: pods are then admitted with vast.ai/selection-error,
        # which is better than skipping the webhook (no toleration, no scheduler name).
        snapshot = snapshots()
        if snapshot is None:
            return _json({"status": "ready", "snapshot": "missing"})
        now = clock()
        stale = snapshot.staleness(now, settings.max_snapshot_age)
        body: dict[str, Any] = {"status": "ready", "snapshot": "stale" if stale else "fresh", "offers": len(snapshot),
                                "snapshot_age_seconds": round(snapshot.age(now), 1)}
        if stale is not None:
            body["reason"] = stale
        return _json(body)

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(Exception)
    def error(exc: Exception) -> Response:
        if isinstance(exc, BadReview):
            metrics.requests.labels("bad_request").inc()
            log.warning("bad AdmissionReview on %s: %s", request.path, exc)
            return _json({"error": str(exc)}, 400)
        if isinstance(exc, HTTPException):
            return _json({"error": exc.description or exc.name}, exc.code or 500)
        metrics.requests.labels("error").inc()
        log.exception("webhook bug while handling %s", request.path)
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    return app
