#!/usr/bin/env bash
# Build the pinned real-cluster binary `kube-site` (scripts/kube-site: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok of one module
# graph, linked into one binary) from Go modules, into a cache keyed by
# everything that decides the build, and link it as .tools/bin/kube-site.
#
#   scripts/install-kube-site.sh          build if the cache has no matching build
#   scripts/install-kube-site.sh --print  print the cached binary's path (build first if needed)
#
# Pins: k8s.io/kubernetes v1.37.2 (with every k8s.io staging module at v0.37.2),
# etcd as k8s.io/kubernetes v1.37.2 pins it (go.etcd.io/etcd/server/v3 v3.7.0),
# sigs.k8s.io/kwok v0.8.0 (built against the same k8s.io modules). go.sum is
# committed, so every module is verified against it.
#
# Environment:
#   MANIFOLD_KUBE_SITE_CACHE  cache root (default ${XDG_CACHE_HOME:-~/.cache}/manifold/kube-site)
#   MANIFOLD_TOOLS_DIR        where bin/kube-site is linked (default .tools)
#   GOPROXY, GOFLAGS, GOMODCACHE, GOCACHE  as the go command reads them
#
# A cold build takes ~12 minutes on 2 cores (see docs/real-sites.md); a second
# run with the same pins is instant (the stamp matches).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/scripts/kube-site"
tools="${MANIFOLD_TOOLS_DIR:-$root/.tools}"
cache_root="${MANIFOLD_KUBE_SITE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/manifold/kube-site}"
k8s_version="v1.37.2"

log() { echo "install-kube-site: $*" >&2; }
die() { log "error: $*"; exit 1; }

print=0
[[ "${1:-}" == "--print" ]] && print=1

# --- Go toolchain -------------------------------------------------------------
need_go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$src/go.mod")"
command -v go >/dev/null 2>&1 ||
  die "the Go toolchain is not installed: install Go $need_go or newer (https://go.dev/dl, or Debian's golang package with GOTOOLCHAIN=auto so it fetches go$need_go from the module proxy), then run this again"
export GOWORK=off CGO_ENABLED=0
# An older go fetches the required toolchain from the module proxy unless
# GOTOOLCHAIN=local forbids it; say so instead of failing obscurely.
have_go="$(go env GOVERSION 2>/dev/null || true)"
if [[ "$(go env GOTOOLCHAIN 2>/dev/null)" == local* ]]; then
  if [[ "$(printf '%s\n%s\n' "go$need_go" "$have_go" | sort -V | head -n1)" != "go$need_go" ]]; then
    die "$have_go is older than go$need_go, which k8s.io/kubernetes $k8s_version needs, and GOTOOLCHAIN=local forbids fetching it: install Go $need_go or newer, or set GOTOOLCHAIN=auto"
  fi
fi

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

# The key covers the sources, the pins, the flags, this script and the toolchain.
key="$( (cat "$src/go.mod" "$src/go.sum" "$src/main.go" "${BASH_SOURCE[0]}"; echo "$ldflags"; echo "$have_go") |
  sha256sum | cut -c1-16)"
dir="$cache_root/$k8s_version-$key"
bin="$dir/bin/kube-site"
stamp="$dir/.stamp"

link_tools() {
  mkdir -p "$tools/bin"
  ln -sfn "$bin" "$tools/bin/kube-site"
}

if [[ -f "$stamp" && -x "$bin" ]]; then
  link_tools
  if [[ "$print" -eq 1 ]]; then echo "$bin"; else log "kube-site $k8s_version up to date ($bin)"; fi
  exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock -w 3600 9 || die "timed out waiting for another build into $dir"
if [[ -f "$stamp" && -x "$bin" ]]; then
  link_tools
  [[ "$print" -eq 1 ]] && echo "$bin"
  exit 0
fi

log "building kube-site $k8s_version ($have_go) into $dir; a cold build takes ~12 minutes on 2 cores"
start=$(date +%s)
(
  cd "$src"
  # Download first, so an unreachable proxy is named as such.
  if ! go mod download >"$dir/download.log" 2>&1; then
    tail -n 20 "$dir/download.log" >&2
    die "could not download the pinned Go modules from GOPROXY=$(go env GOPROXY): make the Go module proxy reachable (or set GOPROXY to a mirror) and run this again"
  fi
  if ! go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" . >"$dir/build.log" 2>&1; then
    tail -n 40 "$dir/build.log" >&2
    die "go build of scripts/kube-site failed (above; the whole log is $dir/build.log)"
  fi
)
mv -f "$bin.tmp" "$bin"
"$bin" kwok-stages >"$dir/kwok-stages.yaml"
version="$("$bin" apiserver --version)"
[[ "$version" == "Kubernetes $k8s_version" ]] || die "built kube-site reports '$version', expected Kubernetes $k8s_version"
etcd_version="$("$bin" etcd --version 2>&1 || true)"
[[ "$etcd_version" == *"etcd Version: 3."* ]] || die "built kube-site has no working etcd: $etcd_version"
secs=$(($(date +%s) - start))
echo "$k8s_version $key built in ${secs}s" >"$stamp"
log "built in ${secs}s: $(du -h "$bin" | cut -f1) binary"
link_tools
[[ "$print" -eq 1 ]] && echo "$bin"
exit 0
