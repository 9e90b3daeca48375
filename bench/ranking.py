"""Benchmark: ranking 10,000 offers, cold and warm, against the naive baseline in the same run.

Run: ``make bench`` (or ``.venv/bin/python bench/ranking.py [--offers N] [--repeat R]``).

* naive — :func:`bench.naive.naive_rank`: one offer at a time from the Offer objects.
* cold  — :func:`vastmarket.selection.rank` on the snapshot's column table (what a new pod
  costs the first time it is asked about).
* warm  — :meth:`vastmarket.snapshot.OfferSnapshot.rank` for requirements already asked on the
  same snapshot (filter, prioritize and the webhook asking about the same pod).

The offers are the simulator's deterministic market (seed 7). Medians and 95th percentiles of
``--repeat`` runs per requirement profile are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.naive import naive_rank  # noqa: E402
from vastmarket.offers import parse_offers  # noqa: E402
from vastmarket.requirements import Requirements  # noqa: E402
from vastmarket.selection import ScoringPolicy, rank  # noqa: E402
from vastsim.offerset import generate_offers  # noqa: E402
from vastmarket.snapshot import OfferSnapshot  # noqa: E402

PROFILES = {
    "budget (seed)": Requirements(gpu_types=("RTX3060",), min_gpu_memory_gb=12, max_price=0.50,
                                  min_reliability=0.95, locations=("US",), direct_ports=2),
    "performance": Requirements(gpu_types=("RTX4090",), max_price=0.70, min_download_mbps=200,
                                min_reliability=0.98, locations=("US-CA", "US-TX", "US", "EU")),
    "fallback ladder": Requirements(gpu_types=("RTX3060", "RTX4090", "A4000"), max_price=0.8,
                                    min_reliability=0.9, locations=("US-CA", "US-TX", "US-NY", "US", "EU")),
    "everything passes": Requirements(max_price=1000.0),
}


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    raw = generate_offers(seed=7, count=args.offers)
    start = time.perf_counter()
    parsed = parse_offers(raw)
    parse_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    snapshot = OfferSnapshot(parsed.offers, taken_at=time.time())
    table_ms = (time.perf_counter() - start) * 1000
    offers = list(parsed.offers)
    policy = ScoringPolicy()

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}")
    print(f"offers: {len(offers)} (parse {parse_ms:.0f} ms, column table {table_ms:.0f} ms, once per snapshot)")
    print(f"repeat: {args.repeat}\n")
    print("| requirements | matched | naive median ms | cold median ms | cold p95 ms | warm median ms | warm p95 ms | cold speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    worst_cold = worst_warm = 0.0
    for name, req in PROFILES.items():
        naive = timed(lambda: naive_rank(offers, req, policy), max(3, args.repeat // 5))
        cold = timed(lambda: rank(snapshot.table, req, policy), args.repeat)
        snapshot.rank(req, policy)
        warm = timed(lambda: snapshot.rank(req, policy), args.repeat)
        matched = snapshot.rank(req, policy).passed
        worst_cold = max(worst_cold, statistics.median(cold))
        worst_warm = max(worst_warm, statistics.median(warm))
        print(f"| {name} | {matched} | {statistics.median(naive):.1f} | {statistics.median(cold):.1f} | "
              f"{p95(cold):.1f} | {statistics.median(warm):.4f} | {p95(warm):.4f} | "
              f"{statistics.median(naive) / statistics.median(cold):.1f}x |")
    print(f"\nworst median: cold {worst_cold:.1f} ms (target ≤ 30), warm {worst_warm:.4f} ms (target ≤ 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
