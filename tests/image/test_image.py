"""The image ``make image`` builds (tools/build-image.sh), run as a container runtime runs it: its
archive unpacked into an OCI bundle (skopeo, umoci) and run by ``runc``, as the image's user, with a
read-only root filesystem. Its configuration is the Dockerfile's (entry point, command, user,
environment, ports), it holds the package at the version setup.cfg names, ``kube-vast --help``
answers from it, and so does the extender's ``/healthz``; a stopped container leaves no process,
mount or runc state behind.

Needs root, runc, skopeo, umoci and the archive (``make test`` builds it first; ``.ci/run`` installs
the tools). Without them these tests are skipped locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from devcluster.binaries import running_in_ci
from devcluster.image import BUILD_SCRIPT, Bundle, Container, archive_path, image_config, missing_tools, \
    mounts_under, unpack, version
from devcluster.processes import free_port
from tests.chart.test_dockerfile import stages


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root (runc runs the image's container as root)"
    if missing_tools():
        return f"missing {', '.join(missing_tools())} (apt-get install runc skopeo umoci; .ci/run does)"
    if not archive_path().is_file():
        return f"no image archive at {archive_path()}: make image ({BUILD_SCRIPT})"
    return None


@pytest.fixture(scope="module")
def archive() -> Path:
    reason = _unavailable()
    if reason is not None:
        if running_in_ci():
            pytest.fail(f"CI=true and the image cannot be run: {reason}", pytrace=False)
        pytest.skip(f"!!! THE IMAGE IS NOT TESTED: {reason}")
    return archive_path()


@pytest.fixture(scope="module")
def bundle(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return unpack(archive, tmp_path_factory.mktemp("image"))


@pytest.fixture()
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert not mounts_under(tmp_path)


def final_stage():
    return stages()[1][-1]


def test_the_image_is_configured_as_the_dockerfile_says(archive: Path):
    config = image_config(archive)
    stage = final_stage()
    [entrypoint] = stage.all("ENTRYPOINT")
    [cmd] = stage.all("CMD")
    assert config["Entrypoint"] == json.loads(entrypoint) == ["kube-vast"]
    assert config["Cmd"] == json.loads(cmd)
    assert config["User"] == stage.all("USER")[-1]
    env = dict(e.split("=", 1) for e in config["Env"])
    declared = dict(re.findall(r"(\w+)=(\S+)", " ".join(stage.all("ENV"))))
    assert env["PATH"].split(":")[0] == declared["PATH"].split(":")[0] == "/opt/kube-vast/bin"
    for name, value in declared.items():
        if name != "PATH":
            assert env[name] == value, name
    exposed = {p.split("/")[0] for p in config["ExposedPorts"]}
    assert exposed == set(" ".join(stage.all("EXPOSE")).split())
    assert f"kube-vast:{version()}" in " ".join(config["RepoTags"])


def test_the_image_holds_the_package_at_the_setup_cfg_version_on_the_dockerfiles_python(bundle: Bundle):
    site = bundle.rootfs / "opt/kube-vast/lib/python3.11/site-packages"
    assert (site / f"kube_vast-{version()}.dist-info").is_dir(), sorted(p.name for p in site.glob("kube_vast*"))
    # The Dockerfile's base is debian:bookworm-slim with Debian's python3: the same as here.
    base = stages()[0]["DEBIAN_IMAGE"]
    assert base.startswith("debian:bookworm")
    assert (bundle.rootfs / "etc/debian_version").read_text().startswith("12.")
    assert (bundle.rootfs / "usr/bin/python3.11").is_file()
    assert (bundle.rootfs / "opt/kube-vast/bin/python3").readlink().as_posix() in ("/usr/bin/python3", "python3")
    assert not list(site.glob("pip-*.dist-info")), "pip is left in the runtime environment"


def test_the_image_runs_as_its_numeric_non_root_user(bundle: Bundle):
    user = bundle.config()["process"]["user"]
    assert user["uid"] == user["gid"] == 10001
    assert "kube-vast:x:10001:10001:" in (bundle.rootfs / "etc/passwd").read_text()


def test_kube_vast_help_answers_from_the_image(bundle: Bundle, state: Path):
    container = Container(bundle, "help", state)  # the image's own entry point and command
    assert container.config["process"]["args"] == ["kube-vast", "--help"]
    done = container.run()
    container.stop()
    assert done.returncode == 0, done.stderr
    for command in ("offers", "extender", "webhook", "controller", "simulator", "status"):
        assert re.search(rf"^\s+{command}\s", done.stdout, flags=re.M), (command, done.stdout)


def test_the_extender_answers_healthz_from_the_image_and_leaves_nothing_when_stopped(bundle: Bundle, state: Path):
    port = free_port()
    container = Container(bundle, "extender", state, host_network=True, args=[
        "kube-vast", "extender", "--host", "127.0.0.1", f"--port={port}", "--workers=1"])
    with container:
        body = None
        deadline = time.monotonic() + 60
        while body is None:
            assert container.alive(), f"the extender's container exited:\n{container.log.read_text()}"
            assert time.monotonic() < deadline, f"no /healthz answer in 60s:\n{container.log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    body = (r.status, json.loads(r.read()))
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        pid = container.pid()
        assert pid is not None
        ids = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert ids["Uid"].split() == ids["Gid"].split() == ["10001"] * 4
    assert body == (200, {"status": "ok"})
    # Nothing of it writes outside /tmp (gunicorn's control socket under $HOME did).
    assert "Read-only file system" not in container.log.read_text(), container.log.read_text()
    assert not container.alive()
    assert container.pid() is None
    assert not Path(f"/proc/{pid}").exists()
    assert not list((state / "runc").iterdir())
