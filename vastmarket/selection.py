"""Offer selection: hard requirements, the weighted score, deterministic ranking.

:func:`rank` is a pure function of an :class:`OfferTable` (the offers of one snapshot, laid out
in columns once), the pod's :class:`~vastmarket.requirements.Requirements` and a
:class:`ScoringPolicy`. It returns a :class:`Ranking`: every offer that meets every hard
requirement, best first, with the terms of its score, and for the others the number of offers
rejected per requirement (an offer failing several requirements counts under each).

Score in [0, 1] = Σ weight × term (weights normalised to sum 1) + modifiers, clamped:

* ``price`` — ``1 - dph_total / max_price``: cheaper is better, relative to the pod's cap.
* ``performance`` — 0.4 × reliability above the pod's floor + 0.3 × download bandwidth
  (log scale, 1000 Mb/s = 1) + 0.3 × DL performance relative to the best matching offer (a DL
  performance below the smallest normal float, 2.2e-308, counts as 0).
* ``gpu_match`` — 1 for the first preferred GPU type, falling linearly with its rank in the
  list; 1 when any GPU is allowed.
* ``location`` — the same, by rank in the location list.
* ``availability`` — 0.5 if verified + 0.5 × rental time left (7 days or more = 1).

Ties break by score, then price, then offer id. No I/O.

What a ranking does per pod keeps the interpreter lock: it runs on the extender's request threads,
and numpy lets the lock go in ``searchsorted`` and ``argmax`` however small the array. With
another thread busy (another request), each of those calls then waited for it: 80–130 µs against
0.3–0.6 µs alone. Sorted columns are searched with :mod:`bisect` on a view of their buffer, and
the best score is found with a reduction, which keeps the lock.
"""

from __future__ import annotations

import bisect
import math
import sys
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .config import Modifier, SelectionConfig, Weights
from .names import Location, LocationPattern, display_gpu, gpu_key, gpu_matches, parse_location_pattern
from .offers import Offer
from .packed_offers import PackedOffers
from .requirements import Requirements

INF = math.inf
REASONS = (
    "unavailable", "gpu_type", "gpu_count", "gpu_memory", "price", "reliability", "download",
    "location", "blacklist", "verification", "cpu", "ram", "disk", "direct_ports",
)


def _right_of(ordered: Any, value: float) -> int:
    """``np.searchsorted(ordered, value, side="right")`` for a sorted 1-D column, keeping the
    interpreter lock (see the module)."""
    return bisect.bisect_right(memoryview(ordered), value)


_maximum = np.maximum.reduce  # the ufunc's reduction, without ndarray.max()'s Python wrapper
_FEW = 8  # top(n) up to this many without the full sort (argsort lets the lock go)


def _first_highests(scores: Any, n: int) -> list[int] | None:
    """The positions of the ``n`` highest scores, equal ones first come first (the stable sort's
    order), keeping the interpreter lock; ``None`` when a score is NaN (the sort decides)."""
    rest = scores.copy()
    found: list[int] = []
    for _ in range(min(n, len(rest))):
        position = _first_highest(rest)
        if position < 0:
            return None
        found.append(position)
        rest[position] = -INF  # scores are clamped to [0, 1]
    return found


def _dl_performance(dlperf: float | None) -> float:
    """An offer's DL performance as scored: none, negative or too small to divide by (a
    subnormal, whose reciprocal overflows: the terms would be inf and NaN) counts as 0."""
    return 0.0 if dlperf is None or dlperf < sys.float_info.min else dlperf


def _left_of(ordered: Any, value: int) -> int:
    """``np.searchsorted(ordered, value)`` for a sorted 1-D column, keeping the interpreter lock."""
    return bisect.bisect_left(memoryview(ordered), value)


def _at_least_0(value: float) -> float:
    """``np.maximum(0.0, value)`` on one float: a NaN stays NaN."""
    return value if value > 0.0 or value != value else 0.0


def _first_highest(scores: Any) -> int:
    """The position of the first highest score (``np.argmax``) of a non-empty column, keeping the
    interpreter lock; -1 when the highest is NaN. Two calls into numpy and a search of bytes: a
    pod's ranking makes this call on every request, after the request's other work has pushed the
    ranking's machinery out of the processor's caches (numpy's Python-level wrappers, such as
    ``max()`` and ``flatnonzero``, then cost several times their warm price)."""
    top = _maximum(scores)
    if top != top:
        return -1
    position: int = (scores == top).tobytes().index(1)
    return position


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """How passing offers are scored; hashable so that rankings can be cached by it."""

    weights: Weights = Weights()
    modifiers: tuple[Modifier, ...] = ()
    # Worked out once: a policy lives as long as its config, and every ranking asks for both
    # (hashing a dataclass builds and hashes the tuple of its fields on each call).
    normalised: Weights = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "normalised", self.weights.normalised())
        object.__setattr__(self, "_hash", hash((self.weights, self.modifiers)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def from_config(cls, config: SelectionConfig) -> ScoringPolicy:
        return cls(weights=config.weights.normalised(), modifiers=config.modifiers)


class OfferTable:
    """The offers of one snapshot in numpy columns, built once per snapshot.

    Missing numbers are replaced by values that fail every minimum (``-inf``) or maximum
    (``+inf``). GPU names and locations are codes into lists of their distinct values, so that a
    requirement is matched once per distinct value and spread with one indexing operation.
    ``by_price`` is every offer's position ordered by price, then id: the ranking's tie-break,
    sorted once here so that ranking a pod needs one stable sort by score only; ``price_sorted``
    the prices in that order, so that the offers within a price cap are a prefix of ``by_price``.

    Parts of a ranking that pods share (the ranks of a GPU or location list, the mask of the
    requirements other than price, a policy's modifiers) are kept per table (:meth:`memo`): pods
    of different Deployments differ mostly in their price cap, and that needs no mask at all."""

    __slots__ = ("offers", "packed", "ids", "id_array", "gpu_keys", "gpu_code", "locations", "location_code",
                 "num_gpus", "gpu_ram_gb", "price", "reliability", "inet_down", "available", "verified",
                 "datacenter", "static_ip", "host_ids", "host_code", "machine_ids", "machine_code",
                 "cpu", "ram_gb", "disk_gb", "ports", "dlperf", "bandwidth_term", "availability_term",
                 "by_price", "price_sorted", "_by_id", "_memo", "_memo_lock", "_memo_bytes")

    def __init__(self, offers: Sequence[Offer], *, packed: bool = False) -> None:
        """``packed``: keep the offers as :class:`~vastmarket.packed_offers.PackedOffers` (an
        :class:`Offer` is made each time one is read), for a process that holds the table long
        and reads few of its offers (the extender's and the webhook's snapshot)."""
        o: Sequence[Offer] = tuple(offers)
        self.packed = packed
        ids = [x.id for x in o]
        # The ids as an array when they all fit in 64 bits (Vast's do): the only copy then, for
        # finding one fast; a list otherwise.
        self.id_array = _ints(ids) if all(_INT64_MIN <= i <= _INT64_MAX for i in ids) else None
        self.ids: Sequence[int] | Ints = self.id_array if self.id_array is not None else ids
        self.gpu_keys, self.gpu_code = _codes([x.gpu_key for x in o])
        self.locations, self.location_code = _codes([x.location for x in o])
        self.num_gpus = _floats([x.num_gpus for x in o])
        self.gpu_ram_gb = _floats([x.gpu_ram_gb for x in o])
        self.price = _floats([INF if x.dph_total is None else x.dph_total for x in o])
        self.reliability = _floats([-INF if x.reliability is None else x.reliability for x in o])
        self.inet_down = _floats([-INF if x.inet_down is None else x.inet_down for x in o])
        self.available = _bools([x.rentable and not x.rented for x in o])
        self.verified = _bools([x.verified for x in o])
        self.datacenter = _bools([x.datacenter for x in o])
        self.static_ip = _bools([x.static_ip for x in o])
        self.host_ids, self.host_code = _id_codes([x.host_id for x in o])
        self.machine_ids, self.machine_code = _id_codes([x.machine_id for x in o])
        self.cpu = _floats([-INF if x.cpu_cores is None else x.cpu_cores for x in o])
        self.ram_gb = _floats([-INF if x.cpu_ram_mb is None else x.cpu_ram_mb / 1000.0 for x in o])
        self.disk_gb = _floats([-INF if x.disk_gb is None else x.disk_gb for x in o])
        self.ports = _floats([x.direct_port_count for x in o])
        self.dlperf = _floats([_dl_performance(x.dlperf) for x in o])
        # Terms that do not depend on the pod are computed once per snapshot.
        self.bandwidth_term = _floats([bandwidth_term(x.inet_down) for x in o])
        self.availability_term = _floats([availability_term(x) for x in o])
        # Ids are Python ints (Vast's are not bounded to 64 bits), so this one sort is Python's.
        self.by_price = _ints(sorted(range(len(o)), key=lambda i: (self.price[i], ids[i])))
        self.price_sorted: Floats = self.price[self.by_price]
        # The ids in order and each one's position, for finding an offer by id, when they are
        # 64-bit and none repeats (Vast's do not; a table that has a repeated id is searched).
        self._by_id: tuple[Ints, Ints] | None = None
        if self.id_array is not None:
            order = np.argsort(self.id_array, kind="stable")
            ordered = self.id_array[order]
            if not np.any(ordered[1:] == ordered[:-1]):
                self._by_id = (ordered, order)
        self.offers: Sequence[Offer] = PackedOffers(o) if packed else o
        self._memo: dict[Hashable, Any] = {}
        self._memo_lock = threading.Lock()
        self._memo_bytes = 0

    def __len__(self) -> int:
        return len(self.offers)

    @property
    def indexed(self) -> bool:
        """Whether :meth:`index_of` answers (the ids are 64-bit and none repeats)."""
        return self._by_id is not None

    def index_of(self, offer_id: int) -> int | None:
        """The table position of the offer with this id (``None`` when there is none). Only for an
        :attr:`indexed` table."""
        assert self._by_id is not None, "index_of on a table whose ids repeat or exceed 64 bits"
        if type(offer_id) is not int or not _INT64_MIN <= offer_id <= _INT64_MAX:
            return None
        ordered, order = self._by_id
        k = _left_of(ordered, offer_id)
        return int(order[k]) if k < len(ordered) and ordered[k] == offer_id else None

    def forget(self) -> None:
        """Drop what :meth:`memo` kept (a benchmark's cold start)."""
        with self._memo_lock:
            self._memo.clear()
            self._memo_bytes = 0

    def memo(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """``build()``, kept for this table under ``key``: the newest :data:`MEMO_SIZE`, within
        :data:`MEMO_BYTES` (a value's ``nbytes``, when it has one). What is kept is never changed
        afterwards, so threads share it without a lock."""
        hit = self._memo.get(key, _ABSENT)
        if hit is not _ABSENT:
            return hit  # type: ignore[no-any-return]
        value = build()
        with self._memo_lock:
            if key not in self._memo:
                self._memo_bytes += int(getattr(value, "nbytes", 0))
            self._memo[key] = value
            while len(self._memo) > MEMO_SIZE or (self._memo_bytes > MEMO_BYTES and len(self._memo) > 1):
                dropped = self._memo.pop(next(iter(self._memo)))
                self._memo_bytes -= int(getattr(dropped, "nbytes", 0))
        return value


_T = TypeVar("_T")
_ABSENT = object()
MEMO_SIZE = 256
MEMO_BYTES = 32 * 2**20  # the eligible offers' columns: 56 bytes per offer, ~0.5 MB for 10,000


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def _floats(values: Sequence[float]) -> Floats:
    return np.array(values, dtype=np.float64)


def _ints(values: Sequence[int]) -> Ints:
    return np.array(values, dtype=np.int64)


def _bools(values: Sequence[bool]) -> Bools:
    return np.array(values, dtype=np.bool_)


def _codes(values: Sequence[Any]) -> tuple[list[Any], Ints]:
    """The distinct values in first-seen order, and each value's index into them."""
    index: dict[Any, int] = {}
    codes = [index.setdefault(v, len(index)) for v in values]
    return list(index), _ints(codes)


@dataclass(frozen=True)
class _DistinctIds:
    """Distinct host or machine ids kept as one array, not thousands of Python ints; ``None``
    (offers without one) at position ``none_at``, or -1."""

    array: Ints
    none_at: int

    def tolist(self) -> list[int | None]:
        values: list[int | None] = self.array.tolist()
        if self.none_at >= 0:
            values[self.none_at] = None
        return values


def _id_codes(values: Sequence[int | None]) -> tuple[Sequence[int | None] | _DistinctIds, Ints]:
    """:func:`_codes` of host or machine ids; the distinct ids as :class:`_DistinctIds` when
    they are all 64-bit integers (or ``None``)."""
    distinct, codes = _codes(values)
    if all(v is None or (type(v) is int and _INT64_MIN <= v <= _INT64_MAX) for v in distinct):
        none_at = distinct.index(None) if None in distinct else -1
        return _DistinctIds(_ints([0 if v is None else v for v in distinct]), none_at), codes
    return distinct, codes


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


class ScoredOffer:
    """An offer that passes, its score, the terms of the score and the score modifiers that
    applied. Ranked from a table, the offer (and so its modifiers) is read from the table when
    first asked for: the extender's answers read only the score and the id, and a packed table
    makes an :class:`Offer` on each read (:mod:`vastmarket.packed_offers`)."""

    __slots__ = ("offer_id", "score", "terms", "_offer", "_parts", "_index", "_modifiers")

    def __init__(self, offer: Offer, score: float, terms: Mapping[str, float],
                 modifiers: tuple[tuple[str, float], ...] = ()) -> None:
        self.offer_id: int = offer.id
        self.score = score
        self.terms = terms
        self._offer: Offer | None = offer
        self._parts: _Parts | None = None
        self._index = -1
        self._modifiers: tuple[tuple[str, float], ...] | None = modifiers

    @classmethod
    def ranked(cls, parts: _Parts, index: int, score: float) -> ScoredOffer:
        """The offer at ``index`` of ``parts``' table, read when first asked for."""
        scored = cls.__new__(cls)
        scored.offer_id = int(parts.table.ids[index])
        scored.score = score
        scored.terms = _Terms(parts, index)
        scored._offer = None
        scored._parts = parts
        scored._index = index
        scored._modifiers = None
        return scored

    @property
    def offer(self) -> Offer:
        offer = self._offer
        if offer is None:
            assert self._parts is not None
            offer = self._offer = self._parts.table.offers[self._index]
        return offer

    @property
    def modifiers(self) -> tuple[tuple[str, float], ...]:
        applied = self._modifiers
        if applied is None:
            assert self._parts is not None
            rules, offer = self._parts.policy.modifiers, self.offer
            applied = self._modifiers = tuple((m.label, m.add) for m in rules if _modifier_applies(m, offer))
        return applied

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoredOffer):
            return NotImplemented
        return (self.offer_id == other.offer_id and self.score == other.score and self.offer == other.offer
                and self.terms == other.terms and self.modifiers == other.modifiers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"ScoredOffer(offer={self.offer!r}, score={self.score!r}, terms={dict(self.terms)!r}, "
                f"modifiers={self.modifiers!r})")

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.offer.brief(),
            "score": round(self.score, 4),
            "terms": {k: round(v, 4) for k, v in self.terms.items()},
            "modifiers": {name: add for name, add in self.modifiers},
        }


class Ranking:
    """The outcome of ranking one snapshot for one pod's requirements.

    Only which offers pass is worked out up front (in price order). The scores of them all (an
    array, in price order) are computed when first needed (:attr:`best`, :meth:`top`,
    :attr:`ranked`): :meth:`find` works out the score of the one offer it finds when they are not
    there yet. The best offer is found without sorting, and the full order, the rejection counts
    and the terms of an offer's score are worked out when they are asked for. A ranking is
    shared by the threads that ask the same question (the snapshot caches it): every lazy part is
    computed the same way by whichever thread comes first."""

    def __init__(self, requirements: Requirements, seen: int, passing: Ints, parts: _Parts,
                 ids: Sequence[int] | Ints, id_array: Ints | None = None) -> None:
        self.requirements = requirements
        self.seen = seen
        self._passing = passing  # table positions of the passing offers, in price order (price, id)
        self._scores: Floats | None = None  # their scores, in the same order, when first needed
        self._parts = parts
        self._rejections: tuple[tuple[str, int], ...] | None = None
        self._reason_texts: Mapping[str, str] | None = None
        self._ids = ids
        self._id_array = id_array
        self._best_first: Ints | None = None  # positions in price order, best first
        self._materialised: dict[int, ScoredOffer] = {}  # by position in price order
        self._summary: str | None = None
        # the position of the best score in price order (-1: a NaN score), found with the scores
        self._best_at: int | None = None

    def _all_scores(self) -> Floats:
        scores = self._scores
        if scores is None:
            scores, best_at = self._parts.scores(self._passing)
            self._best_at = best_at  # before the scores: a thread that sees them finds it set
            self._scores = scores
        return scores

    @property
    def rejections(self) -> tuple[tuple[str, int], ...]:
        """``(reason, offers rejected for it)``, most frequent first (then in :data:`REASONS` order)."""
        if self._rejections is None:
            self._rejections = self._parts.rejections()
        return self._rejections

    @property
    def reason_texts(self) -> Mapping[str, str]:
        if self._reason_texts is None:
            self._reason_texts = reason_texts(self.requirements)
        return self._reason_texts

    def _scored(self, position: int) -> ScoredOffer:
        """The offer at ``position`` in price order, with the terms of its score."""
        found = self._materialised.get(position)
        if found is None:
            scores = self._scores
            score = (float(scores[position]) if scores is not None
                     else self._parts.score_at(self._passing, position))
            found = self._materialised[position] = self._parts.explain(int(self._passing[position]), score)
        return found

    def _order(self) -> Ints:
        """Positions in price order, best first: by score, ties in price order (a stable sort)."""
        if self._best_first is None:
            self._best_first = np.argsort(-self._all_scores(), kind="stable")
        return self._best_first

    @property
    def passed(self) -> int:
        return len(self._passing)

    @property
    def best(self) -> ScoredOffer | None:
        if not len(self._passing):
            return None
        # the first highest score in price order: what the stable sort puts first (a NaN, which
        # the sort puts last, cannot come from clamped finite terms; the sort decides if one
        # ever does)
        scores = self._all_scores()
        position = self._best_at
        if position is None:
            position = self._best_at = _first_highest(scores)
        if position < 0:
            position = int(self._order()[0])
        return self._scored(position)

    def top(self, n: int) -> tuple[ScoredOffer, ...]:
        if n <= 0 or not len(self._passing):
            return ()
        if n == 1:
            best = self.best
            return () if best is None else (best,)
        if n <= _FEW and self._best_first is None:
            positions = _first_highests(self._all_scores(), n)
            if positions is not None:
                return tuple(self._scored(p) for p in positions)
        return tuple(self._scored(int(p)) for p in self._order()[:n])

    @property
    def ranked(self) -> tuple[ScoredOffer, ...]:
        """Every passing offer, best first."""
        return self.top(len(self._passing))

    def find(self, offer_id: int) -> ScoredOffer | None:
        """The passing offer with this id, or ``None`` when it did not pass (or is gone)."""
        table = self._parts.table
        if table.indexed:
            index = table.index_of(offer_id)
            position = -1 if index is None else int(self._parts.eligible.place[index])
            return self._scored(position) if 0 <= position < len(self._passing) else None
        if self._id_array is not None:
            if type(offer_id) is not int or not _INT64_MIN <= offer_id <= _INT64_MAX:
                return None
            hits = np.flatnonzero(self._id_array[self._passing] == offer_id)
            return self._scored(int(hits[0])) if len(hits) else None
        ids = self._ids
        for position, index in enumerate(self._passing.tolist()):
            if ids[index] == offer_id:
                return self._scored(position)
        return None

    def offer_ids(self) -> list[int]:
        """Passing offer ids, best first, without working out any terms."""
        positions = self._passing[self._order()]
        if self._id_array is not None:
            return self._id_array[positions].tolist()  # type: ignore[no-any-return]
        ids = self._ids
        return [ids[i] for i in positions.tolist()]

    def rejection_phrases(self) -> list[str]:
        """``["4210 over $0.50/h", "601 not RTX3060"]``, most frequent first."""
        return [f"{count} {self.reason_texts.get(reason, reason)}" for reason, count in self.rejections]

    def summary(self) -> str:
        """A short human sentence: why nothing matched, or how many did."""
        if self._summary is None:
            self._summary = self._summarise()
        return self._summary

    def _summarise(self) -> str:
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


def _lookup(values: Sequence[Any] | _DistinctIds, codes: Ints, test: Callable[[Any], bool]) -> Bools:
    """``test`` of every offer's value, asked once per distinct value."""
    if not len(codes):
        return _bools([])
    plain = values.tolist() if isinstance(values, _DistinctIds) else values
    return np.array([test(v) for v in plain], dtype=np.bool_)[codes]


def _condition(table: OfferTable, key: str, expected: Any) -> Bools:
    """Which offers meet one condition of a score modifier (as :func:`_modifier_applies`)."""
    if key in ("datacenter", "static_ip", "verified"):
        equal = np.array([False == expected, True == expected], dtype=np.bool_)  # noqa: E712
        column: Bools = getattr(table, key)
        return equal[column.astype(np.intp)]
    if key == "gpu":
        wanted = gpu_key(expected)
        return _lookup(table.gpu_keys, table.gpu_code, lambda k: gpu_matches(wanted, k))
    if key == "location":
        pattern = parse_location_pattern(expected)
        return _lookup(table.locations, table.location_code, pattern.matches)
    if key == "host_id":
        return _lookup(table.host_ids, table.host_code, lambda h: h == expected)
    if key == "machine_id":
        return _lookup(table.machine_ids, table.machine_code, lambda m: m == expected)
    return np.ones(len(table), dtype=np.bool_)


def _modifier_sum(table: OfferTable, modifiers: Sequence[Modifier]) -> Floats:
    total = np.zeros(len(table), dtype=np.float64)
    for mod in modifiers:
        applies = np.ones(len(table), dtype=np.bool_)
        for key, expected in mod.when:
            applies &= _condition(table, key, expected)
        total[applies] += mod.add
    return total


def _failures(table: OfferTable, req: Requirements,
              gpu_rank: Ints | None, loc_rank: Ints | None) -> list[tuple[str, Bools]]:
    """Per requirement but the price cap, the mask of the offers that fail it."""
    fails: list[tuple[str, Bools]] = [("unavailable", ~table.available)]
    if gpu_rank is not None:
        fails.append(("gpu_type", gpu_rank[table.gpu_code] < 0))
    if req.num_gpus > 1:
        fails.append(("gpu_count", table.num_gpus < req.num_gpus))
    if req.min_gpu_memory_gb > 0:
        fails.append(("gpu_memory", table.gpu_ram_gb < req.min_gpu_memory_gb))
    if req.min_reliability > 0:
        fails.append(("reliability", table.reliability < req.min_reliability))
    if req.min_download_mbps > 0:
        fails.append(("download", table.inet_down < req.min_download_mbps))
    if loc_rank is not None:
        fails.append(("location", loc_rank[table.location_code] < 0))
    bl = req.blacklist
    if bl:
        countries = bl.countries
        fails.append(("blacklist", _lookup(table.host_ids, table.host_code, lambda h: h in bl.hosts)
                      | _lookup(table.machine_ids, table.machine_code, lambda m: m in bl.machines)
                      | _lookup(table.locations, table.location_code, lambda loc: loc.country in countries)))
    if req.verified_only:
        fails.append(("verification", ~table.verified))
    if req.min_cpu_cores > 0:
        fails.append(("cpu", table.cpu < req.min_cpu_cores))
    if req.min_ram_gb > 0:
        fails.append(("ram", table.ram_gb < req.min_ram_gb))
    if req.min_disk_gb > 0:
        fails.append(("disk", table.disk_gb < req.min_disk_gb))
    if req.direct_ports > 0:
        fails.append(("direct_ports", table.ports < req.direct_ports))
    return fails


@dataclass(frozen=True, slots=True)
class _Eligible:
    """The offers meeting every requirement but the price cap, in price order (price, then id),
    with the columns their scores read gathered in that order, so that a price cap is a prefix
    of each; and how many offers fail each of those requirements."""

    counts: tuple[tuple[str, int], ...]
    order: Ints  # positions in the table
    place: Ints  # for each offer of the table, its place in ``order`` (-1: not eligible)
    price: Floats
    rel_bandwidth: Floats  # 0.4 × the reliability term + 0.3 × the bandwidth term
    dlperf: Floats
    dl_best: Floats  # the best dlperf of the first k offers, at k - 1
    gpu_term: Floats | None
    location_term: Floats | None
    availability: Floats
    # per scoring policy (one or two), what every pod of this kind adds up the same
    weighted: dict[ScoringPolicy, tuple[Floats, Floats]] = field(default_factory=dict, compare=False)

    @property
    def nbytes(self) -> int:
        arrays = (self.order, self.place, self.price, self.rel_bandwidth, self.dlperf, self.dl_best,
                  self.gpu_term, self.location_term, self.availability)
        return sum(a.nbytes for a in arrays if a is not None)

    def weighted_terms(self, policy: ScoringPolicy) -> tuple[Floats, Floats]:
        """For every eligible offer, the part of its score that no price cap changes,
        ``w.performance × (0.4 × reliability + 0.3 × bandwidth) + w.gpu_match × gpu +
        w.location × location + w.availability × availability``, and ``w.performance × 0.3 ×
        dlperf`` (the DL term before it is scaled by the best dlperf under the cap), with the
        policy's normalised weights ``w``."""
        found = self.weighted.get(policy)
        if found is None:
            w = policy.normalised
            fixed = w.performance * self.rel_bandwidth
            fixed += w.gpu_match * (self.gpu_term if self.gpu_term is not None else 1.0)
            fixed += w.location * (self.location_term if self.location_term is not None else 1.0)
            fixed += w.availability * self.availability
            found = self.weighted[policy] = (fixed, (w.performance * 0.3) * self.dlperf)
        return found


def _eligible(table: OfferTable, req: Requirements, gpu_rank: Ints | None, loc_rank: Ints | None) -> _Eligible:
    rejected = np.zeros(len(table), dtype=np.bool_)
    counts: list[tuple[str, int]] = []
    for reason, mask in _failures(table, req, gpu_rank, loc_rank):
        rejected |= mask
        count = int(np.count_nonzero(mask))
        if count:
            counts.append((reason, count))
    order = table.by_price[~rejected[table.by_price]]
    place = np.full(len(table), -1, dtype=np.int64)
    place[order] = np.arange(len(order), dtype=np.int64)
    # The same operations, in the same order, as rank()'s terms_of.
    rel_floor = min(req.min_reliability, 0.99)
    rel_scale = 1.0 / (1.0 - rel_floor)
    rel = table.reliability[order]
    rel_term = np.minimum(1.0, np.maximum(0.0, (rel - rel_floor) * rel_scale))
    rel_term[rel == -INF] = 0.0
    gpu_term = None
    if gpu_rank is not None:
        gpu_term = (1.0 - np.maximum(gpu_rank, 0) / len(req.gpu_types))[table.gpu_code[order]]
    location_term = None
    if loc_rank is not None:
        location_term = (1.0 - np.maximum(loc_rank, 0) / len(req.locations))[table.location_code[order]]
    dlperf = table.dlperf[order]
    return _Eligible(tuple(counts), order, place, table.price[order], 0.4 * rel_term + 0.3 * table.bandwidth_term[order],
                     dlperf, np.maximum.accumulate(dlperf) if len(dlperf) else dlperf, gpu_term,
                     location_term, table.availability_term[order])


def _beyond_price_key(req: Requirements) -> tuple[Any, ...]:
    """What :func:`_eligible` depends on: every requirement but the price cap."""
    return ("eligible", req.gpu_types, req.min_gpu_memory_gb, req.num_gpus, req.min_reliability,
            req.min_download_mbps, req.locations, req.min_cpu_cores, req.min_ram_gb, req.min_disk_gb,
            req.direct_ports, req.verified_only, req.blacklist)


def _ranks(values: Sequence[Any], patterns: Sequence[Any], matches: Callable[[Any, Any], bool]) -> Ints:
    """For each distinct value, the position of the first pattern it matches (-1: none)."""
    out = []
    for value in values:
        found = _rank_in(patterns, lambda p, v=value: matches(p, v))
        out.append(-1 if found is None else found)
    return _ints(out)


class _Parts:
    """What a ranking works out later from: the terms of a passing offer's score, and the
    rejection counts. One object rather than a closure per part: rankings are kept (the
    snapshot's cache, the extender's recent placements), and the cyclic garbage collector walks
    every cell and function they keep."""

    __slots__ = ("table", "req", "policy", "eligible", "gpu_rank", "loc_rank", "dl_scale", "rel_floor",
                 "rel_scale", "inv_price")

    def __init__(self, table: OfferTable, req: Requirements, policy: ScoringPolicy, eligible: _Eligible,
                 gpu_rank: Ints | None, loc_rank: Ints | None, dl_scale: float) -> None:
        self.table, self.req, self.policy, self.eligible = table, req, policy, eligible
        self.gpu_rank, self.loc_rank, self.dl_scale = gpu_rank, loc_rank, dl_scale
        self.rel_floor = min(req.min_reliability, 0.99)
        self.rel_scale = 1.0 / (1.0 - self.rel_floor)
        self.inv_price = 1.0 / req.max_price

    def rejections(self) -> tuple[tuple[str, int], ...]:
        table, max_price = self.table, self.req.max_price
        over_price = len(table) - _right_of(table.price_sorted, max_price)
        counted = self.eligible.counts + ((("price", over_price),) if over_price else ())
        return tuple(sorted(counted, key=lambda rc: (-rc[1], REASONS.index(rc[0]))))

    def terms(self, i: int) -> dict[str, float]:
        table, gpu_rank, loc_rank = self.table, self.gpu_rank, self.loc_rank
        rel = float(table.reliability[i])
        rel_term = 0.0 if rel == -INF else min(1.0, max(0.0, (rel - self.rel_floor) * self.rel_scale))
        return {
            "price": max(0.0, 1.0 - float(table.price[i]) * self.inv_price),
            "performance": (0.4 * rel_term + 0.3 * float(table.bandwidth_term[i])
                            + 0.3 * float(table.dlperf[i]) * self.dl_scale),
            "gpu_match": (1.0 - max(int(gpu_rank[table.gpu_code[i]]), 0) / len(self.req.gpu_types)
                          if gpu_rank is not None else 1.0),
            "location": (1.0 - max(int(loc_rank[table.location_code[i]]), 0) / len(self.req.locations)
                         if loc_rank is not None else 1.0),
            "availability": float(table.availability_term[i]),
        }

    def explain(self, i: int, score: float) -> ScoredOffer:
        return ScoredOffer.ranked(self, i, score)

    def scores(self, passing: Ints) -> tuple[Floats, int | None]:
        """The scores of the ``passing`` offers (a prefix of the eligible offers' price order),
        and the position of the first highest.

        score = w.price × max(0, 1 - price × inv_price) + dl_weighted × dl_scale + fixed, clamped
        to [0, 1], where fixed and dl_weighted (weighted_terms) are kept for every pod of this kind:
        seven operations on a prefix of the eligible offers' columns (no gathering), in place.
        Each offer's score is the same sequence of operations, whichever pod ranked the kind
        first. The best offer is found now, while the scores are in the processor's caches."""
        eligible, policy, k = self.eligible, self.policy, len(passing)
        w = policy.normalised
        fixed, dl_weighted = eligible.weighted_terms(policy)
        total = np.multiply(eligible.price[:k], w.price * self.inv_price)
        np.subtract(w.price, total, out=total)
        np.maximum(0.0, total, out=total)
        performance = np.multiply(dl_weighted[:k], self.dl_scale)
        np.add(total, performance, out=total)
        np.add(total, fixed[:k], out=total)
        if policy.modifiers:
            np.add(total, self._modifier_sums()[passing], out=total)
            np.maximum(0.0, total, out=total)  # every other term is at least 0
        np.minimum(1.0, total, out=total)
        return total, (_first_highest(total) if k else None)

    def score_at(self, passing: Ints, position: int) -> float:
        """What :meth:`scores` gives the offer at ``position``: the same operations in the same
        order on its numbers alone (IEEE double arithmetic, as numpy's, so the same value)."""
        eligible, policy = self.eligible, self.policy
        w = policy.normalised
        fixed, dl_weighted = eligible.weighted_terms(policy)
        total = _at_least_0(w.price - float(eligible.price[position]) * (w.price * self.inv_price))
        total = total + float(dl_weighted[position]) * self.dl_scale
        total = total + float(fixed[position])
        if policy.modifiers:
            total = _at_least_0(total + float(self._modifier_sums()[int(passing[position])]))
        return 1.0 if 1.0 <= total else total  # np.minimum(1.0, total): a NaN stays NaN

    def _modifier_sums(self) -> Floats:
        table, modifiers = self.table, self.policy.modifiers
        return table.memo(("modifiers", modifiers), lambda: _modifier_sum(table, modifiers))


class _Terms(Mapping[str, float]):
    """An offer's score terms, worked out when first read: the extender's answers read only the
    score."""

    __slots__ = ("_parts", "_index", "_values")

    def __init__(self, parts: _Parts, index: int) -> None:
        self._parts, self._index = parts, index
        self._values: dict[str, float] | None = None

    def _data(self) -> dict[str, float]:
        if self._values is None:
            self._values = self._parts.terms(self._index)
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return repr(self._data())


def _location_matches(pattern: LocationPattern, location: Location) -> bool:
    return pattern.matches(location)


def rank(table: OfferTable, req: Requirements, policy: ScoringPolicy = ScoringPolicy()) -> Ranking:
    """Filter ``table`` by ``req`` and score the rest under ``policy``; best first.

    Vectorised over the table's columns, from parts shared by the pods of one kind (the same
    requirements but the price cap). The property tests compare scores and order with the
    one-offer-at-a-time definition in the module docstring (``bench/naive.py``)."""
    gpu_rank = (table.memo(("gpu", req.gpu_types),
                           lambda: _ranks(table.gpu_keys, [gpu_key(g) for g in req.gpu_types], gpu_matches))
                if req.gpu_types else None)
    loc_rank = (table.memo(("location", req.locations), lambda: _ranks(
                    table.locations, [parse_location_pattern(x) for x in req.locations], _location_matches))
                if req.locations else None)

    eligible = table.memo(_beyond_price_key(req), lambda: _eligible(table, req, gpu_rank, loc_rank))
    # The offers within the price cap are a prefix of the price order (price, then id): the
    # tie-break order, which the passing offers keep.
    k = _right_of(eligible.price, req.max_price)
    passing = eligible.order[:k]
    best_dlperf = float(eligible.dl_best[k - 1]) if k else 0.0
    parts = _Parts(table, req, policy, eligible, gpu_rank, loc_rank, 1.0 / best_dlperf if best_dlperf > 0 else 0.0)

    # The scores are worked out when first asked for (Parts.scores): a pod that names the offer
    # the webhook chose for it needs that offer's score only (Parts.score_at).
    return Ranking(req, len(table), passing, parts, table.ids, table.id_array)
