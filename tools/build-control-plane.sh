#!/usr/bin/env bash
# Build the control-plane binaries the cluster tests run (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, and kubectl for the tests that use it as a user would) and helm, from
# the Go modules pinned in tools/versions.env and the tools modules under tools/k8s, tools/etcd and
# tools/helm.
#
# Binaries go to a per-version cache outside the repository:
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/k8s-<ver>/bin/{kube-apiserver,kube-scheduler,kube-controller-manager,kubectl}
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/etcd-<ver>/bin/etcd
#   ${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}/helm-<ver>/bin/helm
#
# Idempotent: a binary that exists and reports the pinned version is kept, so a second run takes
# seconds. Each binary is built under a temporary name and moved into place only after it reports
# the right version, so an interrupted build never leaves a half-written binary behind.
#
# Usage: tools/build-control-plane.sh [--no-helm]
#   --no-helm      skip helm (only the control plane)
# Environment: KUBE_VAST_CACHE (cache root), KUBE_VAST_SKIP_HELM=1 (same as --no-helm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools"
CACHE="${KUBE_VAST_CACHE:-$HOME/.cache/kube-vast}"
WITH_HELM=1
[[ "${KUBE_VAST_SKIP_HELM:-0}" == 1 ]] && WITH_HELM=0
for arg in "$@"; do
  case "$arg" in
    --no-helm) WITH_HELM=0 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-control-plane: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'build-control-plane: %s\n' "$*"; }
die() { printf 'build-control-plane: ERROR: %s\n' "$1" >&2; exit "${2:-1}"; }

# --- pinned versions ---------------------------------------------------------------------------
# versions.env is plain KEY=value; read it without executing anything else.
while IFS='=' read -r key value; do
  [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
  value="${value%%#*}"; value="${value//[[:space:]]/}"
  printf -v "$key" '%s' "$value"
done < "$TOOLS/versions.env"
: "${KUBERNETES_VERSION:?missing in tools/versions.env}"
: "${ETCD_VERSION:?missing in tools/versions.env}"
: "${HELM_VERSION:?missing in tools/versions.env}"
: "${GO_MIN_VERSION:=1.26.0}"

# The tools modules must pin the same versions as versions.env.
require_pin() { # module-dir module version
  grep -Eq "^(require[[:space:]]+)?[[:space:]]*$2[[:space:]]+$3([[:space:]]|$)" "$TOOLS/$1/go.mod" \
    || die "tools/$1/go.mod does not require $2 $3 (tools/versions.env says $3); update one of them"
}
K8S_MINOR_FULL="${KUBERNETES_VERSION#v1.}"           # 37.2
STAGING_VERSION="v0.${K8S_MINOR_FULL}"                # v0.37.2
require_pin k8s k8s.io/kubernetes "$KUBERNETES_VERSION"
grep -q "k8s.io/api => k8s.io/api $STAGING_VERSION" "$TOOLS/k8s/go.mod" \
  || die "tools/k8s/go.mod staging replaces are not at $STAGING_VERSION"
require_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
if [[ $WITH_HELM == 1 ]]; then require_pin helm helm.sh/helm/v3 "$HELM_VERSION"; fi

K8S_BIN="$CACHE/k8s-$KUBERNETES_VERSION/bin"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"
HELM_BIN="$CACHE/helm-$HELM_VERSION/bin"

# --- what is already there ---------------------------------------------------------------------
# reports_version BINARY EXPECTED-SUBSTRING ARGS...: true when BINARY runs and prints EXPECTED.
reports_version() {
  local bin="$1" want="$2"; shift 2
  [[ -x "$bin" ]] || return 1
  local out
  out="$(timeout 20 "$bin" "$@" 2>&1)" || return 1
  [[ "$out" == *"$want"* ]]
}
# Each check takes the path of the binary to check.
k8s_ok()  { reports_version "$1" "Kubernetes $KUBERNETES_VERSION" --version; }
kubectl_ok() { reports_version "$1" "Client Version: $KUBERNETES_VERSION" version --client; }
# The check of one k8s binary: kubectl has no --version flag.
k8s_check() { [[ "$1" == kubectl ]] && echo kubectl_ok || echo k8s_ok; }
K8S_COMMANDS=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
etcd_ok() { reports_version "$1" "etcd Version: ${ETCD_VERSION#v}" --version; }
helm_ok() { reports_version "$1" "$HELM_VERSION" version --template '{{.Version}}'; }

todo=()
etcd_ok "$ETCD_BIN/etcd" || todo+=(etcd)
for c in "${K8S_COMMANDS[@]}"; do "$(k8s_check "$c")" "$K8S_BIN/$c" || todo+=("$c"); done
if [[ $WITH_HELM == 1 ]]; then helm_ok "$HELM_BIN/helm" || todo+=(helm); fi

if [[ ${#todo[@]} -eq 0 ]]; then
  say "up to date: kubernetes $KUBERNETES_VERSION in $K8S_BIN"
  say "up to date: etcd $ETCD_VERSION in $ETCD_BIN"
  if [[ $WITH_HELM == 1 ]]; then say "up to date: helm $HELM_VERSION in $HELM_BIN"; fi
  exit 0
fi
say "to build: ${todo[*]} (cache: $CACHE)"

# --- go toolchain --------------------------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "'go' not found on PATH. Install Go >= $GO_MIN_VERSION (https://go.dev/doc/install, or the golang Debian package if recent enough) and re-run." 3
go_version="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)"   # e.g. go1.26.8
go_version="${go_version#go}"
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }
if [[ -z "$go_version" ]] || ! version_ge "$go_version" "$GO_MIN_VERSION"; then
  # The pinned modules need a newer Go: let the go command fetch that toolchain through the module proxy.
  say "local go is ${go_version:-unknown}; the pinned modules need >= $GO_MIN_VERSION: using GOTOOLCHAIN=go$GO_MIN_VERSION (fetched through the module proxy)"
  export GOTOOLCHAIN="go$GO_MIN_VERSION"
else
  export GOTOOLCHAIN=local
fi
export CGO_ENABLED=0

# One build at a time per cache directory (two `make test` in parallel would race on the same files).
mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.build.lock"
  flock -n 9 || { say "another build holds $CACHE/.build.lock; waiting for it…"; flock 9; }
fi

tmpfiles=()
cleanup() { local f; for f in "${tmpfiles[@]+"${tmpfiles[@]}"}"; do rm -f "$f"; done; }
trap cleanup EXIT
trap 'echo; die "interrupted" 130' INT TERM

# download MODULE-DIR: fetch the module graph, with a clear message when the proxy is unreachable.
download() {
  local dir="$1" log
  log="$(mktemp)"; tmpfiles+=("$log")
  say "downloading Go modules for tools/$dir (GOPROXY=$(go env GOPROXY))…"
  if ! (cd "$TOOLS/$dir" && go mod download >"$log" 2>&1); then
    tail -n 20 "$log" >&2
    die "could not download the Go modules of tools/$dir. Is the Go module proxy ($(go env GOPROXY)) reachable from this machine? (offline builds work once the modules are in $(go env GOMODCACHE))" 4
  fi
}

# build MODULE-DIR PACKAGE DEST-DIR NAME CHECK-FUNCTION LDFLAGS
build() {
  local dir="$1" pkg="$2" dest="$3" name="$4" check="$5" ldflags="$6"
  local tmp="$dest/.$name.tmp.$$" start=$SECONDS
  mkdir -p "$dest"
  tmpfiles+=("$tmp")
  (cd "$TOOLS/$dir" && go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg") \
    || die "go build $pkg failed"
  # Verify the new binary before it replaces anything; the rename is atomic (same directory).
  "$check" "$tmp" || die "$name was built but does not report the pinned version"
  mv -f "$tmp" "$dest/$name"
  say "built $name in $((SECONDS - start))s -> $dest/$name"
}

has() { local x; for x in "${todo[@]}"; do [[ "$x" == "$1" ]] && return 0; done; return 1; }

if has etcd; then
  download etcd
  say "building etcd $ETCD_VERSION (cold build takes a minute or two)…"
  build etcd go.etcd.io/etcd/server/v3 "$ETCD_BIN" etcd etcd_ok "-s -w"
fi

k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=${K8S_MINOR_FULL%%.*} \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=${K8S_MINOR_FULL%%.*}"
k8s_downloaded=0
for c in "${K8S_COMMANDS[@]}"; do
  has "$c" || continue
  [[ $k8s_downloaded == 1 ]] || { download k8s; k8s_downloaded=1; }
  say "building $c $KUBERNETES_VERSION (cold build takes several minutes)…"
  build k8s "k8s.io/kubernetes/cmd/$c" "$K8S_BIN" "$c" "$(k8s_check "$c")" "$k8s_ldflags"
done

if has helm; then
  download helm
  say "building helm $HELM_VERSION (cold build takes a few minutes)…"
  build helm helm.sh/helm/v3/cmd/helm "$HELM_BIN" helm helm_ok \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
fi

say "done: kubernetes $KUBERNETES_VERSION in $K8S_BIN, etcd $ETCD_VERSION in $ETCD_BIN$([[ $WITH_HELM == 1 ]] && echo ", helm $HELM_VERSION in $HELM_BIN")"
