"""pytest plugin: the hosts' own network (``devcluster.hostnet``) for the tests that need it.

Fixture ``host_network`` (session-scoped): the process's :class:`vastsim.hostnet.HostNetwork`
(a namespace this test run creates, one veth link per simulated host). Where none can be made
(not root, no ``ip``), or ``KUBE_VAST_HOST_NETNS=0`` turns it off, a test that needs it is
skipped with a loud reason and a line in the terminal summary; under ``CI=true`` (unless turned
off on purpose) it fails instead. Tests that merely place instances use
``devcluster.hostnet.simulator_hosts()``, which falls back to this machine's own address.
"""

from __future__ import annotations

from typing import Any

import pytest

from devcluster import hostnet
from vastsim.hostnet import HostNetwork

_SKIPPED: list[str] = []
_MARK = "!!! NO PARTITION TESTED"


def require_host_network() -> HostNetwork:
    """The host network, or skip (locally) / fail (``CI=true``) the current test."""
    network = hostnet.shared_network()
    if network is not None:
        return network
    reason = hostnet.why_not()
    if hostnet.must_have_network():
        pytest.fail(f"CI=true and no host network can be made: {reason}", pytrace=False)
    pytest.skip(f"{_MARK}: the simulator's hosts need a network namespace: {reason}")


@pytest.fixture(scope="session")
def host_network() -> HostNetwork:
    return require_host_network()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and _MARK in str(report.longrepr):
        _SKIPPED.append(str(hostnet.why_not()))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _SKIPPED:
        terminalreporter.write_sep(
            "!", f"{len(_SKIPPED)} test(s) SKIPPED without the hosts' own network: {_SKIPPED[0]}; "
                 f"run as root with iproute2 (or unset {hostnet.SWITCH}=0)", red=True, bold=True)
