"""A deliberately naive reference ranker: one offer at a time, straight from the Offer objects,
every requirement checked in turn, no column layout and no cache.

It is the baseline the ranking benchmark measures against, and the oracle the property tests
compare :func:`vastmarket.selection.rank` with: both must agree on which offers pass, the
rejection counts and the order.
"""

from __future__ import annotations

import math
import sys

from vastmarket.names import gpu_key, gpu_matches, parse_location_pattern
from vastmarket.offers import Offer
from vastmarket.requirements import Requirements
from vastmarket.selection import ScoringPolicy, _modifier_applies


def reasons(offer: Offer, req: Requirements) -> list[str]:
    out = []
    if not offer.rentable or offer.rented:
        out.append("unavailable")
    if offer.dph_total is None or offer.dph_total > req.max_price:
        out.append("price")
    if req.gpu_types and not any(gpu_matches(gpu_key(g), offer.gpu_key) for g in req.gpu_types):
        out.append("gpu_type")
    if req.num_gpus > 1 and offer.num_gpus < req.num_gpus:
        out.append("gpu_count")
    if req.min_gpu_memory_gb > 0 and offer.gpu_ram_mb / 1000 < req.min_gpu_memory_gb:
        out.append("gpu_memory")
    if req.min_reliability > 0 and (offer.reliability is None or offer.reliability < req.min_reliability):
        out.append("reliability")
    if req.min_download_mbps > 0 and (offer.inet_down is None or offer.inet_down < req.min_download_mbps):
        out.append("download")
    if req.locations and not any(parse_location_pattern(p).matches(offer.location) for p in req.locations):
        out.append("location")
    bl = req.blacklist
    if bl and (offer.host_id in bl.hosts or offer.machine_id in bl.machines
               or offer.location.country in bl.countries):
        out.append("blacklist")
    if req.verified_only and not offer.verified:
        out.append("verification")
    if req.min_cpu_cores > 0 and (offer.cpu_cores is None or offer.cpu_cores < req.min_cpu_cores):
        out.append("cpu")
    if req.min_ram_gb > 0 and (offer.cpu_ram_mb is None or offer.cpu_ram_mb / 1000 < req.min_ram_gb):
        out.append("ram")
    if req.min_disk_gb > 0 and (offer.disk_gb is None or offer.disk_gb < req.min_disk_gb):
        out.append("disk")
    if req.direct_ports > 0 and offer.direct_port_count < req.direct_ports:
        out.append("direct_ports")
    return out


def _dl(offer: Offer) -> float:
    """DL performance as scored: none, negative or subnormal (its reciprocal overflows) is 0."""
    return 0.0 if offer.dlperf is None or offer.dlperf < sys.float_info.min else offer.dlperf


def _position(items: list[bool]) -> int:
    return items.index(True)


def naive_rank(offers: list[Offer], req: Requirements, policy: ScoringPolicy = ScoringPolicy()):
    """Returns ``(ranked [(score, offer)], rejection counts {reason: n})``."""
    w = policy.weights.normalised()
    counts: dict[str, int] = {}
    passing = []
    for offer in offers:
        why = reasons(offer, req)
        for r in why:
            counts[r] = counts.get(r, 0) + 1
        if not why:
            passing.append(offer)
    best_dl = max((_dl(o) for o in passing), default=0.0)
    floor = min(req.min_reliability, 0.99)
    ranked = []
    for o in passing:
        price = max(0.0, 1 - o.dph_total / req.max_price)
        rel = 0.0 if o.reliability is None else min(1.0, max(0.0, (o.reliability - floor) / (1 - floor)))
        bw = 0.0 if not o.inet_down or o.inet_down <= 0 else min(1.0, math.log10(1 + o.inet_down) / math.log10(1001))
        dl = _dl(o) / best_dl if best_dl > 0 else 0.0
        perf = 0.4 * rel + 0.3 * bw + 0.3 * dl
        if req.gpu_types:
            g = _position([gpu_matches(gpu_key(t), o.gpu_key) for t in req.gpu_types])
            gpu = 1 - g / len(req.gpu_types)
        else:
            gpu = 1.0
        if req.locations:
            i = _position([parse_location_pattern(p).matches(o.location) for p in req.locations])
            loc = 1 - i / len(req.locations)
        else:
            loc = 1.0
        days = 0.0 if o.duration_s is None else max(o.duration_s, 0) / 86400
        avail = (0.5 if o.verified else 0.0) + 0.5 * min(1.0, days / 7)
        total = (w.price * price + w.performance * perf + w.gpu_match * gpu + w.location * loc
                 + w.availability * avail)
        total += sum(m.add for m in policy.modifiers if _modifier_applies(m, o))
        ranked.append((min(1.0, max(0.0, total)), o))
    ranked.sort(key=lambda so: (-so[0], so[1].dph_total, so[1].id))
    return ranked, counts
