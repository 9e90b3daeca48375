"""`GET /api/v1/instances/`: filters, order, keyset pages of at most 25.

Pure: `parse_list_query(params)` → `ListQuery`; `list_page(instances, query)` → the response body.

Query values are JSON (then URL-quoted): `select_filters={"label":{"eq":"x"}}`,
`order_by=[{"col":"id","dir":"desc"}]` (`[["id","desc"]]` is accepted too; a `dir` other than
asc/desc means asc; `id` is always the last tiebreaker), `select_cols=["id","label"]` or `["*"]`,
`limit` (default 25, at most 25, 0 or less means 5) and `after_token` (the `next_token` of the
previous page, base64 of `{"values": {...}}`). Filtering on a computed column such as `dph_total`
or `num_gpus` is a 400, as is an unknown order column or an undecodable token. An unlabelled
instance matches a label filter for null and for "".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from vastsim.filters import Condition, QueryError, comes_after, holds, parse_ops, sort_rows

PAGE_MAX = 25
PAGE_WHEN_NOT_POSITIVE = 5
FILTERABLE: frozenset[str] = frozenset(
    {
        "id",
        "label",
        "actual_status",
        "intended_status",
        "cur_state",
        "next_state",
        "gpu_name",
        "verification",
        "machine_id",
        "host_id",
        "image_uuid",
        "status_msg",
        "start_date",
        "end_date",
        "ssh_host",
        "ssh_port",
        "geolocation",
        "is_bid",
    }
)
ORDERABLE = FILTERABLE


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    order: tuple[tuple[str, bool], ...] = (("id", False),)  # always ends with id
    limit: int = PAGE_MAX
    after: tuple[Any, ...] | None = None  # order values of the last row of the previous page
    columns: tuple[str, ...] | None = None  # None: all


def parse_list_query(params: Mapping[str, str | None]) -> ListQuery:
    """The query in the URL parameters of a v1 list call. Raises QueryError."""
    filters = _json_param(params, "select_filters", {})
    if not isinstance(filters, dict):
        raise QueryError("select_filters must be a JSON object")
    conditions: list[Condition] = []
    for field, ops in filters.items():
        if field not in FILTERABLE:
            raise QueryError(f"cannot filter on {field!r}: not a stored column (computed columns are not filterable)")
        conditions.extend(parse_ops(field, ops))
    order = _order(_json_param(params, "order_by", []))
    columns = _json_param(params, "select_cols", ["*"])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise QueryError("select_cols must be a JSON list of column names")
    return ListQuery(
        conditions=tuple(conditions),
        order=order,
        limit=_limit(params.get("limit")),
        after=_decode_token(params.get("after_token"), order),
        columns=None if "*" in columns else tuple(columns),
    )


def list_page(instances: Sequence[Mapping[str, Any]], query: ListQuery) -> dict[str, Any]:
    """One page of `instances` (rendered, live ones) for `query`, as the endpoint answers it.

    `total_instances` counts every instance matching the filters, `instances_found` the ones on
    this page, `label_counts` the labels of every matching instance ("" for unlabelled).
    """
    matching = [i for i in instances if all(_holds(i, c) for c in query.conditions)]
    sort_rows(matching, query.order, lambda row, field: row.get(field))
    rows = matching
    if query.after is not None:
        mark = query.after
        rows = [r for r in matching if comes_after(_key(r, query.order), mark, query.order)]
    page = rows[: query.limit]
    more = len(rows) > len(page)
    return {
        "success": True,
        "instances_found": len(page),
        "total_instances": len(matching),
        "label_counts": dict(Counter(i.get("label") or "" for i in matching)),
        "next_token": _encode_token(page[-1], query.order) if more and page else None,
        "instances": [_project(i, query.columns) for i in page],
    }


def _holds(instance: Mapping[str, Any], condition: Condition) -> bool:
    value = instance.get(condition.field)
    if condition.field == "label" and value is None:  # unlabelled matches null and ""
        return holds(None, condition) or holds("", condition)
    return holds(value, condition)


def _key(row: Mapping[str, Any], order: Sequence[tuple[str, bool]]) -> tuple[Any, ...]:
    return tuple(row.get(field) for field, _ in order)


def _encode_token(row: Mapping[str, Any], order: Sequence[tuple[str, bool]]) -> str:
    values = {field: row.get(field) for field, _ in order}
    return base64.b64encode(json.dumps({"values": values}).encode("utf-8")).decode("ascii")


def _decode_token(token: str | None, order: Sequence[tuple[str, bool]]) -> tuple[Any, ...] | None:
    if token is None or token == "":
        return None
    try:
        decoded = json.loads(base64.b64decode(token.encode("ascii"), validate=True))
        values = decoded["values"]
        return tuple(values[field] for field, _ in order)
    except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError):
        raise QueryError("invalid after_token") from None


def _order(order_by: Any) -> tuple[tuple[str, bool], ...]:
    if not isinstance(order_by, list):
        order_by = [order_by]
    order: list[tuple[str, bool]] = []
    for item in order_by:
        if isinstance(item, dict):
            col, direction = item.get("col"), item.get("dir", "asc")
        elif isinstance(item, list) and 1 <= len(item) <= 2:
            col, direction = item[0], item[1] if len(item) == 2 else "asc"
        else:
            raise QueryError('order_by must be a JSON list of {"col": name, "dir": "asc"|"desc"}')
        if not isinstance(col, str) or col not in ORDERABLE:
            raise QueryError(f"cannot order by {col!r}")
        order.append((col, direction == "desc"))
    if not any(col == "id" for col, _ in order):
        order.append(("id", False))
    return tuple(order)


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return PAGE_MAX
    try:
        limit = int(raw)
    except ValueError:
        raise QueryError(f"limit must be an integer, got {raw!r}") from None
    if limit <= 0:
        return PAGE_WHEN_NOT_POSITIVE
    return min(limit, PAGE_MAX)


def _json_param(params: Mapping[str, str | None], name: str, default: Any) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise QueryError(f"{name} must be JSON") from None


def _project(instance: Mapping[str, Any], columns: tuple[str, ...] | None) -> dict[str, Any]:
    if columns is None:
        return dict(instance)
    return {column: instance.get(column) for column in columns}
