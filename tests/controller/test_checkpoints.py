"""The crash-test hook: inert unless its variables are set; logs every point when asked; pauses the
first thread at an aimed point (by name, or by a line of the pause file matching its context)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controller.checkpoints import INERT, POINTS, Checkpoints
from vastmarket.errors import ConfigError


class Holds:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_without_its_variables_the_hook_logs_nothing_and_never_holds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hook = Checkpoints.from_environment({})
    for point in POINTS:
        hook(point, pod="ns/a")
        INERT(point, pod="ns/a")
    assert caplog.records == []


def test_it_logs_each_point_with_its_context(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    Checkpoints.from_environment({"KUBE_VAST_CHECKPOINTS": "1"})("rent-answered", pod="ns/a", instance=7)
    assert caplog.messages == ["checkpoint rent-answered pod=ns/a instance=7"]


def test_a_named_point_holds_the_first_thread_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    holds = Holds()
    hook = Checkpoints(pause_at=frozenset({"destroy-sent"}), hold=holds)
    hook("rent-answered", pod="ns/a")
    hook("destroy-sent", pod="ns/a", instance=1)
    hook("destroy-sent", pod="ns/b", instance=2)
    assert holds.count == 1
    assert "checkpoint destroy-sent paused pod=ns/a instance=1" in caplog.messages


def test_the_pause_file_aims_at_a_point_by_its_context_and_is_read_anew(tmp_path: Path) -> None:
    holds = Holds()
    aim = tmp_path / "pause"
    hook = Checkpoints.from_environment({"KUBE_VAST_PAUSE_FILE": str(aim)})
    hook._hold = holds  # type: ignore[assignment]
    hook("endpointslice-write", pod="ns/a", written=1, of=2)  # no file yet: nothing
    aim.write_text("endpointslice-write pod=ns/b written=1\n")
    hook("endpointslice-write", pod="ns/a", written=1, of=2)
    assert holds.count == 0
    hook("endpointslice-write", pod="ns/b", written=1, of=2)
    assert holds.count == 1
    hook("endpointslice-write", pod="ns/b", written=1, of=2)  # that line has held its thread
    assert holds.count == 1


def test_an_unknown_point_to_pause_at_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown checkpoint\\(s\\) rent-sent; known: intent-recorded"):
        Checkpoints.from_environment({"KUBE_VAST_PAUSE_AT": "rent-sent"})
