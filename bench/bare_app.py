"""The baseline for the HTTP benchmarks: a bare Flask endpoint under the same gunicorn settings,
answering with a reply of the same size and shape, and doing no work.

Run by the benchmarks, not by hand: ``python bench/bare_app.py --port P``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response, request  # noqa: E402

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
        names = json.loads(request.get_data())["NodeNames"]
        body = [{"Host": n, "Score": 10} for n in names]
        return Response(json.dumps(body, separators=(",", ":")), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response("{}", mimetype="application/json")

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    serve(create_bare_app, host="127.0.0.1", port=args.port, threads=args.threads, name="bare")
