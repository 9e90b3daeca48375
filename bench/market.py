"""Benchmark: offer rows per day of demand-driven market watching against today's broad search.

Run: ``make bench-market`` (or ``.venv/bin/python bench/market.py [--offers N] [--rounds R]``).

* baseline — what the controller did before: one broad search (rentable, not rented, not
  external) with ``limit 10000`` every poll interval (30 s), whatever the cluster needs.
* demand-driven — :class:`vastmarket.market_watch.MarketWatcher` for the standard demand profile
  (``bench/market_profile.py``: 3 GPU models, 2 regions, 20 pods) with its default intervals
  (the whole demand every 240 s, pods waiting for an offer every 30 s), stepped every 5 s over
  simulated hours; with the 20 pods running (steady state), with all 20 pending (each has an
  offer: nothing waits for the market), and with 5 of them pending at a price no offer meets
  (searched for every 30 s).

Both run against the simulator over real HTTP (the Vast client, a 20,000-offer market), in the
same run, without and with a row cap that truncates answers (the watcher completes them).
Rows per day are extrapolated from the rows received. Placement equality: for every pod of the
profile, the offer kube-vast chooses from the demand-driven snapshot is the one it chooses from
the whole market (every rentable offer, straight from the simulator's generator, not through any
search).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.market_profile import MODELS, PODS, REGIONS, standard_config, standard_pods  # noqa: E402
from controller.demand import pod_demand  # noqa: E402
from vastmarket.client import VastClient, broad_query  # noqa: E402
from vastmarket.config import SelectionConfig  # noqa: E402
from vastmarket.market_watch import MarketWatcher  # noqa: E402
from vastmarket.offers import parse_offers  # noqa: E402
from vastmarket.requirements import pod_needs, requirements_for  # noqa: E402
from vastmarket.selection import ScoringPolicy  # noqa: E402
from vastmarket.snapshot import OfferSnapshot  # noqa: E402
from vastsim import SimulatorServer  # noqa: E402
from vastsim.offerset import generate_offers  # noqa: E402

ROUNDS_PER_DAY = 86_400 / 30.0
NOW = 1_767_225_600.0  # a fixed clock: the simulator and the ground truth draw the same market


class Clock:
    """Simulated time: the watcher's rounds over an hour, without waiting an hour."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Measured:
    rows_per_day: float
    searches_per_hour: float
    rows_per_search: float


def whole_market(seed: int, offers: int) -> OfferSnapshot:
    """Every offer the broad search would see, from the generator itself (no search involved)."""
    raw = [o for o in generate_offers(seed, offers, now=NOW) if o["rentable"] and not o["rented"] and not o["external"]]
    return OfferSnapshot(parse_offers(raw).offers, taken_at=NOW)


def placements(config: SelectionConfig, pods: list[dict], snapshot: OfferSnapshot) -> list[int | None]:
    policy = ScoringPolicy.from_config(config)
    chosen = []
    for pod in pods:
        req = requirements_for(config, pod)
        req = replace(req, direct_ports=max(req.direct_ports, len(pod_needs(pod).ports)))
        best = snapshot.rank(req, policy).best
        chosen.append(best.offer.id if best else None)
    return chosen


def with_phase(pods: list[dict], phase: str) -> list[dict]:
    return [{**p, "status": {"phase": phase}, "spec": {**p["spec"], **({"nodeName": "vast-gpu-node-1"}
                                                                         if phase == "Running" else {})}}
            for p in pods]


def unplaceable(pods: list[dict], count: int) -> list[dict]:
    """The pods, ``count`` of them pending at a price cap no offer meets (they wait for the market)."""
    out = with_phase(pods, "Running")
    for pod in out[:count]:
        pod["metadata"] = {**pod["metadata"], "annotations": {**pod["metadata"]["annotations"],
                                                              "vast.ai/price-max": "0.05"}}
        pod["status"] = {"phase": "Pending"}
        pod["spec"] = {k: v for k, v in pod["spec"].items() if k != "nodeName"}
    return out


def baseline(sim: SimulatorServer, rounds: int) -> tuple[Measured, OfferSnapshot]:
    """Today's poller: a broad search with limit 10000 every 30 s (a truncated answer taken as the market)."""
    client = VastClient(sim.url)
    rows = 0
    for _ in range(rounds):
        found = client.search_offers(broad_query(), limit=10_000)
        rows += len(found.offers) + found.dropped
    return Measured(rows / rounds * ROUNDS_PER_DAY, 120.0, rows / rounds), OfferSnapshot(found.offers, taken_at=NOW)


def demand_driven(sim: SimulatorServer, clock: Clock, pods: list[dict], hours: float) -> tuple[Measured, MarketWatcher]:
    """The watcher stepped every demand interval (5 s) over ``hours`` of simulated time."""
    client = VastClient(sim.url)
    config = standard_config()
    watcher = MarketWatcher(lambda f, o, n: client.search_offers(f, order=o, limit=n), lambda s: None,
                            lambda: pod_demand(config, pods), client.gpu_names, clock=clock)
    end = clock.now + hours * 3600
    while clock.now < end:
        watcher.step()
        assert watcher.failures == 0, watcher.last_error
        clock.now += watcher.demand_interval
    stats = watcher.stats
    per_hour = 1 / hours
    return Measured(stats.rows * per_hour * 24, stats.searches * per_hour, stats.rows / max(stats.searches, 1)), watcher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=int, default=20_000, help="offers on the simulated market")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=0.5, help="simulated hours of market watching per scenario")
    parser.add_argument("--row-cap", type=int, default=500, help="the row cap of the truncating scenario")
    args = parser.parse_args()

    config = standard_config()
    truth = placements(config, standard_pods(), whole_market(args.seed, args.offers))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}")
    print(f"market: {args.offers} simulated offers (seed {args.seed}); profile: {len(MODELS)} GPU models "
          f"({', '.join(MODELS)}), {len(REGIONS)} regions ({', '.join(REGIONS)}), {PODS} pods; "
          f"{args.hours:g} simulated hour(s) per scenario\n")
    print("| scenario | row cap | searches/hour | rows/search | rows/day | vs today's rows/day | placements equal |")
    print("|---|---|---|---|---|---|---|")
    worst_steady, ok, today = 0.0, True, 0.0
    for cap in (None, args.row_cap):
        shown = "none" if cap is None else str(cap)
        clock = Clock()
        with SimulatorServer(seed=args.seed, offers=args.offers, clock=clock, search_row_cap=cap) as sim:
            base, seen = baseline(sim, 3)
            today = today or base.rows_per_day  # today's rows: the uncapped broad search
            base_equal = sum(a == b for a, b in zip(placements(config, standard_pods(), seen), truth))
            print(f"| baseline: broad search, limit 10000, every 30 s | {shown} | {base.searches_per_hour:.0f} | "
                  f"{base.rows_per_search:.0f} | {base.rows_per_day:,.0f} | 1/{today / base.rows_per_day:.0f} | "
                  f"{base_equal}/{len(truth)} |")
            check = MarketWatcher(lambda f, o, n, c=VastClient(sim.url): c.search_offers(f, order=o, limit=n),
                                  lambda s: None, lambda: pod_demand(config, standard_pods()),
                                  VastClient(sim.url).gpu_names, clock=clock)
            assert check.poll_once() is not None and check.latest is not None, check.last_error
            chosen = placements(config, standard_pods(), check.latest)
            equal = sum(a == b for a, b in zip(chosen, truth))
            ok = ok and equal == len(truth)
            scenarios = (("20 pods running (steady state)", with_phase(standard_pods(), "Running")),
                         ("20 pods pending (a rollout)", with_phase(standard_pods(), "Pending")),
                         ("5 of them pending, no offer under their cap", unplaceable(standard_pods(), 5)))
            for name, pods in scenarios:
                new, _ = demand_driven(sim, clock, pods, args.hours)
                ratio = new.rows_per_day / today
                if name.startswith("20 pods running"):
                    worst_steady = max(worst_steady, ratio)
                print(f"| demand-driven: {name} | {shown} | {new.searches_per_hour:.0f} | {new.rows_per_search:.0f} | "
                      f"{new.rows_per_day:,.0f} | 1/{1 / ratio:.1f} | {equal}/{len(truth)} |")
    print(f"\nsteady state, worst rows/day ratio: 1/{1 / worst_steady:.0f} (target ≤ 1/20); placements equal to "
          f"a whole-market search: {'all' if ok else 'NOT ALL'}")
    return 0 if ok and worst_steady <= 1 / 20 else 1


if __name__ == "__main__":
    sys.exit(main())
