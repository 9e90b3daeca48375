"""The kube-vast image built by ``tools/build-image.sh`` (``make image``): where its archive is, what
its configuration says, and running it as a container runtime would, with no daemon.

``dist/kube-vast-<version>.tar`` is a docker archive. :func:`unpack` turns it into an OCI runtime
bundle (``skopeo`` to an OCI layout, ``umoci unpack``: the root filesystem and a ``config.json``
whose process is the image's entry point and command, run as the image's user with its
environment), and :class:`Container` runs a bundle with ``runc``, the runtime containerd and the
kubelet use, under a state directory of its own. Stopping a container kills it and deletes it
(its cgroups and mounts go with it): nothing of it is left.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devcluster.binaries import REPO_ROOT

BUILD_SCRIPT = "tools/build-image.sh"
TOOLS = ("runc", "skopeo", "umoci")


class ImageError(RuntimeError):
    """The image archive is missing or unreadable, or a container did not start or stop."""


def version() -> str:
    """The package version (setup.cfg), which is also the image's tag."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    return cfg["metadata"]["version"]


def archive_path() -> Path:
    return REPO_ROOT / "dist" / f"kube-vast-{version()}.tar"


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def image_config(archive: Path) -> dict[str, Any]:
    """The image's ``config`` (Entrypoint, Cmd, User, Env, ExposedPorts, Labels, ...) and its tags,
    read from the docker archive's manifest."""
    try:
        with tarfile.open(archive) as tar:
            [entry] = json.load(_member(tar, "manifest.json"))
            config = json.load(_member(tar, entry["Config"]))
    except (OSError, tarfile.TarError, ValueError, KeyError) as e:
        raise ImageError(f"{archive} is not a docker archive of one image: {e}") from e
    out: dict[str, Any] = dict(config.get("config") or {})
    out["RepoTags"] = entry.get("RepoTags", [])
    return out


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    f = tar.extractfile(name)
    if f is None:
        raise ImageError(f"{name} is not a file in the archive")
    return f


@dataclass(frozen=True)
class Bundle:
    """An OCI runtime bundle: ``rootfs/`` and the ``config.json`` made from the image."""

    path: Path

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())  # type: ignore[no-any-return]


def unpack(archive: Path, work: Path) -> Bundle:
    """Unpack the image in ``archive`` into a runtime bundle under ``work``."""
    if not archive.is_file():
        raise ImageError(f"no image archive at {archive}: run make image ({BUILD_SCRIPT})")
    layout, bundle = work / "layout", work / "bundle"
    _run(["skopeo", "copy", "--quiet", f"docker-archive:{archive}", f"oci:{layout}:kube-vast"])
    _run(["umoci", "unpack", "--image", f"{layout}:kube-vast", str(bundle)])
    shutil.rmtree(layout)
    return Bundle(bundle)


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ImageError(f"{argv[0]}: {e}") from e
    if done.returncode != 0:
        raise ImageError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class Container:
    """One run of a bundle with ``runc``: the image's process, or ``args`` in its place (as a pod's
    ``command``/``args`` would), as the image's user, the root filesystem read-only and a tmpfs on
    /tmp (the chart's ``readOnlyRootFilesystem`` with an ``emptyDir``). ``host_network`` leaves the
    container in this machine's network namespace (loopback only is used by the tests)."""

    def __init__(self, bundle: Bundle, name: str, state: Path, args: list[str] | None = None,
                 host_network: bool = False) -> None:
        self.bundle, self.name, self.state = bundle, name, state
        config = bundle.config()
        process = config["process"]
        process["terminal"] = False
        if args is not None:
            process["args"] = args
        config["root"]["readonly"] = True
        config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["nosuid", "nodev", "mode=1777", "size=64m"]})
        if host_network:
            config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                             if n["type"] != "network"]
        self.config = config
        self.log = state / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _bundle_dir(self) -> Path:
        # runc reads config.json from the bundle: one per container, the root filesystem shared.
        d = self.state / f"{self.name}.bundle"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(dict(self.config, root={
            "path": str(self.bundle.rootfs), "readonly": True})))
        return d

    def _runc(self) -> list[str]:
        return ["runc", "--root", str(self.state / "runc")]

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run to completion; the process's output and exit code."""
        try:
            return subprocess.run(self._runc() + ["run", "--bundle", str(self._bundle_dir()), self.name],
                                  capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.stop()
            raise ImageError(f"container {self.name} still running after {timeout}s") from e

    def start(self) -> None:
        """Start in the background (output to :attr:`log`)."""
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(self._runc() + ["run", "--bundle", str(self._bundle_dir()), self.name],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def pid(self) -> int | None:
        """The container's init process as runc reports it, or None once it is gone."""
        done = subprocess.run(self._runc() + ["state", self.name], capture_output=True, text=True)
        if done.returncode != 0:
            return None
        state = json.loads(done.stdout)
        return int(state["pid"]) if state.get("status") == "running" else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; then delete the container."""
        if self._proc is not None and self._proc.poll() is None:
            subprocess.run(self._runc() + ["kill", self.name, "TERM"], capture_output=True)
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                subprocess.run(self._runc() + ["kill", "--all", self.name, "KILL"], capture_output=True)
                self._proc.wait(grace)
        deadline = time.monotonic() + grace
        while True:
            done = subprocess.run(self._runc() + ["delete", "--force", self.name], capture_output=True, text=True)
            if done.returncode == 0 or "does not exist" in done.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (in this process's mount namespace)."""
    prefix = str(path.resolve())
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            out.append(point)
    return out
