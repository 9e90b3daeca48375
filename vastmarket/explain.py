"""Human and machine explanations of a :class:`~vastmarket.selection.Ranking`.

* :func:`selection_log` — the seed's selection log lines (``[VAST] Searching for instances
  matching: …``, ``Found 23 candidates``, ``After filtering: 8 instances remain``, one line per
  top offer, ``Selected instance …``).
* :func:`endpoint_lines` — the seed's endpoint mapping lines.
* :func:`explanation` — a JSON-ready dict: requirements, rejection counts, the top offers with
  every term of their score.
* :func:`compact_explanation` — a short form for one pod annotation.

Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .selection import Ranking, ScoredOffer


def offer_line(scored: ScoredOffer) -> str:
    """``Instance 12345: Score 0.87 (RTX3060, $0.22/hr, US-CA, 98.2% reliability)``"""
    o = scored.offer
    price = "n/a" if o.dph_total is None else f"${o.dph_total:.2f}/hr"
    rel = "n/a" if o.reliability is None else f"{o.reliability * 100:.1f}%"
    gpus = f"{o.num_gpus}x {o.gpu_display}" if o.num_gpus > 1 else o.gpu_display
    return f"Instance {o.id}: Score {scored.score:.2f} ({gpus}, {price}, {o.location.label}, {rel} reliability)"


def selection_log(ranking: Ranking, *, top: int = 3, selected_suffix: str = "",
                  selected: ScoredOffer | None = None, why: str | None = None) -> list[str]:
    """The seed's selection log. ``selected`` is the offer actually taken when it is not the
    best one (claimed by another launch, failed over, …), ``why`` says why; the last line names it."""
    lines = [
        f"[VAST] Searching for instances matching: {ranking.requirements.describe()}",
        f"[VAST] Found {ranking.seen} candidates, filtering...",
        f"[VAST] After filtering: {ranking.passed} instances remain",
    ]
    best = ranking.best  # only the offers named are worked out, never every passing one
    if best is None:
        lines.append(f"[VAST] {ranking.summary()}")
        return lines
    lines.append("[VAST] Scoring instances:")
    lines.extend(f"  - {offer_line(s)}" for s in ranking.top(top))
    chosen = selected or best
    if chosen.offer.id not in {s.offer.id for s in ranking.top(top)}:
        lines.append(f"  - {offer_line(chosen)}")
    note = f" (not the top offer {best.offer.id}: {why})" if chosen.offer.id != best.offer.id and why else ""
    lines.append(f"[VAST] Selected instance {chosen.offer.id}{selected_suffix}{note}")
    return lines


def endpoint_lines(mappings: Iterable[tuple[str, int, str, int]]) -> list[str]:
    """``(service host, port, public ip, host port)`` → the seed's endpoint mapping lines."""
    lines = ["[VAST] Instance ready, updating service endpoints:"]
    lines.extend(f"  - {svc}:{port} → {ip}:{host_port}" for svc, port, ip, host_port in mappings)
    return lines


def explanation(ranking: Ranking, *, top: int = 5) -> dict[str, Any]:
    return {
        "requirements": ranking.requirements.as_dict(),
        "seen": ranking.seen,
        "matched": ranking.passed,
        "rejected": dict(ranking.rejections),
        "rejected_reasons": ranking.rejection_phrases(),
        "summary": ranking.summary(),
        "offers": [s.as_dict() for s in ranking.top(top)],
    }


def compact_explanation(ranking: Ranking, *, runners_up: int = 2) -> dict[str, Any]:
    """Small enough for one annotation: counts, the runner-up offers and their scores."""
    return {
        "seen": ranking.seen,
        "matched": ranking.passed,
        "rejected": dict(ranking.rejections),
        "runnersUp": [
            {"id": s.offer.id, "score": round(s.score, 3), "price": s.offer.dph_total,
             "gpu": s.offer.gpu_name, "location": s.offer.location.label}
            for s in ranking.top(1 + runners_up)[1:]
        ],
    }
