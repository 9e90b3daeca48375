"""Authorization of the kubelet API's callers: SubjectAccessReviews for nodes/proxy, cached like a
kubelet's, or the certificate alone; the identity read from a verified client certificate."""

from __future__ import annotations

import pytest

from controller.kubelet_auth import (
    Attributes, AuthorizationUnavailable, CertificateAuthorizer, WebhookAuthorizer, attributes_for, authorizer_for,
)
from controller.kubelet_tls import Identity, identity_of
from vastmarket.errors import KubeVastError

APISERVER = Identity("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",))
LOGS = Attributes("get", "vast-gpu-node-1")


class Reviewer:
    def __init__(self, allowed: bool = True) -> None:
        self.allowed = allowed
        self.asked: list[dict[str, object]] = []
        self.error: Exception | None = None

    def review_access(self, **question: object) -> bool:
        self.asked.append(question)
        if self.error is not None:
            raise self.error
        return self.allowed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_review_asks_the_kubelets_question_for_the_caller() -> None:
    reviewer = Reviewer()
    assert WebhookAuthorizer(reviewer).allowed(APISERVER, LOGS) is True
    assert reviewer.asked == [{"user": "kube-apiserver-kubelet-client", "groups": ("kubeadm:cluster-admins",),
                               "verb": "get", "resource": "nodes", "subresource": "proxy", "name": "vast-gpu-node-1"}]


@pytest.mark.parametrize(("allowed", "ttl"), [(True, 300.0), (False, 30.0)])
def test_decisions_are_cached_five_minutes_when_allowed_and_thirty_seconds_when_denied(allowed: bool,
                                                                                        ttl: float) -> None:
    reviewer, clock = Reviewer(allowed), Clock()
    authorizer = WebhookAuthorizer(reviewer, clock=clock)
    assert authorizer.allowed(APISERVER, LOGS) is allowed
    clock.now += ttl - 1
    assert authorizer.allowed(APISERVER, LOGS) is allowed
    assert len(reviewer.asked) == 1
    clock.now += 1
    reviewer.allowed = not allowed
    assert authorizer.allowed(APISERVER, LOGS) is (not allowed)
    assert len(reviewer.asked) == 2


def test_each_caller_and_question_is_reviewed_on_its_own() -> None:
    reviewer = Reviewer()
    authorizer = WebhookAuthorizer(reviewer)
    authorizer.allowed(APISERVER, LOGS)
    authorizer.allowed(Identity("mallory"), LOGS)
    authorizer.allowed(APISERVER, Attributes("create", "vast-gpu-node-1"))
    assert len(reviewer.asked) == 3


def test_a_review_that_cannot_be_made_is_an_error_not_a_decision() -> None:
    reviewer = Reviewer()
    reviewer.error = KubeVastError("review access: Forbidden: cannot create subjectaccessreviews")
    with pytest.raises(AuthorizationUnavailable, match="cannot create subjectaccessreviews"):
        WebhookAuthorizer(reviewer).allowed(APISERVER, LOGS)


def test_the_certificate_mode_allows_every_verified_caller_and_asks_nobody() -> None:
    reviewer = Reviewer(allowed=False)
    authorizer = authorizer_for("certificate", reviewer)
    assert isinstance(authorizer, CertificateAuthorizer)
    assert authorizer.allowed(Identity("anyone"), LOGS) is True and reviewer.asked == []
    assert isinstance(authorizer_for("webhook", reviewer), WebhookAuthorizer)


@pytest.mark.parametrize(("method", "verb"), [("GET", "get"), ("HEAD", "get"), ("POST", "create"),
                                              ("PUT", "update"), ("PATCH", "patch"), ("DELETE", "delete")])
def test_http_methods_become_the_kubelets_verbs(method: str, verb: str) -> None:
    assert attributes_for(method, "n") == Attributes(verb, "n")


def test_the_identity_is_the_common_name_and_the_organizations_of_the_certificate() -> None:
    peer = {"subject": ((("organizationName", "system:masters"),), (("organizationName", "ops"),),
                        (("commonName", "kube-apiserver-kubelet-client"),))}
    assert identity_of(peer) == Identity("kube-apiserver-kubelet-client", ("system:masters", "ops"))
    assert identity_of({}) is None and identity_of(None) is None
    assert identity_of({"subject": ((("organizationName", "ops"),),)}) is None  # no user name
