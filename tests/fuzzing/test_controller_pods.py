"""The controller's read of a pod, fuzzed: every pod of the corpus bound to the virtual node, with any
node mutated, reconciled against the simulator over real HTTP (:class:`FakeKube` at the controller's
Kubernetes seam). A reconcile never raises anything but a :class:`VastError` (which the worker retries),
and a pod kube-vast cannot read gets nothing rented and nothing written but an Event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from controller.fleet import Fleet, OfferSource
from controller.reconciler import Reconciler
from controller.settings import ControllerSettings
from tests.controller.fake_kube import FakeKube
from tests.fuzzing.corpus import pods
from tests.fuzzing.mutations import Mutant, mutants
from vastmarket.client import RetryPolicy, VastClient, broad_query
from vastmarket.config import SelectionConfig
from vastmarket.errors import VastError
from vastmarket.pods import pod_problems
from vastmarket.snapshot import SnapshotPoller
from vastsim import SimulatorServer

CLUSTER = "fzc"


@pytest.fixture(scope="module")
def vast() -> Iterator[tuple[SimulatorServer, VastClient, OfferSource]]:
    with SimulatorServer(seed=13, offers=300, boot_seconds=(0.02, 0.05)) as sim:
        client = VastClient(sim.url, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))
        poller = SnapshotPoller(lambda: client.search_offers(broad_query(), limit=10_000).offers, lambda s: None)
        poller.poll_once()
        yield sim, client, OfferSource(poller)
        client.close()


pod_mutants = st.sampled_from(pods()).flatmap(mutants)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=pod_mutants)
def test_a_mutated_pod_is_reconciled_or_reported_never_a_crash_and_never_a_rent_when_unreadable(vast, body: Mutant) -> None:
    sim, client, offers = vast
    assume(isinstance(body.document, dict))
    pod = body.document
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    if isinstance(meta.get("uid"), str):
        meta["uid"] = str(uuid.uuid4())  # each example its own pod: no instance of an earlier one to adopt
    key = (meta.get("namespace"), meta.get("name"))
    key = key if all(isinstance(k, str) for k in key) else ("ns", "p")  # where the API server would keep it
    kube = FakeKube()
    kube.pods[key] = pod
    rec = Reconciler(kube, client, Fleet(client, CLUSTER), offers, ControllerSettings(cluster_id=CLUSTER),
                     SelectionConfig())
    for _ in range(2):
        try:
            rec.reconcile(*key)
        except VastError:
            pass
    if pod_problems(pod, stored=True):
        assert kube.journal == [], "an unreadable pod is never written to"
        uid = meta.get("uid")
        if isinstance(uid, str):
            assert not [i for i in sim.state()["instances"] if i["label"] == f"kv:{CLUSTER}:{uid}"], "rented"
