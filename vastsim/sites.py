"""Which simulated host (site of a :class:`vastsim.hostnet.HostNetwork`) each machine's instances
live on, and partitions between this machine and those hosts.

Machines are placed on sites in the order they are first rented, round robin, so the first
``len(sites)`` machines rented each get a host of their own (a replacement on another machine
is on another host). A partition is per host: every instance of every machine on that site is
cut off. Thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any

from vastsim.hostnet import HostNetwork


class NoHostNetwork(ValueError):
    """A partition was asked of a simulator whose instances listen on this machine's own address."""


NO_NETWORK = ("the simulator's instances listen on this machine's own address (no host network): "
              "a partition needs hosts in a network namespace (vastsim.hostnet; root)")


class Sites:
    def __init__(self, network: HostNetwork | None) -> None:
        self.network = network
        self._lock = threading.Lock()
        self._placed: dict[int, int] = {}  # machine id -> site index
        self._cut: set[str] = set()  # host addresses this simulator partitioned

    def host_for(self, machine_id: int) -> str | None:
        """The address machine ``machine_id``'s instances listen on (None: no host network)."""
        if self.network is None:
            return None
        with self._lock:
            index = self._placed.setdefault(machine_id, len(self._placed) % len(self.network.sites))
        return self.network.site(index).address

    def partition(self, address: str) -> None:
        network = self._need()
        network.partition(address)
        with self._lock:
            self._cut.add(address)

    def heal(self, address: str | None = None) -> list[str]:
        """Heal the host at ``address`` (None: every host this simulator cut off); the addresses healed."""
        network = self._need()
        with self._lock:
            addresses = sorted(self._cut) if address is None else [address]
        for each in addresses:
            network.heal(each)
            with self._lock:
                self._cut.discard(each)
        return addresses

    def heal_all_quietly(self) -> None:
        """At stop: no host stays cut off for the next user of the network."""
        if self.network is not None:
            self.heal()

    def snapshot(self) -> dict[str, Any] | None:
        if self.network is None:
            return None
        with self._lock:
            placed = dict(self._placed)
        return {
            "namespace": self.network.namespace,
            "hosts": [s.address for s in self.network.sites],
            "partitioned": self.network.partitioned(),
            "machines": {str(m): self.network.site(i).address for m, i in sorted(placed.items())},
        }

    def _need(self) -> HostNetwork:
        if self.network is None:
            raise NoHostNetwork(NO_NETWORK)
        return self.network
