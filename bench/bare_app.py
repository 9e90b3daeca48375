"""The baseline for the HTTP benchmarks: a bare Flask endpoint under the same gunicorn settings,
decoding the request and encoding a reply of the same size and shape (the names through the same
encoders as the extender), and deciding nothing.

Run by the benchmarks, not by hand: ``python bench/bare_app.py --port P``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response, request  # noqa: E402

from extender.protocol import priorities_body  # noqa: E402
from serving.runner import serve  # noqa: E402


def create_bare_app() -> Flask:
    app = Flask("bare")
    app.url_map.strict_slashes = False

    @app.post("/filter")
    def filter_route() -> Response:
        names = json.loads(request.get_data())["NodeNames"]
        body = {"Nodes": None, "NodeNames": names, "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""}
        return Response(json.dumps(body, separators=(",", ":")), mimetype="application/json")

    @app.post("/prioritize")
    def prioritize_route() -> Response:
        # the extender's own encoder, so that both sides do the same encoding work
        names = json.loads(request.get_data())["NodeNames"]
        return Response(priorities_body(names, (), 0, 10), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response("{}", mimetype="application/json")

    return app


def held_snapshot_app(path: str) -> Flask:
    """The bare endpoint in a process that also holds an offer snapshot, loaded as the extender's
    follower loads it (and frozen out of the collector), never read: what holding the offers
    costs every request, apart from deciding anything with them."""
    from vastmarket.snapshot import SnapshotFile, SnapshotFollower

    follower = SnapshotFollower(SnapshotFile(path))
    follower.refresh()
    app = create_bare_app()
    app.config["held_snapshot"] = follower.current
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--hold-snapshot", metavar="PATH", help="also hold this offer snapshot (never read)")
    args = parser.parse_args()
    factory = (lambda: held_snapshot_app(args.hold_snapshot)) if args.hold_snapshot else create_bare_app
    serve(factory, host="127.0.0.1", port=args.port, threads=args.threads, name="bare")
