"""The start script: what a pod needs on its Vast instance before its command runs — files from
ConfigMap/Secret/downward-API volumes, ``emptyDir`` directories, environment values longer than
Vast allows, the ``workingDir`` — carried in the create body's ``env`` and unpacked by a small
POSIX-sh script that then execs the pod's command.

Contract
--------
- Pure: :func:`encode` turns a :class:`Payload` into environment variables, :func:`wrap` a command
  into ``(onstart, args)``. No I/O; nothing here logs.
- The carriage: entry *i* is ``_KV<i>`` = ``"<kind> <mode> <base64 of the path or name>"`` (kind
  ``d`` directory, ``f`` file, ``e`` environment variable, ``w`` working directory; mode in octal
  for files, ``-`` otherwise), its content base64-encoded in ``_KV<i>_0``, ``_KV<i>_1``… of at most
  :data:`CHUNK` characters each (Vast's limit per env value). Every value is ASCII.
- The script (:data:`SCRIPT`), run as ``/bin/sh -c SCRIPT kube-vast COMMAND…`` (``onstart`` is the
  entrypoint, the rest ``args``): for each entry in order it creates the directory, writes the
  file (replacing what the image had there) and sets its mode, or keeps the variable; it unsets
  every ``_KV*`` variable, changes to the working directory, and execs the command with its
  words untouched (``"$@"``: no word splitting, no quoting to get wrong), through ``env`` when it
  must add variables whose values were too long for Vast. ``set -e``: a failed write stops the
  container instead of starting the app without its files. It needs ``/bin/sh`` and ``base64``
  (coreutils or busybox) in the image.
- ``KUBE_VAST_FILES_ROOT``, when set, is prepended to every path (tests run the script against a
  temporary directory); it is unset before the command runs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CHUNK = 256
PREFIX = "_KV"
ROOT_VARIABLE = "KUBE_VAST_FILES_ROOT"
SHELL = "/bin/sh"
ARGV0 = "kube-vast"

SCRIPT = """set -e
r=${KUBE_VAST_FILES_ROOT-}
e=
i=0
while eval "h=\\${_KV$i-}"; [ -n "$h" ]; do
k=${h%% *}; h=${h#* }; m=${h%% *}; n=$(printf %s "${h#* }" | base64 -d)
d=; j=0
while eval "c=\\${_KV${i}_$j-}"; [ -n "$c" ]; do d=$d$c; unset _KV${i}_$j; j=$((j+1)); done
unset _KV$i
case $k in
d) mkdir -p "$r$n";;
f) mkdir -p "$r${n%/*}/"; rm -f "$r$n"; printf %s "$d" | base64 -d >"$r$n"; chmod "$m" "$r$n";;
e) v=$(printf %s "$d" | base64 -d; echo .); set -- "$n=${v%.}" "$@"; e=1;;
w) mkdir -p "$r$n"; cd "$r$n";;
esac
i=$((i+1))
done
unset KUBE_VAST_FILES_ROOT
[ -z "$e" ] || exec env "$@"
exec "$@"
"""


class PayloadError(ValueError):
    """A path or name the script cannot carry (said without any content)."""


@dataclass(frozen=True, slots=True)
class File:
    """A file to write: absolute ``path``, ``content`` bytes (may be secret: not in ``repr``),
    permission ``mode``."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class Payload:
    """What the script sets up, in this order: directories, files, variables, working directory."""

    directories: tuple[str, ...] = ()
    files: tuple[File, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict, repr=False)
    working_dir: str | None = None

    def __bool__(self) -> bool:
        return bool(self.directories or self.files or self.variables or self.working_dir)


def encode(payload: Payload) -> dict[str, str]:
    """The environment variables that carry ``payload`` (see the module docstring)."""
    entries: list[tuple[str, str, str, bytes]] = []
    entries += [("d", "-", _path(d), b"") for d in payload.directories]
    entries += [("f", f"{f.mode & 0o7777:04o}", _path(f.path), f.content) for f in payload.files]
    entries += [("e", "-", _name(k), v.encode()) for k, v in payload.variables.items()]
    if payload.working_dir:
        entries.append(("w", "-", _path(payload.working_dir), b""))
    env: dict[str, str] = {}
    for i, (kind, mode, target, content) in enumerate(entries):
        header = f"{kind} {mode} {_b64(target.encode())}"
        if len(header) > CHUNK:
            raise PayloadError(f"the path {target[:80]!r} is too long to carry in a {CHUNK}-character value")
        env[f"{PREFIX}{i}"] = header
        data = _b64(content)
        for j in range(0, len(data), CHUNK):
            env[f"{PREFIX}{i}_{j // CHUNK}"] = data[j:j + CHUNK]
    return env


def wrap(command: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """``(onstart, args)`` that run :data:`SCRIPT` and then ``command`` (its words verbatim)."""
    if not command:
        raise PayloadError("the start script needs a command to run afterwards")
    return SHELL, ("-c", SCRIPT, ARGV0, *command)


def carries(name: str) -> bool:
    """Is ``name`` one of the start script's own variables (a pod must not define it)?"""
    return name == ROOT_VARIABLE or (name.startswith(PREFIX) and name[len(PREFIX):][:1].isdigit())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _path(path: str) -> str:
    if not path.startswith("/") or "\n" in path or "\0" in path or "/../" in f"{path}/":
        raise PayloadError(f"{path[:80]!r} is not an absolute path without '..' and newlines")
    return path


def _name(name: str) -> str:
    if not name or "=" in name or "\0" in name:
        raise PayloadError(f"{name[:80]!r} is not an environment variable name")
    return name
