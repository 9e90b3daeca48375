"""Reading a container's end from Vast's instance fields: the exit code in docker's words, and
who stopped it."""

import pytest

from vastmarket.instances import exit_code_of, parse_instance


@pytest.mark.parametrize("status_msg, code", [
    ("Exited (3) 5 seconds ago", 3),
    ("Exited (0) Less than a second ago", 0),
    ("exited (137) About a minute ago", 137),
    ("Error: container exited with code 1", 1),
    ("process exited with status 2", 2),
    ("exit code: 143", 143),
    ("exit status 255", 255),
    ("insufficient free disk", None),
    ("success, running vastai/test_latest", None),
    ("", None),
    (None, None),
])
def test_the_exit_code_is_read_from_docker_style_messages_only(status_msg, code):
    assert exit_code_of(status_msg) == code


def test_an_exit_code_is_only_read_from_an_exited_instance():
    running = parse_instance({"id": 1, "actual_status": "running", "status_msg": "exit code: 3"})
    exited = parse_instance({"id": 1, "actual_status": "exited", "intended_status": "running",
                             "status_msg": "Exited (3) 2 seconds ago"})
    assert running.exit_code is None and exited.exit_code == 3


@pytest.mark.parametrize("actual, intended, exited, stopped, lost", [
    ("exited", "running", True, False, False),      # the container ended on its own
    ("exited", "stopped", False, True, False),      # a stopped container, as docker shows it
    ("stopped", "stopped", False, True, False),
    ("running", "stopped", False, False, False),    # still shutting down
    ("offline", "running", False, False, True),
    ("unknown", "running", False, False, True),
    ("running", "running", False, False, False),
])
def test_exited_stopped_and_lost_are_told_apart(actual, intended, exited, stopped, lost):
    inst = parse_instance({"id": 1, "actual_status": actual, "intended_status": intended})
    assert (inst.container_exited, inst.stopped, inst.host_lost) == (exited, stopped, lost)
