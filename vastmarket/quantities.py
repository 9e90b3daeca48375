"""Parsing of the sizes, prices and ratios users write, and Kubernetes resource quantities.

Each parser raises :class:`ValueError` with the accepted form; callers turn that into a
:class:`~vastmarket.errors.RequirementError` naming the field. No I/O.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal, InvalidOperation

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GB|G|GIB|GI|MB|M|MIB|MI|TB|T|TIB|TI)?\s*$", re.I)
_SIZE_TO_GB = {
    None: 1.0, "GB": 1.0, "G": 1.0, "GIB": 1.073741824, "GI": 1.073741824,
    "MB": 0.001, "M": 0.001, "MIB": 0.001048576, "MI": 0.001048576,
    "TB": 1000.0, "T": 1000.0, "TIB": 1099.511627776, "TI": 1099.511627776,
}
SIZE_FORM = "a size in GB such as 12, 12GB or 12Gi"


def parse_size_gb(text: str | int | float) -> float:
    """``12`` / ``12GB`` / ``12 G`` → 12.0; ``12Gi`` → 12.88; ``500MB`` → 0.5."""
    if isinstance(text, bool):
        raise ValueError(SIZE_FORM)
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _SIZE.match(text)
        if not match:
            raise ValueError(SIZE_FORM)
        unit = match.group(2).upper() if match.group(2) else None
        value = float(match.group(1)) * _SIZE_TO_GB[unit]
    if not math.isfinite(value) or value < 0:
        raise ValueError(SIZE_FORM)
    return value


# The lowest cap accepted: a hundredth of a cent an hour, far below any Vast price. A cap nearer 0
# would overflow a score's 1 / cap (a price cap of 1e-310 made a free offer's score NaN).
MIN_PRICE = 0.0001
PRICE_FORM = "a price in $/hour of at least 0.0001 such as 0.50 or $0.50"


def parse_price(text: str | int | float) -> float:
    """``0.50`` / ``$0.50`` / ``0.5/h`` → 0.5 ($ per hour)."""
    if isinstance(text, bool):
        raise ValueError(PRICE_FORM)
    if isinstance(text, str):
        cleaned = text.strip().removeprefix("$").strip()
        for suffix in ("/hour", "/hr", "/h"):
            cleaned = cleaned.removesuffix(suffix)
        try:
            value = float(cleaned)
        except ValueError:
            raise ValueError(PRICE_FORM) from None
    else:
        value = float(text)
    if not math.isfinite(value) or not MIN_PRICE <= value <= 10000:
        raise ValueError(PRICE_FORM)
    return value


FRACTION_FORM = "a fraction between 0 and 1 such as 0.95, or a percentage such as 95%"


def parse_fraction(text: str | int | float) -> float:
    """``0.95`` → 0.95, ``95%`` → 0.95. A bare ``95`` is refused: it is ambiguous."""
    if isinstance(text, bool):
        raise ValueError(FRACTION_FORM)
    if isinstance(text, str):
        cleaned = text.strip()
        percent = cleaned.endswith("%")
        try:
            value = float(cleaned.rstrip("%").strip())
        except ValueError:
            raise ValueError(FRACTION_FORM) from None
        if percent:
            value /= 100.0
    else:
        value = float(text)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(FRACTION_FORM)
    return value


RATE_FORM = "a bandwidth in Mbps such as 100 or 100Mbps"


def parse_mbps(text: str | int | float) -> float:
    """``100`` / ``100Mbps`` / ``1Gbps`` → Mb/s."""
    if isinstance(text, bool):
        raise ValueError(RATE_FORM)
    if isinstance(text, str):
        match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(mbps|mb/s|mbit/s|gbps|gb/s|gbit/s)?\s*$", text, re.I)
        if not match:
            raise ValueError(RATE_FORM)
        value = float(match.group(1))
        if match.group(2) and match.group(2).lower().startswith("g"):
            value *= 1000.0
    else:
        value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(RATE_FORM)
    return value


COUNT_FORM = "a whole number such as 1"


def parse_count(text: str | int, *, minimum: int = 0) -> int:
    if isinstance(text, bool):
        raise ValueError(COUNT_FORM)
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(COUNT_FORM) from None
    if value < minimum:
        raise ValueError(f"a whole number of at least {minimum}")
    return value


BOOL_FORM = "true or false"


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError(BOOL_FORM)


# --- Kubernetes resource quantities ----------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}
QUANTITY_FORM = "a Kubernetes quantity such as 500m, 2, 16Gi or 1G"
# A quantity's value is an int64 in Kubernetes; anything larger is refused, and so is an exponent
# beyond what such a value can need (1e99999999999 would keep Decimal busy for minutes).
MAX_QUANTITY = Decimal(2**63 - 1)
_MAX_EXPONENT = 40


def parse_quantity(value: object) -> Decimal:
    """Parse a Kubernetes resource quantity (``500m`` → 0.5, ``16Gi`` → 17179869184). Anything
    else — another type, NaN or infinity, a magnitude over :data:`MAX_QUANTITY` — raises
    ``ValueError`` with the accepted form."""
    if isinstance(value, bool):
        raise ValueError(QUANTITY_FORM)
    if isinstance(value, int):
        if abs(value) > MAX_QUANTITY:
            raise ValueError(QUANTITY_FORM)
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_QUANTITY:
            raise ValueError(QUANTITY_FORM)
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError(QUANTITY_FORM)
    return _parse_text(value)


@functools.lru_cache(maxsize=1024)  # a cluster's pods repeat a few quantities ("1", "16Gi") endlessly
def _parse_text(value: str) -> Decimal:
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(QUANTITY_FORM)
    try:
        number = Decimal(match.group(1))
        if match.group(2):
            exponent = int(match.group(2)[1:])
            if abs(exponent) > _MAX_EXPONENT:
                raise ValueError(QUANTITY_FORM)
            result = number * Decimal(10) ** exponent
        elif match.group(3) in _BINARY:
            result = number * _BINARY[match.group(3)]
        elif match.group(3):
            result = number * _DECIMAL[match.group(3)]
        else:
            result = number
    except ArithmeticError:  # decimal's InvalidOperation and Overflow
        raise ValueError(QUANTITY_FORM) from None
    if abs(result) > MAX_QUANTITY:
        raise ValueError(QUANTITY_FORM)
    return result
