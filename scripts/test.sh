#!/usr/bin/env bash
# `make test` / CI: the whole workspace's tests against a private, fast PostgreSQL.
# Without DATABASE_URL, a throwaway cluster (durability off) is started in
# .tools/pg-test on port 55433 and stopped at the end whatever the outcome.
# The test runner's exit code is this script's exit code.
#
# Exported to the tests:
#   DATABASE_URL        superuser URL of database `postgres`; tests create their own databases
#   MANIFOLD_TOOLS_BIN  absolute path of .tools/bin (kubectl, grpcurl, terraform, python, kube-site, helm)
#   MANIFOLD_REQUIRE_HELM  set: the helm_cli tests fail instead of skipping without helm
#   PATH                with .tools/bin first
# Optional: MANIFOLD_TEST_PG_PORT (default 55433); MANIFOLD_FUZZ_CASES, the
# proptest cases per fuzz property (default 64; see docs/security-input.md).
# Extra arguments go to the test runner, e.g. `scripts/test.sh -p manifold-db` (or `make test ARGS="-p manifold-db"`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { echo "test.sh: $*" >&2; }

pg_dir=".tools/pg-test"
pg_port="${MANIFOLD_TEST_PG_PORT:-55433}"

# Instant when already installed (stamp file); needed when run without make.
scripts/install-tools.sh
# The real-cluster binary (Go; ~12 min cold on 2 cores, instant when cached)
# builds beside the Rust build below; its log is shown if it fails.
mkdir -p .tools
kube_site_log=".tools/install-kube-site.log"
scripts/install-kube-site.sh >"$kube_site_log" 2>&1 &
kube_site_pid=$!
# The Helm CLI (Go; ~7 min cold on 2 cores beside kube-site, instant when
# cached) builds the same way.
helm_log=".tools/install-helm.log"
scripts/install-helm.sh >"$helm_log" 2>&1 &
helm_pid=$!

pg_started=0
# shellcheck disable=SC2329 # invoked by trap
on_exit() {
  for pid in "$kube_site_pid" "$helm_pid"; do
    if kill -0 "$pid" 2>/dev/null; then
      pkill -TERM -P "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
    fi
  done
  if [[ "$pg_started" -eq 1 ]]; then
    scripts/postgres.sh stop "$pg_dir" || log "warning: could not stop PostgreSQL in $pg_dir"
  fi
}
trap on_exit EXIT
# Turn signals into a normal exit so the EXIT trap stops PostgreSQL.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_started=1
  DATABASE_URL="$(scripts/postgres.sh start "$pg_dir" "$pg_port" fast | tail -n1)"
fi
export DATABASE_URL
export MANIFOLD_TOOLS_BIN="$root/.tools/bin"
# The Helm CLI is built above, so its tests must not skip for want of it.
export MANIFOLD_REQUIRE_HELM=1
export PATH="$MANIFOLD_TOOLS_BIN:$PATH"
log "DATABASE_URL=$DATABASE_URL MANIFOLD_TOOLS_BIN=$MANIFOLD_TOOLS_BIN"

# Tests run some binaries as real processes (a service killed with SIGKILL,
# the CLIs): build them first; the harness finds them in target/debug.
cargo build --workspace --bins
if ! wait "$kube_site_pid"; then
  cat "$kube_site_log" >&2
  log "error: building the real-cluster binary failed (above); the real-site tests need it"
  exit 1
fi
cat "$kube_site_log" >&2
if ! wait "$helm_pid"; then
  cat "$helm_log" >&2
  log "error: building the Helm CLI failed (above); the helm_cli tests need it"
  exit 1
fi
cat "$helm_log" >&2

rc=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
else
  log "cargo-nextest not installed; using cargo test"
  cargo test --workspace --no-fail-fast "$@" || rc=$?
fi
log "tests finished with status $rc"
exit "$rc"
