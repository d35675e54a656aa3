#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (real GStreamer, SQLite, PostgreSQL,
# RabbitMQ and S3), then the end-to-end suite against the real `lectern` binary with
# real clients (tuspy, tus-js-client, ffmpeg/ffprobe, WebSockets), once in the embedded
# world and once in the distributed one. Installs and starts what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lectern-target}"
export LECTERN_MEDIA_DIR="${LECTERN_MEDIA_DIR:-/var/tmp/lectern-media}"
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"

scripts/setup.sh test
# The Node setup installed when the system's is too old for the web build.
export PATH="$TOOLS/bin:$PATH"
echo "==> starting PostgreSQL, RabbitMQ and SeaweedFS"
# The test run's own services, started from nothing every time (other ports and
# folders than scripts/run-distributed.sh's, so both can run on one machine).
export LECTERN_SERVICES_DIR="${LECTERN_TEST_SERVICES_DIR:-/var/tmp/lectern-test-services}"
export LECTERN_PG_PORT=45432 LECTERN_AMQP_PORT=45672 LECTERN_AMQP_ADMIN_PORT=45673 LECTERN_S3_PORT=48333
export LECTERN_WEED_MASTER_PORT=49333 LECTERN_WEED_VOLUME_PORT=48080 LECTERN_WEED_FILER_PORT=48888
export LECTERN_RABBIT_NODE=lectern-test@localhost LECTERN_RABBIT_DIST_PORT=45674
scripts/services.sh stop
rm -rf "$LECTERN_SERVICES_DIR"
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
export LECTERN_REQUIRE_SERVICES=1

echo "==> formatting and lints (cargo fmt, cargo clippy -D warnings)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> dependencies (cargo deny: licenses, bans, sources; cargo shear: unused)"
scripts/check-deps.sh

echo "==> building"
cargo build --workspace --all-targets --locked
(cd player-web && npm run --silent build)

echo "==> web app unit tests"
(cd player-web && npx --no-install vitest run)

echo "==> Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "==> deployment checks (kustomize, schemas, checkov, hadolint)"
scripts/check-deploy.sh

export LECTERN_BIN="$CARGO_TARGET_DIR/debug/lectern"
mkdir -p tests/.artifacts
status=0
for world in embedded distributed; do
  echo "==> end-to-end tests, $world world"
  LECTERN_WORLD=$world "$TOOLS/venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider \
    --junitxml="tests/.artifacts/e2e-$world.xml" "$@" || status=1
done

echo "==> benchmarks, quick (the machinery only; bench/run does the full run by hand)"
python3 bench/run --quick --bin "$LECTERN_BIN" --work /var/tmp/lectern-bench-quick || status=1

echo "==> fuzzing, a short bounded run (scripts/fuzz.sh SECONDS for longer)"
scripts/fuzz.sh "${LECTERN_FUZZ_SECONDS:-15}" || status=1
exit $status
