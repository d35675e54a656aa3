#!/usr/bin/env bash
# Runs Lectern locally in the distributed world: PostgreSQL, RabbitMQ and SeaweedFS
# (S3) from scripts/services.sh, then one process per role: catalog on :8080, ingest
# (tus uploads) on :8081 and two workers (health and metrics on :8082, :8083).
# Ctrl-C stops the roles; `scripts/services.sh stop` stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lectern-target}"
export LECTERN_DATA_DIR="${LECTERN_DATA_DIR:-data-distributed}"
scripts/setup.sh runtime
eval "$(scripts/services.sh start)"
export DATABASE_URL="$LECTERN_TEST_DATABASE_URL/postgres"
export STORAGE_URL="s3://lectern?endpoint=$LECTERN_TEST_S3_ENDPOINT&region=us-east-1&path_style=true"
export QUEUE_URL="$LECTERN_TEST_QUEUE_URL"
cargo build --locked --bin lectern
bin="$CARGO_TARGET_DIR/debug/lectern"
"$bin" migrate
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
LECTERN_LISTEN=127.0.0.1:8080 "$bin" catalog & pids+=($!)
LECTERN_LISTEN=127.0.0.1:8081 "$bin" ingest & pids+=($!)
LECTERN_LISTEN=127.0.0.1:8082 "$bin" worker & pids+=($!)
LECTERN_LISTEN=127.0.0.1:8083 "$bin" worker & pids+=($!)
echo "catalog http://127.0.0.1:8080  uploads http://127.0.0.1:8081/api/uploads  RabbitMQ admin ${LECTERN_TEST_RABBIT_ADMIN#http://guest:guest@}"
wait
