"""Who may use the virtual node's kubelet API: authorization of an authenticated caller.

Authentication is the client certificate (:mod:`controller.kubelet_tls`); nothing is served to a
caller without one. Authorization is one of two modes (``KUBE_VAST_KUBELET_AUTHORIZATION``):

- ``webhook`` (the default, as a kubelet with ``--authorization-mode=Webhook``): a
  SubjectAccessReview asks the API server whether the caller may ``get`` (``create`` for a
  POST) ``nodes/proxy`` on the virtual node — the same question a real kubelet asks for its
  ``/containerLogs`` and ``/exec`` routes, which the API server's kubelet client identity is
  granted in every conformant cluster (``system:kubelet-api-admin``). Answers are cached like a
  kubelet's: allowed for 5 minutes, denied for 30 seconds.
- ``certificate``: any certificate the client CA signed is enough. Only for a CA that signs
  nothing but the API server's kubelet client certificate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vastmarket.errors import KubeVastError

from .kubelet_tls import Identity

MODES = ("webhook", "certificate")
ALLOWED_TTL = 300.0
DENIED_TTL = 30.0
MAX_CACHED = 1024
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class AuthorizationUnavailable(KubeVastError):
    """The authorization check itself failed (the API server could not be asked)."""


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request does, as the kubelet describes it to the authorizer."""

    verb: str
    node: str
    resource: str = "nodes"
    subresource: str = "proxy"

    def __str__(self) -> str:
        return f"verb={self.verb}, resource={self.resource}, subresource={self.subresource}, name={self.node}"


def attributes_for(method: str, node: str) -> Attributes:
    return Attributes(_VERBS.get(method.upper(), "get"), node)


class Authorizer(Protocol):
    def allowed(self, identity: Identity, attributes: Attributes) -> bool: ...


class AccessReviewer(Protocol):
    """Asks the API server one SubjectAccessReview (:meth:`controller.kube.KubeGateway.review_access`)."""

    def review_access(self, *, user: str, groups: tuple[str, ...], verb: str, resource: str,
                      subresource: str, name: str) -> bool: ...


class CertificateAuthorizer:
    """Mode ``certificate``: the verified certificate is the whole check."""

    def allowed(self, identity: Identity, attributes: Attributes) -> bool:
        return True


class WebhookAuthorizer:
    """Mode ``webhook``: SubjectAccessReviews, cached."""

    def __init__(self, reviewer: AccessReviewer, *, clock: Callable[[], float] = time.monotonic,
                 allowed_ttl: float = ALLOWED_TTL, denied_ttl: float = DENIED_TTL) -> None:
        self.reviewer = reviewer
        self.clock = clock
        self.allowed_ttl = allowed_ttl
        self.denied_ttl = denied_ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[Identity, Attributes], tuple[bool, float]] = {}

    def allowed(self, identity: Identity, attributes: Attributes) -> bool:
        key = (identity, attributes)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            decision = self.reviewer.review_access(user=identity.user, groups=identity.groups, verb=attributes.verb,
                                                   resource=attributes.resource, subresource=attributes.subresource,
                                                   name=attributes.node)
        except KubeVastError as exc:
            raise AuthorizationUnavailable(f"the SubjectAccessReview failed: {exc}") from None
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[key] = (decision, now + (self.allowed_ttl if decision else self.denied_ttl))
        return decision


def authorizer_for(mode: str, reviewer: AccessReviewer) -> Authorizer:
    if mode == "certificate":
        return CertificateAuthorizer()
    return WebhookAuthorizer(reviewer)
