"""Offer selection: hard requirements, the weighted score, deterministic ranking.

:func:`rank` is a pure function of an :class:`OfferTable` (the offers of one snapshot, laid out
in columns once), the pod's :class:`~vastmarket.requirements.Requirements` and a
:class:`ScoringPolicy`. It returns a :class:`Ranking`: every offer that meets every hard
requirement, best first, with the terms of its score, and for the others the number of offers
rejected per requirement (an offer failing several requirements counts under each).

Score in [0, 1] = Σ weight × term (weights normalised to sum 1) + modifiers, clamped:

* ``price`` — ``1 - dph_total / max_price``: cheaper is better, relative to the pod's cap.
* ``performance`` — 0.4 × reliability above the pod's floor + 0.3 × download bandwidth
  (log scale, 1000 Mb/s = 1) + 0.3 × DL performance relative to the best matching offer.
* ``gpu_match`` — 1 for the first preferred GPU type, falling linearly with its rank in the
  list; 1 when any GPU is allowed.
* ``location`` — the same, by rank in the location list.
* ``availability`` — 0.5 if verified + 0.5 × rental time left (7 days or more = 1).

Ties break by score, then price, then offer id. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Modifier, SelectionConfig, Weights
from .names import Location, LocationPattern, display_gpu, gpu_key, gpu_matches, parse_location_pattern
from .offers import Offer
from .requirements import Requirements

INF = math.inf
REASONS = (
    "unavailable", "gpu_type", "gpu_count", "gpu_memory", "price", "reliability", "download",
    "location", "blacklist", "verification", "cpu", "ram", "disk", "direct_ports",
)


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """How passing offers are scored; hashable so that rankings can be cached by it."""

    weights: Weights = Weights()
    modifiers: tuple[Modifier, ...] = ()

    @classmethod
    def from_config(cls, config: SelectionConfig) -> ScoringPolicy:
        return cls(weights=config.weights.normalised(), modifiers=config.modifiers)


class OfferTable:
    """The offers of one snapshot in columns, with missing numbers replaced by values that fail
    every minimum (``-inf``) or maximum (``+inf``). Built once per snapshot."""

    __slots__ = ("offers", "gpu_key", "num_gpus", "gpu_ram_gb", "price", "reliability",
                 "inet_down", "location", "available", "verified", "host_id", "machine_id",
                 "cpu", "ram_gb", "disk_gb", "ports", "dlperf", "bandwidth_term",
                 "availability_term", "ids")

    def __init__(self, offers: Sequence[Offer]) -> None:
        self.offers: tuple[Offer, ...] = tuple(offers)
        o = self.offers
        self.gpu_key = [x.gpu_key for x in o]
        self.num_gpus = [x.num_gpus for x in o]
        self.gpu_ram_gb = [x.gpu_ram_gb for x in o]
        self.price = [INF if x.dph_total is None else x.dph_total for x in o]
        self.reliability = [-INF if x.reliability is None else x.reliability for x in o]
        self.inet_down = [-INF if x.inet_down is None else x.inet_down for x in o]
        self.location: list[Location] = [x.location for x in o]
        self.available = [x.rentable and not x.rented for x in o]
        self.verified = [x.verified for x in o]
        self.host_id = [x.host_id for x in o]
        self.machine_id = [x.machine_id for x in o]
        self.cpu = [-INF if x.cpu_cores is None else x.cpu_cores for x in o]
        self.ram_gb = [-INF if x.cpu_ram_mb is None else x.cpu_ram_mb / 1000.0 for x in o]
        self.disk_gb = [-INF if x.disk_gb is None else x.disk_gb for x in o]
        self.ports = [x.direct_port_count for x in o]
        self.dlperf = [0.0 if x.dlperf is None or x.dlperf < 0 else x.dlperf for x in o]
        self.ids = [x.id for x in o]
        # Terms that do not depend on the pod are computed once per snapshot.
        self.bandwidth_term = [bandwidth_term(x.inet_down) for x in o]
        self.availability_term = [availability_term(x) for x in o]

    def __len__(self) -> int:
        return len(self.offers)


_BANDWIDTH_REF = math.log10(1001.0)


def bandwidth_term(inet_down: float | None) -> float:
    """Download bandwidth on a log scale: 10 Mb/s ≈ 0.35, 100 ≈ 0.67, 1000 Mb/s and more = 1."""
    if inet_down is None or inet_down <= 0:
        return 0.0
    return min(1.0, math.log10(1.0 + inet_down) / _BANDWIDTH_REF)


def availability_term(offer: Offer) -> float:
    """0.5 if verified + 0.5 × rental time left (7 days or more = 1)."""
    days = 0.0 if offer.duration_s is None else max(offer.duration_s, 0.0) / 86400.0
    return (0.5 if offer.verified else 0.0) + 0.5 * min(1.0, days / 7.0)


@dataclass(frozen=True, slots=True)
class ScoredOffer:
    offer: Offer
    score: float
    terms: Mapping[str, float]
    modifiers: tuple[tuple[str, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.offer.brief(),
            "score": round(self.score, 4),
            "terms": {k: round(v, 4) for k, v in self.terms.items()},
            "modifiers": {name: add for name, add in self.modifiers},
        }


class Ranking:
    """The outcome of ranking one snapshot for one pod's requirements.

    Only the order and the scores are computed up front; the terms of an offer's score are
    worked out when it is looked at (:meth:`top`, :attr:`best`, :attr:`ranked`)."""

    def __init__(self, requirements: Requirements, seen: int, order: Sequence[tuple[float, int]],
                 rejections: tuple[tuple[str, int], ...], reason_texts: Mapping[str, str],
                 explain: Callable[[int, float], ScoredOffer], ids: Sequence[int]) -> None:
        self.requirements = requirements
        self.seen = seen
        self.rejections = rejections
        self.reason_texts = reason_texts
        self._order = order
        self._explain = explain
        self._ids = ids
        self._materialised: dict[int, ScoredOffer] = {}

    def _scored(self, position: int) -> ScoredOffer:
        found = self._materialised.get(position)
        if found is None:
            score, index = self._order[position]
            found = self._materialised[position] = self._explain(index, score)
        return found

    @property
    def passed(self) -> int:
        return len(self._order)

    @property
    def best(self) -> ScoredOffer | None:
        return self._scored(0) if self._order else None

    def top(self, n: int) -> tuple[ScoredOffer, ...]:
        return tuple(self._scored(k) for k in range(min(n, len(self._order))))

    @property
    def ranked(self) -> tuple[ScoredOffer, ...]:
        """Every passing offer, best first."""
        return self.top(len(self._order))

    def find(self, offer_id: int) -> ScoredOffer | None:
        """The passing offer with this id, or ``None`` when it did not pass (or is gone)."""
        for position, (_, index) in enumerate(self._order):
            if self._ids[index] == offer_id:
                return self._scored(position)
        return None

    def offer_ids(self) -> list[int]:
        """Passing offer ids, best first, without working out any terms."""
        return [self._ids[index] for _, index in self._order]

    def rejection_phrases(self) -> list[str]:
        """``["4210 over $0.50/h", "601 not RTX3060"]``, most frequent first."""
        return [f"{count} {self.reason_texts.get(reason, reason)}" for reason, count in self.rejections]

    def summary(self) -> str:
        """A short human sentence: why nothing matched, or how many did."""
        if self.seen == 0:
            return "no offer matches: the offer list is empty"
        phrases = ", ".join(self.rejection_phrases())
        best = self.best
        if best is None:
            return f"no offer matches: {self.seen} seen; {phrases}"
        head = f"{self.passed} of {self.seen} offers match; best {best.offer.id} (score {best.score:.2f})"
        return f"{head}; rejected: {phrases}" if phrases else head


def reason_texts(req: Requirements) -> dict[str, str]:
    """How each rejection reason reads for these requirements."""
    gpus = ", ".join(display_gpu(g) for g in req.gpu_types)
    return {
        "unavailable": "not rentable",
        "gpu_type": f"not {gpus}" if gpus else "wrong GPU",
        "gpu_count": f"fewer than {req.num_gpus} GPUs",
        "gpu_memory": f"under {req.min_gpu_memory_gb:g} GB VRAM",
        "price": f"over ${req.max_price:.2f}/h",
        "reliability": f"below {req.min_reliability:.1%} reliability".replace(".0%", "%"),
        "download": f"under {req.min_download_mbps:g} Mbps down",
        "location": f"outside {', '.join(req.locations)}",
        "blacklist": "blacklisted",
        "verification": "unverified",
        "cpu": f"fewer than {req.min_cpu_cores:g} CPUs",
        "ram": f"under {req.min_ram_gb:.1f} GB RAM",
        "disk": f"under {req.min_disk_gb:g} GB disk",
        "direct_ports": f"fewer than {req.direct_ports} direct ports",
    }


def _rank_in(patterns: Sequence[Any], matches: Any) -> int | None:
    for idx, pattern in enumerate(patterns):
        if matches(pattern):
            return idx
    return None


def _rank_term(idx: int, length: int) -> float:
    return 1.0 - idx / length


def _modifier_applies(mod: Modifier, offer: Offer) -> bool:
    for key, expected in mod.when:
        if key == "datacenter" and offer.datacenter != expected:
            return False
        if key == "static_ip" and offer.static_ip != expected:
            return False
        if key == "verified" and offer.verified != expected:
            return False
        if key == "gpu" and not gpu_matches(gpu_key(expected), offer.gpu_key):
            return False
        if key == "location" and not parse_location_pattern(expected).matches(offer.location):
            return False
        if key == "host_id" and offer.host_id != expected:
            return False
        if key == "machine_id" and offer.machine_id != expected:
            return False
    return True


def _below(column: Sequence[float], minimum: float) -> set[int]:
    """Indexes of the offers whose value is under ``minimum`` (missing values are -inf)."""
    return {i for i, value in enumerate(column) if value < minimum}


def _failures(table: OfferTable, req: Requirements,
              gpu_rank: Mapping[str, int] | None,
              loc_rank: Mapping[Location, int] | None) -> list[tuple[str, set[int]]]:
    idx = range(len(table))
    fails: list[tuple[str, set[int]]] = [
        ("unavailable", {i for i in idx if not table.available[i]}),
        ("price", {i for i, p in enumerate(table.price) if p > req.max_price}),
    ]
    if gpu_rank is not None:
        fails.append(("gpu_type", {i for i, k in enumerate(table.gpu_key) if k not in gpu_rank}))
    if req.num_gpus > 1:
        fails.append(("gpu_count", _below(table.num_gpus, req.num_gpus)))
    if req.min_gpu_memory_gb > 0:
        fails.append(("gpu_memory", _below(table.gpu_ram_gb, req.min_gpu_memory_gb)))
    if req.min_reliability > 0:
        fails.append(("reliability", _below(table.reliability, req.min_reliability)))
    if req.min_download_mbps > 0:
        fails.append(("download", _below(table.inet_down, req.min_download_mbps)))
    if loc_rank is not None:
        fails.append(("location", {i for i, loc in enumerate(table.location) if loc not in loc_rank}))
    bl = req.blacklist
    if bl:
        fails.append(("blacklist", {
            i for i in idx
            if table.host_id[i] in bl.hosts or table.machine_id[i] in bl.machines
            or table.location[i].country in bl.countries
        }))
    if req.verified_only:
        fails.append(("verification", {i for i, v in enumerate(table.verified) if not v}))
    if req.min_cpu_cores > 0:
        fails.append(("cpu", _below(table.cpu, req.min_cpu_cores)))
    if req.min_ram_gb > 0:
        fails.append(("ram", _below(table.ram_gb, req.min_ram_gb)))
    if req.min_disk_gb > 0:
        fails.append(("disk", _below(table.disk_gb, req.min_disk_gb)))
    if req.direct_ports > 0:
        fails.append(("direct_ports", _below(table.ports, req.direct_ports)))
    return fails


def rank(table: OfferTable, req: Requirements, policy: ScoringPolicy = ScoringPolicy()) -> Ranking:
    """Filter ``table`` by ``req`` and score the rest under ``policy``; best first."""
    w = policy.weights.normalised()
    gpu_patterns = [gpu_key(g) for g in req.gpu_types]
    gpu_rank: dict[str, int] | None = None
    if gpu_patterns:
        gpu_rank = {}
        for key in set(table.gpu_key):
            found = _rank_in(gpu_patterns, lambda p, k=key: gpu_matches(p, k))
            if found is not None:
                gpu_rank[key] = found
    loc_patterns: list[LocationPattern] = [parse_location_pattern(x) for x in req.locations]
    loc_rank: dict[Location, int] | None = None
    if loc_patterns:
        loc_rank = {}
        for loc in set(table.location):
            found = _rank_in(loc_patterns, lambda p, l=loc: p.matches(l))
            if found is not None:
                loc_rank[loc] = found

    failures = _failures(table, req, gpu_rank, loc_rank)
    rejected: set[int] = set().union(*(s for _, s in failures)) if failures else set()
    passing = [i for i in range(len(table)) if i not in rejected]
    counts = sorted(((r, len(s)) for r, s in failures if s), key=lambda rc: (-rc[1], REASONS.index(rc[0])))

    price, dlperf = table.price, table.dlperf
    best_dlperf = max((dlperf[i] for i in passing), default=0.0)
    dl_scale = 1.0 / best_dlperf if best_dlperf > 0 else 0.0
    rel_floor = min(req.min_reliability, 0.99)
    rel_scale = 1.0 / (1.0 - rel_floor)
    inv_price = 1.0 / req.max_price
    n_gpu, n_loc = len(gpu_patterns), len(loc_patterns)
    gpu_terms = {k: _rank_term(r, n_gpu) for k, r in gpu_rank.items()} if gpu_rank is not None else None
    loc_terms = {k: _rank_term(r, n_loc) for k, r in loc_rank.items()} if loc_rank is not None else None

    def terms_of(i: int) -> dict[str, float]:
        rel = table.reliability[i]
        rel_term = 0.0 if rel == -INF else min(1.0, max(0.0, (rel - rel_floor) * rel_scale))
        return {
            "price": max(0.0, 1.0 - price[i] * inv_price),
            "performance": 0.4 * rel_term + 0.3 * table.bandwidth_term[i] + 0.3 * dlperf[i] * dl_scale,
            "gpu_match": gpu_terms[table.gpu_key[i]] if gpu_terms is not None else 1.0,
            "location": loc_terms[table.location[i]] if loc_terms is not None else 1.0,
            "availability": table.availability_term[i],
        }

    def modifiers_of(i: int) -> tuple[tuple[str, float], ...]:
        offer = table.offers[i]
        return tuple((m.label, m.add) for m in policy.modifiers if _modifier_applies(m, offer))

    # The hot loop: only the total, with everything that does not vary hoisted out of it.
    reliability, bw, avail = table.reliability, table.bandwidth_term, table.availability_term
    gkey, locs = table.gpu_key, table.location
    keyed: list[tuple[float, float, int, int]] = []
    for i in passing:
        rel = reliability[i]
        rel_term = 0.0 if rel == -INF else min(1.0, max(0.0, (rel - rel_floor) * rel_scale))
        total = (w.price * max(0.0, 1.0 - price[i] * inv_price)
                 + w.performance * (0.4 * rel_term + 0.3 * bw[i] + 0.3 * dlperf[i] * dl_scale)
                 + w.gpu_match * (gpu_terms[gkey[i]] if gpu_terms is not None else 1.0)
                 + w.location * (loc_terms[locs[i]] if loc_terms is not None else 1.0)
                 + w.availability * avail[i])
        if policy.modifiers:
            total += sum(add for _, add in modifiers_of(i))
        total = min(1.0, max(0.0, total))
        keyed.append((-total, price[i], table.ids[i], i))
    keyed.sort()
    order = [(-neg, i) for neg, _, _, i in keyed]

    def explain(i: int, score: float) -> ScoredOffer:
        return ScoredOffer(table.offers[i], score, terms_of(i), modifiers_of(i) if policy.modifiers else ())

    return Ranking(req, len(table), order, tuple(counts), reason_texts(req), explain, table.ids)
