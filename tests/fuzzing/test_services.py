"""The structural fuzzer against the webhook and the extender in-process: real captured bodies with
any node mutated (:mod:`tests.fuzzing.mutations`) always get HTTP 200 with a well-formed reply or a
400 with a message — never a 5xx. ``make fuzz`` sends hundreds of thousands more to the real
gunicorn processes (:mod:`tests.fuzzing.http`)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extender.settings import ExtenderSettings
from tests.extender.conftest import Harness as ExtenderHarness
from tests.fuzzing.answers import admission_problem, extender_problem
from tests.fuzzing.corpus import extender_bodies, webhook_bodies
from tests.fuzzing.mutations import Mutant, mutants
from tests.webhooks.conftest import NOW
from tests.webhooks.conftest import Harness as WebhookHarness
from webhooks.settings import WebhookSettings

FUZZ = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOOKS = [WebhookHarness(), WebhookHarness(no_snapshot=True),
         WebhookHarness(WebhookSettings(deny_without_offer=True, scheduler_name=None))]
STALE = WebhookHarness()
STALE.now = NOW + 10_000
HOOKS.append(STALE)
EXTENDERS = [ExtenderHarness(), ExtenderHarness(ExtenderSettings(burst_policy="cost-first", max_snapshot_age=120))]

webhook_mutants = st.sampled_from(webhook_bodies()).flatmap(mutants)
extender_mutants = st.sampled_from(extender_bodies()).flatmap(mutants)


def _answer(reply: Any) -> tuple[int, bytes]:
    return reply.status_code, reply.get_data()


@FUZZ
@given(body=webhook_mutants, which=st.integers(0, len(HOOKS) - 1))
def test_no_mutated_admission_review_gets_a_server_error_or_a_malformed_answer(body: Mutant, which: int) -> None:
    status, answer = _answer(HOOKS[which].post(None, raw=body.raw))
    assert admission_problem(status, answer, body.document) is None, (status, answer[:500], body.raw[:2000])


@FUZZ
@given(body=extender_mutants, verb=st.sampled_from(["filter", "prioritize"]), which=st.integers(0, len(EXTENDERS) - 1))
def test_no_mutated_extender_args_get_a_server_error_or_a_malformed_answer(body: Mutant, verb: str, which: int) -> None:
    status, answer = _answer(EXTENDERS[which].post(verb, None, raw=body.raw))
    assert extender_problem(verb, status, answer) is None, (status, answer[:500], body.raw[:2000])
