"""The controller's settings, from ``KUBE_VAST_*`` / ``VAST_*`` environment and flags."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from vastmarket.errors import ConfigError
from vastmarket.pacing import parse_pacing

DEFAULT_SNAPSHOT = "/var/run/kube-vast/offers.json"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    cluster_id: str = ""  # empty: derived from the kube-system namespace UID
    namespace: str = "kube-vast"  # where the leader-election Lease lives
    identity: str = ""
    virtual_nodes: tuple[str, ...] = ("vast-gpu-node-1",)
    node_gpus: int = 8
    snapshot_path: Path = Path(DEFAULT_SNAPSHOT)
    config_path: Path | None = None
    kubeconfig: str | None = None
    poll_interval: float = 30.0        # offer search for pods waiting for an offer
    refresh_interval: float = 240.0    # offer search for the whole demand (below max_snapshot_age)
    demand_interval: float = 5.0       # how often the demand (opted-in pods) is read; new wants search at once
    max_market_queries: int = 3        # searches per round of demand-driven market watching
    include_external_offers: bool = False  # Vast's external offers (the official client leaves them out)
    fleet_interval: float = 5.0        # instance listing
    budget_interval: float = 5.0       # team budgets: accrual, status and the state the webhook reads
    resync: float = 5.0                # re-check of each running pod (health, endpoints)
    boot_timeout: float = 900.0        # rent → running deadline
    max_launch_attempts: int = 5
    # After a rent whose answer was lost, how long the pod's label is looked for (Vast's listing
    # may lag a new rental) before the controller concludes no instance was made and rents again.
    # Longer than the read timeout plus the longest listing lag, or a rent may be made twice.
    uncertain_rent_wait: float = 120.0
    vast_read_timeout: float = 30.0   # seconds a Vast call may take to answer
    max_grace_period: float = 300.0    # bound on a deleted pod's terminationGracePeriodSeconds
    restart_backoff: float = 10.0      # first back-off before a container restart (doubles, ≤ 300 s)
    price_tolerance: float = 0.05      # billed dph_total may exceed the pod's cap by this fraction
    max_snapshot_age: float = 300.0
    reaper_interval: float = 60.0
    reaper_grace: float = 300.0
    reaper_dry_run: bool = False
    unreachable_after: float = 300.0   # Vast unreachable this long → virtual node NotReady
    host_unreachable_grace: float = 300.0  # a serving instance's host unreachable this long → replaced (0: never)
    lease_seconds: float = 15.0
    renew_every: float = 5.0
    workers: int = 8
    max_total_price_per_hour: float | None = None  # overrides the config's budget
    max_instances: int | None = None
    # The virtual node's kubelet API (kubectl logs): see controller/kubelet_api.py.
    kubelet_port: int = 10250          # 0: not served, and the node advertises no address
    kubelet_bind_address: str = "0.0.0.0"
    node_ip: str = ""                  # the node's InternalIP; empty: this machine's outgoing address
    kubelet_client_ca: Path | None = None  # CA of the API server's kubelet client certificate
    kubelet_tls_cert: Path | None = None   # with the key: the serving pair; unset: self-signed at start
    kubelet_tls_key: Path | None = None
    kubelet_authorization: str = "webhook"  # or "certificate"
    log_follow_interval: float = 2.0   # kubectl logs -f: seconds between two reads of the Vast log
    # Calls to Vast paced under its per-endpoint rate limits (vastmarket.pacing): auto (Vast's
    # published intervals when talking to vast.ai, none to anything else, e.g. the simulator),
    # published, off, or endpoint=seconds pairs ("create=6,search=10").
    vast_pacing: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.max_market_queries, bool) or not isinstance(self.max_market_queries, int) \
                or self.max_market_queries < 1:
            raise ConfigError(f"KUBE_VAST_MAX_MARKET_QUERIES={self.max_market_queries!r}: expected 1 or more searches")
        for f in ("poll_interval", "refresh_interval", "demand_interval", "fleet_interval", "budget_interval", "resync", "boot_timeout", "max_snapshot_age",
                  "reaper_interval", "unreachable_after", "lease_seconds", "renew_every", "log_follow_interval",
                  "uncertain_rent_wait", "vast_read_timeout"):
            value = getattr(self, f)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"controller setting {f}={value!r}: expected a positive number of seconds")
        for f in ("reaper_grace", "max_grace_period", "restart_backoff", "host_unreachable_grace"):
            value = getattr(self, f)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"controller setting {f}={value!r}: expected 0 or more seconds")
        if self.uncertain_rent_wait <= self.vast_read_timeout:
            raise ConfigError(f"KUBE_VAST_UNCERTAIN_RENT_WAIT={self.uncertain_rent_wait:g} must be longer than "
                              f"KUBE_VAST_VAST_READ_TIMEOUT={self.vast_read_timeout:g}: a rent answered late "
                              "would be made again")
        if self.renew_every >= self.lease_seconds:
            raise ConfigError("controller settings: renew_every must be shorter than lease_seconds")
        if not self.virtual_nodes:
            raise ConfigError("controller settings: at least one virtual node name is needed")
        if self.workers < 1 or self.max_launch_attempts < 1:
            raise ConfigError("controller settings: workers and max_launch_attempts must be at least 1")
        if self.cluster_id and (len(self.cluster_id) > 16 or not self.cluster_id.replace("-", "").isalnum()):
            raise ConfigError(f"cluster id {self.cluster_id!r}: expected up to 16 letters, digits or dashes")
        self._check_kubelet_api()
        if self.vast_pacing.strip().lower() != "auto":
            try:
                parse_pacing(self.vast_pacing)
            except ConfigError as exc:
                raise ConfigError(f"KUBE_VAST_VAST_PACING: {exc} (or auto)") from None

    def pacing_intervals(self, url: str) -> dict[str, float]:
        """The minimum seconds between two calls per Vast endpoint, for the Vast API at ``url``."""
        if self.vast_pacing.strip().lower() == "auto":
            host = urllib.parse.urlsplit(url).hostname or ""
            return parse_pacing("published" if host == "vast.ai" or host.endswith(".vast.ai") else "off")
        return parse_pacing(self.vast_pacing)

    def _check_kubelet_api(self) -> None:
        if not 0 <= self.kubelet_port <= 65535:
            raise ConfigError(f"KUBE_VAST_KUBELET_PORT={self.kubelet_port}: expected a port from 1 to 65535, or 0 (off)")
        for name, value in (("KUBE_VAST_NODE_IP", self.node_ip), ("KUBE_VAST_KUBELET_BIND_ADDRESS",
                                                                 self.kubelet_bind_address)):
            if value and not _is_ip(value):
                raise ConfigError(f"{name}={value!r}: expected an IP address (never a name: it would be "
                                  "resolved through DNS)")
        if (self.kubelet_tls_cert is None) != (self.kubelet_tls_key is None):
            raise ConfigError("KUBE_VAST_KUBELET_TLS_CERT and KUBE_VAST_KUBELET_TLS_KEY go together: set both "
                              "or neither (neither: a self-signed certificate is made at start)")
        if self.kubelet_authorization not in ("webhook", "certificate"):
            raise ConfigError(f"KUBE_VAST_KUBELET_AUTHORIZATION={self.kubelet_authorization!r}: expected webhook "
                              "(SubjectAccessReview, the default) or certificate")

    def with_identity(self) -> ControllerSettings:
        return self if self.identity else replace(self, identity=f"{socket.gethostname()}-{os.getpid()}")


_ENV: dict[str, tuple[str, Any]] = {
    "KUBE_VAST_CLUSTER_ID": ("cluster_id", str),
    "KUBE_VAST_NAMESPACE": ("namespace", str),
    "KUBE_VAST_SNAPSHOT": ("snapshot_path", Path),
    "KUBE_VAST_CONFIG": ("config_path", Path),
    "KUBE_VAST_POLL_INTERVAL": ("poll_interval", float),
    "KUBE_VAST_REFRESH_INTERVAL": ("refresh_interval", float),
    "KUBE_VAST_DEMAND_INTERVAL": ("demand_interval", float),
    "KUBE_VAST_MAX_MARKET_QUERIES": ("max_market_queries", int),
    "KUBE_VAST_FLEET_INTERVAL": ("fleet_interval", float),
    "KUBE_VAST_BUDGET_INTERVAL": ("budget_interval", float),
    "KUBE_VAST_NODE_GPUS": ("node_gpus", int),  # nvidia.com/gpu the virtual node advertises
    "KUBE_VAST_RESYNC": ("resync", float),
    "KUBE_VAST_BOOT_TIMEOUT": ("boot_timeout", float),
    "KUBE_VAST_REAPER_GRACE": ("reaper_grace", float),
    "KUBE_VAST_REAPER_INTERVAL": ("reaper_interval", float),
    "KUBE_VAST_MAX_SNAPSHOT_AGE": ("max_snapshot_age", float),
    "KUBE_VAST_UNREACHABLE_AFTER": ("unreachable_after", float),
    "KUBE_VAST_HOST_UNREACHABLE_GRACE": ("host_unreachable_grace", float),
    "KUBE_VAST_MAX_GRACE_PERIOD": ("max_grace_period", float),
    "KUBE_VAST_RESTART_BACKOFF": ("restart_backoff", float),
    "KUBE_VAST_UNCERTAIN_RENT_WAIT": ("uncertain_rent_wait", float),
    "KUBE_VAST_VAST_READ_TIMEOUT": ("vast_read_timeout", float),
    "VAST_MAX_TOTAL_PRICE_PER_HOUR": ("max_total_price_per_hour", float),
    "VAST_MAX_INSTANCES": ("max_instances", int),
    "KUBE_VAST_KUBELET_PORT": ("kubelet_port", int),
    "KUBE_VAST_KUBELET_BIND_ADDRESS": ("kubelet_bind_address", str),
    "KUBE_VAST_NODE_IP": ("node_ip", str),
    "KUBE_VAST_KUBELET_CLIENT_CA": ("kubelet_client_ca", Path),
    "KUBE_VAST_KUBELET_TLS_CERT": ("kubelet_tls_cert", Path),
    "KUBE_VAST_KUBELET_TLS_KEY": ("kubelet_tls_key", Path),
    "KUBE_VAST_KUBELET_AUTHORIZATION": ("kubelet_authorization", str),
    "KUBE_VAST_LOG_FOLLOW_INTERVAL": ("log_follow_interval", float),
    "KUBE_VAST_VAST_PACING": ("vast_pacing", str),
}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def settings_from(environ: Mapping[str, str], **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {}
    for key, (attr, kind) in _ENV.items():
        text = environ.get(key, "").strip()
        if text:
            try:
                values[attr] = kind(text)
            except ValueError:
                raise ConfigError(f"{key}={text!r}: expected a {kind.__name__}") from None
    names = environ.get("KUBE_VAST_VIRTUAL_NODES", "").strip()
    if names:
        values["virtual_nodes"] = tuple(n.strip() for n in names.split(",") if n.strip())
    if environ.get("KUBE_VAST_REAPER_DRY_RUN", "").strip().lower() in ("1", "true", "yes"):
        values["reaper_dry_run"] = True
    external = environ.get("KUBE_VAST_INCLUDE_EXTERNAL_OFFERS", "").strip().lower()
    if external:
        if external not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"KUBE_VAST_INCLUDE_EXTERNAL_OFFERS={external!r}: expected true or false")
        values["include_external_offers"] = external in ("1", "true", "yes")
    known = {f.name for f in fields(ControllerSettings)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown controller setting {key}")
        values[key] = tuple(value) if key == "virtual_nodes" else value
    return ControllerSettings(**values)
