"""Interruptible (bid) instances in the simulator: who is outbid, by how much, and what it bills.

The market's rules (docs/simulator.md, "Interruptible instances"):

- an instance rented with a `price` is interruptible; its bid is that price ($/h for the GPUs);
  it is billed its bid plus its storage (`dph_total`);
- the machine's `min_bid` is what the highest other renter bids. It moves with the market
  (`POST /_sim/market/prices`) and when other renters outbid an instance
  (`POST /_sim/faults/outbid`): `min_bid` then rises over the instance's bid;
- an instance whose bid is under its machine's `min_bid` is *paused*: stopped (SIGTERM, then
  `cur_state == intended_status == next_state == "stopped"`), not destroyed. It keeps its disk
  and bills its storage only (`storage_dph`);
- `PUT /api/v0/instances/bid_price/{id}/` `{"client_id": "me", "price": X}` sets the bid; a
  paused instance whose bid is now at least `min_bid` runs again (a new run of its container,
  on new host ports), and so does one whose machine's `min_bid` falls to its bid or under.
  Starting a paused instance with `{"state": "running"}` is refused: the bid must be raised.

Pure: the market keeps the records and does the I/O (ports).
"""

from __future__ import annotations

from typing import Any

from vastsim.responses import ApiError
from vastsim.rental import MAX_PRICE, MIN_PRICE

OUTBID_FACTOR = 1.25  # other renters outbid by a quarter unless the fault names their price


def parse_bid(price: Any) -> float:
    """The `price` of a bid_price body; ApiError 400 `invalid_price` otherwise."""
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not MIN_PRICE <= price <= MAX_PRICE:
        raise ApiError(400, "invalid_price", f"price must be between {MIN_PRICE} and {MAX_PRICE} $/h, got {price!r}")
    return float(price)


def competing_bid(bid: float, price: float | None) -> float:
    """The bid other renters place over an instance bidding `bid`: `price`, which must beat it,
    or a quarter more than it."""
    if price is None:
        return round(bid * OUTBID_FACTOR + 0.001, 4)
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not MIN_PRICE <= price <= MAX_PRICE:
        raise ValueError(f"price must be a number from {MIN_PRICE} to {MAX_PRICE}, got {price!r}")
    if price <= bid:
        raise ValueError(f"price {price} does not outbid the instance's bid of {bid}")
    return float(price)


def outbid(bid: float | None, min_bid: float) -> bool:
    """Is an instance bidding `bid` (None: on-demand) outbid at the machine's `min_bid`."""
    return bid is not None and bid < min_bid - 1e-9


def not_interruptible(instance_id: int) -> ApiError:
    return ApiError(400, "invalid_args", f"instance {instance_id} is on-demand: it has no bid to change")


def paused_start(instance_id: int, bid: float, min_bid: float) -> ApiError:
    return ApiError(400, "invalid_args",
                    f"instance {instance_id} is outbid: its bid ${bid}/hr is under the minimum ${min_bid}/hr; "
                    "raise it with PUT /api/v0/instances/bid_price/{id}/")
