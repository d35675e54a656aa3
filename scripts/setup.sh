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
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python for the demo seeder and the end-to-end tests (requests, tuspy, pytest, websockets).
mkdir -p "$TOOLS"
if [ ! -x "$TOOLS/venv/bin/python" ]; then
  python3 -m venv "$TOOLS/venv"
fi
# Reinstall whenever the requirements change (a stamp holds the hash of the file).
want="$(sha256sum tests/e2e/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$TOOLS/venv/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "==> installing Python packages"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
  echo "$want" > "$TOOLS/venv/.requirements"
fi

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
  # Deployment checks: checkov, hadolint and kubernetes-validate (offline schemas).
  want="$(sha256sum deploy/requirements.txt | cut -d' ' -f1)"
  if [ "$(cat "$TOOLS/venv/.deploy-requirements" 2>/dev/null)" != "$want" ]; then
    echo "==> installing deployment check tools"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check -r deploy/requirements.txt
    echo "$want" > "$TOOLS/venv/.deploy-requirements"
  fi
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
