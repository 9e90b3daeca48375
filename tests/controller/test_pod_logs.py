"""An instance's log as kubectl logs shows it: reads merged into a history that times each line
when first read, the new lines of each read (what follow streams), and the kubelet's order of
since, tailLines and limitBytes."""

from __future__ import annotations

import pytest

from controller.kubelet_requests import LogOptions
from controller.pod_logs import LogHistory, LogLine, overlap, render, select, split_lines, stamp


def texts(lines: list[LogLine]) -> list[str]:
    return [line.text for line in lines]


def timed(lines: list[LogLine]) -> list[tuple[float, str]]:
    return [(line.at, line.text) for line in lines]


def test_a_log_text_splits_into_lines_keeping_a_last_line_without_newline() -> None:
    assert split_lines("a\nb\r\nc") == ["a", "b", "c"]
    assert split_lines("a\n\nb\n") == ["a", "", "b"]
    assert split_lines("") == []


@pytest.mark.parametrize(("known", "read", "expected"), [
    (["a", "b", "c"], ["b", "c", "d"], 2),
    (["a", "b", "c"], ["a", "b", "c"], 3),
    (["a", "b", "c"], ["d", "e"], 0),
    ([], ["a"], 0),
    (["x", "a", "a"], ["a", "a", "b"], 2),
    (["a", "b"], ["c", "a", "b", "d"], 3),  # the read holds them whole, after an older line
    (["b"], ["a", "b", "c"], 2),  # what a read of the last line only knows
    (["a", "b"], ["c", "d"], 0),
])
def test_the_overlap_is_where_the_known_lines_end_in_the_read(known: list[str], read: list[str],
                                                                    expected: int) -> None:
    assert overlap(known, read) == expected


def test_the_first_read_is_all_new_and_timed_now() -> None:
    history = LogHistory()
    seen = history.observe(1, ["a", "b"], complete=True, now=100.0)
    assert timed(seen.window) == timed(seen.new) == [(100.0, "a"), (100.0, "b")]


def test_a_later_read_keeps_the_first_times_and_brings_only_the_lines_printed_since() -> None:
    history = LogHistory()
    history.observe(1, ["a", "b"], complete=True, now=100.0)
    seen = history.observe(1, ["a", "b", "c"], complete=True, now=110.0)
    assert timed(seen.window) == [(100.0, "a"), (100.0, "b"), (110.0, "c")]
    assert timed(seen.new) == [(110.0, "c")]


def test_repeated_identical_lines_are_counted_when_the_read_holds_the_whole_log() -> None:
    history = LogHistory()
    history.observe(1, ["GET /healthz 200"] * 3, complete=True, now=100.0)
    seen = history.observe(1, ["GET /healthz 200"] * 5, complete=True, now=110.0)
    assert timed(seen.new) == [(110.0, "GET /healthz 200")] * 2


def test_a_read_of_the_last_lines_only_is_aligned_on_what_was_read_before() -> None:
    history = LogHistory()
    history.observe(1, [f"l{i}" for i in range(10)], complete=True, now=100.0)
    seen = history.observe(1, ["l8", "l9", "l10", "l11"], complete=False, now=110.0)
    assert texts(seen.new) == ["l10", "l11"]
    assert [line.at for line in seen.window] == [100.0, 100.0, 110.0, 110.0]


def test_a_read_that_continues_nothing_known_starts_the_history_again() -> None:
    history = LogHistory()
    history.observe(1, ["a", "b"], complete=True, now=100.0)
    seen = history.observe(1, ["x", "y"], complete=True, now=110.0)  # a new container's log
    assert timed(seen.new) == [(110.0, "x"), (110.0, "y")]
    assert timed(history.observe(1, ["x", "y", "z"], complete=True, now=120.0).new) == [(120.0, "z")]


def test_an_empty_read_tells_nothing_and_forgets_nothing() -> None:
    history = LogHistory()
    history.observe(1, ["a"], complete=True, now=100.0)
    assert history.observe(1, [], complete=True, now=110.0).window == []
    assert timed(history.observe(1, ["a", "b"], complete=True, now=120.0).new) == [(120.0, "b")]


def test_lines_older_than_the_bounded_history_keep_its_oldest_time() -> None:
    history = LogHistory(max_lines=2)
    history.observe(1, ["a", "b"], complete=True, now=100.0)
    history.observe(1, ["a", "b", "c"], complete=True, now=110.0)
    seen = history.observe(1, ["a", "b", "c", "d"], complete=True, now=120.0)
    assert timed(seen.window) == [(100.0, "a"), (100.0, "b"), (110.0, "c"), (120.0, "d")]


def test_instances_are_forgotten_least_recently_used_first() -> None:
    history = LogHistory(max_instances=2)
    for instance_id in (1, 2, 1, 3):
        history.observe(instance_id, ["a"], complete=True, now=100.0)
    assert history.observe(1, ["a"], complete=True, now=110.0).new == []
    assert timed(history.observe(2, ["a"], complete=True, now=110.0).new) == [(110.0, "a")]  # forgotten


def test_a_read_of_the_whole_log_after_a_read_of_its_last_line_brings_nothing_new() -> None:
    history = LogHistory()
    history.observe(1, ["c"], complete=False, now=100.0)  # tailLines=1
    seen = history.observe(1, ["a", "b", "c"], complete=True, now=110.0)
    assert seen.new == []
    assert timed(seen.window) == [(100.0, "a"), (100.0, "b"), (100.0, "c")]


def test_lines_are_numbered_in_reading_order_and_older_lines_come_before_all() -> None:
    history = LogHistory()
    first = history.observe(1, ["b"], complete=False, now=100.0)
    second = history.observe(1, ["a", "b", "c"], complete=True, now=110.0)
    assert [line.seq for line in second.window] == [0, first.window[0].seq, first.window[0].seq + 1]
    other = history.observe(2, ["x"], complete=True, now=110.0)
    assert other.window[0].seq > second.window[-1].seq  # one order for the whole history


LINES = [LogLine(100.0, "boot"), LogLine(200.0, "ready"), LogLine(300.0, "GET /a"), LogLine(300.0, "GET /b")]


@pytest.mark.parametrize(("options", "expected"), [
    (LogOptions(), ["boot", "ready", "GET /a", "GET /b"]),
    (LogOptions(tail_lines=2), ["GET /a", "GET /b"]),
    (LogOptions(tail_lines=0), []),
    (LogOptions(tail_lines=10), ["boot", "ready", "GET /a", "GET /b"]),
    (LogOptions(since_seconds=150), ["ready", "GET /a", "GET /b"]),  # now = 350
    (LogOptions(since_time=250.0), ["GET /a", "GET /b"]),
    (LogOptions(since_seconds=150, tail_lines=1), ["GET /b"]),
])
def test_since_then_tail_choose_the_lines(options: LogOptions, expected: list[str]) -> None:
    assert texts(select(LINES, options, 350.0)) == expected


def test_timestamps_prefix_each_line_with_its_rfc3339_time() -> None:
    body = render(LINES[:2], LogOptions(timestamps=True), 350.0)
    assert body == f"{stamp(100.0)} boot\n{stamp(200.0)} ready\n".encode()
    assert stamp(100.0) == "1970-01-01T00:01:40.000000Z"


def test_limit_bytes_cuts_the_rendered_log() -> None:
    assert render(LINES, LogOptions(limit_bytes=7), 350.0) == b"boot\nre"
