"""The simulated account: `GET /api/v0/users/current`, whose balance the rentals draw down.

Pure: `current_user(credit, instances, now)` renders the user record from the starting credit
and the ledger's instances (`Market.snapshot()["instances"]`). Every instance is billed its
`dph_total` for each hour from its rental to its destruction (or now); the simulator does not
split the storage bill from GPU time. `balance` reads as Vast shows it, the amount owed: 0 while
credit lasts, then negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

USER_ID = 424_242
DEFAULT_CREDIT = 100.0


def spent(instances: Iterable[Mapping[str, Any]], now: float) -> float:
    """Dollars billed so far for `instances` (ledger records with dph_total, created_at, destroyed_at)."""
    total = 0.0
    for inst in instances:
        start, end = inst.get("created_at"), inst.get("destroyed_at")
        price = inst.get("dph_total")
        if not isinstance(start, (int, float)) or not isinstance(price, (int, float)):
            continue
        stop = end if isinstance(end, (int, float)) else now
        total += price * max(0.0, stop - start) / 3600.0
    return total


def current_user(credit: float, instances: Iterable[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """The user record the official CLI prints with `show user` (its key never included)."""
    left = round(credit - spent(instances, now), 6)
    return {
        "id": USER_ID,
        "username": "vastsim",
        "email": "vastsim@example.invalid",
        "fullname": "Vast Simulator",
        "credit": left,
        "balance": min(0.0, left),
        "balance_threshold": 0.0,
        "balance_threshold_enabled": False,
        "billaddress_city": None,
        "billaddress_country": None,
        "billaddress_line1": None,
        "billaddress_line2": None,
        "billaddress_zip": None,
        "billed_expected": 0.0,
        "billed_verified": 0.0,
        "billing_creditonly": 0,
        "can_pay": True,
        "email_verified": True,
        "got_signup_credit": True,
        "has_billing": True,
        "has_payout": False,
        "host_agreement_accepted": False,
        "last4": None,
        "paid_expected": 0.0,
        "paid_verified": 0.0,
        "password_resettable": None,
        "ssh_key": None,
        "user": "vastsim",
    }
