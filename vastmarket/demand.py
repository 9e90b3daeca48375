"""What the cluster can use of the market, as a few Vast searches: demand-driven market watching.

Contract
--------
- :func:`want_of` turns one pod's :class:`~vastmarket.requirements.Requirements` into a
  :class:`Want`: the hard filters Vast can apply itself — GPU model names (Vast's spellings, from
  the market's name list), countries, price ceiling, reliability, VRAM, GPU count, direct ports,
  download bandwidth, disk, verification. Every filter is a *relaxation* of the pod's own: an
  offer the pod accepts always passes its want, so ranking the answers gives the same choice as
  ranking the whole market. What Vast cannot filter exactly (US states, blacklists, CPU and RAM)
  is left to kube-vast's own ranking. A GPU model the market's name list does not hold has no
  offer to find (a want of only such models searches nothing); without a name list at all, GPU
  models are not filtered by Vast.
- :func:`plan` merges the wants of every pod (and of the selection config, for the pods still to
  come) into at most ``max_queries`` :class:`MarketQuery` s: a want another covers is dropped,
  wants for the same countries are merged (the union of models, the loosest bounds), and groups
  beyond the budget are merged into one.
- A query whose answer came back truncated is completed piece by piece. Searches ask for the
  cheapest offers first, so :func:`narrow` keeps the answered offers below the highest price
  answered (all of that band is there) and returns the query for the rest of the band; when
  every answered offer has one price, :func:`split` cuts the query in two by GPU model.
- :func:`covers` says whether one want's offers include another's.

Pure: no I/O; :mod:`vastmarket.market_watch` runs the searches.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .names import geolocation_tails, gpu_key, gpu_matches, parse_location_pattern
from .offers import Offer
from .requirements import Requirements

# Slack on bounds Vast compares in other units than kube-vast (MB against GB): a hair looser.
_LOOSE = 1e-9


@dataclass(frozen=True, slots=True)
class Want:
    """The offers one pod could use, as Vast can filter them. ``None`` means "any"."""

    gpu_names: frozenset[str] | None = None
    geolocations: frozenset[str] | None = None  # two-letter tails of `geolocation`
    max_price: float = math.inf
    min_price: float = 0.0  # set on the rest of a truncated answer's band (gte)
    min_reliability: float = 0.0
    min_gpu_ram_mb: float = 0.0
    min_gpus: int = 1
    min_direct_ports: int = 0
    min_download_mbps: float = 0.0
    min_disk_gb: float = 0.0
    verified_only: bool = False

    def describe(self) -> str:
        gpus = "any GPU" if self.gpu_names is None else "/".join(sorted(self.gpu_names)) or "no GPU"
        where = "" if self.geolocations is None else " in " + ",".join(sorted(self.geolocations))
        price = f" ≤${self.max_price:g}/h" if math.isfinite(self.max_price) else ""
        if self.min_price:
            price = f" ${self.min_price:g}–{self.max_price:g}/h"
        return f"{gpus}{where}{price}"


def want_of(req: Requirements, gpu_names: Collection[str]) -> Want:
    """The want of ``req``; ``gpu_names`` is the market's name list (Vast's spellings)."""
    names: frozenset[str] | None = None
    if req.gpu_types and gpu_names:
        patterns = [gpu_key(t) for t in req.gpu_types]
        names = frozenset(n for n in gpu_names if any(gpu_matches(p, gpu_key(n)) for p in patterns))
    tails: frozenset[str] | None = None
    if req.locations:
        countries: frozenset[str] = frozenset().union(*(parse_location_pattern(x).countries for x in req.locations))
        tails = geolocation_tails(countries)
    return Want(
        # An interruptible pod's ceiling is on the bid price (min_bid + storage), not the on-demand
        # dph_total the search filters on: no price filter for it (vastmarket.bids).
        gpu_names=names, geolocations=tails, max_price=math.inf if req.interruptible else req.max_price,
        min_reliability=req.min_reliability, min_gpu_ram_mb=req.min_gpu_memory_gb * 1000.0,
        min_gpus=max(1, req.num_gpus), min_direct_ports=req.direct_ports,
        min_download_mbps=req.min_download_mbps, min_disk_gb=req.min_disk_gb,
        verified_only=req.verified_only,
    )


def _subset(small: frozenset[str] | None, big: frozenset[str] | None) -> bool:
    return big is None or (small is not None and small <= big)


def covers(big: Want, small: Want) -> bool:
    """Whether every offer ``small`` wants is one ``big`` wants too."""
    return (_subset(small.gpu_names, big.gpu_names) and _subset(small.geolocations, big.geolocations)
            and small.max_price <= big.max_price and small.min_price >= big.min_price
            and small.min_reliability >= big.min_reliability and small.min_gpu_ram_mb >= big.min_gpu_ram_mb
            and small.min_gpus >= big.min_gpus and small.min_direct_ports >= big.min_direct_ports
            and small.min_download_mbps >= big.min_download_mbps and small.min_disk_gb >= big.min_disk_gb
            and (small.verified_only or not big.verified_only))


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return None if a is None or b is None else a | b


def merge(a: Want, b: Want) -> Want:
    """The loosest want covering both."""
    return Want(
        gpu_names=_union(a.gpu_names, b.gpu_names), geolocations=_union(a.geolocations, b.geolocations),
        max_price=max(a.max_price, b.max_price), min_price=min(a.min_price, b.min_price),
        min_reliability=min(a.min_reliability, b.min_reliability),
        min_gpu_ram_mb=min(a.min_gpu_ram_mb, b.min_gpu_ram_mb), min_gpus=min(a.min_gpus, b.min_gpus),
        min_direct_ports=min(a.min_direct_ports, b.min_direct_ports),
        min_download_mbps=min(a.min_download_mbps, b.min_download_mbps),
        min_disk_gb=min(a.min_disk_gb, b.min_disk_gb), verified_only=a.verified_only and b.verified_only,
    )


@dataclass(frozen=True, slots=True)
class MarketQuery:
    """One search: the want it fetches and the base filters (``rentable``, ``rented``,
    ``external``) every search carries."""

    want: Want
    include_external: bool = False

    def filters(self) -> dict[str, Any]:
        """The ``{field: {op: value}}`` body of the search (without order, type and limit)."""
        w = self.want
        q: dict[str, Any] = {"rentable": {"eq": True}, "rented": {"eq": False}}
        if not self.include_external:
            q["external"] = {"eq": False}
        if w.gpu_names is not None:
            q["gpu_name"] = {"in": sorted(w.gpu_names)}
        if w.geolocations is not None:
            q["geolocation"] = {"in": sorted(w.geolocations)}
        price: dict[str, float] = {}
        if math.isfinite(w.max_price):
            price["lte"] = w.max_price
        if w.min_price > 0:
            price["gte"] = w.min_price
        if price:
            q["dph_total"] = price

        if w.min_reliability > 0:
            q["reliability"] = {"gte": w.min_reliability}
        if w.min_gpu_ram_mb > 0:
            q["gpu_ram"] = {"gte": w.min_gpu_ram_mb * (1 - _LOOSE)}
        if w.min_gpus > 1:
            q["num_gpus"] = {"gte": w.min_gpus}
        if w.min_direct_ports > 0:
            q["direct_port_count"] = {"gte": w.min_direct_ports}
        if w.min_download_mbps > 0:
            q["inet_down"] = {"gte": w.min_download_mbps}
        if w.min_disk_gb > 0:
            q["disk_space"] = {"gte": w.min_disk_gb}
        if w.verified_only:
            q["verified"] = {"eq": True}
        return q

    def describe(self) -> str:
        return self.want.describe()


def _prune(wants: Iterable[Want]) -> list[Want]:
    """The wants no other covers (two that cover each other are equal, and kept once)."""
    unique = list(dict.fromkeys(wants))
    return [w for w in unique if not any(o != w and covers(o, w) for o in unique)]


def plan(wants: Iterable[Want], *, max_queries: int = 3, include_external: bool = False) -> list[MarketQuery]:
    """At most ``max_queries`` searches whose answers hold every offer any want accepts."""
    if max_queries < 1:
        raise ValueError("max_queries must be at least 1")
    groups: dict[frozenset[str] | None, Want] = {}
    for w in _prune(w for w in wants if w.gpu_names != frozenset()):  # no model on the market: no search
        groups[w.geolocations] = merge(groups[w.geolocations], w) if w.geolocations in groups else w
    merged = _prune(groups.values())
    while len(merged) > max_queries:
        merged.sort(key=lambda w: (w.geolocations is None, len(w.geolocations or ())))
        merged = _prune([merge(merged[0], merged[1]), *merged[2:]])
    merged.sort(key=lambda w: w.describe())
    return [MarketQuery(w, include_external) for w in merged]


def narrow(query: MarketQuery, offers: Sequence[Offer]) -> tuple[list[Offer], MarketQuery] | None:
    """For a truncated answer ``offers`` ordered by price (cheapest first): the offers below the
    highest price answered (every offer of that band is among them) and the query for the rest
    of the band (from that price on). ``None`` when every answered offer has the same price."""
    prices = [o.dph_total for o in offers if o.dph_total is not None]
    if not prices:
        return None
    top = max(prices)
    if top <= query.want.min_price or top <= min(prices):
        return None
    kept = [o for o in offers if o.dph_total is not None and o.dph_total < top]
    return kept, replace(query, want=replace(query.want, min_price=top))


def split(query: MarketQuery) -> tuple[MarketQuery, MarketQuery] | None:
    """Two queries matching together exactly what ``query`` matches: halves of its GPU models.
    ``None`` when it names fewer than two."""
    w = query.want
    if w.gpu_names is None or len(w.gpu_names) < 2:
        return None
    names = sorted(w.gpu_names)
    half = len(names) // 2
    return (replace(query, want=replace(w, gpu_names=frozenset(names[:half]))),
            replace(query, want=replace(w, gpu_names=frozenset(names[half:]))))


def wants_of(requirements: Iterable[Requirements], gpu_names: Collection[str]) -> list[Want]:
    return [want_of(r, gpu_names) for r in requirements]


def describe_plan(queries: Sequence[MarketQuery]) -> str:
    return "; ".join(q.describe() for q in queries) or "nothing"


def filters_of(queries: Sequence[MarketQuery]) -> list[Mapping[str, Any]]:
    return [q.filters() for q in queries]
