"""The webhook's settings, from ``KUBE_VAST_*`` environment and flags, validated at start-up (a
wrong value stops the process with a message naming it).

==================================  ==========================  ===============================
environment                         flag                        meaning (default)
==================================  ==========================  ===============================
``KUBE_VAST_TLS_CERT``/``_KEY``     ``--tls-cert``/``--tls-key``  serving certificate and key (required)
``KUBE_VAST_SNAPSHOT``              ``--snapshot``              offer snapshot file
``KUBE_VAST_CONFIG``                ``--config``                selection config file
``KUBE_VAST_NAMESPACE``             ``--release-namespace``     never touched, like kube-system
``KUBE_VAST_SCHEDULER_NAME``        ``--scheduler-name``        ``vast-scheduler``
``KUBE_VAST_SET_SCHEDULER_NAME``    ``--keep-scheduler-name``   set ``spec.schedulerName`` (true)
``KUBE_VAST_DENY_WITHOUT_OFFER``    ``--deny-without-offer``    deny when no offer matches (false)
``KUBE_VAST_MAX_SNAPSHOT_AGE``      ``--max-snapshot-age``      seconds (300)
``KUBE_VAST_VIRTUAL_NODE_TAINT``    ``--virtual-node-taint``    ``virtual-kubelet.io/provider=vast:NoSchedule``
``KUBE_VAST_GPU_RUNTIME_CLASSES``   (none)                      runtime classes a pod may name and go to Vast
                                                                (``nvidia,nvidia-cdi,nvidia-experimental,nvidia-legacy``)
==================================  ==========================  ===============================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vastmarket.errors import ConfigError
from vastmarket.quantities import BOOL_FORM, parse_bool

from .mutation import TAINT_FORM, VIRTUAL_NODE_TAINT, Taint
from .validation import GPU_RUNTIME_CLASSES

DEFAULT_SNAPSHOT = "/var/run/kube-vast/offers.json"
DEFAULT_SCHEDULER_NAME = "vast-scheduler"
SYSTEM_NAMESPACES = frozenset({"kube-system"})
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    snapshot_path: Path = Path(DEFAULT_SNAPSHOT)
    config_path: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    release_namespace: str | None = None
    scheduler_name: str | None = DEFAULT_SCHEDULER_NAME  # None: leave spec.schedulerName alone
    deny_without_offer: bool = False
    max_snapshot_age: float = 300.0
    taint: Taint = VIRTUAL_NODE_TAINT
    gpu_runtime_classes: frozenset[str] = GPU_RUNTIME_CLASSES

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_snapshot_age) or self.max_snapshot_age <= 0:
            raise ConfigError(f"max snapshot age {self.max_snapshot_age}: expected a positive number of seconds")
        if self.scheduler_name is not None and (
                len(self.scheduler_name) > 253 or not _DNS_SUBDOMAIN.match(self.scheduler_name)):
            raise ConfigError(f"scheduler name {self.scheduler_name!r}: expected a DNS subdomain such as vast-scheduler")
        if self.release_namespace is not None and not _DNS_SUBDOMAIN.match(self.release_namespace):
            raise ConfigError(f"release namespace {self.release_namespace!r}: expected a namespace name")
        for name in sorted(self.gpu_runtime_classes):
            if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
                raise ConfigError(f"GPU runtime class {name!r}: expected a RuntimeClass name such as nvidia "
                                  "(KUBE_VAST_GPU_RUNTIME_CLASSES: names separated by commas)")

    @property
    def excluded_namespaces(self) -> frozenset[str]:
        """Namespaces whose pods are never touched: kube-system and the release's own."""
        own = {self.release_namespace} if self.release_namespace else set()
        return SYSTEM_NAMESPACES | own

    def require_tls(self) -> tuple[Path, Path]:
        """The certificate and key files; the webhook serves HTTPS only."""
        if self.tls_cert is None or self.tls_key is None:
            raise ConfigError("the webhook serves HTTPS only: give --tls-cert FILE and --tls-key FILE "
                              "(or KUBE_VAST_TLS_CERT and KUBE_VAST_TLS_KEY)")
        return self.tls_cert, self.tls_key


def _bool(name: str, text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected {BOOL_FORM}") from None


def settings_from(environ: Mapping[str, str], **flags: object) -> WebhookSettings:
    """Settings from ``KUBE_VAST_*`` variables, then flags that are not ``None``.

    Flags: ``snapshot_path``, ``config_path``, ``tls_cert``, ``tls_key`` (paths),
    ``release_namespace``, ``scheduler_name``, ``taint`` (strings), ``keep_scheduler_name``,
    ``deny_without_offer`` (booleans; ``False`` counts as not given), ``max_snapshot_age``.
    """
    env = {k: v.strip() for k, v in environ.items() if k.startswith("KUBE_VAST_") and v.strip()}
    raw: dict[str, object] = {}
    for key, attr in (("KUBE_VAST_SNAPSHOT", "snapshot_path"), ("KUBE_VAST_CONFIG", "config_path"),
                      ("KUBE_VAST_TLS_CERT", "tls_cert"), ("KUBE_VAST_TLS_KEY", "tls_key"),
                      ("KUBE_VAST_NAMESPACE", "release_namespace"),
                      ("KUBE_VAST_SCHEDULER_NAME", "scheduler_name"),
                      ("KUBE_VAST_VIRTUAL_NODE_TAINT", "taint")):
        if key in env:
            raw[attr] = env[key]
    if "KUBE_VAST_MAX_SNAPSHOT_AGE" in env:
        try:
            raw["max_snapshot_age"] = float(env["KUBE_VAST_MAX_SNAPSHOT_AGE"])
        except ValueError:
            raise ConfigError(f"KUBE_VAST_MAX_SNAPSHOT_AGE={env['KUBE_VAST_MAX_SNAPSHOT_AGE']!r}: "
                              "expected a number of seconds") from None
    set_scheduler = _bool("KUBE_VAST_SET_SCHEDULER_NAME", env.get("KUBE_VAST_SET_SCHEDULER_NAME", "true"))
    deny = _bool("KUBE_VAST_DENY_WITHOUT_OFFER", env.get("KUBE_VAST_DENY_WITHOUT_OFFER", "false"))
    runtime_classes = GPU_RUNTIME_CLASSES
    if "KUBE_VAST_GPU_RUNTIME_CLASSES" in environ:  # set but empty: no runtime class goes to Vast
        runtime_classes = frozenset(n.strip() for n in environ["KUBE_VAST_GPU_RUNTIME_CLASSES"].split(",")
                                    if n.strip())
    for key, value in flags.items():
        if value is None or value is False:
            continue
        if key == "keep_scheduler_name":
            set_scheduler = False
        elif key == "deny_without_offer":
            deny = True
        else:
            raw[key] = value
    taint = VIRTUAL_NODE_TAINT
    if "taint" in raw:
        try:
            taint = Taint.parse(str(raw.pop("taint")))
        except ValueError:
            raise ConfigError(f"virtual node taint: expected {TAINT_FORM}") from None
    paths = {k: Path(str(raw.pop(k))) for k in ("snapshot_path", "config_path", "tls_cert", "tls_key") if k in raw}
    scheduler_name = str(raw.pop("scheduler_name", DEFAULT_SCHEDULER_NAME)) if set_scheduler else None
    release = raw.pop("release_namespace", None)
    max_age = raw.pop("max_snapshot_age", 300.0)
    if raw:
        raise TypeError(f"unknown webhook settings: {', '.join(sorted(raw))}")
    if not isinstance(max_age, (int, float)):
        raise ConfigError(f"max snapshot age {max_age!r}: expected a number of seconds")
    return WebhookSettings(
        snapshot_path=paths.get("snapshot_path", Path(DEFAULT_SNAPSHOT)), config_path=paths.get("config_path"),
        tls_cert=paths.get("tls_cert"), tls_key=paths.get("tls_key"),
        release_namespace=str(release) if release is not None else None, scheduler_name=scheduler_name,
        deny_without_offer=deny, max_snapshot_age=float(max_age), taint=taint, gpu_runtime_classes=runtime_classes,
    )
