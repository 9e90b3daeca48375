"""Where the simulator's instances listen for the demo, the soak and the end-to-end tests: hosts
on their own network (:mod:`vastsim.hostnet`: a namespace this process creates, one veth link per
host, documentation-range addresses) when this machine allows it, else this machine's own
non-loopback address, as before, with the reason said.

One network per process, made on first use and removed at exit (also by :func:`close`).
``KUBE_VAST_HOST_NETNS=0`` turns it off (the fallback, on purpose: how the suite runs where no
namespace can be made); ``KUBE_VAST_HOST_NETNS=1`` requires it (an error when it cannot be made).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from vastsim.hostnet import HostNetwork, HostNetworkError, create, unavailable

from .binaries import running_in_ci
from .controller_stack import host_ip

log = logging.getLogger(__name__)

SWITCH = "KUBE_VAST_HOST_NETNS"
SITES = 4

_lock = threading.Lock()
_state: dict[str, Any] = {"network": None, "reason": None, "tried": False}


def switch() -> str:
    """``off`` (``KUBE_VAST_HOST_NETNS=0``), ``on`` (``=1``: required) or ``auto``."""
    value = os.environ.get(SWITCH, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value in ("1", "true", "yes", "on"):
        return "on"
    return "auto"


def shared_network() -> HostNetwork | None:
    """This process's host network, made on first call; None when it cannot or must not be made
    (:func:`why_not` says why)."""
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            if switch() == "off":
                _state["reason"] = f"{SWITCH}=0 turns the hosts' own network off"
            else:
                try:
                    _state["network"] = create(SITES)
                    atexit.register(close)
                except HostNetworkError as exc:
                    _state["reason"] = str(exc)
                    if switch() == "on":
                        raise
        network: HostNetwork | None = _state["network"]
        return network


def why_not() -> str | None:
    """Why the instances cannot listen on their own network here (None: they can)."""
    shared_network()
    reason: str | None = _state["reason"]
    return reason


def must_have_network() -> bool:
    """Tests that need the hosts' own network (partitions) must run: under ``CI=true`` a missing
    network is a failure, not a skip, unless it was turned off on purpose."""
    return running_in_ci() and switch() != "off"


def close() -> None:
    with _lock:
        network = _state["network"]
        _state["network"] = None
    if network is not None:
        network.close()


def simulator_hosts() -> dict[str, Any]:
    """Keyword arguments for ``SimulatorServer`` that place its instances: ``network`` when this
    machine allows one, else ``host`` and ``public_ip`` at this machine's own address (the API
    server refuses loopback addresses in EndpointSlices). The simulator's API listens on this
    machine's address in both cases."""
    ip = host_ip()
    network = shared_network()
    if network is not None:
        return {"host": ip, "network": network}
    return {"host": ip, "public_ip": ip}


def describe() -> str:
    """One line for the console: where instances listen, and why there when it is the fallback."""
    network = shared_network()
    if network is not None:
        return (f"instances listen on hosts of their own network ({network.namespace}: "
                f"{', '.join(s.address for s in network.sites)}, one veth link each)")
    return f"instances listen on this machine's own address {host_ip()} (no host network: {why_not()})"


__all__ = ["SWITCH", "close", "describe", "must_have_network", "shared_network", "simulator_hosts", "why_not"]
