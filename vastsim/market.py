"""The simulated marketplace: offers for rent, instances rented from them, and their lifecycles.

Thread-safe (one lock). Time comes from the injected clock; an instance's status is a function of
it (`lifecycle.Timeline`), and `advance()` — called on every operation and by the server's
ticker — opens an instance's ports when it reaches running and closes them when it leaves.

Market rules the simulator chose (documented in docs/simulator.md):
- renting takes the offer out of search; destroying the instance puts the same offer back,
  unless the offer was vanished meanwhile;
- a bid below the offer's `min_bid` leaves a stopped instance and the offer stays on the market;
- the offers of one machine are disjoint GPU slices, so renting one leaves the others rentable.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable

from vastsim import bids
from vastsim.container import container_script
from vastsim.faults import Faults, Health, check_fate, check_health
from vastsim.instance import InstanceRecord, audit_record, direct_port_range, port_map, render_instance
from vastsim.lifecycle import HOST_GONE, Timeline
from vastsim.listing import ListQuery, list_page
from vastsim.logs import MAX_APPEND, LogLine, LogStore, container_lines, daemon_lines
from vastsim.offerset import Offer, generate_offers, price_fields, storage_dph
from vastsim.ports import Binding, PortHub
from vastsim.rental import RentRequest
from vastsim.responses import ApiError
from vastsim.search import OfferQuery, SearchAnswer, search_offers

log = logging.getLogger(__name__)

FIRST_INSTANCE_ID = 20_000_001
OFFER_FIELDS: frozenset[str] = frozenset(generate_offers(0, 1)[0])


@dataclass(frozen=True)
class Rental:
    """A created instance; `error` is set when the service answers an error all the same (low bid)."""

    instance_id: int
    api_key: str
    error: ApiError | None = None


def no_such_ask(offer_id: int, status: int = 404) -> ApiError:
    tail = "is no longer available." if status == 410 else "is not available."
    return ApiError(status, "no_such_ask", f"no_such_ask Instance type by id {offer_id} {tail}", ask_id=offer_id)


def no_such_instance(instance_id: int) -> ApiError:
    return ApiError(404, "no_such_instance", f"Instance {instance_id} not found.")


class Market:
    def __init__(
        self,
        *,
        seed: int,
        offers: int,
        clock: Callable[[], float],
        boot_seconds: tuple[float, float],
        faults: Faults,
        hub: PortHub,
        public_ip: str,
        host_for: Callable[[int], str | None] | None = None,
    ) -> None:
        """`host_for(machine_id)`: the address a machine's instances listen on and advertise
        (hosts on their own network, vastsim.hostnet); None, or no function: `public_ip`."""
        to_loading, to_running = boot_seconds
        if not 0 <= to_loading <= to_running:
            raise ValueError(f"boot_seconds must be (to_loading, to_running) with 0 <= to_loading <= to_running, got {boot_seconds!r}")
        self._clock = clock
        self._boot = (float(to_loading), float(to_running) - float(to_loading))  # phase durations
        # Each rental's (to_loading, to_running) drawn from this instead, when set (a benchmark's
        # realistic spread of boot times); a drawn pair is used as boot_seconds would be.
        self.boot_draw: Callable[[], tuple[float, float]] | None = None
        self._faults = faults
        self._hub = hub
        self._public_ip = public_ip
        self._host_for = host_for
        self._lock = threading.RLock()
        self._next_id = FIRST_INSTANCE_ID  # never reused, not even across resets
        self.logs = LogStore(clock)
        self._load(seed, offers)

    def _load(self, seed: int, count: int) -> None:
        self.seed, self.size = seed, count
        self._offers: dict[int, Offer] = {o["id"]: o for o in generate_offers(seed, count, now=self._clock())}
        self._available: dict[int, Offer] = dict(self._offers)
        self._vanished: set[int] = set()
        self._instances: dict[int, InstanceRecord] = {}
        self._counters: Counter[str] = Counter()

    # --- the Vast API --------------------------------------------------------------------------
    def search(self, query: OfferQuery, *, cap: int | None = None) -> SearchAnswer:
        with self._lock:
            candidates = list(self._available.values())
            now = self._clock()
        return search_offers(candidates, query, now=now, cap=cap)

    def rent(self, offer_id: int, request: RentRequest) -> Rental:
        """Rent `offer_id`; raises ApiError (404/410 no_such_ask, 400 invalid_args)."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            offer = self._available.get(offer_id)
            if offer is not None:
                vanish = self._faults.take_vanish()
                if vanish is not None:
                    self._vanish(offer_id)
                    raise no_such_ask(offer_id, vanish)
            if offer is None or not offer["rentable"]:
                raise no_such_ask(offer_id)
            self._check_fits(offer, request)
            script = container_script(request.env)
            bid = request.price is not None
            offered = price_fields(offer, allocated_storage=request.disk, bid=bid)["dph_total"]
            if bid and request.price is not None and request.price < offer["min_bid"]:
                record = self._create(offer, request, now, offered=offered, billed=offered, holds_offer=False)
                record.bid = request.price
                self._stop(record, now)
                msg = f"Your bid price ${request.price}/hr is below the minimum ${offer['min_bid']}/hr for this offer."
                error = ApiError(400, "invalid_price", msg, new_contract=record.id, ask_id=offer_id)
                return Rental(record.id, record.api_key, error)
            gpu_dph = request.price if request.price is not None else float(offer["dph_base"])
            billed = round(gpu_dph + storage_dph(float(offer["storage_cost"]), request.disk), 6)
            faults = self._faults.take_rent_faults()
            if faults.price is not None:
                billed = faults.price.apply(billed)
            record = self._create(offer, request, now, offered=offered, billed=billed, holds_offer=True)
            record.bid = request.price
            record.script = script
            record.timeline = record.timeline.running_script(script.exit_code(0), script.exit_after)
            if faults.fate is not None:
                record.timeline = record.timeline.with_fate(faults.fate)
            if faults.health is not None:
                record.health = faults.health
            if request.target_state == "stopped":
                self._stop(record, now)
            del self._available[offer_id]
            self._sync(record, now)
            return Rental(record.id, record.api_key)

    def get_instance(self, instance_id: int) -> dict[str, Any] | None:
        with self._lock:
            now = self._clock()
            record = self._instances.get(instance_id)
            if record is None or not record.live:
                return None
            self._sync(record, now)
            return render_instance(record, now, public_ip=self._public_ip)

    def list_instances(self, query: ListQuery) -> dict[str, Any]:
        """The v1 list; an instance rented less than the listing lag ago is not in it yet."""
        lag = self._faults.listing_lag()
        with self._lock:
            now = self._clock()
            self._advance(now)
            rendered = [
                render_instance(r, now, public_ip=self._public_ip) for r in self._instances.values()
                if r.live and now - r.created_at >= lag
            ]
        return list_page(rendered, query)

    def destroy(self, instance_id: int) -> None:
        """Destroy the instance and close its ports; raises ApiError 404 no_such_instance."""
        with self._lock:
            now = self._clock()
            record = self._live(instance_id)
            record.last_status = record.status(now)
            self._close_ports(record)
            record.destroyed_at = now
            self._counters["destroys"] += 1
            offer_id = record.offer_id
            if record.holds_offer and offer_id not in self._vanished and offer_id in self._offers:
                self._available[offer_id] = self._offers[offer_id]

    def instance_log(self, instance_id: int, *, daemon: bool = False) -> list[LogLine]:
        """The live instance's container log (or its host daemon's), up to now; raises ApiError
        404 no_such_instance."""
        with self._lock:
            now = self._clock()
            record = self._live(instance_id)
            self._sync(record, now)
            if daemon:
                return daemon_lines(record, now)
            return container_lines(record) + self.logs.recorded(instance_id)

    def append_log(self, instance_id: int, lines: list[str]) -> None:
        """Lines the live instance's container prints now; raises KeyError if not live."""
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise ValueError("lines must be a list of strings")
        if len(lines) > MAX_APPEND:
            raise ValueError(f"at most {MAX_APPEND} lines at a time")
        with self._lock:
            self._live_or_key_error(instance_id)
        self.logs.append(instance_id, "\n".join(lines))

    def host_of(self, instance_id: int) -> str | None:
        """The live instance's own host address (None: it listens on the simulator's); KeyError if not live."""
        with self._lock:
            return self._live_or_key_error(instance_id).host

    def relabel(self, instance_id: int, label: str | None) -> None:
        with self._lock:
            self._live(instance_id).label = label

    def set_state(self, instance_id: int, state: str) -> None:
        """`stopped` sends the container SIGTERM: it is gone after its shutdown time (at once if it
        is not running). `running` starts a stopped instance again: a new run of the container,
        through loading, on new host ports. A start during a stop's shutdown cancels the stop;
        a start of an instance whose intended status is already running changes nothing (also
        when its container exited: restarting is stop, then start). A host that is gone
        (offline, unknown) takes neither."""
        with self._lock:
            now = self._clock()
            record = self._live(instance_id)
            self._sync(record, now)
            if record.status(now) in HOST_GONE:
                return
            if state == "stopped":
                self._stop(record, now)
            elif record.paused and record.bid is not None:
                raise bids.paused_start(instance_id, record.bid, float(record.offer["min_bid"]))
            else:
                self._start(record, now)
            self._sync(record, now)

    # --- interruptible instances (vastsim.bids) -------------------------------------------------
    def set_bid(self, instance_id: int, price: Any) -> None:
        """`PUT bid_price`: the instance's new bid; a paused one runs again if it now reaches
        its machine's `min_bid`. ApiError 404 for an unknown instance, 400 for an on-demand one."""
        bid = bids.parse_bid(price)
        with self._lock:
            now = self._clock()
            record = self._live(instance_id)
            if record.bid is None:
                raise bids.not_interruptible(instance_id)
            record.bid = bid
            record.dph_total = round(bid + storage_dph(float(record.offer["storage_cost"]), record.request.disk), 6)
            self._sync(record, now)
            self._apply_bids({record.offer_id}, now)

    def outbid(self, instance_id: int, *, price: float | None = None) -> float:
        """Other renters bid `price` (default: a quarter over the instance's bid) on the live
        interruptible instance's machine: its `min_bid` rises to that, and the instance is
        paused. Returns the new `min_bid`. KeyError if not live, ValueError if on-demand."""
        with self._lock:
            now = self._clock()
            record = self._live_or_key_error(instance_id)
            if record.bid is None:
                raise ValueError(f"instance {instance_id} is on-demand: it cannot be outbid")
            competing = bids.competing_bid(record.bid, price)
            self._set_min_bid(record.offer_id, competing)
            self._apply_bids({record.offer_id}, now)
            return competing

    def _set_min_bid(self, offer_id: int, min_bid: float) -> None:
        moved = dict(self._offers[offer_id], min_bid=round(min_bid, 4))
        self._offers[offer_id] = moved
        if offer_id in self._available:
            self._available[offer_id] = moved

    def _apply_bids(self, offer_ids: set[int], now: float) -> None:
        """Pause the live instances on `offer_ids` that their offer's `min_bid` outbids; run
        again the paused ones that it no longer does."""
        for record in self._instances.values():
            if not record.live or record.bid is None or not record.holds_offer or record.offer_id not in offer_ids:
                continue
            offer = self._offers.get(record.offer_id)
            if offer is None:
                continue
            record.offer = offer
            if bids.outbid(record.bid, float(offer["min_bid"])):
                if not record.paused:
                    record.paused = True
                    self._counters["outbids"] += 1
                    self._stop(record, now)
            elif record.paused:
                record.paused = False
                self._start(record, now)
            self._sync(record, now)

    def _start(self, record: InstanceRecord, now: float) -> None:
        """Run a stopped instance again (a new run, through loading, on new host ports), or
        cancel a stop still under way; a running one is left alone."""
        if record.status(now) == "stopped":
            record.stopped = False
            record.run += 1
            record.timeline = Timeline(boot_started=now, provisioning=0.0, loading=self._boot[1]).running_script(
                record.script.exit_code(record.run), record.script.exit_after)
        elif record.stopped:
            record.stopped = False
            record.timeline = replace(record.timeline, stop_at=None)

    # --- faults aimed at one offer or instance ---------------------------------------------------
    def vanish_offer(self, offer_id: int) -> bool:
        """Take `offer_id` off the market for good (renting it answers 404); False if unknown."""
        with self._lock:
            if offer_id not in self._offers or offer_id in self._vanished:
                return False
            self._vanish(offer_id)
            return True

    def move_prices(self, *, fraction: float, spread: float, seed: int | None = None) -> int:
        """Prices moving: a random `fraction` (0–1) of the offers get their on-demand price (and
        minimum bid) multiplied by a factor drawn from [1 - spread, 1 + spread] (`spread` 0–0.9);
        returns how many moved. Rented instances keep the price they were rented at."""
        for name, value, top in (("fraction", fraction, 1.0), ("spread", spread, 0.9)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise ValueError(f"{name} must be a number from 0 to {top:g}, got {value!r}")
        rng = random.Random(seed)
        with self._lock:
            chosen = rng.sample(sorted(self._offers), round(len(self._offers) * fraction))
            for offer_id in chosen:
                factor = rng.uniform(1 - spread, 1 + spread)
                old = self._offers[offer_id]
                moved = dict(old, dph_base=round(float(old["dph_base"]) * factor, 4),
                             min_bid=round(float(old["min_bid"]) * factor, 4))
                self._offers[offer_id] = moved
                if offer_id in self._available:
                    self._available[offer_id] = moved
            self._apply_bids(set(chosen), self._clock())  # a min_bid moving may pause or resume bids
            return len(chosen)

    def set_fate(self, instance_id: int, status: str, *, after_seconds: float = 0.0, status_msg: str | None = None,
                 exit_code: int | None = None) -> None:
        """The live instance turns `status` after `after_seconds` (`exited`: with `exit_code`,
        1 by default); raises KeyError if not live."""
        check_fate(status, after_seconds, "after_seconds", status_msg, exit_code)
        with self._lock:
            now = self._clock()
            record = self._live_or_key_error(instance_id)
            record.timeline = record.timeline.failing(status, now + after_seconds, status_msg, exit_code)
            if status == "stopped":
                record.stopped = False  # the fate says stopped; starting clears it
            self._sync(record, now)

    def set_health(self, instance_id: int, *, status: int = 200, mode: str = "answer") -> None:
        """The live instance's ports answer `status`, refuse connections or hang; KeyError if not live."""
        health = check_health(Health(status, mode))
        with self._lock:
            record = self._live_or_key_error(instance_id)
            record.health = health
            for binding in record.bindings:
                binding.health = health
            self._sync(record, self._clock())

    # --- the whole market ----------------------------------------------------------------------
    def advance(self) -> None:
        """Bring every live instance up to the clock: open or close ports as statuses change."""
        with self._lock:
            self._advance(self._clock())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            self._advance(now)
            live = [r for r in self._instances.values() if r.live]
            return {
                "market": {
                    "seed": self.seed,
                    "offers": len(self._offers),
                    "available": len(self._available),
                    "vanished": sorted(self._vanished),
                },
                "counters": {
                    "rentals": self._counters["rentals"],
                    "destroys": self._counters["destroys"],
                    "outbids": self._counters["outbids"],
                    "live_instances": len(live),
                    "open_ports": sum(1 for r in live for b in r.bindings if b.listening),
                },
                "instances": [audit_record(r, now) for r in self._instances.values()],
            }

    def reset(self, *, seed: int | None = None, offers: int | None = None) -> None:
        """A new market: every instance gone (ports closed), offers drawn again."""
        with self._lock:
            self.close()
            self._load(self.seed if seed is None else seed, self.size if offers is None else offers)

    def close(self) -> None:
        """Close the ports of every instance (the market stays readable)."""
        with self._lock:
            for record in self._instances.values():
                self._close_ports(record)

    # --- inside the lock -----------------------------------------------------------------------
    def _create(
        self,
        offer: Offer,
        request: RentRequest,
        now: float,
        *,
        offered: float,
        billed: float,
        holds_offer: bool,
    ) -> InstanceRecord:
        provisioning, loading = self._boot
        if self.boot_draw is not None:
            to_loading, to_running = self.boot_draw()
            provisioning, loading = max(0.0, to_loading), max(0.0, to_running - to_loading)
        record = InstanceRecord(
            id=self._next_id,
            offer=offer,
            request=request,
            created_at=now,
            timeline=Timeline(boot_started=now, provisioning=provisioning, loading=loading),
            dph_total=billed,
            offer_dph_total=offered,
            api_key=secrets.token_hex(32),
            label=request.label,
            holds_offer=holds_offer,
            host=self._host_for(int(offer["machine_id"])) if self._host_for is not None else None,
        )
        self._next_id += 1
        self._instances[record.id] = record
        self._counters["rentals"] += 1
        return record

    def _check_fits(self, offer: Offer, request: RentRequest) -> None:
        direct = int(offer["direct_port_count"])
        if len(request.ports) > direct:
            raise ApiError(
                400,
                "invalid_args",
                f"{len(request.ports)} port mappings requested but machine {offer['machine_id']} "
                f"has {direct} direct ports",
                ask_id=offer["id"],
            )
        if request.disk > float(offer["disk_space"]):
            raise ApiError(
                400,
                "invalid_args",
                f"disk {request.disk} GB exceeds the {offer['disk_space']} GB this offer has",
                ask_id=offer["id"],
            )

    def _vanish(self, offer_id: int) -> None:
        self._available.pop(offer_id, None)
        self._vanished.add(offer_id)

    def _live(self, instance_id: int) -> InstanceRecord:
        record = self._instances.get(instance_id)
        if record is None or not record.live:
            raise no_such_instance(instance_id)
        return record

    def _live_or_key_error(self, instance_id: int) -> InstanceRecord:
        record = self._instances.get(instance_id)
        if record is None or not record.live:
            raise KeyError(f"no live instance {instance_id}")
        return record

    def _advance(self, now: float) -> None:
        for record in self._instances.values():
            if record.live:
                self._sync(record, now)

    def _stop(self, record: InstanceRecord, now: float) -> None:
        """Ask the container to stop (SIGTERM): it goes after the script's shutdown time."""
        if not record.stopped:
            record.stop_requested_at = now
        record.stopped = True
        record.timeline = record.timeline.stopping(now, record.script.shutdown)

    def _sync(self, record: InstanceRecord, now: float) -> None:
        """Make the record's ports match its status and health at `now`; note a container exit."""
        status = record.status(now)
        if status == "exited" and record.last_status != "exited":
            exit = record.timeline.exit(now)
            if exit is not None and not any(e["run"] == record.run for e in record.exits):
                record.exits.append({"run": record.run, "exit_code": exit[0], "at": exit[1]})
        record.last_status = status
        if status != "running":
            self._close_ports(record)
            return
        if record.running_at is None:
            record.running_at = now
        if record.ports is None:
            record.bindings = [
                Binding(record.id, m.container_port, m.proto, health=record.health, host=record.host,
                        port_range=direct_port_range(record.offer), avoid=record.last_host_ports)
                for m in record.request.ports
            ]
            for binding in record.bindings:
                self._open(binding)
            record.ports = port_map(record.bindings)
        refuse = record.health.mode == "refuse"
        for binding in record.bindings:
            if binding.proto != "tcp":
                continue
            if refuse and binding.listening:
                self._hub.close(binding)
            elif not refuse and not binding.listening:
                self._open(binding)

    def _open(self, binding: Binding) -> None:
        try:
            self._hub.listen(binding)
        except (OSError, RuntimeError) as e:
            log.warning(
                "cannot open port instance=%s container_port=%s host_port=%s: %s",
                binding.instance_id,
                binding.container_port,
                binding.host_port,
                e,
            )

    def _close_ports(self, record: InstanceRecord) -> None:
        for binding in record.bindings:
            self._hub.close(binding)
        if record.bindings:
            record.last_host_ports = frozenset(b.host_port for b in record.bindings)
        record.bindings = []
        record.ports = None
