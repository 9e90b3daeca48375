"""The demo's supervisor (demo.supervisor): a component that dies is started again after a
back-off said on the console (doubling to a cap, starting over once it ran long enough), one
stopped on purpose is left alone. Real child processes; the supervisor's clock is the test's."""

from __future__ import annotations

import io
import signal
import sys
from pathlib import Path

from demo.console import Console
from demo.supervisor import Supervisor
from devcluster.processes import ManagedProcess


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def crashing(tmp: Path, code: int = 3) -> ManagedProcess:
    return ManagedProcess("ctl", [sys.executable, "-c", f"import sys; sys.exit({code})"], tmp / "ctl.log").start()


def sleeping(tmp: Path) -> ManagedProcess:
    return ManagedProcess("ctl", [sys.executable, "-c", "import time; time.sleep(600)"], tmp / "ctl.log").start()


def exited(p: ManagedProcess) -> ManagedProcess:
    assert p.proc is not None
    p.proc.wait(timeout=30)
    return p


def lines(out: io.StringIO) -> list[str]:
    return [line.split("| ", 1)[1] for line in out.getvalue().splitlines()]


def test_a_crashing_component_is_restarted_after_a_doubling_back_off_said_on_the_console(tmp_path: Path) -> None:
    out, clock = io.StringIO(), Clock()
    sup = Supervisor(Console(out), base=1.0, cap=4.0, stable=30.0, clock=clock)
    started: list[ManagedProcess] = []

    def again() -> ManagedProcess:
        started.append(crashing(tmp_path))
        return started[-1]

    sup.add("controller", exited(crashing(tmp_path)), again)
    waits = []
    for restart in range(1, 5):
        sup.tick()
        assert lines(out)[-1].startswith("controller exited with code 3; restarting it in ")
        waits.append(lines(out)[-1].split("restarting it in ")[1].split("s ")[0])
        assert lines(out)[-1].endswith(f"(back-off, restart {restart})")
        clock.now += float(waits[-1]) - 0.01
        sup.tick()
        assert len(started) == restart - 1, "not before the back-off is over"
        clock.now += 0.01
        sup.tick()
        assert len(started) == restart and lines(out)[-1] == f"controller started again (pid {started[-1].pid}, restart {restart})"
        exited(started[-1])
    assert waits == ["1", "2", "4", "4"]
    # Once it ran `stable` seconds, the next crash waits the base again.
    clock.now += 30
    sup.tick()
    assert "restarting it in 1s" in lines(out)[-1]
    for p in started:
        p.stop()


def test_a_killed_component_is_named_by_its_signal_and_a_stopped_one_is_left_alone(tmp_path: Path) -> None:
    out, clock = io.StringIO(), Clock()
    sup = Supervisor(Console(out), clock=clock)
    victim = sleeping(tmp_path)
    calm = ManagedProcess("ext", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "ext.log").start()
    replacement: list[ManagedProcess] = []
    sup.add("controller", victim, lambda: replacement.append(sleeping(tmp_path)) or replacement[-1])
    sup.add("extender", calm, lambda: (_ for _ in ()).throw(AssertionError("a stopped component is not restarted")))
    sup.tick()
    assert out.getvalue() == "" and sup.settled()
    calm.stop()
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    exited(victim)
    assert not sup.settled(), "down, not yet noticed"
    sup.tick()
    assert lines(out) == ["controller was killed by SIGKILL; restarting it in 1s (back-off, restart 1)"]
    assert not sup.settled(), "waiting out its back-off"
    clock.now += 1
    sup.tick()
    assert sup.process("controller") is replacement[0] and replacement[0].running() and sup.settled()
    assert sup.processes() == [replacement[0], calm]
    replacement[0].stop()
