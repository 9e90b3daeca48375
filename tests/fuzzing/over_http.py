"""``make fuzz``: the structural fuzzer against the real services over HTTP.

``kube-vast webhook`` (HTTPS, its own CA) and ``kube-vast extender`` run as real gunicorn processes,
started as the demo and the end-to-end tests start them (:mod:`devcluster.components`), on an offer
snapshot of 2,000 simulator offers and odd ones (:data:`ODDITIES`). Client threads send mutated
real bodies (:mod:`tests.fuzzing.corpus` mutated by :mod:`tests.fuzzing.mutations`, seeded: a run is
reproducible) over keep-alive connections: AdmissionReviews to ``/mutate``, ExtenderArgs to
``/filter`` and ``/prioritize``.

Counted, and all must be zero for exit code 0: answers other than 200 and 400, answers that are not
well-formed (:mod:`tests.fuzzing.answers`), connections dropped without an answer, a service process
that is not running at the end, and log lines of a bug (a traceback, a worker timeout or kill).
The first failing bodies are kept in the work directory, which is printed.

Run: ``.venv/bin/python -m tests.fuzzing.over_http [--bodies 100000] [--seed 1] [--clients 4]``.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import random
import shutil
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.components import Extender, Webhook
from devcluster.pki import webhook_serving_cert
from tests.fuzzing.answers import admission_problem, extender_problem
from tests.fuzzing.corpus import extender_bodies, webhook_bodies
from tests.fuzzing.mutations import Rolls, mutant
from vastmarket.offers import parse_offers
from vastmarket.snapshot import OfferSnapshot, SnapshotFile
from vastsim.offerset import generate_offers

BUG_LINES = ("Traceback", "bug while handling", "WORKER TIMEOUT", "was sent SIGKILL", "Worker exiting")
KEPT = 20


@dataclass
class Tally:
    sent: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    problems: int = 0
    dropped: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int | None, problem: str | None, raw: bytes, where: str) -> None:
        with self.lock:
            self.sent += 1
            if status is None:
                self.dropped += 1
            else:
                self.statuses[status] += 1
            if problem is not None:
                self.problems += 1
                if len(self.examples) < KEPT:
                    self.examples.append({"where": where, "status": status, "problem": problem,
                                          "body": raw[:20_000].decode("utf-8", "replace")})


class Client:
    """One keep-alive connection; reconnects after the server closes it or a drop."""

    def __init__(self, url: str, tls: ssl.SSLContext | None) -> None:
        self.host, port = url.split("://", 1)[1].split(":")
        self.port = int(port)
        self.tls = tls
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=60, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def post(self, path: str, raw: bytes) -> tuple[int, bytes] | None:
        """``(status, body)``, or ``None`` when the connection dropped without an answer."""
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
            reply = self.conn.getresponse()
            body = reply.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            return None
        if reply.will_close:
            self.conn.close()
            self.conn = None
        return reply.status, body


def _webhook_worker(url: str, tls: ssl.SSLContext, count: int, seed: int, tally: Tally) -> None:
    rolls, seeds, client = Rolls(random.Random(seed)), webhook_bodies(), Client(url, tls)
    for _ in range(count):
        body = mutant(seeds[rolls.below(len(seeds))], rolls)
        answer = client.post("/mutate", body.raw)
        problem = "connection dropped" if answer is None else admission_problem(*answer, body.document)
        tally.record(None if answer is None else answer[0], problem, body.raw, "webhook /mutate")


def _extender_worker(url: str, count: int, seed: int, tally: Tally) -> None:
    rolls, seeds, client = Rolls(random.Random(seed)), extender_bodies(), Client(url, None)
    for _ in range(count):
        verb = ("filter", "prioritize")[rolls.below(2)]
        body = mutant(seeds[rolls.below(len(seeds))], rolls)
        answer = client.post(f"/{verb}", body.raw)
        problem = "connection dropped" if answer is None else extender_problem(verb, *answer)
        tally.record(None if answer is None else answer[0], problem, body.raw, f"extender /{verb}")


def _bug_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(marker in line for marker in BUG_LINES)]


# Offers at the edges of what Vast's numbers can be, each once made a score NaN or infinite
# somewhere: free, a DL performance too small to divide by, none at all, no bandwidth, no
# reliability, a rental time already over, a negative price.
ODDITIES = ({"dph_total": 0.0, "dph_base": 0.0, "min_bid": 0.0}, {"dlperf": 5e-324}, {"dlperf": 0.0},
            {"dlperf": None, "inet_down": 0.0}, {"reliability": None, "reliability2": None},
            {"duration": -3600.0}, {"dph_total": -0.5})


def with_odd_offers(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``raw`` and, for one offer of each GPU model in it, a copy with each of :data:`ODDITIES`
    (so that whatever GPU a body asks for, it can meet them), under new ids."""
    one_per_model = list({offer["gpu_name"]: offer for offer in raw}.values())
    odd = [{**offer, **change, "id": 990_000_000 + 100 * m + k}
           for m, offer in enumerate(one_per_model) for k, change in enumerate(ODDITIES)]
    return raw + odd


def run(bodies: int, seed: int, clients: int, work: Path) -> dict[str, Any]:
    offers = parse_offers(with_odd_offers(generate_offers(seed=7, count=2000))).offers
    snapshot = work / "offers.json"
    SnapshotFile(snapshot).publish(OfferSnapshot(offers, taken_at=time.time()))
    webhook = Webhook(work, snapshot, webhook_serving_cert(work / "tls"), extra=("--max-snapshot-age", "86400"))
    extender = Extender(work, snapshot, extra=("--max-snapshot-age", "86400"))
    tallies = {"webhook": Tally(), "extender": Tally()}
    webhook.start()
    try:
        extender.start()
        try:
            per_service = max(1, clients // 2)
            share = bodies // (2 * per_service)
            threads = [threading.Thread(target=_webhook_worker, args=(webhook.url, webhook.tls, share, seed * 1000 + i,
                                                                    tallies["webhook"]), daemon=True)
                       for i in range(per_service)]
            threads += [threading.Thread(target=_extender_worker, args=(extender.url, share, seed * 1000 + 500 + i,
                                                                      tallies["extender"]), daemon=True)
                        for i in range(per_service)]
            start = time.monotonic()
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(5)
                sent = sum(t.sent for t in tallies.values())
                print(f"fuzz: {sent} bodies, {time.monotonic() - start:.0f}s", flush=True)
            elapsed = time.monotonic() - start
            alive = {"webhook": webhook.process.running(), "extender": extender.process.running()}
            bugs = {"webhook": _bug_lines(webhook.log()), "extender": _bug_lines(extender.log())}
        finally:
            extender.stop()
    finally:
        webhook.stop()
    sent = sum(t.sent for t in tallies.values())
    return {
        "bodies": sent, "seed": seed, "clients": 2 * per_service, "seconds": round(elapsed, 1),
        "bodies_per_second": round(sent / elapsed, 1) if elapsed else None,
        "services": {name: {"sent": t.sent, "statuses": dict(sorted(t.statuses.items())), "problems": t.problems,
                            "dropped": t.dropped, "running_at_end": alive[name], "bug_log_lines": bugs[name][:20]}
                     for name, t in tallies.items()},
        "examples": [e for t in tallies.values() for e in t.examples],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=100_000, help="bodies to send, split between the services")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4, help="client threads, half per service")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kube-vast-fuzz-"))
    print(f"fuzz: {args.bodies} bodies, seed {args.seed}, work directory {work} "
          f"({platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()})", flush=True)
    report = run(args.bodies, args.seed, args.clients, work)
    (work / "report.json").write_text(json.dumps(report, indent=1))
    failed = any(s["problems"] or s["dropped"] or not s["running_at_end"] or s["bug_log_lines"]
                 for s in report["services"].values())
    summary = {k: v for k, v in report.items() if k != "examples"}
    print(json.dumps(summary, indent=1))
    if failed:
        print(f"fuzz: FAILED; the first failing bodies and the service logs are in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("fuzz: ok: every answer 200 or 400 and well-formed, no dropped connection, both services up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
