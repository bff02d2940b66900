#!/usr/bin/env bash
# A PostgreSQL server on this Debian machine for a shared Optuna study (tests, trying
# hydra.sweeper.storage=postgresql://...):
#   bash scripts/postgres_server.sh start    prints the storage URL, e.g.
#        postgresql://postgres@/optuna?host=/tmp/dlfoundations-postgres
#   bash scripts/postgres_server.sh stop
# Needs root and apt-get (Debian's postgresql). There is no systemd: the cluster lives under
# $STATE, runs as the postgres user, listens on a Unix socket in $STATE only (trust
# authentication, no TCP port), and is stopped by the PID it recorded, never by name.
set -euo pipefail
STATE=${POSTGRES_STATE:-/tmp/dlfoundations-postgres}
DATABASE=optuna

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

stop() {
  if [ -f "$STATE/data/postmaster.pid" ]; then
    pid=$(head -n 1 "$STATE/data/postmaster.pid")
    kill -INT "$pid" 2>/dev/null || true   # fast shutdown
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}

start() {
  if [ -z "$(bin_dir)" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # Debian's package may start its own default cluster: stop it by the PID it recorded
    for pid_file in /var/run/postgresql/*.pid; do
      [ -f "$pid_file" ] && kill -INT "$(head -n 1 "$pid_file")" 2>/dev/null || true
    done
  fi
  bin=$(bin_dir)
  stop
  rm -rf "$STATE"
  mkdir -p "$STATE"
  chown postgres:postgres "$STATE"
  runuser -u postgres -- "$bin/initdb" -D "$STATE/data" -U postgres --auth=trust >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w \
    -o "-c listen_addresses='' -k $STATE" start >/dev/null
  runuser -u postgres -- "$bin/createdb" -h "$STATE" -U postgres "$DATABASE"
  echo "postgresql://postgres@/$DATABASE?host=$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
