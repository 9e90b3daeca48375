"""Offer search as `POST /api/v0/bundles/` does it: parse the body, then filter, price, order and cut.

Pure: `parse_offer_query(body)` → `OfferQuery`; `search_offers(offers, query, now=...)` → the
offers to answer with (fresh dicts, priced for the query's storage and rental type).

Besides real offer fields the body may name the virtual fields the service translates:
`verified` (bool, verification == "verified"), `datacenter` (bool, hosting_type == 1),
`geolocation` (ISO-2 country codes, matched against the last two characters of the free-text
geolocation), `duration` (seconds left, from now), `driver_version` ("535.86.05", compared as
`driver_vers`), `dlperf_usd`, `flops_usd`, `ubuntu_version`; and `allocated_storage` (GB priced
into dph_total, also a `disk_space gte` filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping

from vastsim.filters import (
    Condition,
    QueryError,
    holds,
    parse_direction,
    parse_ops,
    sort_rows,
)
from vastsim.offerset import (
    DEFAULT_ALLOCATED_STORAGE,
    Offer,
    driver_vers,
    price_fields,
)

RENTAL_TYPES: Mapping[str, bool] = {  # type → priced as a bid
    "on-demand": False,
    "ondemand": False,
    "reserved": False,
    "bid": True,
    "interruptible": True,
}
ALIASES: Mapping[str, str] = {
    "driver_version": "driver_vers",
    "dlperf_usd": "dlperf_per_dphtotal",
    "flops_usd": "flops_per_dphtotal",
    "ubuntu_version": "os_version",
}
VIRTUAL: frozenset[str] = frozenset({"verified", "datacenter", "geolocation"})
CONTROL_KEYS: frozenset[str] = frozenset(
    {"order", "type", "limit", "allocated_storage", "disable_bundling", "select_cols"}
)
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (("score", True),)
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class OfferQuery:
    conditions: tuple[Condition, ...] = ()
    order: tuple[tuple[str, bool], ...] = DEFAULT_ORDER
    bid: bool = False
    limit: int | None = None
    allocated_storage: float = DEFAULT_ALLOCATED_STORAGE


def parse_offer_query(body: Mapping[str, Any], *, fields: Collection[str]) -> OfferQuery:
    """The query in a search body; `fields` are the real offer fields. Raises QueryError."""
    conditions: list[Condition] = []
    for key, ops in body.items():
        if key in CONTROL_KEYS:
            continue
        field = ALIASES.get(key, key)
        if field not in fields and field not in VIRTUAL:
            raise QueryError(f"unknown search field {key!r}")
        for condition in parse_ops(key, ops):
            conditions.append(_translate(field, condition))
    storage = _storage(body.get("allocated_storage"))
    if "allocated_storage" in body:
        conditions.append(Condition("disk_space", "gte", storage))
    return OfferQuery(
        conditions=tuple(conditions),
        order=_order(body.get("order"), fields),
        bid=_rental_type(body.get("type", "on-demand")),
        limit=_limit(body.get("limit")),
        allocated_storage=storage,
    )


def search_offers(offers: Iterable[Offer], query: OfferQuery, *, now: float) -> list[Offer]:
    """The offers matching `query`, priced for it, ordered, at most `limit` of them."""
    matched = []
    for offer in offers:
        view = dict(offer)
        view.update(price_fields(offer, allocated_storage=query.allocated_storage, bid=query.bid))
        view["duration"] = round(float(offer["end_date"]) - now, 3)
        if all(holds(_value(view, c.field), c) for c in query.conditions):
            matched.append(view)
    sort_rows(matched, query.order + (("id", False),), _order_value)
    return matched if query.limit is None else matched[: query.limit]


def _translate(field: str, condition: Condition) -> Condition:
    value = condition.value
    if field == "driver_vers":
        value = _map(value, lambda v: driver_vers(v) if isinstance(v, str) else v, field)
    elif field == "geolocation":
        value = _map(value, lambda v: v.strip().upper() if isinstance(v, str) else v, field)
    return Condition(field, condition.op, value)


def _map(value: Any, convert: Any, field: str) -> Any:
    try:
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        return convert(value)
    except ValueError:
        raise QueryError(f"bad value for {field!r}: {value!r}") from None


def _value(view: Offer, field: str) -> Any:
    if field == "verified":
        return view["verification"] == "verified"
    if field == "datacenter":
        return view["hosting_type"] == 1
    if field == "geolocation":
        text = view["geolocation"]
        return text.strip()[-2:].upper() if isinstance(text, str) else None
    return view.get(field)


def _order_value(view: Offer, field: str) -> Any:
    return view.get(field)


def _order(order: Any, fields: Collection[str]) -> tuple[tuple[str, bool], ...]:
    if order is None:
        return DEFAULT_ORDER
    if not isinstance(order, list):
        raise QueryError("order must be a list of [field, 'asc'|'desc']")
    parsed = []
    for item in order:
        if isinstance(item, str):
            item = [item]
        if not isinstance(item, list) or not 1 <= len(item) <= 2 or not isinstance(item[0], str):
            raise QueryError(f"order entries must be [field, 'asc'|'desc'], got {item!r}")
        field = ALIASES.get(item[0], item[0])
        if field not in fields:
            raise QueryError(f"cannot order by unknown field {item[0]!r}")
        parsed.append((field, parse_direction(field, item[1] if len(item) == 2 else "asc")))
    return tuple(parsed) or DEFAULT_ORDER


def _rental_type(kind: Any) -> bool:
    if not isinstance(kind, str) or kind not in RENTAL_TYPES:
        raise QueryError(f"type must be one of {', '.join(RENTAL_TYPES)}, got {kind!r}")
    return RENTAL_TYPES[kind]


def _limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QueryError(f"limit must be a non-negative integer, got {limit!r}")
    return min(int(limit), MAX_LIMIT)


def _storage(value: Any) -> float:
    if value is None:
        return DEFAULT_ALLOCATED_STORAGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1_000_000:
        raise QueryError(f"allocated_storage must be a number of GB, got {value!r}")
    return float(value)
