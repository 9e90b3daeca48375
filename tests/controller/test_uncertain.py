"""The uncertain-rent marker in a pod's ``vast.ai/launch`` record: written, read back, and how long
it holds a second rent back."""

from __future__ import annotations

import pytest

from controller.uncertain import RENTING, PendingRent, without_marker

SENT = 1_790_000_000.0  # a whole second


def test_the_marker_reads_back_what_was_written() -> None:
    record = {"attempts": 1, RENTING: PendingRent(5123, SENT + 0.7).encode()}
    pending = PendingRent.read(record)
    assert pending == PendingRent(5123, SENT)  # written in whole seconds
    assert record[RENTING] == {"offerId": 5123, "sentAt": "2026-09-21T14:13:20Z"}


def test_a_record_without_the_marker_has_no_pending_rent() -> None:
    assert PendingRent.read({"attempts": 2, "label": "kv:c:u"}) is None


@pytest.mark.parametrize("raw", [{"offerId": 1, "sentAt": "yesterday"}, {"offerId": 1}, "renting", {}, [1]])
def test_an_unreadable_marker_is_still_a_pending_rent_with_no_end(raw: object) -> None:
    pending = PendingRent.read({RENTING: raw})
    assert pending is not None and pending.sent_at is None
    assert pending.remaining(SENT + 10**6, 60.0) == float("inf")


def test_the_wait_counts_from_one_second_after_the_written_time() -> None:
    pending = PendingRent(7, SENT)
    assert pending.deadline(60.0) == SENT + 61.0
    assert pending.remaining(SENT + 30.0, 60.0) == 31.0
    assert pending.remaining(SENT + 61.0, 60.0) == 0.0


def test_removing_the_marker_keeps_the_rest_of_the_record() -> None:
    record = {"attempts": 1, "failedMachines": [3], RENTING: {"offerId": 7, "sentAt": "2026-09-21T14:13:20Z"}}
    assert without_marker(record) == {"attempts": 1, "failedMachines": [3]}
    assert RENTING in record
