#!/usr/bin/env bash
# Build what the test bed's real node runs (devcluster/node.py), into a per-version cache outside
# the repository:
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/node-<KUBERNETES_VERSION>/bin/{kubelet,kube-proxy}
#       from the k8s.io/kubernetes module pinned in tools/versions.env (tools module tools/node, the
#       same module and replaces as tools/k8s)
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/node-<KUBERNETES_VERSION>/pause.tar
#       the pod sandbox image kube-vast.local/pause:<version>, a docker archive: the module's own
#       build/pause/linux/pause.c compiled statically, assembled with buildah (no registry)
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/node-<KUBERNETES_VERSION>/kube-scheduler.tar
#       kube-vast.local/kube-scheduler:<KUBERNETES_VERSION>: the control plane's kube-scheduler
#       alone in an image, for the chart's vast-scheduler (scheduler.image)
#
# Idempotent: what exists and reports the pinned version is kept (seconds). Needs Go (like
# tools/build-control-plane.sh), a C compiler with a static libc, and, for the pause image, root and
# buildah.
#
# Usage: tools/build-node.sh [--if-possible]
#   --if-possible  where the pause image cannot be built (not root, no buildah or gcc), say so and
#                  exit 0 (make test: the node tests then skip, loudly); not under CI=true
# Environment: KUBE_VAST_CACHE (cache root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools"
CACHE="${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}"
IF_POSSIBLE=0
case "${1:-}" in
  -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --if-possible) IF_POSSIBLE=1; shift ;;
esac
[[ $# -eq 0 ]] || { echo "build-node: unknown argument: $1" >&2; exit 2; }

say() { printf 'build-node: %s\n' "$*"; }
die() { printf 'build-node: ERROR: %s\n' "$1" >&2; exit "${2:-1}"; }
cannot() {
  if [[ $IF_POSSIBLE == 1 && "${CI:-}" != true ]]; then say "NOT BUILT: $1 (the node tests will be skipped)"; exit 0; fi
  die "$1"
}

while IFS='=' read -r key value; do
  [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
  value="${value%%#*}"; value="${value//[[:space:]]/}"
  printf -v "$key" '%s' "$value"
done < "$TOOLS/versions.env"
: "${KUBERNETES_VERSION:?missing in tools/versions.env}"
grep -Eq "^require[[:space:]]+k8s.io/kubernetes[[:space:]]+$KUBERNETES_VERSION([[:space:]]|$)" "$TOOLS/node/go.mod" \
  || die "tools/node/go.mod does not require k8s.io/kubernetes $KUBERNETES_VERSION (tools/versions.env says so)"
MINOR="${KUBERNETES_VERSION#v1.}"; MINOR="${MINOR%%.*}"
PAUSE_VERSION=3.10
PAUSE_IMAGE="kube-vast.local/pause:$PAUSE_VERSION"
DEST="$CACHE/node-$KUBERNETES_VERSION"
BIN="$DEST/bin"
mkdir -p "$BIN"

exec 9>"$CACHE/.build-node.lock"
flock 9

k8s_ok() { [[ -x "$1" ]] && [[ "$(timeout 20 "$1" --version 2>&1)" == *"Kubernetes $KUBERNETES_VERSION"* ]]; }

built=0
for c in kubelet kube-proxy; do
  if k8s_ok "$BIN/$c"; then continue; fi
  command -v go >/dev/null || die "'go' not found on PATH (see tools/build-control-plane.sh)" 3
  say "building $c $KUBERNETES_VERSION (a minute with a warm Go build cache, several cold)…"
  start=$SECONDS
  tmp="$BIN/.$c.tmp.$$"
  (cd "$TOOLS/node" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -o "$tmp" -ldflags "-s -w \
     -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
     -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR \
     -X k8s.io/component-base/version.gitTreeState=clean \
     -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z" "k8s.io/kubernetes/cmd/$c") \
    || { rm -f "$tmp"; die "go build $c failed"; }
  k8s_ok "$tmp" || { rm -f "$tmp"; die "$c was built but does not report $KUBERNETES_VERSION"; }
  mv -f "$tmp" "$BIN/$c"
  say "built $c in $((SECONDS - start))s -> $BIN/$c"
  built=1
done

# image_of BINARY PATH IMAGE ARCHIVE USER: a one-file image (the static binary at PATH in it, its
# entry point, its directory on PATH), written as a docker archive.
image_of() {
  local binary="$1" path="$2" image="$3" archive="$4" user="$5" work ctr
  work="$(mktemp -d "${TMPDIR:-/tmp}/kube-vast-node-image.XXXXXX")"
  local S=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
  ctr="$(buildah "${S[@]}" from --quiet scratch)"
  buildah "${S[@]}" copy --quiet "$ctr" "$binary" "$path" >/dev/null
  buildah "${S[@]}" config --entrypoint "[\"$path\"]" --user "$user" --env "PATH=$(dirname "$path"):/usr/bin:/bin" "$ctr"
  buildah "${S[@]}" commit --quiet --format docker --timestamp 0 "$ctr" "$image" >/dev/null
  buildah "${S[@]}" push --quiet "$image" "docker-archive:$archive.partial:$image"
  buildah "${S[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${S[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
  mv "$archive.partial" "$archive"
  say "built $image -> $archive"
}

need_buildah() {
  [[ "$(id -u)" == 0 ]] || cannot "the node's images need root (buildah)"
  command -v buildah >/dev/null || cannot "buildah is missing: apt-get install buildah"
}

if [[ ! -s "$DEST/pause.tar" ]]; then
  need_buildah
  command -v gcc >/dev/null || cannot "gcc is missing: apt-get install gcc libc6-dev"
  src="$(cd "$TOOLS/node" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (cd "$TOOLS/node" && GOTOOLCHAIN=local go mod download k8s.io/kubernetes)
  pause_dir="$(mktemp -d "${TMPDIR:-/tmp}/kube-vast-pause.XXXXXX")"
  gcc -Os -static -DVERSION="$PAUSE_VERSION-kube-vast" -o "$pause_dir/pause" "$src"
  image_of "$pause_dir/pause" /pause "$PAUSE_IMAGE" "$DEST/pause.tar" 65535:65535
  rm -rf "$pause_dir"
  built=1
fi

# vast-scheduler's image for the chart (scheduler.image), from the control plane's kube-scheduler
# (tools/build-control-plane.sh): the chart runs it as 65532 with a read-only root filesystem.
SCHEDULER="$CACHE/k8s-$KUBERNETES_VERSION/bin/kube-scheduler"
if [[ ! -s "$DEST/kube-scheduler.tar" ]] || ! tar -xOf "$DEST/kube-scheduler.tar" manifest.json >/dev/null 2>&1; then
  k8s_ok "$SCHEDULER" || cannot "$SCHEDULER is missing: run tools/build-control-plane.sh first"
  need_buildah
  image_of "$SCHEDULER" /usr/local/bin/kube-scheduler "kube-vast.local/kube-scheduler:$KUBERNETES_VERSION" \
    "$DEST/kube-scheduler.tar" 65532:65532
  built=1
fi
[[ $built == 1 ]] || say "up to date: kubelet, kube-proxy $KUBERNETES_VERSION, $PAUSE_IMAGE and kube-scheduler image in $DEST"
