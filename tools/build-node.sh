#!/usr/bin/env bash
# Build what the test bed's real node runs (devcluster/node.py), into a per-version cache outside
# the repository:
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/node-<KUBERNETES_VERSION>/bin/{kubelet,kube-proxy}
#       from the k8s.io/kubernetes module pinned in tools/versions.env (tools module tools/node, the
#       same module and replaces as tools/k8s)
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/node-<KUBERNETES_VERSION>/pause.tar
#       the pod sandbox image kube-vast.local/pause:<version>, a docker archive: the module's own
#       build/pause/linux/pause.c compiled statically, assembled with buildah (no registry)
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
  -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

if [[ ! -s "$DEST/pause.tar" ]]; then
  [[ "$(id -u)" == 0 ]] || cannot "the pause image needs root (buildah)"
  command -v buildah >/dev/null || cannot "buildah is missing: apt-get install buildah"
  command -v gcc >/dev/null || cannot "gcc is missing: apt-get install gcc libc6-dev"
  src="$(cd "$TOOLS/node" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (cd "$TOOLS/node" && GOTOOLCHAIN=local go mod download k8s.io/kubernetes)
  work="$(mktemp -d "${TMPDIR:-/tmp}/kube-vast-pause.XXXXXX")"
  S=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
  trap 'buildah "${S[@]}" rm --all >/dev/null 2>&1 || true; buildah "${S[@]}" rmi --all --force >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  gcc -Os -static -DVERSION="$PAUSE_VERSION-kube-vast" -o "$work/pause" "$src"
  ctr="$(buildah "${S[@]}" from --quiet scratch)"
  buildah "${S[@]}" copy --quiet "$ctr" "$work/pause" /pause >/dev/null
  buildah "${S[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  buildah "${S[@]}" commit --quiet --format docker --timestamp 0 "$ctr" "$PAUSE_IMAGE" >/dev/null
  buildah "${S[@]}" push --quiet "$PAUSE_IMAGE" "docker-archive:$DEST/pause.tar.partial:$PAUSE_IMAGE"
  mv "$DEST/pause.tar.partial" "$DEST/pause.tar"
  say "built $PAUSE_IMAGE -> $DEST/pause.tar"
  built=1
fi
[[ $built == 1 ]] || say "up to date: kubelet, kube-proxy $KUBERNETES_VERSION and $PAUSE_IMAGE in $DEST"
