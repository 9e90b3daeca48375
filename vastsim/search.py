"""Offer search as `POST /api/v0/bundles/` does it: parse the body, then filter, price, order and cut.

Pure: `parse_offer_query(body)` → `OfferQuery`; `search_offers(offers, query, now=...)` → the
offers to answer with (fresh dicts, priced for the query's storage and rental type).

Besides real offer fields the body may name the virtual fields the service translates:
`verified` (bool, verification == "verified"), `datacenter` (bool, hosting_type == 1),
`geolocation` (ISO-2 country codes, matched against the last two characters of the free-text
geolocation), `duration` (seconds left, from now), `driver_version` ("535.86.05", compared as
`driver_vers`), `dlperf_usd`, `flops_usd`, `ubuntu_version`; and `allocated_storage` (GB priced
into dph_total, also a `disk_space gte` filter).

Values are converted to the field's type as the service converts them, because the official
client sends most of them as strings: `{"num_gpus": {"eq": "1"}}` matches like `1`,
`{"verified": {"eq": "true"}}` like `true`, and `_` in a GPU name stands for a space
(`RTX_3060` is `RTX 3060`). A string that is not a number on a numeric field is a 400.

`search_offers` answers at most `limit` offers (and never more than `cap`); when more matched,
its answer says `truncated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
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
    generate_offers,
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
# The type of each virtual field (the real fields' types come from the offers themselves).
VIRTUAL_KINDS: Mapping[str, type] = {"verified": bool, "datacenter": bool, "geolocation": str, "duration": float}
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


@lru_cache(maxsize=1)
def field_kinds() -> Mapping[str, type]:
    """`bool`, `float` (any number) or `str` per offer field: what a filter value is converted to."""
    kinds: dict[str, type] = dict(VIRTUAL_KINDS)
    for offer in generate_offers(0, 200):
        for name, value in offer.items():
            if name in kinds or value is None:
                continue
            if isinstance(value, bool):
                kinds[name] = bool
            elif isinstance(value, (int, float)):
                kinds[name] = float
            elif isinstance(value, str):
                kinds[name] = str
    return kinds


@dataclass(frozen=True)
class SearchAnswer:
    """The offers to answer with; `truncated` when more matched (`matched` of them)."""

    offers: list[Offer]
    matched: int

    @property
    def truncated(self) -> bool:
        return self.matched > len(self.offers)


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


def search_offers(offers: Iterable[Offer], query: OfferQuery, *, now: float, cap: int | None = None) -> SearchAnswer:
    """The offers matching `query`, priced for it, ordered, at most `limit` (and `cap`) of them."""
    matched = []
    for offer in offers:
        view = dict(offer)
        view.update(price_fields(offer, allocated_storage=query.allocated_storage, bid=query.bid))
        view["duration"] = round(float(offer["end_date"]) - now, 3)
        if all(holds(_value(view, c.field), c) for c in query.conditions):
            matched.append(view)
    sort_rows(matched, query.order + (("id", False),), _order_value)
    most = min(MAX_LIMIT if query.limit is None else query.limit, MAX_LIMIT if cap is None else cap)
    return SearchAnswer(matched[:most], len(matched))


def _translate(field: str, condition: Condition) -> Condition:
    value = condition.value
    if field == "driver_vers" and isinstance(value, str) and "." not in value:
        value = _map(value, lambda v: _convert(v, float, field), field)
    elif field == "driver_vers":
        value = _map(value, lambda v: driver_vers(v) if isinstance(v, str) else v, field)
    elif field == "geolocation":
        value = _map(value, lambda v: v.strip().upper() if isinstance(v, str) else v, field)
    else:
        kind = field_kinds().get(field)
        if kind is not None:
            value = _map(value, lambda v: _convert(v, kind, field), field)
        if field == "gpu_name":
            value = _map(value, lambda v: v.replace("_", " ") if isinstance(v, str) else v, field)
    return Condition(field, condition.op, value)


def _convert(value: Any, kind: type, field: str) -> Any:
    """`value` as the field's type: a typed column compares `"1"` as 1 and `"true"` as true."""
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, (bool, int, float)) and value in (0, 1):
            return bool(value)
        raise QueryError(f"bad value for {field!r}: {value!r} (expected true or false)")
    if kind is float:
        if isinstance(value, bool):
            raise QueryError(f"bad value for {field!r}: {value!r} (expected a number)")
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise QueryError(f"bad value for {field!r}: {value!r} (expected a number)") from None
            return int(number) if number.is_integer() else number
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, "g")
    return value


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
