"""The `{field: {op: value}}` filter language and the ordering shared by offer search and instance lists.

Pure functions over plain dicts. Comparisons follow SQL where it matters to clients: a null value
never passes `gt`/`gte`/`lt`/`lte`, `neq` or `notin`; ordering puts nulls last in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

OPS: tuple[str, ...] = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "notin")
_RANGE_OPS = frozenset({"gt", "gte", "lt", "lte"})
_LIST_OPS = frozenset({"in", "notin"})
_SCALARS = (str, int, float, bool, type(None))

Row = Mapping[str, Any]


class QueryError(ValueError):
    """A filter, order or paging parameter the server refuses; the API answers 400 with its message."""


@dataclass(frozen=True)
class Condition:
    """`field op value`, e.g. `num_gpus gte 2`. `value` is a tuple for `in`/`notin`."""

    field: str
    op: str
    value: Any


def parse_ops(field: str, ops: Any) -> list[Condition]:
    """The conditions of one `{op: value, ...}` object; several ops on one field all apply."""
    if not isinstance(ops, dict):
        raise QueryError(f"filter on {field!r} must be an object of {{op: value}}, got {_kind(ops)}")
    conditions = []
    for op, value in ops.items():
        if op not in OPS:
            raise QueryError(f"unknown operator {op!r} on {field!r}; use one of {', '.join(OPS)}")
        if op in _LIST_OPS:
            if not isinstance(value, list) or not all(isinstance(v, _SCALARS) for v in value):
                raise QueryError(f"{field!r} {op} needs a list of values, got {_kind(value)}")
            value = tuple(value)
        elif op in _RANGE_OPS:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise QueryError(f"{field!r} {op} needs a number or a string, got {_kind(value)}")
        elif not isinstance(value, _SCALARS):
            raise QueryError(f"{field!r} {op} needs a single value, got {_kind(value)}")
        conditions.append(Condition(field, op, value))
    return conditions


def holds(value: Any, condition: Condition) -> bool:
    """Whether `value` satisfies `condition`."""
    op, target = condition.op, condition.value
    if op == "eq":
        return bool(value == target)
    if op == "in":
        return value in target
    if value is None:
        return False
    if op == "neq":
        return bool(value != target)
    if op == "notin":
        return value not in target
    try:
        if op == "gt":
            return bool(value > target)
        if op == "gte":
            return bool(value >= target)
        if op == "lt":
            return bool(value < target)
        return bool(value <= target)
    except TypeError:  # a number compared with a string: no match, as a typed column would give
        return False


def parse_direction(field: str, direction: Any) -> bool:
    """`"asc"` → False, `"desc"` → True (the `reverse` flag)."""
    if direction not in ("asc", "desc"):
        raise QueryError(f"order direction for {field!r} must be 'asc' or 'desc', got {direction!r}")
    return bool(direction == "desc")


def sort_rows(
    rows: list[Any],
    order: Sequence[tuple[str, bool]],
    value: Callable[[Any, str], Any],
) -> None:
    """Sort `rows` in place by `order` (field, descending), nulls last; stable for equal keys."""
    for field, descending in reversed(order):
        if descending:
            rows.sort(key=lambda row: _desc_key(value(row, field)), reverse=True)
        else:
            rows.sort(key=lambda row: _asc_key(value(row, field)))


def comes_after(
    row: Sequence[Any], mark: Sequence[Any], order: Sequence[tuple[str, bool]]
) -> bool:
    """Whether a row whose order values are `row` sorts strictly after one with `mark` (keyset paging)."""
    for (_, descending), mine, theirs in zip(order, row, mark):
        if mine == theirs:
            continue
        if mine is None:
            return True
        if theirs is None:
            return False
        try:
            return bool(mine < theirs) if descending else bool(mine > theirs)
        except TypeError:
            return str(mine) > str(theirs)
    return False


def _asc_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value)


def _desc_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
