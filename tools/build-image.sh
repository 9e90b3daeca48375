#!/usr/bin/env bash
# Build the kube-vast image without a registry or a container daemon, and write it as a docker
# archive that `docker load`, `podman load` and `ctr images import` take:
#   dist/kube-vast-<version>.tar   (image kube-vast:<version>)
#
# The same layout as the Dockerfile: Debian bookworm's Python 3.11, the package and its
# dependencies in a virtual environment at /opt/kube-vast (no pip left in it), the numeric
# non-root user 10001:10001, entry point `kube-vast`, default command `--help`.
#
#   1. the base root filesystem: `mmdebstrap` (Debian packages python3, python3-venv,
#      ca-certificates), cached as a tar under ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/image-base-*
#      (keyed by the suite and the package list, like the Go binaries by their versions);
#   2. wheels of the package (from the same sources the Dockerfile copies) and its dependencies,
#      made by this machine's Python 3.11 (`pip wheel`);
#   3. the image assembled with `buildah` (storage driver vfs, isolation chroot: no daemon, no
#      overlay mounts) in a temporary storage directory, removed at the end.
#
# Needs root, mmdebstrap and buildah (.ci/run installs them with apt-get). Idempotent: the base is
# reused; the image is rebuilt every time (a few tens of seconds).
#
# Usage: tools/build-image.sh [--output FILE] [--if-possible]
#   --if-possible  when root, mmdebstrap or buildah is missing, say so and exit 0 (make test: the
#                  image tests then skip, loudly); not under CI=true, where it fails as usual
# Environment: KUBE_VAST_CACHE (cache root), PYTHON (a Python 3.11 with pip; default .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
VERSION="$(sed -n 's/^version *= *//p' "$ROOT/setup.cfg" | head -1)"
OUTPUT="$ROOT/dist/kube-vast-$VERSION.tar"
IF_POSSIBLE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --output) OUTPUT="$(realpath -m "$2")"; shift 2 ;;
    --if-possible) IF_POSSIBLE=1; shift ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument: $1" >&2; exit 2 ;;
  esac
done

say() { printf 'build-image: %s\n' "$*"; }
die() { printf 'build-image: ERROR: %s\n' "$1" >&2; exit "${2:-1}"; }
cannot() { # the machine cannot build the image
  if [[ $IF_POSSIBLE == 1 && "${CI:-}" != true ]]; then
    say "NOT BUILT: $1 (the image tests will be skipped)"; exit 0
  fi
  die "$1"
}

[[ "$(id -u)" == 0 ]] || cannot "needs root (mmdebstrap and buildah build the root filesystem as root)"
for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || cannot "$tool is missing: apt-get install mmdebstrap buildah"
done
[[ -x "$PYTHON" ]] || die "no Python at $PYTHON: run make dev, or set PYTHON"
[[ -n "$VERSION" ]] || die "no version in setup.cfg"

# --- the image's settings (tests/image/test_image.py compares them with the Dockerfile) ---------
SUITE=bookworm
MIRROR="${KUBE_VAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-venv,ca-certificates
UID_GID=10001
IMAGE="kube-vast:$VERSION"
# The packages the Dockerfile copies (its build context).
SOURCES=(pyproject.toml setup.cfg README.md vastmarket vastsim serving kube_vast extender webhooks controller)

start=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kube-vast-image.XXXXXX")"
STORE=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
cleanup() {
  buildah "${STORE[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${STORE[@]}" rmi --all --force >/dev/null 2>&1 || true
  # Nothing may stay mounted under the work directory before it is removed.
  if grep -q " $WORK" /proc/self/mounts; then
    grep " $WORK" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. the base root filesystem (cached) ----------------------------------------------------
key="$(printf '%s\n' "$SUITE" "$PACKAGES" minbase nodocs-1 | sha256sum | cut -c1-12)"
BASE_DIR="$CACHE/image-base-$SUITE-$key"
BASE="$BASE_DIR/rootfs.tar"
if [[ -s "$BASE" ]]; then
  say "base root filesystem cached: $BASE"
else
  say "building the base root filesystem ($SUITE: $PACKAGES) with mmdebstrap"
  mkdir -p "$BASE_DIR"
  # Reproducible: file times from SOURCE_DATE_EPOCH; no documentation, manuals or translations; no
  # apt lists or caches.
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date -d 2026-01-01 +%s)}" \
  mmdebstrap --variant=minbase --mode=root --quiet --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$BASE_DIR/partial.tar" "$MIRROR"
  mv "$BASE_DIR/partial.tar" "$BASE"
fi

# --- 2. the wheels -----------------------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PYTHON is not Python 3.11 (the image's Python): its wheels would not fit"
mkdir -p "$WORK/src" "$WORK/wheels"
(cd "$ROOT" && tar --exclude=__pycache__ --exclude='*.py[cod]' -cf - "${SOURCES[@]}") | tar -xf - -C "$WORK/src"
say "making wheels of kube-vast $VERSION and its dependencies"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip wheel --quiet --wheel-dir "$WORK/wheels" "$WORK/src"

# --- 3. the image --------------------------------------------------------------------------------
say "assembling $IMAGE with buildah (vfs, chroot)"
B() { buildah "${STORE[@]}" "$@"; }
ctr="$(B from --quiet scratch)"
mnt="$(B mount "$ctr")"
tar -xf "$BASE" -C "$mnt" --numeric-owner
B umount "$ctr" >/dev/null
B copy --quiet "$ctr" "$WORK/wheels" /tmp/wheels >/dev/null
B run --isolation chroot --network host "$ctr" -- /bin/sh -eu -c "
  groupadd --system --gid $UID_GID kube-vast
  useradd --system --uid $UID_GID --gid $UID_GID --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kube-vast
  python3 -m venv /opt/kube-vast
  /opt/kube-vast/bin/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check --find-links=/tmp/wheels kube-vast
  /opt/kube-vast/bin/python -m pip uninstall --quiet --yes pip setuptools
  rm -rf /tmp/wheels
  find /opt/kube-vast -name __pycache__ -prune -exec rm -rf {} +
"
B config \
  --label org.opencontainers.image.title=kube-vast \
  --label "org.opencontainers.image.description=Kubernetes GPU pods on rented Vast.ai machines: scheduler extender, admission webhook, controller, simulator" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=$VERSION" \
  --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 \
  --env PATH=/opt/kube-vast/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --user "$UID_GID:$UID_GID" --workingdir / \
  --port 8888 --port 8443 --port 8181 \
  --entrypoint '["kube-vast"]' --cmd '["--help"]' \
  "$ctr"
B commit --quiet --squash --format docker --timestamp "$(date -d 2026-01-01 +%s)" "$ctr" "$IMAGE" >/dev/null
mkdir -p "$(dirname "$OUTPUT")"
rm -f "$OUTPUT.partial"
B push --quiet "$IMAGE" "docker-archive:$OUTPUT.partial:$IMAGE"
mv "$OUTPUT.partial" "$OUTPUT"
say "wrote $OUTPUT ($(du -m "$OUTPUT" | cut -f1) MB, image $IMAGE) in $(( $(date +%s) - start ))s"
