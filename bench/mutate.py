"""Benchmark: ``POST /mutate`` latency through the real gunicorn HTTPS server, against a bare
endpoint that returns a reply of the same size from the same kind of server, in the same run.

Run: ``.venv/bin/python bench/mutate.py [--offers 10000] [--requests 3000] [--rounds 10]``.

* webhook — ``kube-vast webhook`` (gunicorn gthread, 1 worker, 4 threads, TLS with the reloading
  certificate hook) with a warm snapshot of ``--offers`` simulator offers (seed 7), answering the
  AdmissionReview the real kube-apiserver sent for a pod (``tests/webhooks/captured/
  pod-create-generatename.json``, a new uid per request): the full path — decode, validate,
  place (ranking answered from the snapshot's cache after the first request), mutate, diff, encode.
* bare — the same gunicorn and TLS set-up serving a plain WSGI function that reads the body and
  returns the webhook's reply bytes: the floor (TLS, HTTP parsing, Python client) that any
  endpoint pays.

Both over keep-alive connections (the kube-apiserver reuses them), interleaved in ``--rounds``
blocks so that drift hits both alike; then, smaller, one new TLS connection per request. The
first (cold) request per requirement profile is reported separately. Then the honest case:
``--distinct`` reviews of pods of different Deployments (a requirement never ranked before, in
every request), from 1 and from ``--clients`` concurrent clients, with throughput. The bare
endpoint decodes each review and encodes a reply of the same size. Prints Markdown.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402
from bench.common import Server, free_port, machine_lines, met, pct, percentiles, publish_offers  # noqa: E402
from devcluster.pki import webhook_serving_cert  # noqa: E402

REVIEW = ROOT / "tests" / "webhooks" / "captured" / "pod-create-generatename.json"
TARGET_P99_MS = 10.0


def serve_bare(port: int, cert: str, key: str, reply_file: str) -> None:
    """The bare endpoint (runs in its own process, started by this script)."""
    from serving.runner import serve
    from webhooks.tls import ReloadingCertificate

    def factory() -> Any:
        template = json.loads(Path(reply_file).read_bytes())

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            # the same decoding and encoding work as the webhook, for a reply of the same size
            raw = environ["wsgi.input"].read()
            uid = json.loads(raw)["request"]["uid"] if raw else ""  # a GET (readiness) has no body
            reply = {**template, "response": {**template["response"], "uid": uid}}
            body = json.dumps(reply).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app

    tls = ReloadingCertificate(cert, key)
    serve(factory, host="127.0.0.1", port=port, certfile=str(tls.cert), keyfile=str(tls.key),
          ssl_context=tls.gunicorn_hook(), name="bench-bare")


def review_bytes(template: dict[str, Any]) -> bytes:
    body = copy.deepcopy(template)
    body["request"]["uid"] = str(uuid.uuid4())
    return json.dumps(body).encode()


def distinct_reviews(template: dict[str, Any], count: int, seed: int) -> list[bytes]:
    """``count`` reviews, each for a pod of another Deployment: its own name, labels and price cap
    (a requirement the snapshot has not ranked yet), so no answer comes from a cache."""
    out = []
    for k in range(count):
        body = copy.deepcopy(template)
        meta = body["request"]["object"]["metadata"]
        meta["generateName"] = f"job{seed}-{k}-"
        meta["labels"]["app"] = f"job{seed}-{k}"
        meta["annotations"]["vast.ai/price-max"] = f"{0.40 + (seed * count + k) % 2000 * 0.0001:.4f}"
        body["request"]["uid"] = str(uuid.uuid4())
        out.append(json.dumps(body).encode())
    return out


def post(conn: http.client.HTTPSConnection, body: bytes) -> bytes:
    conn.request("POST", "/mutate?timeout=3s", body=body, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"HTTP {reply.status}: {data[:200]!r}")
    return data


def keepalive_ms(port: int, tls: ssl.SSLContext, bodies: list[bytes]) -> list[float]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10)
    out = []
    for body in bodies:
        start = time.perf_counter()
        post(conn, body)
        out.append((time.perf_counter() - start) * 1000)
    conn.close()
    return out


def new_connection_ms(port: int, tls: ssl.SSLContext, bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        start = time.perf_counter()
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10)
        post(conn, body)
        conn.close()
        out.append((time.perf_counter() - start) * 1000)
    return out


def row(name: str, values: list[float]) -> str:
    over = sum(1 for v in values if v > TARGET_P99_MS)
    p = percentiles(values)
    return f"| {name} | {len(values)} | {p[50]:.2f} | {p[90]:.2f} | {p[99]:.2f} | {max(values):.2f} | {over} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3000, help="keep-alive requests per endpoint")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved blocks")
    parser.add_argument("--new-connections", type=int, default=300, help="requests on fresh TLS connections")
    parser.add_argument("--distinct", type=int, default=1000, help="distinct pods per concurrency case")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the concurrent case")
    parser.add_argument("--serve-bare", nargs=4, metavar=("PORT", "CERT", "KEY", "REPLY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        port, cert, key, reply = args.serve_bare
        serve_bare(int(port), cert, key, reply)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-mutate-"))
    snapshot_file = work / "offers.json"
    offers = publish_offers(snapshot_file, count=args.offers)
    cert = webhook_serving_cert(work)
    tls = ssl.create_default_context(cadata=cert.ca_pem.decode())
    template = json.loads(REVIEW.read_text())

    hook_port = free_port()
    webhook = Server("webhook", [sys.executable, "-m", "kube_vast.cli", "--log-level", "WARNING", "webhook",
                                 "--host", "127.0.0.1", "--port", str(hook_port), "--tls-cert", str(cert.cert_file),
                                 "--tls-key", str(cert.key_file), "--snapshot", str(snapshot_file)],
                     hook_port, work / "webhook.log")
    bare: Server | None = None
    try:
        webhook.wait_ready(tls)
        conn = http.client.HTTPSConnection("127.0.0.1", hook_port, context=tls, timeout=30)
        cold = []
        for price in ("0.50", "0.45", "0.40"):  # three requirement profiles, each asked the first time
            body = copy.deepcopy(template)
            body["request"]["object"]["metadata"]["annotations"]["vast.ai/price-max"] = price
            start = time.perf_counter()
            post(conn, review_bytes(body))
            cold.append((time.perf_counter() - start) * 1000)
        reply = post(conn, review_bytes(template))
        conn.close()
        response = json.loads(reply)["response"]
        assert response["allowed"] and response.get("patchType") == "JSONPatch", "the webhook must mutate the pod"
        (work / "reply.json").write_bytes(reply)

        bare_port = free_port()
        bare = Server("bare", [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port),
                               str(cert.cert_file), str(cert.key_file), str(work / "reply.json")],
                      bare_port, work / "bare.log")
        bare.wait_ready(tls)

        per_round = max(1, args.requests // args.rounds)
        warm = [review_bytes(template) for _ in range(200)]
        keepalive_ms(hook_port, tls, warm)
        keepalive_ms(bare_port, tls, warm)
        hook_ms: list[float] = []
        bare_ms: list[float] = []
        for _ in range(args.rounds):
            bodies = [review_bytes(template) for _ in range(per_round)]
            hook_ms += keepalive_ms(hook_port, tls, bodies)
            bare_ms += keepalive_ms(bare_port, tls, bodies)
        fresh = [review_bytes(template) for _ in range(args.new_connections)]
        hook_new = new_connection_ms(hook_port, tls, fresh)
        bare_new = new_connection_ms(bare_port, tls, fresh)
        cadata = cert.ca_pem.decode()
        distinct = {clients: load.interleaved([hook_port, bare_port], "/mutate?timeout=3s",
                                              distinct_reviews(template, args.distinct, seed=clients),
                                              clients=clients, cadata=cadata)
                    for clients in (1, args.clients)}
    except BaseException:
        print(f"benchmark failed; server logs kept in {work}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        webhook.stop()
        if bare is not None:
            bare.stop()

    print("\n".join(machine_lines()))
    print(f"snapshot: {len(offers)} simulator offers (seed 7); request body {len(warm[0])} bytes, "
          f"reply {len(reply)} bytes (both endpoints)\n")
    print("| endpoint (loopback HTTPS, gunicorn 1 worker × 4 threads) | requests | p50 ms | p90 ms | p99 ms | max ms "
          f"| over {TARGET_P99_MS:.0f} ms |")
    print("|---|---|---|---|---|---|---|")
    print(row("/mutate, keep-alive connection", hook_ms))
    print(row("bare, same reply size, keep-alive connection", bare_ms))
    print(row("/mutate, new TLS connection per request", hook_new))
    print(row("bare, new TLS connection per request", bare_new))
    print(f"\ncold: first request per new requirement profile (ranks all {len(offers)} offers): "
          + ", ".join(f"{ms:.1f}" for ms in cold) + " ms")
    print("\nDistinct pods (each of another Deployment, a new requirement per request), keep-alive, "
          "each client on its own connection:\n")
    print("| clients | requests | webhook p50 ms | p99 ms | req/s | bare p50 ms | p99 ms | req/s | p99 ratio "
          "| throughput ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for clients, (hook, flat) in distinct.items():
        print(f"| {clients} | {len(hook.latencies)} | {hook.pct(50):.2f} | {hook.pct(99):.2f} | "
              f"{hook.throughput:.0f} | {flat.pct(50):.2f} | {flat.pct(99):.2f} | {flat.throughput:.0f} | "
              f"{hook.pct(99) / flat.pct(99):.2f} | {hook.throughput / flat.throughput:.2f} |")
    p99 = pct(hook_ms, 99)
    print(f"/mutate over the bare endpoint: p50 +{pct(hook_ms, 50) - pct(bare_ms, 50):.2f} ms, "
          f"p99 +{p99 - pct(bare_ms, 99):.2f} ms")
    print(f"target p99 ≤ {TARGET_P99_MS:.0f} ms (keep-alive): {met(p99 <= TARGET_P99_MS)} ({p99:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
