"""The Dockerfile's invariants, checked by reading it (there is no container engine in CI to build
it): multi-stage with the build in its own stage, a slim Debian bookworm base with Debian's
Python 3.11 (the base ``make image`` builds from) and no ``latest``,
a numeric non-root user, ``kube-vast`` as the entry point, and a build context (.dockerignore)
holding exactly the package sources it copies."""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from setuptools import find_packages

from devcluster.binaries import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with ``${ARG}`` resolved in FROM."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(image=image, name=name))
        else:
            found[-1].instructions.append((keyword, rest))
    return args, found


def test_the_image_is_built_in_two_stages_and_the_last_has_no_build_step():
    _, (builder, *middle, final) = stages()
    assert builder.name == "builder"
    assert any("pip wheel" in run for run in builder.all("RUN"))
    assert not any("pip" in run and "install" in run for run in final.all("RUN")), \
        "the runtime stage installs nothing from the network; it copies the builder's environment"
    assert any(c.startswith("--from=builder ") for c in final.all("COPY"))


def test_every_base_image_is_slim_debian_bookworm_with_its_python_3_11_never_latest():
    # The same base as `make image` (tools/build-image.sh: mmdebstrap bookworm, python3 3.11).
    _, all_stages = stages()
    for stage in all_stages:
        if stage.image in {s.name for s in all_stages}:
            continue
        repository, _, tag = stage.image.partition("@")[0].partition(":")
        assert repository == "debian" and tag.startswith("bookworm") and "slim" in tag, stage.image
        assert tag != "latest"
        assert any("apt-get install" in run and " python3 " in run for run in stage.all("RUN")), stage.name


def test_the_image_runs_as_a_numeric_non_root_user():
    _, stage_list = stages()
    users = stage_list[-1].all("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "a numeric uid lets the kubelet verify runAsNonRoot"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    created = " ".join(stage_list[-1].all("RUN"))
    assert f"--uid {uid}" in created


def test_the_entry_point_is_the_kube_vast_command_in_exec_form():
    _, stage_list = stages()
    [entrypoint] = stage_list[-1].all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["kube-vast"]
    scripts = configparser.ConfigParser()
    scripts.read(REPO_ROOT / "setup.cfg")
    assert "kube-vast = kube_vast.cli:main" in scripts["options.entry_points"]["console_scripts"]


# --- the build context -----------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a path is also excluded when
    one of its parent directories is (and no later pattern lets it back in)."""
    result = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(c, pat) or (pat.startswith("**/") and
                                                 fnmatch.fnmatchcase(c.split("/")[-1], pat[3:]))
               for c in candidates):
            result = not negate
    return result


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def copied_sources() -> list[str]:
    _, stage_list = stages()
    out = []
    for stage in stage_list:
        for copy in stage.all("COPY"):
            words = shlex.split(copy)
            if any(w.startswith("--from") for w in words):
                continue
            out += [w.rstrip("/") for w in words[:-1] if not w.startswith("--")]
    return out


def test_the_dockerfile_copies_every_package_of_the_product():
    # The product's packages are the ones its import contracts govern (setup.cfg [importlinter]),
    # less the ones the wheel leaves out (tests, benchmarks, the demo and the local cluster).
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    excluded = set(cfg["options.packages.find"]["exclude"].split())
    packages = set(cfg["importlinter"]["root_packages"].split()) - excluded
    assert {"vastmarket", "vastsim", "serving", "controller"} <= packages
    assert packages <= set(find_packages(str(REPO_ROOT)))
    copied = set(copied_sources())
    assert packages <= copied, f"add COPY lines for {sorted(packages - copied)}"
    assert {"pyproject.toml", "setup.cfg", "README.md"} <= copied  # setup.cfg reads README.md


@pytest.mark.parametrize("source", copied_sources())
def test_everything_the_dockerfile_copies_is_in_the_build_context(source):
    patterns = dockerignore_patterns()
    path = REPO_ROOT / source
    assert path.exists(), source
    files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
    assert files
    for f in files:
        assert not ignored(str(f.relative_to(REPO_ROOT)), patterns), f"{f} is excluded by .dockerignore"


@pytest.mark.parametrize("path", [".venv/bin/python", ".git/HEAD", "tests/conftest.py", "charts/kube-vast/values.yaml",
                                  "tools/versions.env", "bench/ranking.py", "controller/__pycache__/kube.cpython-311.pyc",
                                  "kube_vast.egg-info/PKG-INFO"])
def test_the_build_context_leaves_out_what_the_image_does_not_need(path):
    assert ignored(path, dockerignore_patterns())


def test_the_chart_says_ci_builds_the_image_with_make_image_and_not_from_the_dockerfile():
    text = " ".join((REPO_ROOT / "charts" / "kube-vast" / "README.md").read_text().split())
    assert "CI builds the image with `make image`" in text
    assert "Dockerfile itself is not built in CI" in text
