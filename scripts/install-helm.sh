#!/usr/bin/env bash
# Build the pinned Helm CLI (helm.sh/helm/v4/cmd/helm, pinned with its module
# graph in scripts/helm/go.mod and go.sum) into a cache keyed by everything
# that decides the build, and link it as .tools/bin/helm. No Linux Helm CLI is
# on the package registries; the Go module is the source.
#
#   scripts/install-helm.sh          build if the cache has no matching build
#   scripts/install-helm.sh --print  print the cached binary's path (build first if needed)
#
# Environment:
#   MANIFOLD_HELM_CACHE   cache root (default ${XDG_CACHE_HOME:-~/.cache}/manifold/helm)
#   MANIFOLD_TOOLS_DIR    where bin/helm is linked (default .tools)
#   GOPROXY, GOFLAGS, GOMODCACHE, GOCACHE  as the go command reads them
#
# A cold build takes ~7 minutes on 2 cores (shared with the kube-site build);
# a second run with the same pins is instant (the stamp matches).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/scripts/helm"
tools="${MANIFOLD_TOOLS_DIR:-$root/.tools}"
cache_root="${MANIFOLD_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/manifold/helm}"
helm_version="$(sed -n 's/^require helm.sh\/helm\/v4 \(v[0-9.]*\)$/\1/p' "$src/go.mod")"

log() { echo "install-helm: $*" >&2; }
die() { log "error: $*"; exit 1; }

print=0
[[ "${1:-}" == "--print" ]] && print=1
[[ -n "$helm_version" ]] || die "scripts/helm/go.mod does not pin helm.sh/helm/v4"

# --- Go toolchain -------------------------------------------------------------
need_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$src/go.mod")"
command -v go >/dev/null 2>&1 ||
  die "the Go toolchain is not installed: install Go $need_go or newer (https://go.dev/dl, or Debian's golang package with GOTOOLCHAIN=auto so it fetches go$need_go from the module proxy), then run this again"
export GOWORK=off CGO_ENABLED=0
have_go="$(go env GOVERSION 2>/dev/null || true)"
if [[ "$(go env GOTOOLCHAIN 2>/dev/null)" == local* ]]; then
  if [[ "$(printf '%s\n%s\n' "go$need_go" "$have_go" | sort -V | head -n1)" != "go$need_go" ]]; then
    die "$have_go is older than go$need_go, which helm.sh/helm/v4 $helm_version needs, and GOTOOLCHAIN=local forbids fetching it: install Go $need_go or newer, or set GOTOOLCHAIN=auto"
  fi
fi

# `helm version` prints what these set (Helm's own Makefile sets the same).
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

key="$( (cat "$src/go.mod" "$src/go.sum" "$src/tools.go" "${BASH_SOURCE[0]}"; echo "$ldflags"; echo "$have_go") |
  sha256sum | cut -c1-16)"
dir="$cache_root/$helm_version-$key"
bin="$dir/bin/helm"
stamp="$dir/.stamp"

link_tools() {
  mkdir -p "$tools/bin"
  ln -sfn "$bin" "$tools/bin/helm"
}

if [[ -f "$stamp" && -x "$bin" ]]; then
  link_tools
  if [[ "$print" -eq 1 ]]; then echo "$bin"; else log "helm $helm_version up to date ($bin)"; fi
  exit 0
fi

mkdir -p "$dir/bin"
exec 9>"$dir/.lock"
flock -w 3600 9 || die "timed out waiting for another build into $dir"
if [[ -f "$stamp" && -x "$bin" ]]; then
  link_tools
  [[ "$print" -eq 1 ]] && echo "$bin"
  exit 0
fi

log "building helm $helm_version ($have_go) into $dir; a cold build takes ~7 minutes on 2 cores"
start=$(date +%s)
(
  cd "$src"
  # Download first, so an unreachable proxy is named as such.
  if ! go mod download >"$dir/download.log" 2>&1; then
    tail -n 20 "$dir/download.log" >&2
    die "could not download the pinned Go modules from GOPROXY=$(go env GOPROXY): make the Go module proxy reachable (or set GOPROXY to a mirror) and run this again"
  fi
  if ! go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" helm.sh/helm/v4/cmd/helm >"$dir/build.log" 2>&1; then
    tail -n 40 "$dir/build.log" >&2
    die "go build of helm.sh/helm/v4/cmd/helm failed (above; the whole log is $dir/build.log)"
  fi
)
mv -f "$bin.tmp" "$bin"
version="$("$bin" version --template '{{.Version}}')"
[[ "$version" == "$helm_version" ]] || die "built helm reports '$version', expected $helm_version"
secs=$(($(date +%s) - start))
echo "$helm_version $key built in ${secs}s" >"$stamp"
log "built in ${secs}s: $(du -h "$bin" | cut -f1) binary"
link_tools
[[ "$print" -eq 1 ]] && echo "$bin"
exit 0
