"""The start script really run under /bin/sh: files and directories appear under a root prefix (a
temporary directory) with their contents and modes, long values reach the command's environment,
the carrier variables do not, and the command receives its words verbatim."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.bootstrap import (
    CHUNK, ROOT_VARIABLE, SCRIPT, File, Payload, PayloadError, carries, encode, wrap,
)
from vastmarket.instances import MAX_ARGS, MAX_ENV_VALUE, script_size

# The command the script execs: prints its argv, environment and working directory as JSON.
REPORT = [sys.executable, "-c",
          "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ), "
          "'cwd': os.getcwd()}))"]


def run(payload: Payload, command: list[str], root: Path, *, extra_env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run ``onstart args…`` as Vast's container would, with the carried env and ``root`` prefix."""
    onstart, args = wrap(command)
    env = {"PATH": os.environ["PATH"], ROOT_VARIABLE: str(root), **encode(payload), **(extra_env or {})}
    return subprocess.run([onstart, *args], env=env, capture_output=True, text=True, timeout=30, check=False)


def report(payload: Payload, command: list[str], root: Path) -> dict[str, Any]:
    done = run(payload, command, root)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


TRICKY_ARGS = ["--prompt", "it's a \"test\"", "$HOME", "$(id)", "`id`", "*", "a b  c", "", "-", "--",
               "line1\nline2", "\\", "ünïcødé", ";exit 3", "'"]


def test_files_are_written_with_their_contents_and_modes_before_the_command_runs(tmp_path):
    config = b"model: whisper\nworkers: 2\n"
    binary = bytes(range(256)) * 3  # every byte, several chunks long
    payload = Payload(files=(
        File("/etc/june/config.yaml", config, 0o644),
        File("/etc/june/secret/token", b"hf_abc123", 0o400),
        File("/opt/blob.bin", binary, 0o755),
        File("/etc/june/empty", b"", 0o600),
        File("/etc/june/trailing-newlines", b"x\n\n\n", 0o644),
    ))
    # The command reads a file: it must exist before the command starts.
    command = ["/bin/sh", "-c", 'cat "$0"', str(tmp_path / "etc/june/config.yaml")]
    done = run(payload, command, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == config.decode()
    assert (tmp_path / "etc/june/config.yaml").read_bytes() == config
    assert (tmp_path / "etc/june/secret/token").read_bytes() == b"hf_abc123"
    assert (tmp_path / "opt/blob.bin").read_bytes() == binary
    assert (tmp_path / "etc/june/empty").read_bytes() == b""
    assert (tmp_path / "etc/june/trailing-newlines").read_bytes() == b"x\n\n\n"
    assert [mode_of(tmp_path / p) for p in ("etc/june/config.yaml", "etc/june/secret/token", "opt/blob.bin",
                                            "etc/june/empty")] == [0o644, 0o400, 0o755, 0o600]


def test_a_file_replaces_what_the_image_had_at_its_path(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/app.conf").write_text("from the image, longer than the new content\n")
    (tmp_path / "etc/app.conf").chmod(0o444)
    report(Payload(files=(File("/etc/app.conf", b"new\n", 0o640),)), REPORT, tmp_path)
    assert (tmp_path / "etc/app.conf").read_bytes() == b"new\n"
    assert mode_of(tmp_path / "etc/app.conf") == 0o640


def test_the_command_receives_its_arguments_verbatim(tmp_path):
    out = report(Payload(files=(File("/f", b"x"),)), REPORT + TRICKY_ARGS, tmp_path)
    assert out["argv"] == TRICKY_ARGS


def test_directories_are_created_and_the_working_directory_is_entered(tmp_path):
    out = report(Payload(directories=("/cache/hf", "/dev/scratch dir"), working_dir="/srv/app"), REPORT, tmp_path)
    assert (tmp_path / "cache/hf").is_dir() and (tmp_path / "dev/scratch dir").is_dir()
    assert out["cwd"] == str(tmp_path / "srv/app")


def test_long_values_reach_the_command_and_the_carriers_do_not(tmp_path):
    long_value = "{\"type\": \"service_account\", \"key\": \"" + "k" * 900 + "\"}\n\n"
    variables = {"GOOGLE_CREDENTIALS": long_value, "my-dashed.name": "v" * 300, "EMPTYISH": "$(x) 'q' \"d\""}
    out = report(Payload(files=(File("/a/b", b"1"),), variables=variables), REPORT + ["serve"], tmp_path)
    assert out["argv"] == ["serve"]
    for name, value in variables.items():
        assert out["env"][name] == value
    assert not [k for k in out["env"] if carries(k)], "the carrier variables and the root are unset"


def test_the_image_environment_is_kept(tmp_path):
    done = run(Payload(files=(File("/x", b"1"),)), REPORT, tmp_path, extra_env={"MODEL": "whisper", "A_B": "1 2"})
    env = json.loads(done.stdout)["env"]
    assert env["MODEL"] == "whisper" and env["A_B"] == "1 2"


def test_a_failed_write_stops_the_container_before_the_command(tmp_path):
    (tmp_path / "etc").write_text("a file where a directory must be")
    marker = tmp_path / "ran"
    done = run(Payload(files=(File("/etc/app.conf", b"x"),)), ["/bin/sh", "-c", f"touch {marker}"], tmp_path)
    assert done.returncode != 0
    assert not marker.exists()


def test_without_entries_the_script_only_runs_the_command(tmp_path):
    out = report(Payload(), REPORT + ["a b"], tmp_path)
    assert out["argv"] == ["a b"]


def test_every_carrier_value_fits_vast_and_the_script_leaves_room_for_the_command():
    env = encode(Payload(files=(File("/etc/big", os.urandom(5000)),), variables={"V": "x" * 1000}))
    assert env and all(len(v) <= MAX_ENV_VALUE == CHUNK for v in env.values())
    assert all(v.isascii() for v in env.values())
    assert script_size(wrap(["serve"])[1], wrap(["serve"])[0]) < MAX_ARGS // 4


@pytest.mark.parametrize("payload", [
    Payload(files=(File("relative/path", b""),)),
    Payload(files=(File("/etc/../root/x", b""),)),
    Payload(files=(File("/etc/new\nline", b""),)),
    Payload(directories=("/" + "d" * 300,)),
    Payload(variables={"A=B": "x"}),
])
def test_paths_and_names_the_script_cannot_carry_are_refused(payload):
    with pytest.raises(PayloadError):
        encode(payload)


def test_the_script_is_posix_sh():
    done = subprocess.run(["/bin/sh", "-n", "-c", SCRIPT], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=2000), args=st.lists(st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20), max_size=5),
    mode=st.sampled_from([0o400, 0o444, 0o600, 0o640, 0o644, 0o755]))
def test_any_content_and_any_arguments_survive_the_trip(tmp_path, content, args, mode):
    out = report(Payload(files=(File("/data/f", content, mode),)), REPORT + args, tmp_path)
    assert out["argv"] == args
    assert (tmp_path / "data/f").read_bytes() == content and mode_of(tmp_path / "data/f") == mode
