"""When an instance is provisioning, loading, running or has met a fate — a pure function of time.

`actual_status` is null for `provisioning` seconds after boot, then `loading` for `loading`
seconds, then `running` (the market turns its `boot_seconds=(to_loading, to_running)` into
these two durations); unless a fate says otherwise from `fail_at` on (or, with `fail_at`
None, from the moment it would have reached running).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vastsim.faults import Fate

DEAD_ENDS = frozenset({"exited", "unknown", "offline"})


@dataclass(frozen=True)
class Timeline:
    boot_started: float
    provisioning: float
    loading: float
    fail_status: str | None = None
    fail_at: float | None = None  # None with a fail_status: when it would have reached running
    status_msg: str | None = None  # replaces the usual message once the fate applies

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

    def status(self, now: float) -> str | None:
        """`actual_status` at `now`."""
        if self.fated(now):
            return self.fail_status
        if now < self.loading_at:
            return None
        if now < self.running_at:
            return "loading"
        return "running"

    def with_fate(self, fate: Fate) -> Timeline:
        """This timeline meeting `fate` (a next-rental fate, counted from reaching running)."""
        fail_at = None if fate.running_seconds is None else self.running_at + fate.running_seconds
        return replace(self, fail_status=fate.status, fail_at=fail_at, status_msg=fate.status_msg)

    def failing(self, status: str, at: float, status_msg: str | None = None) -> Timeline:
        """This timeline turning `status` at `at`, whatever it was doing."""
        return replace(self, fail_status=status, fail_at=at, status_msg=status_msg)


def status_message(status: str | None, image: str) -> str:
    """A `status_msg` in the style of the service for `status`."""
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
