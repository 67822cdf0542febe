#!/usr/bin/env bash
# A private, throwaway PostgreSQL cluster for `make run` and the tests.
#
#   scripts/postgres.sh start DIR PORT [fast]   init (once) + start; prints the DATABASE_URL
#   scripts/postgres.sh stop DIR                 stop it (no-op if not running)
#   scripts/postgres.sh destroy DIR              stop it and delete its data
#   scripts/postgres.sh url DIR PORT             print the DATABASE_URL
#   scripts/postgres.sh status DIR               exit 0 if running
#   scripts/postgres.sh bindir DIR               print the PostgreSQL bin dir for DIR (psql, createdb)
#
# The URL (postgres://app@127.0.0.1:PORT/postgres) is the only thing written to
# stdout; progress and errors go to stderr. The server listens on 127.0.0.1 only,
# with trust auth for the superuser `app`. `fast` turns durability off (fsync,
# synchronous_commit, full_page_writes): for tests only, never for `make run`.
# Nothing needs installing by hand: as root the Debian packages are installed
# if missing, and the server runs as the `postgres` user (it refuses root).
#
# Layout: the cluster lives in DIR (data/, pg.log, initdb.log, the socket).
# Two fallbacks, each recorded in a file in DIR so stop/status find them again:
#   DIR/location   as root, when user postgres cannot reach DIR (e.g. a repo
#                  under /root, mode 700): the cluster lives in /tmp/manifold-pg-HASH
#   DIR/socketdir  when the socket path would exceed the ~100 byte limit of
#                  unix socket names: the socket lives in a mktemp dir under /tmp
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
  echo "usage: $0 start DIR PORT [fast] | stop DIR | destroy DIR | url DIR PORT | status DIR | bindir DIR" >&2
  exit 2
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a server-side command as the server's user: postgres when we are root,
# ourselves otherwise. cd / so a cwd unreadable by postgres causes no warnings.
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Installed server bin dirs, lowest version first. A client-only install
# (postgresql-client-NN) has a bin dir too, but without initdb/pg_ctl.
server_bindirs() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; fi
  done | sort -V
}

# Pick the PostgreSQL bin dir: the one matching an existing cluster's major
# version if there is one (a data dir only runs under its own major), else the
# highest installed. Installs the server packages when root and none exist.
find_bindir() {
  local data="$1" major dirs
  if [[ -f "$data/PG_VERSION" ]]; then
    major="$(cat "$data/PG_VERSION")"
    if [[ -x "/usr/lib/postgresql/$major/bin/pg_ctl" ]]; then
      echo "/usr/lib/postgresql/$major/bin"
      return
    fi
  fi
  dirs="$(server_bindirs)"
  if [[ -z "$dirs" ]]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
      log "PostgreSQL server not found; installing it with apt-get (one time)"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      dirs="$(server_bindirs)"
    else
      die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin.
  Install them (Debian/Ubuntu: sudo apt-get install postgresql),
  or set DATABASE_URL to an existing server you can create databases on."
    fi
  fi
  [[ -n "$dirs" ]] || die "installing postgresql did not provide /usr/lib/postgresql/*/bin"
  if [[ -f "$data/PG_VERSION" ]]; then
    die "$data was created by PostgreSQL $(cat "$data/PG_VERSION"), which is not installed; delete it or install that version"
  fi
  tail -n1 <<<"$dirs"
}

# Absolute path of DIR (created if needed) so pg_ctl and the socket path are
# independent of the caller's cwd.
abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# Where the cluster of (absolute) DIR lives: DIR, unless relocated (see top).
cluster_of() {
  if [[ -f "$1/location" ]]; then cat "$1/location"; else echo "$1"; fi
}

url_for() { echo "postgres://app@127.0.0.1:$1/postgres"; }

# Port of a running cluster, from line 4 of postmaster.pid.
running_port() { sed -n 4p "$1/postmaster.pid" 2>/dev/null || true; }

is_running() { # is_running BINDIR DATA
  [[ -f "$2/postmaster.pid" ]] && as_pg "$1/pg_ctl" -D "$2" status >/dev/null 2>&1
}

# Socket dir: the cluster dir when CLUSTER/.s.PGSQL.PORT fits the limit,
# otherwise a private dir under /tmp recorded in CLUSTER/socketdir (reused
# while it exists).
socket_dir() {
  local c="$1" port="$2" sock
  if (( ${#c} + ${#port} + 9 <= 100 )); then
    echo "$c"
    return
  fi
  if [[ -f "$c/socketdir" ]]; then
    sock="$(cat "$c/socketdir")"
    if [[ -d "$sock" ]]; then
      echo "$sock"
      return
    fi
  fi
  sock="$(mktemp -d /tmp/pgsock.XXXXXX)"
  echo "$sock" >"$c/socketdir"
  echo "$sock"
}

# One start/stop at a time per DIR (parallel runs share it). The lock lives in
# DIR itself, which only we (not the server) need to write.
lock_dir() {
  exec 8>"$1/.lock"
  flock -w 120 8 || die "timed out waiting for another postgres.sh on $1"
}

cmd_start() {
  local dir port="$2" mode="${3:-}" c data bindir sock opts i actual
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  [[ -z "$mode" || "$mode" == fast ]] || die "4th argument may only be 'fast', got '$mode'"
  dir="$(abs_dir "$1")"
  lock_dir "$dir"

  c="$(cluster_of "$dir")"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (install the postgresql package)"
    if [[ "$c" == "$dir" ]]; then
      # The server runs as postgres and keeps its data, log and socket here.
      chown -R postgres: "$dir"
      if ! as_pg test -w "$dir"; then
        c="/tmp/manifold-pg-$(sha256sum <<<"$dir" | cut -c1-12)"
        log "user postgres cannot reach $dir (a parent directory is private); using $c"
        echo "$c" >"$dir/location"
      fi
    fi
    if [[ "$c" != "$dir" ]]; then
      mkdir -p "$c"
      chmod 700 "$c"
      chown -R postgres: "$c"
    fi
  else
    mkdir -p "$c"
  fi
  [[ "$c" != *"'"* ]] || die "DIR must not contain a single quote: $c"
  data="$c/data"

  bindir="$(find_bindir "$data")"

  if is_running "$bindir" "$data"; then
    actual="$(running_port "$data")"
    if [[ -n "$actual" && "$actual" != "$port" ]]; then
      log "already running on port $actual (not $port); using it"
      port="$actual"
    else
      log "already running on port $port"
    fi
    url_for "$port"
    return
  fi

  # initdb once; a data dir without PG_VERSION is a half-finished init, redo it.
  if [[ ! -f "$data/PG_VERSION" ]]; then
    rm -rf "$data"
    log "initdb $data"
    as_pg "$bindir/initdb" -D "$data" -U app --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$c/initdb.log" 2>&1 || die "initdb failed; see $c/initdb.log:
$(tail -n 20 "$c/initdb.log")"
  fi

  sock="$(socket_dir "$c" "$port")"
  if is_root; then chown postgres: "$sock"; fi

  # Quoting: pg_ctl hands -o to a shell.
  opts="-p $port -k '$sock' -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=128MB"
  if [[ "$mode" == fast ]]; then
    # Throwaway test data: skip durability work for speed.
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi

  log "starting PostgreSQL ($bindir) on 127.0.0.1:$port${mode:+ ($mode)}"
  # 8>&-: the long-lived server must not inherit (and so hold) our DIR lock.
  if ! as_pg "$bindir/pg_ctl" -D "$data" -l "$c/pg.log" -o "$opts" -w -t 60 start >/dev/null 2>&1 8>&-; then
    die "pg_ctl start failed (port $port in use?); last lines of $c/pg.log:
$(tail -n 20 "$c/pg.log" 2>/dev/null)"
  fi

  # pg_ctl -w already waits; this bounded check confirms TCP on 127.0.0.1 works.
  for ((i = 0; i < 30; i++)); do
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      url_for "$port"
      return
    fi
    sleep 0.5
  done
  die "server did not accept connections on 127.0.0.1:$port within 15s; see $c/pg.log"
}

# Stop the cluster of DIR if it runs; with "destroy", also delete its data.
cmd_stop() {
  local destroy="$2" dir c data bindir sock
  if [[ ! -d "$1" ]]; then
    log "$1 does not exist; nothing to stop"
    return
  fi
  dir="$(abs_dir "$1")"
  lock_dir "$dir"
  c="$(cluster_of "$dir")"
  data="$c/data"

  if [[ -f "$data/postmaster.pid" ]]; then
    bindir="$(find_bindir "$data")"
    if is_running "$bindir" "$data"; then
      log "stopping PostgreSQL in $data"
      # fast = roll back open transactions and disconnect clients; immediate
      # as a last resort so `stop` never hangs on a stuck client.
      as_pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
        die "could not stop PostgreSQL in $data"
    fi
  fi
  # A private socket dir under /tmp is ours to clean up.
  if [[ -f "$c/socketdir" ]]; then
    sock="$(cat "$c/socketdir")"
    if [[ "$sock" == /tmp/pgsock.* ]]; then rm -rf "$sock"; fi
    rm -f "$c/socketdir"
  fi
  if [[ "$destroy" == destroy ]]; then
    log "deleting $c"
    if [[ "$c" != "$dir" ]]; then rm -rf "$c"; fi
    rm -rf "$dir"
  fi
}

cmd_status() {
  local c
  [[ -d "$1" ]] || return 1
  c="$(cluster_of "$(abs_dir "$1")")"
  [[ -d "$c/data" ]] || return 1
  is_running "$(find_bindir "$c/data")" "$c/data"
}

[[ $# -ge 1 ]] || usage
case "$1" in
  start)
    [[ $# -eq 3 || $# -eq 4 ]] || usage
    cmd_start "$2" "$3" "${4:-}"
    ;;
  stop | destroy)
    [[ $# -eq 2 ]] || usage
    cmd_stop "$2" "$1"
    ;;
  url)
    [[ $# -eq 3 ]] || usage
    url_for "$3"
    ;;
  status)
    [[ $# -eq 2 ]] || usage
    cmd_status "$2"
    ;;
  bindir)
    [[ $# -eq 2 ]] || usage
    if [[ -d "$2" ]]; then
      find_bindir "$(cluster_of "$(abs_dir "$2")")/data"
    else
      find_bindir "$2/data"
    fi
    ;;
  *) usage ;;
esac
