"""The controller's inputs from Vast, fuzzed: real simulator answers (an offer search, an instance, a
page of the instance list) with any field of any offer or instance mutated — of the wrong type,
missing, huge, nested. The parsers skip what they cannot use or refuse the answer with
:class:`InvalidResponse`, and what they return is typed (so ranking, the fleet and the reconciler
never meet a wrong type); through the real client over HTTP, a call either returns or raises a
:class:`VastError`, and the fleet's poll reports a failure instead of ending its thread."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from controller.fleet import Fleet, OfferSource
from controller.reconciler import A_INSTANCE, FINALIZER, Reconciler, safe_reconcile
from controller.settings import ControllerSettings
from vastmarket.client import RetryPolicy, VastClient
from vastmarket.config import SelectionConfig
from vastmarket.errors import InvalidResponse, VastError
from vastmarket.instances import Instance, parse_instance
from vastmarket.offers import Offer, parse_search_response
from vastmarket.requirements import base_requirements
from vastmarket.selection import ScoringPolicy
from vastmarket.snapshot import OfferSnapshot, SnapshotPoller
from tests.controller.fake_kube import FakeKube
from tests.controller.test_reconciler_lifecycle import CLUSTER, NS, gpu_pod
from tests.fuzzing.mutations import Mutant, mutants
from tests.fuzzing.vast_answers import Canned, answers

FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
POLICY = ScoringPolicy.from_config(SelectionConfig())
ANY_GPU = base_requirements(SelectionConfig())


def _optional_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def assert_typed_offer(offer: Offer) -> None:
    assert isinstance(offer.id, int) and not isinstance(offer.id, bool)
    assert isinstance(offer.gpu_name, str) and offer.gpu_name.strip()
    assert isinstance(offer.num_gpus, int) and offer.num_gpus >= 1
    assert isinstance(offer.direct_port_count, int) and offer.direct_port_count >= 0
    assert isinstance(offer.gpu_ram_mb, float) and math.isfinite(offer.gpu_ram_mb)
    for value in (offer.dph_total, offer.reliability, offer.inet_down, offer.inet_up, offer.dlperf, offer.cpu_cores,
                  offer.cpu_ram_mb, offer.disk_gb, offer.duration_s, offer.cuda_max_good):
        assert _optional_number(value), offer
    for value in (offer.machine_id, offer.host_id):
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    assert offer.geolocation is None or isinstance(offer.geolocation, str)
    assert offer.public_ip is None or isinstance(offer.public_ip, str)
    assert all(isinstance(flag, bool) for flag in (offer.verified, offer.rentable, offer.rented, offer.datacenter,
                                                   offer.static_ip))


def assert_typed_instance(inst: Instance) -> None:
    assert isinstance(inst.id, int) and not isinstance(inst.id, bool)
    for text in (inst.actual_status, inst.intended_status, inst.cur_state, inst.status_msg, inst.label, inst.public_ip,
                 inst.gpu_name, inst.image):
        assert text is None or isinstance(text, str)
    assert all(isinstance(k, int) and isinstance(v, int) and 0 < k < 65536 and 0 < v < 65536
               for k, v in inst.ports.items())
    assert _optional_number(inst.dph_total) and _optional_number(inst.start_date)
    assert inst.machine_id is None or (isinstance(inst.machine_id, int) and not isinstance(inst.machine_id, bool))
    assert inst.num_gpus is None or (isinstance(inst.num_gpus, int) and not isinstance(inst.num_gpus, bool))
    # what the reconciler asks of an instance
    assert isinstance(inst.running, bool) and isinstance(inst.dead, bool) and isinstance(inst.gone, bool)
    assert isinstance(inst.container_exited, bool) and isinstance(inst.host_lost, bool)
    assert inst.exit_code is None or isinstance(inst.exit_code, int)


@FUZZ
@given(answer=mutants(answers().search))
def test_a_mutated_offer_search_parses_into_typed_offers_that_rank(answer: Mutant) -> None:
    assume(answer.document is not None)
    try:
        parsed = parse_search_response(answer.document)
    except InvalidResponse:
        return
    records = answer.document["offers"]
    assert len(parsed.offers) + parsed.dropped == len(records)
    for offer in parsed.offers:
        assert_typed_offer(offer)
    ranking = OfferSnapshot(parsed.offers, taken_at=0.0).rank(ANY_GPU, POLICY)
    for scored in ranking.top(10):
        assert math.isfinite(scored.score) and 0.0 <= scored.score <= 1.0, scored


@FUZZ
@given(answer=mutants(answers().listing) | mutants(answers().instance))
def test_a_mutated_instance_parses_into_a_typed_instance_or_is_refused(answer: Mutant) -> None:
    assume(answer.document is not None)
    found = answer.document.get("instances") if isinstance(answer.document, dict) else None
    for raw in found if isinstance(found, list) else [found]:
        try:
            inst = parse_instance(raw)
        except InvalidResponse:
            continue
        assert_typed_instance(inst)


@pytest.fixture(scope="module")
def vast():
    with Canned() as server:
        yield server


CLIENT_CALLS = {
    "list_instances": lambda c: c.list_instances(),
    "list_instances by label": lambda c: c.list_instances(label="kv:fz:0"),
    "get_instance": lambda c: c.get_instance(20000001),
    "search_offers": lambda c: c.search_offers(limit=20),
}


@settings(FUZZ, max_examples=300)
@given(answer=st.sampled_from([answers().listing, answers().instance, answers().search]).flatmap(mutants),
       call=st.sampled_from(sorted(CLIENT_CALLS)))
def test_through_the_client_a_mutated_answer_is_returned_typed_or_raised_as_a_vast_error(vast, answer: Mutant,
                                                                                       call: str) -> None:
    vast.body = answer.raw
    client = VastClient(vast.url, retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0))
    try:
        result = CLIENT_CALLS[call](client)
    except VastError:
        return
    finally:
        client.close()
    for item in result.offers if call == "search_offers" else (result if isinstance(result, list) else [result]):
        if isinstance(item, Offer):
            assert_typed_offer(item)
        elif item is not None:
            assert_typed_instance(item)


@pytest.mark.parametrize("token", ["again", 7, {"after": 20000001}])
def test_a_listing_whose_next_token_repeats_is_refused_after_two_pages_not_paged_forever(vast, token) -> None:
    vast.body = json.dumps({**answers().listing, "next_token": token}).encode()
    vast.requests = 0
    client = VastClient(vast.url, retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0))
    try:
        with pytest.raises(InvalidResponse, match="next_token repeats"):
            client.list_instances()
    finally:
        client.close()
    assert vast.requests == 2


@settings(FUZZ, max_examples=200)
@given(answer=mutants(answers().listing))
def test_the_fleet_poll_reports_a_mutated_listing_and_never_raises(vast, answer: Mutant) -> None:
    vast.body = answer.raw
    client = VastClient(vast.url, retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0))
    fleet = Fleet(client, "fz")
    try:
        ok = fleet.refresh()
    finally:
        client.close()
    assert ok is (fleet.last_error is None)
    for inst in fleet.instances():
        assert_typed_instance(inst)


class _Bugs(logging.Handler):
    """Collects what the controller logs as a bug (with a traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


OFFERS = parse_search_response(answers().search).offers


@settings(FUZZ, max_examples=200)
@given(answer=st.sampled_from([answers().listing, answers().instance, answers().search]).flatmap(mutants),
       launched=st.booleans())
def test_the_reconciler_meets_mutated_answers_with_a_retry_never_a_bug(vast, answer: Mutant, launched: bool) -> None:
    vast.body = answer.raw
    kube = FakeKube()
    pod = gpu_pod("p")
    if launched:  # an instance was rented before: the controller reads it back by id
        pod["metadata"]["finalizers"] = [FINALIZER]
        pod["metadata"]["annotations"][A_INSTANCE] = "20000001"
    kube.add_pod(pod)
    client = VastClient(vast.url, retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0))
    poller = SnapshotPoller(lambda: list(OFFERS), lambda s: None)
    poller.poll_once()
    fleet = Fleet(client, CLUSTER)
    rec = Reconciler(kube, client, fleet, OfferSource(poller), ControllerSettings(cluster_id=CLUSTER), SelectionConfig())
    bugs = _Bugs()
    logger = logging.getLogger("kube_vast.controller")
    logger.addHandler(bugs)
    try:
        for _ in range(3):
            fleet.refresh()
            delay = safe_reconcile(rec, NS, "p")
            assert delay is None or (isinstance(delay, float) and delay >= 0)
    finally:
        logger.removeHandler(bugs)
        client.close()
    assert not bugs.records, [r.getMessage() for r in bugs.records]


@pytest.mark.parametrize("body,gone", [
    ({"instances": None}, True),  # the documented answer for a destroyed instance
    ({"instances": []}, True),
    ({}, None),  # no "instances" at all: not an answer about this instance
    ([], None),
    ({"instances": "gone"}, None),
    ({"instances": 20000001}, None),
    ({"error": "server_error"}, None),
])
def test_only_the_documented_null_reads_as_gone_a_malformed_instance_answer_is_refused(vast, body, gone) -> None:
    """Read as "gone", a malformed answer after a destroy would end the pod's accounting of a
    live instance (money), and after a rent would make the controller rent again."""
    vast.body = json.dumps(body).encode()
    client = VastClient(vast.url, retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0))
    try:
        if gone:
            assert client.get_instance(20000001) is None
        else:
            with pytest.raises(InvalidResponse, match="get instance 20000001"):
                client.get_instance(20000001)
    finally:
        client.close()
