#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (real GStreamer, real SQLite), then
# the end-to-end suite against the real `lectern` binary with real clients (tuspy,
# tus-js-client, ffmpeg/ffprobe, WebSockets). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lectern-target}"
export LECTERN_MEDIA_DIR="${LECTERN_MEDIA_DIR:-/var/tmp/lectern-media}"
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"

scripts/setup.sh test

echo "==> building"
cargo build --workspace --all-targets --locked

echo "==> Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "==> end-to-end tests"
export LECTERN_BIN="$CARGO_TARGET_DIR/debug/lectern"
mkdir -p tests/.artifacts
"$TOOLS/venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider --junitxml=tests/.artifacts/e2e.xml "$@"
