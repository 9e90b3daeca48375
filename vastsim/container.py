"""What the simulated "image" does once its container runs: told by the rental's own environment.

A real image serves until it is stopped, or exits with a code after some work. The simulator's
image reads three variables from the rent body's `env` (docs/simulator.md):

- `KUBE_VAST_SIM_EXIT_CODE`: the container exits with this code (0–255). A comma-separated list
  gives the code of each run in turn (`3,0`: the first run exits 3, every later run 0); a restart
  (stop, then start) is a new run. Unset: the container serves until it is stopped.
- `KUBE_VAST_SIM_EXIT_AFTER`: seconds the container runs before it exits (default 0).
- `KUBE_VAST_SIM_STOP_SECONDS`: seconds the container takes to exit after a stop's SIGTERM
  (default 0); the simulated daemon kills it after `KILL_AFTER` seconds at the latest, like
  `docker stop`.

Pure: `container_script(env)` → `ContainerScript`, or ApiError 400 naming the variable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from vastsim.responses import ApiError

EXIT_CODE = "KUBE_VAST_SIM_EXIT_CODE"
EXIT_AFTER = "KUBE_VAST_SIM_EXIT_AFTER"
STOP_SECONDS = "KUBE_VAST_SIM_STOP_SECONDS"
KILL_AFTER = 10.0  # docker stop's default timeout before SIGKILL


@dataclass(frozen=True)
class ContainerScript:
    """The exit code of each run (the last one repeats; empty: never exits on its own), how long
    a run lasts, and how long the container takes to stop after SIGTERM."""

    exit_codes: tuple[int, ...] = ()
    exit_after: float = 0.0
    stop_seconds: float = 0.0

    def exit_code(self, run: int) -> int | None:
        """The code run number `run` (0 = the first) exits with, or None: it serves until stopped."""
        if not self.exit_codes:
            return None
        return self.exit_codes[min(run, len(self.exit_codes) - 1)]

    @property
    def shutdown(self) -> float:
        """Seconds from a stop request to the container being gone."""
        return min(self.stop_seconds, KILL_AFTER)


def container_script(env: Iterable[tuple[str, str]]) -> ContainerScript:
    """The script in a rental's environment pairs; raises ApiError 400 for a malformed value."""
    values = dict(env)
    codes: tuple[int, ...] = ()
    if values.get(EXIT_CODE, "").strip():
        codes = tuple(_code(part) for part in values[EXIT_CODE].split(","))
    return ContainerScript(
        exit_codes=codes,
        exit_after=_seconds(values, EXIT_AFTER),
        stop_seconds=_seconds(values, STOP_SECONDS),
    )


def _code(text: str) -> int:
    try:
        code = int(text.strip())
    except ValueError:
        code = -1
    if not 0 <= code <= 255:
        raise ApiError(400, "invalid_args", f"{EXIT_CODE} must be exit codes 0-255 separated by commas, got {text!r}")
    return code


def _seconds(values: dict[str, str], name: str) -> float:
    text = values.get(name, "").strip()
    if not text:
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ApiError(400, "invalid_args", f"{name} must be a non-negative number of seconds, got {text!r}")
    return seconds
