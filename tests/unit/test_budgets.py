"""Team budgets, the pure part: accrual from billed prices × time kept in the status (a restart
neither resets nor doubles it), the limits' messages, and the state file the webhook reads."""

from __future__ import annotations

import calendar

import pytest

from vastmarket.budgets import (
    DENY, QUEUE, Accrual, Billed, Budget, BudgetSpec, BudgetState, BudgetStateFile, InvalidBudget, NamespaceState,
    Usage, accrue, month_of, parse_rfc3339, refusals, rental_price, rfc3339, verdict,
)
from vastmarket.instances import parse_instance

T0 = float(calendar.timegm((2026, 12, 10, 12, 0, 0)))  # mid-month


def billed(iid: int, rate: float, started: float | None, gpu: str = "RTX 4090") -> Billed:
    return Billed(iid, rate, rate, gpu, started)


def test_spend_is_billed_price_times_running_time_from_each_rental():
    a = accrue(Accrual(accrued_up_to=T0), [billed(1, 0.5, T0 - 3600), billed(2, 1.2, T0 + 1800)], T0 + 3600)
    assert a.spend == pytest.approx(0.5 * 1 + 1.2 * 0.5)
    assert a.by_gpu == {"RTX 4090": pytest.approx(1.1)}
    assert a.accrued_up_to == T0 + 3600 and a.month == "2026-12"


def test_a_new_budget_counts_its_live_instances_from_their_rental_this_month():
    a = accrue(Accrual(), [billed(1, 0.36, T0 - 7200), billed(2, 1.0, float(calendar.timegm((2026, 11, 30, 0, 0, 0))))], T0)
    month_start = float(calendar.timegm((2026, 12, 1, 0, 0, 0)))
    assert a.spend == pytest.approx(0.36 * 2 + 1.0 * (T0 - month_start) / 3600)


def _restart(a: Accrual) -> Accrual:
    """What a restarted controller reads back: the status as written, nothing in memory."""
    return Accrual.from_status(a.to_status())


def test_a_restart_after_writing_the_status_neither_resets_nor_doubles_the_spend():
    inst = [billed(1, 0.8, T0)]
    a = Accrual(accrued_up_to=T0)
    for k in range(1, 11):
        a = _restart(accrue(a, inst, T0 + 60 * k))
    assert a.spend == pytest.approx(0.8 * 600 / 3600, rel=1e-6)


def test_a_kill_before_the_status_is_written_accrues_the_same_interval_once_later():
    inst = [billed(1, 0.8, T0)]
    written = _restart(accrue(Accrual(accrued_up_to=T0), inst, T0 + 60))
    accrue(written, inst, T0 + 120)  # computed, never written: the controller is killed
    after = accrue(written, inst, T0 + 300)
    assert after.spend == pytest.approx(0.8 * 300 / 3600)


def test_accrued_up_to_never_moves_back():
    a = accrue(Accrual(accrued_up_to=T0), [billed(1, 1.0, T0)], T0 + 3600)
    assert accrue(a, [billed(1, 1.0, T0)], T0 + 1800) == a


def test_a_new_month_starts_from_zero_at_its_first_instant():
    end_of_nov = float(calendar.timegm((2026, 11, 30, 23, 0, 0)))
    a = accrue(Accrual(accrued_up_to=end_of_nov - 3600), [billed(1, 2.0, end_of_nov - 7200)], end_of_nov)
    assert a.month == "2026-11" and a.spend == pytest.approx(2.0)
    b = accrue(a, [billed(1, 2.0, end_of_nov - 7200)], end_of_nov + 7200)
    assert b.month == "2026-12" and b.spend == pytest.approx(2.0)  # one hour of December


def test_an_instance_gone_between_two_rounds_counts_half_the_interval():
    a = accrue(Accrual(accrued_up_to=T0), [], T0 + 3600, vanished=[billed(1, 1.0, T0 - 60)])
    assert a.spend == pytest.approx(0.5)


def test_a_stopped_instance_bills_only_its_disk_and_a_bid_its_bid():
    stopped = parse_instance({"id": 5, "actual_status": "stopped", "cur_state": "stopped", "dph_total": 0.5,
                              "storage_cost": 0.18, "disk_space": 40, "gpu_name": "RTX 3090", "start_date": T0})
    b = Billed.of(stopped)
    assert b.rate == pytest.approx(0.18 * 40 / 720) and b.committed == 0.5
    bid = parse_instance({"id": 6, "actual_status": "running", "dph_total": 0.21, "is_bid": True})
    assert Billed.of(bid).rate == 0.21


def test_the_rental_price_adds_the_disk_beyond_what_the_search_priced():
    assert rental_price(0.41, 0.40, 8.0) == pytest.approx(0.41)
    assert rental_price(0.41, 0.40, 16.0) == pytest.approx(0.42)
    assert rental_price(0.41, None, 16.0) == 0.41


def budget(**spec: object) -> Budget:
    return Budget("team-a", "gpus", BudgetSpec.from_json(spec))


def test_a_pod_over_max_price_is_refused_naming_the_budget_the_limit_the_committed_and_its_addition():
    found = refusals([budget(maxPricePerHour=1.0)], Usage(0.8, 2), 0.35, now=T0)
    assert len(found) == 1
    assert found[0].message == ("VastBudget team-a/gpus: maxPricePerHour $1.00/h would be exceeded: "
                                "committed $0.80/h (2 instances), this pod would add $0.35/h")
    assert verdict(found) == DENY
    assert refusals([budget(maxPricePerHour=1.0)], Usage(0.65, 2), 0.35, now=T0) == []


def test_admission_counts_the_pods_admitted_and_waiting():
    found = refusals([budget(maxPricePerHour=1.0, onExceed="queue")], Usage(0.3, 1, 0.5, 2), 0.35, now=T0,
                     counting_waiting=True)
    assert verdict(found) == QUEUE and "+ $0.50/h admitted and waiting (2 pods)" in found[0].message


def test_instance_and_monthly_limits_and_several_budgets_all_apply():
    spent = Budget("team-a", "month", BudgetSpec(monthly_limit=100.0, on_exceed=QUEUE),
                   Accrual(spend=100.5, month=month_of(T0)))
    found = refusals([budget(maxInstances=2), spent], Usage(0.2, 2), 0.1, now=T0)
    assert [r.budget for r in found] == ["team-a/gpus", "team-a/month"]
    assert "maxInstances 2 would be exceeded" in found[0].message
    assert "monthlyLimit $100.00 reached: $100.50 spent in 2026-12" in found[1].message
    assert verdict(found) == DENY
    last_month = Budget("team-a", "month", BudgetSpec(monthly_limit=100.0), Accrual(spend=100.5, month="2026-11"))
    assert refusals([last_month], Usage(), 0.1, now=T0) == []


@pytest.mark.parametrize("spec, where", [
    ({"maxPricePerHour": -1}, "spec.maxPricePerHour"), ({"maxInstances": 1.5}, "spec.maxInstances"),
    ({"onExceed": "later"}, "spec.onExceed"), ({"monthlyLimit": "lots"}, "spec.monthlyLimit"),
])
def test_a_bad_spec_is_refused_naming_the_field(spec, where):
    with pytest.raises(InvalidBudget, match=where):
        BudgetSpec.from_json(spec)


def test_times_round_trip_to_the_millisecond():
    assert parse_rfc3339(rfc3339(T0 + 0.25)) == pytest.approx(T0 + 0.25)
    assert parse_rfc3339("garbage") is None


def test_the_state_file_round_trips_and_a_missing_one_reads_as_none(tmp_path):
    f = BudgetStateFile.beside(tmp_path / "offers.json")
    assert f.load() is None
    state = BudgetState(T0, {"team-a": NamespaceState(Usage(0.8, 2, 0.3, 1), (budget(maxPricePerHour=1.0),))})
    f.publish(state)
    back = f.load()
    assert back is not None and back.of("team-a").usage == Usage(0.8, 2, 0.3, 1)
    assert back.of("team-a").budgets[0].spec.max_price_per_hour == 1.0 and back.of("nobody").budgets == ()
    (tmp_path / "budgets.json").write_text("{")
    with pytest.raises(InvalidBudget, match="not JSON"):
        f.load()
