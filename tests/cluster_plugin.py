"""pytest plugin: the ``cluster`` marker policy and the control-plane fixtures.

Registered by ``tests/conftest.py`` (``pytest_plugins = ["tests.cluster_plugin"]``).

Fixtures (all session-scoped):

``control_plane``
    A started :class:`~devcluster.cluster.ControlPlane` (etcd + kube-apiserver).
``kube_scheduler``
    A :class:`SchedulerFactory`: ``kube_scheduler(extender_url=None, **options)`` returns a running
    kube-scheduler for that rendered configuration, restarting the scheduler only when the
    configuration differs from the running one (one scheduler at a time, so two never race for
    the same pods). ``kube_scheduler.stop()`` stops it.
``controller_manager``
    A running kube-controller-manager (``ManagedProcess``) on the same control plane.

Marker policy: a test marked ``@pytest.mark.cluster`` is skipped, with a loud reason and a line
in the terminal summary, when a control-plane binary is missing; with ``CI=true`` it fails.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Iterator

import pytest

from devcluster.binaries import BUILD_SCRIPT, CONTROL_PLANE_BINARIES, find_binaries, running_in_ci
from devcluster.cluster import ControlPlane, SchedulerProcess, keep_logs_requested
from devcluster.processes import ManagedProcess, stop_all

_STATE: dict[str, Any] = {"skipped": 0, "control_plane": None, "missing": None}


def _missing_binaries() -> list[str]:
    if _STATE["missing"] is None:
        try:
            _STATE["missing"] = find_binaries().missing(CONTROL_PLANE_BINARIES)
        except (OSError, KeyError) as e:
            _STATE["missing"] = [f"tools/versions.env unreadable: {e!r}"]
    return list(_STATE["missing"])


def require_control_plane_binaries() -> None:
    """Skip (locally) or fail (``CI=true``) the current test when a binary is missing."""
    missing = _missing_binaries()
    if not missing:
        return
    msg = (
        f"control-plane binaries missing: {'; '.join(missing)}. "
        f"Build them with `{BUILD_SCRIPT}` (make control-plane); "
        "KUBE_VAST_CACHE / KUBE_VAST_BIN_DIR point at other locations."
    )
    if running_in_ci():
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    _STATE["skipped"] += 1
    pytest.skip(f"!!! NOT TESTED AGAINST A REAL CONTROL PLANE: {msg}")


def _sigterm_to_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the real control plane (etcd, kube-apiserver, kube-scheduler) "
        "built by tools/build-control-plane.sh")
    # SIGTERM normally kills Python without running fixture teardown or atexit; turn it into the
    # same path as Ctrl-C so the control plane is stopped.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm_to_keyboard_interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_all()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cluster") is None:
        return
    require_control_plane_binaries()
    cp: ControlPlane | None = _STATE["control_plane"]
    if cp is not None:
        cp.check_alive()  # a process that died during an earlier test fails this one with its log


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    cp: ControlPlane | None = _STATE["control_plane"]
    if cp is None or not rep.failed:
        return
    for p in cp.processes():
        if p.died_unexpectedly:
            rep.sections.append((f"{p.name} died", p.describe_failure("died", lines=60)))
    rep.sections.append(("control-plane logs", f"{cp.logs_dir} (kept after the run)"))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _STATE["skipped"]:
        terminalreporter.write_sep(
            "!", f"{_STATE['skipped']} cluster test(s) SKIPPED: control-plane binaries missing "
                 f"({'; '.join(_missing_binaries())}); run {BUILD_SCRIPT}", red=True, bold=True)


class SchedulerFactory:
    """Starts kube-scheduler on demand; see the module docstring."""

    def __init__(self, control_plane: ControlPlane):
        self.control_plane = control_plane
        self.current: SchedulerProcess | None = None

    def __call__(
        self,
        extender_url: str | None = None,
        *,
        extender_ca_pem: bytes | str | None = None,
        base: Any = None,
        customize: Callable[[dict[str, Any]], None] | None = None,
        config: dict[str, Any] | None = None,
        extra_args: tuple[str, ...] = (),
        timeout: float = 60.0,
    ) -> SchedulerProcess:
        cfg = config if config is not None else self.control_plane.render_scheduler_config(
            extender_url, extender_ca_pem=extender_ca_pem, base=base, customize=customize)
        cur = self.current
        if cur is not None and cur.running() and cur.config == cfg and cur.extra_args == tuple(extra_args):
            return cur
        self.stop()
        self.current = self.control_plane.start_scheduler(config=cfg, extra_args=extra_args, timeout=timeout)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


def _say(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal even while output is captured."""
    rep = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if rep is None:
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            rep.write_line(line)
    else:
        rep.write_line(line)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver on 127.0.0.1 for the whole session."""
    require_control_plane_binaries()
    cp = ControlPlane()
    try:
        cp.start()
    except Exception as e:
        cp.stop()
        pytest.fail(f"the test control plane did not start (logs in {cp.logs_dir}):\n{e}", pytrace=False)
    _STATE["control_plane"] = cp
    if request.config.getoption("verbose") > 0:
        times = ", ".join(f"{k} {v:.1f}s" for k, v in cp.startup_seconds.items())
        _say(request.config, f"\n[kube-vast] control plane up at {cp.url} ({times}); logs {cp.logs_dir}")
    try:
        yield cp
    finally:
        _STATE["control_plane"] = None
        cp.stop()
        failed = request.session.testsfailed > 0 or any(p.died_unexpectedly for p in cp.processes())
        if failed or keep_logs_requested():
            _say(request.config, f"\n[kube-vast] control-plane logs kept in {cp.logs_dir}")
        else:
            cp.cleanup()


@pytest.fixture(scope="session")
def kube_scheduler(control_plane: ControlPlane) -> Iterator[SchedulerFactory]:
    """Factory: ``kube_scheduler(extender_url=None, ...)`` -> running scheduler for that config."""
    factory = SchedulerFactory(control_plane)
    try:
        yield factory
    finally:
        factory.stop()


@pytest.fixture(scope="session")
def controller_manager(control_plane: ControlPlane) -> Iterator[ManagedProcess]:
    """kube-controller-manager (every controller but node-lifecycle) for the whole session."""
    try:
        proc = control_plane.start_controller_manager()
    except Exception as e:
        pytest.fail(f"kube-controller-manager did not start:\n{e}", pytrace=False)
    try:
        yield proc
    finally:
        proc.stop()
