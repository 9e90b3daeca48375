"""When an instance is provisioning, loading, running or has met a fate — a pure function of time.

`actual_status` is null for `provisioning` seconds after boot, then `loading` for `loading`
seconds, then `running` (the market turns its `boot_seconds=(to_loading, to_running)` into
these two durations); unless a fate says otherwise from `fail_at` on (or, with `fail_at`
None, from the moment it would have reached running).

The container itself may exit (`exited`) `exit_after` seconds after it started running, with
`exit_code` (the simulated image's script, `vastsim.container`). A stop request takes effect at
`stop_at` (`stopped`): at once for a container that is not running, after its shutdown time for
one that is. Precedence: a host gone (`offline`, `unknown`) → stopped → another fate → the
container's exit → boot progression. A timeline is one run of the container: a restart starts a
new one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vastsim.faults import Fate

DEAD_ENDS = frozenset({"exited", "unknown", "offline"})
HOST_GONE = frozenset({"unknown", "offline"})


@dataclass(frozen=True)
class Timeline:
    boot_started: float
    provisioning: float
    loading: float
    fail_status: str | None = None
    fail_at: float | None = None  # None with a fail_status: when it would have reached running
    status_msg: str | None = None  # replaces the usual message once the fate applies
    fate_exit_code: int | None = None  # the code an `exited` fate reports (1 when None)
    exit_code: int | None = None  # the container's own exit code; None: it runs until stopped
    exit_after: float = 0.0  # seconds of running before the container exits
    stop_at: float | None = None  # a requested stop takes effect then

    @property
    def loading_at(self) -> float:
        return self.boot_started + self.provisioning

    @property
    def running_at(self) -> float:
        return self.loading_at + self.loading

    def fated(self, now: float) -> bool:
        if self.fail_status is None:
            return False
        return now >= (self.running_at if self.fail_at is None else self.fail_at)

    @property
    def exit_at(self) -> float | None:
        """When the container exits on its own, or None."""
        return None if self.exit_code is None else self.running_at + self.exit_after

    def status(self, now: float) -> str | None:
        """`actual_status` at `now`."""
        fate = self.fail_status if self.fated(now) else None
        if fate in HOST_GONE:
            return fate
        if self.stop_at is not None and now >= self.stop_at:
            return "stopped"
        if fate is not None:
            return fate
        exit_at = self.exit_at
        if exit_at is not None and now >= exit_at:
            return "exited"
        if now < self.loading_at:
            return None
        if now < self.running_at:
            return "loading"
        return "running"

    def exit(self, now: float) -> tuple[int, float] | None:
        """(exit code, when) of the container if it has exited by `now`, else None."""
        if self.status(now) != "exited":
            return None
        if self.fated(now):
            return (1 if self.fate_exit_code is None else self.fate_exit_code,
                    self.running_at if self.fail_at is None else self.fail_at)
        assert self.exit_code is not None and self.exit_at is not None
        return self.exit_code, self.exit_at

    def with_fate(self, fate: Fate) -> Timeline:
        """This timeline meeting `fate` (a next-rental fate, counted from reaching running)."""
        fail_at = None if fate.running_seconds is None else self.running_at + fate.running_seconds
        return replace(self, fail_status=fate.status, fail_at=fail_at, status_msg=fate.status_msg,
                       fate_exit_code=fate.exit_code)

    def failing(self, status: str, at: float, status_msg: str | None = None,
                exit_code: int | None = None) -> Timeline:
        """This timeline turning `status` at `at`, whatever it was doing."""
        return replace(self, fail_status=status, fail_at=at, status_msg=status_msg, fate_exit_code=exit_code)

    def running_script(self, exit_code: int | None, exit_after: float) -> Timeline:
        """This run of the container exiting with `exit_code` after `exit_after` seconds of running."""
        return replace(self, exit_code=exit_code, exit_after=exit_after)

    def stopping(self, now: float, shutdown: float) -> Timeline:
        """This timeline after a stop request at `now`: a running container takes `shutdown`
        seconds to exit; anything else stops at once. A stop already under way is kept."""
        if self.stop_at is not None:
            return self
        return replace(self, stop_at=now + (shutdown if self.status(now) == "running" else 0.0))


def docker_age(seconds: float) -> str:
    """Docker's human duration (`docker ps`): "Less than a second", "5 seconds", "About a minute"…"""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    return "About an hour" if hours == 1 else f"{hours} hours"


def exited_message(exit_code: int, seconds_ago: float) -> str:
    """Docker's text for an exited container: `Exited (3) 5 seconds ago`."""
    return f"Exited ({exit_code}) {docker_age(seconds_ago)} ago"


def status_message(status: str | None, image: str) -> str:
    """A `status_msg` in the style of the service for `status` (an exit's, with its code and age,
    is `exited_message`)."""
    if status is None:
        return "Instance is being provisioned"
    if status == "loading":
        return f"Pulling image {image}"
    if status == "running":
        return f"success, running {image.replace(':', '_')}"
    if status == "created":
        return "Error response from daemon: failed to create task for container: OCI runtime create failed"
    if status == "exited":
        return "Error: container exited with code 1"
    if status == "stopped":
        return "Instance stopped"
    if status == "offline":
        return "Host machine is offline"
    if status == "unknown":
        return "No recent heartbeat from the host"
    return status
