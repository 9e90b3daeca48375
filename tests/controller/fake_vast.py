"""An in-memory stand-in for :class:`vastmarket.client.VastClient` at the controller's own seam to
Vast: the calls the reconciler and the fleet make (rent, get, list by label, destroy, stop,
start), on a clock the test moves, with scripted outcomes for the next rents and destroys —
refused for certain, or *made and then the answer lost* — and a listing lag. A ledger of every
rental and destroy, in order, is what the tests assert on."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from vastmarket.errors import OfferGone, VastError, VastRejected, VastUnavailable
from vastmarket.instances import Instance, RentRequest
from vastmarket.offers import Offer

LOST = VastUnavailable("vast rent: HTTP 503; the outcome is unknown", uncertain=True)


def gone(offer_id: int) -> OfferGone:
    return OfferGone(f"vast rent offer {offer_id}: no_such_ask", status=404, error="no_such_ask")


@dataclass
class Rented:
    """One rental in the ledger."""

    id: int
    offer_id: int
    label: str
    machine_id: int | None
    created_at: float
    instance: Instance
    offer: Offer
    destroyed: bool = False


@dataclass(frozen=True)
class Outcome:
    """What the next rent (or destroy) does: ``made`` it or not, then raises ``error`` (if any)."""

    made: bool
    error: VastError | None = None


class FakeVast:
    def __init__(self, offers: Mapping[int, Offer], clock: Callable[[], float], *,
                 public_ip: str = "127.0.0.1", ports: Mapping[int, int] | None = None) -> None:
        self.offers = dict(offers)
        self.clock = clock
        self.public_ip = public_ip
        self.ports = dict(ports or {})
        self.ledger: list[Rented] = []
        self.destroy_calls: list[int] = []
        self.rent_calls: list[int] = []
        self.listing_lag = 0.0
        self.boot_status: str | None = "running"  # what a new instance shows
        self._rents: deque[Outcome] = deque()
        self._destroys: deque[Outcome] = deque()
        self._bills: deque[float] = deque()
        self._ids = itertools.count(20_000_001)

    # --- scripting --------------------------------------------------------------------------------
    def next_rents(self, *outcomes: Outcome) -> None:
        self._rents.extend(outcomes)

    def next_destroys(self, *outcomes: Outcome) -> None:
        self._destroys.extend(outcomes)

    def bill_next(self, *dph_totals: float) -> None:
        """The next rentals are billed at these prices, whatever their offer said."""
        self._bills.extend(dph_totals)

    def set_status(self, instance_id: int, status: str | None, *, status_msg: str | None = None) -> None:
        entry = self._entry(instance_id)
        running = status == "running"
        entry.instance = replace(entry.instance, actual_status=status, status_msg=status_msg,
                                 public_ip=self.public_ip if running else None,
                                 ports=dict(self.ports) if running else {})

    # --- what the ledger shows --------------------------------------------------------------------
    def live(self, label: str | None = None) -> list[int]:
        return [r.id for r in self.ledger if not r.destroyed and (label is None or r.label == label)]

    def rentals(self, label: str | None = None) -> list[int]:
        return [r.id for r in self.ledger if label is None or r.label == label]

    # --- the VastClient calls ---------------------------------------------------------------------
    def rent(self, offer_id: int, request: RentRequest) -> int:
        self.rent_calls.append(offer_id)
        outcome = self._rents.popleft() if self._rents else Outcome(made=True)
        if outcome.made and offer_id not in self.offers:
            raise gone(offer_id)
        instance_id = None
        if outcome.made:
            offer = self.offers.pop(offer_id)  # rented: off the market
            instance_id = next(self._ids)
            status = self.boot_status
            running = status == "running"
            instance = Instance(id=instance_id, actual_status=status, intended_status="running",
                                cur_state="running", label=request.label,
                                public_ip=self.public_ip if running else None,
                                ports=dict(self.ports) if running else {},
                                dph_total=self._bills.popleft() if self._bills else offer.dph_total,
                                machine_id=offer.machine_id, gpu_name=offer.gpu_name, num_gpus=offer.num_gpus,
                                image=request.image)
            self.ledger.append(Rented(instance_id, offer_id, request.label, offer.machine_id, self.clock(), instance,
                                      offer))
        if outcome.error is not None:
            raise outcome.error
        assert instance_id is not None, "a scripted rent that makes nothing must raise"
        return instance_id

    def get_instance(self, instance_id: int) -> Instance | None:
        entry = next((r for r in self.ledger if r.id == instance_id), None)
        return None if entry is None or entry.destroyed else entry.instance

    def list_instances(self, *, label: str | None = None, filters: Mapping[str, Any] | None = None,
                       page_size: int = 25) -> list[Instance]:
        now = self.clock()
        return [r.instance for r in self.ledger if not r.destroyed and now - r.created_at >= self.listing_lag
                and (label is None or r.label == label)]

    def destroy(self, instance_id: int) -> None:
        self.destroy_calls.append(instance_id)
        outcome = self._destroys.popleft() if self._destroys else Outcome(made=True)
        if outcome.made:
            entry = next((r for r in self.ledger if r.id == instance_id), None)
            if entry is not None and not entry.destroyed:
                entry.destroyed = True
                self.offers[entry.offer_id] = entry.offer  # on the market again, as in the simulator
        if outcome.error is not None:
            raise outcome.error

    def stop(self, instance_id: int) -> None:
        entry = self._entry(instance_id)
        entry.instance = replace(entry.instance, intended_status="stopped", actual_status="stopped",
                                 public_ip=None, ports={})

    def start(self, instance_id: int) -> None:
        entry = self._entry(instance_id)
        entry.instance = replace(entry.instance, intended_status="running")

    def _entry(self, instance_id: int) -> Rented:
        entry = next((r for r in self.ledger if r.id == instance_id and not r.destroyed), None)
        if entry is None:
            raise VastRejected(f"vast instance {instance_id}: no_such_instance", status=404, error="no_such_instance")
        return entry
