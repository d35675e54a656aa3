#!/usr/bin/env bash
# Tries the README's run command as a new user would: in a fresh Debian 12 root
# (debootstrap, minbase) holding only Rust as rustup installs it, runs scripts/run.sh on
# a copy of this commit and waits until the demo answers. Prints how long that took.
# The toolchain is this machine's rustup toolchain, mounted read-only (rustup's own
# download server may be out of reach); everything else comes from the registries.
# Needs root (debootstrap, chroot, mounts) and takes minutes: not part of scripts/test.sh.
# Usage: scripts/check-fresh-debian.sh [WORK_DIR]   (default /var/tmp/lectern-fresh-debian)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/var/tmp/lectern-fresh-debian}"
mirror="${LECTERN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
port="${LECTERN_FRESH_PORT:-18080}"
limit_secs="${LECTERN_FRESH_TIMEOUT_SECS:-3600}"
[ "$(id -u)" -eq 0 ] || { echo "run as root: debootstrap, chroot and mounts need it" >&2; exit 1; }
toolchain="$(rustc --print sysroot)"
[ -d "$toolchain" ] || { echo "no rustup toolchain here to lend the fresh root" >&2; exit 1; }
command -v debootstrap >/dev/null || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
}

root="$work/root"
mounts=()
cleanup() {
  # Whatever run.sh started inside (lectern, the seeder) goes with it.
  [ -z "${runner:-}" ] || kill -- -"$runner" 2>/dev/null || true
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

started=$(date +%s)
rm -rf "$work"
mkdir -p "$work"
echo "==> debootstrap bookworm (minbase) into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A network that inspects TLS (this one does) needs its CA inside too: the certificates
# this machine added go where ca-certificates picks them up when setup installs it, and
# the variables that point tools at the bundle pass through. None of it is Lectern's.
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
ca_env=()
for var in SSL_CERT_FILE PIP_CERT REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS CURL_CA_BUNDLE; do
  [ -z "${!var:-}" ] || ca_env+=("$var=${!var}")
done

echo "==> Rust as rustup leaves it: ~/.cargo/bin and one toolchain"
name="$(basename "$toolchain")"
mkdir -p "$root/root/.cargo/bin" "$root/root/.rustup/toolchains/$name"
cp "$(command -v rustup)" "$root/root/.cargo/bin/rustup"
for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
  ln -f "$root/root/.cargo/bin/rustup" "$root/root/.cargo/bin/$tool"
done
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "default"\n' "$name" > "$root/root/.rustup/settings.toml"
for m in proc sys dev; do
  mount --rbind "/$m" "$root/$m"; mounts+=("$root/$m")
done
mount --bind -o ro "$toolchain" "$root/root/.rustup/toolchains/$name"
mounts+=("$root/root/.rustup/toolchains/$name")

echo "==> this commit, as a clone would have it"
mkdir -p "$root/root/lectern"
git archive HEAD | tar -x -C "$root/root/lectern"

echo "==> scripts/run.sh inside (log: $work/run.log)"
before_run=$(date +%s)
setsid chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LECTERN_LISTEN="127.0.0.1:$port" "${ca_env[@]}" \
  bash -c 'cd /root/lectern && exec scripts/run.sh' > "$work/run.log" 2>&1 &
runner=$!
while ! grep -q "Lectern is running: open" "$work/run.log" 2>/dev/null; do
  if ! kill -0 "$runner" 2>/dev/null; then
    tail -40 "$work/run.log" >&2
    echo "scripts/run.sh ended before the demo was ready" >&2
    exit 1
  fi
  if [ $(($(date +%s) - before_run)) -gt "$limit_secs" ]; then
    tail -20 "$work/run.log" >&2
    echo "no demo after ${limit_secs} s" >&2
    exit 1
  fi
  sleep 5
done
courses="$(curl -sS "http://127.0.0.1:$port/api/courses" -o /dev/null -w "%{http_code}" || true)"
page="$(curl -fsS "http://127.0.0.1:$port/" | grep -c '<main id="main"' || true)"
ready=$(date +%s)
grep -A6 "Lectern is running: open" "$work/run.log"
echo "debootstrap $((before_run - started)) s; scripts/run.sh to a seeded demo $((ready - before_run)) s"
echo "the web app answers: $([ "$page" -gt 0 ] && echo yes || echo no); /api/courses without a session: $courses"
[ "$page" -gt 0 ] || { echo "the demo's web app did not answer" >&2; exit 1; }
echo "fresh Debian 12: the README's run command works"
