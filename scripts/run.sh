#!/usr/bin/env bash
# Runs Lectern on this machine in the embedded world (SQLite, local files, durable
# in-process queue), seeds a demo owner, course and lectures made from real sample
# videos, and prints where to go. Safe to run again: data in ./data is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lectern-target}"
export LECTERN_MEDIA_DIR="${LECTERN_MEDIA_DIR:-/var/tmp/lectern-media}"
export LECTERN_LISTEN="${LECTERN_LISTEN:-127.0.0.1:8080}"
export LECTERN_DATA_DIR="${LECTERN_DATA_DIR:-data}"
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"

scripts/setup.sh runtime
# The Node setup installed when the system's is too old for the web build.
export PATH="$TOOLS/bin:$PATH"
echo "==> building"
cargo build --locked --bin lectern
(cd player-web && npm run --silent build)

"$CARGO_TARGET_DIR/debug/lectern" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
"$TOOLS/venv/bin/python" scripts/seed_demo.py "http://$LECTERN_LISTEN" "$LECTERN_MEDIA_DIR"
wait $server
