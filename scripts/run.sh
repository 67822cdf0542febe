#!/usr/bin/env bash
# `make run`: the all-in-one Manifold server in the foreground, on a fresh machine.
# Without DATABASE_URL, a private PostgreSQL is started in .manifold/postgres
# (port 55432) and database `manifold` is created in it. Ctrl-C (or SIGTERM) is
# forwarded to the server (SIGHUP as SIGTERM); once it has exited, the private
# PostgreSQL is stopped.
#
# Environment:
#   MANIFOLD_SITES      simulated (default): three simulated sites in the server's process;
#                       kube: three real Kubernetes clusters on 127.0.0.1 (pa2-par, ny8-nyc,
#                       ams9-ams; built from Go modules by scripts/install-kube-site.sh), one
#                       `manifold-site-agent --backend kube` process each, state kept in
#                       .manifold/sites
#   DATABASE_URL        use this server instead of a private one (left running)
#   MANIFOLD_RUN_FLAGS  extra `serve` flags (default: the reference scenario on three simulated sites)
#   MANIFOLD_DATA_DIR   server data dir (default .manifold)
#   MANIFOLD_PG_PORT    private PostgreSQL port (default 55432)
#   MANIFOLD_BIN        server binary (default ${CARGO_TARGET_DIR:-target}/debug/manifold)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

data_dir="${MANIFOLD_DATA_DIR:-.manifold}"
pg_dir="$data_dir/postgres"
pg_port="${MANIFOLD_PG_PORT:-55432}"
# ${VAR-default}: an explicitly empty MANIFOLD_RUN_FLAGS means "no extra flags".
sites_mode="${MANIFOLD_SITES:-simulated}"
real_sites="pa2-par ny8-nyc ams9-ams"
case "$sites_mode" in
  simulated) default_flags="--reference-scenario --simulated-sites ${real_sites// /,}" ;;
  kube) default_flags="--reference-scenario" ;;
  *) echo "run.sh: MANIFOLD_SITES must be simulated or kube, not '$sites_mode'" >&2; exit 2 ;;
esac
run_flags="${MANIFOLD_RUN_FLAGS-$default_flags}"
# Grace period for the server to shut down after a forwarded signal.
stop_grace_s=30
server_bin="${MANIFOLD_BIN:-${CARGO_TARGET_DIR:-target}/debug/manifold}"
sites_bin="${CARGO_TARGET_DIR:-target}/debug/manifold-sites"

log() { echo "run.sh: $*" >&2; }

pg_started=0
server_pid=""
sites_pid=""

# shellcheck disable=SC2329 # invoked by trap
on_exit() {
  # The clusters and agents first (they talk to the server), then the server.
  if [[ -n "$sites_pid" ]] && kill -0 "$sites_pid" 2>/dev/null; then
    kill -s TERM "$sites_pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 "$sites_pid" 2>/dev/null || break; sleep 0.5 || true; done
    kill -s KILL "$sites_pid" 2>/dev/null || true
  fi
  # Safety net for unexpected exit paths: never leave the server behind.
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    log "killing server (pid $server_pid)"
    kill -s KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ "$pg_started" -eq 1 ]]; then
    scripts/postgres.sh stop "$pg_dir" || log "warning: could not stop PostgreSQL in $pg_dir"
  fi
}
trap on_exit EXIT

# Before the server runs there is nothing to forward to: just exit (the EXIT
# trap cleans up). Once it runs, pass the signal on and let the main flow wait.
# shellcheck disable=SC2329 # invoked by trap
forward() {
  local sig="$1"
  if [[ -z "$server_pid" ]]; then
    [[ "$sig" == INT ]] && exit 130
    exit 143
  fi
  kill -s "$sig" "$server_pid" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM
# A closed terminal (SIGHUP) should also shut everything down cleanly.
trap 'forward TERM' HUP

# Build first: a failed build then leaves nothing running.
if [[ "$sites_mode" == kube ]]; then
  scripts/install-kube-site.sh
  cargo build --bin manifold --bin manifold-site-agent --bin manifold-sites
else
  cargo build --bin manifold
fi

if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_started=1
  base_url="$(scripts/postgres.sh start "$pg_dir" "$pg_port" | tail -n1)"
  psql="$(scripts/postgres.sh bindir "$pg_dir")/psql"
  exists() { [[ "$("$psql" "$base_url" -XAtqc "select 1 from pg_database where datname = 'manifold'")" == 1 ]]; }
  if ! exists; then
    log "creating database manifold"
    # The server would create it too; only a DB that is still missing is fatal.
    "$psql" "$base_url" -Xqc 'create database manifold' >/dev/null 2>&1 || exists ||
      { log "error: could not create database manifold at $base_url"; exit 1; }
  fi
  DATABASE_URL="${base_url%/*}/manifold"
fi
export DATABASE_URL
log "DATABASE_URL=$DATABASE_URL"

# Job control puts the server in its own process group with SIGINT at its
# default (a non-interactive shell would start it with SIGINT ignored), so a
# terminal Ctrl-C reaches it exactly once: through our forwarding trap.
set -m
# shellcheck disable=SC2086 # run_flags is a list of words on purpose
"$server_bin" serve --data-dir "$data_dir" $run_flags &
server_pid=$!
set +m

if [[ "$sites_mode" == kube ]]; then
  # The server writes the admin token and CA first; then it listens.
  for ((i = 0; i < 240; i++)); do
    [[ -s "$data_dir/admin.token" && -s "$data_dir/ca.crt" ]] && (exec 3<>/dev/tcp/127.0.0.1/7443) 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { log "the server exited during start-up"; exit 1; }
    sleep 0.5
  done
  log "starting the real clusters ($real_sites) and their agents"
  rm -f "$data_dir/sites/ready"
  # shellcheck disable=SC2086 # real_sites is a list of words on purpose
  "$sites_bin" --dir "$data_dir/sites" --control-plane https://127.0.0.1:7443 \
    --ca-file "$data_dir/ca.crt" --token-file "$data_dir/admin.token" $real_sites &
  sites_pid=$!
  for ((i = 0; i < 600; i++)); do
    [[ -f "$data_dir/sites/ready" ]] && break
    kill -0 "$sites_pid" 2>/dev/null || { log "the real clusters failed to start (see above)"; exit 1; }
    sleep 0.5
  done
  [[ -f "$data_dir/sites/ready" ]] || { log "the real clusters did not become ready in 5 minutes"; exit 1; }
fi

# `wait` returns early when a trapped signal arrives; then give the server a
# bounded grace period before killing it, and reap it for its exit code.
rc=0
wait "$server_pid" || rc=$?
if kill -0 "$server_pid" 2>/dev/null; then
  for ((i = 0; i < stop_grace_s * 2; i++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    # A second Ctrl-C also kills this sleep; that must not abort the script (set -e).
    sleep 0.5 || true
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    log "server still running after ${stop_grace_s}s; killing it"
    kill -s KILL "$server_pid" 2>/dev/null || true
  fi
  rc=0
  wait "$server_pid" || rc=$?
fi
log "server exited with status $rc"
exit "$rc"
