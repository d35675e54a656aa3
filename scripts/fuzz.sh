#!/usr/bin/env bash
# Fuzzes Lectern with cargo-fuzz (libFuzzer): every target of fuzz/ (tus headers,
# playlists, tokens) for SECONDS_PER_TARGET each, starting from the committed seeds in
# fuzz/seeds/<target> and growing fuzz/corpus/<target> (gitignored). Exits non-zero if
# any target finds a crash, naming the artifact and the command that reproduces it.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20)
# Environment:
#   LECTERN_FUZZ_TARGET_DIR  cargo target dir (default /var/tmp/lectern-fuzz-target)
#   LECTERN_FUZZ_JOBS        cargo build jobs (default: cargo's)
#   LECTERN_FUZZ_SANITIZER   address (default on nightly) or none (always none on stable)
#   LECTERN_FUZZ_TARGETS     space-separated subset of targets (default: all)
#   LECTERN_FUZZ_CORPUS_DIR  where the grown corpora go (default fuzz/corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
  exit 2
fi
export CARGO_TARGET_DIR="${LECTERN_FUZZ_TARGET_DIR:-/var/tmp/lectern-fuzz-target}"
[ -z "${LECTERN_FUZZ_JOBS:-}" ] || export CARGO_BUILD_JOBS="$LECTERN_FUZZ_JOBS"
corpus_root="${LECTERN_FUZZ_CORPUS_DIR:-$root/fuzz/corpus}"
logs="$CARGO_TARGET_DIR/fuzz-logs"

# The ingest crate links GStreamer (scripts/setup.sh installs it).
if ! pkg-config --exists gstreamer-1.0 gstreamer-pbutils-1.0 2>/dev/null; then
  echo "GStreamer development files are missing: run scripts/setup.sh runtime first" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Nightly gets AddressSanitizer (-Zsanitizer); stable builds without a sanitizer, which
# needs no RUSTC_BOOTSTRAP (panics, overflow checks and debug assertions still count).
if command -v rustup >/dev/null && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer="${LECTERN_FUZZ_SANITIZER:-address}"
else
  toolchain=()
  sanitizer=none
  echo "==> no nightly toolchain: fuzzing on stable without a sanitizer"
fi
fuzz() { cargo "${toolchain[@]}" fuzz "$@"; }
opts=(--fuzz-dir "$root/fuzz" --sanitizer "$sanitizer")

if [ -n "${LECTERN_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$LECTERN_FUZZ_TARGETS"
else
  mapfile -t targets < <(fuzz list --fuzz-dir "$root/fuzz")
fi

echo "==> building ${#targets[@]} fuzz targets (sanitizer: $sanitizer, target dir: $CARGO_TARGET_DIR)"
start=$SECONDS
fuzz build "${opts[@]}"
echo "==> built in $((SECONDS - start)) s"

mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$corpus_root/$t"
  seeds="$root/fuzz/seeds/$t"
  artifacts="$root/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  marker="$(mktemp)"
  log="$logs/$t.log"
  echo "==> fuzzing $t for $seconds s (log: $log)"
  status=0
  t_start=$SECONDS
  # The first corpus dir receives new inputs; the seeds are only read.
  fuzz run "${opts[@]}" "$t" "$corpus" "$seeds" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
  size="$(find "$corpus" -type f | wc -l)"
  took=$((SECONDS - t_start))
  if [ "$status" -eq 0 ]; then
    summary+=("$(printf '%-20s ok     %4s s %10s runs %8s exec/s  corpus %s' "$t" "$took" "${runs:-?}" "${rate:-?}" "$size")")
  else
    failed+=("$t")
    summary+=("$(printf '%-20s FAILED %4s s %10s runs %8s exec/s  corpus %s' "$t" "$took" "${runs:-?}" "${rate:-?}" "$size")")
    echo "!!! $t failed (exit $status); from its log ($log):"
    # (`head` may close these pipes early: that is not a failure of the script.)
    if grep -q 'panicked at' "$log"; then
      # The panic message, the frames in Lectern's code, and the input as Debug.
      { sed -n '/panicked at/,/^stack backtrace:/p' "$log" | grep -v '^stack backtrace:' | head -n 40 | sed 's/^/    /'; } || true
      { grep -E '^ +at \./(seams|web|ingest|packager|catalog|transcoder|fuzz)/' "$log" | head -n 8 | sed 's/^ */      /'; } || true
      { sed -n '/^Output of `std::fmt::Debug`:/,/^Reproduce with:/p' "$log" | grep -v '^Reproduce with:' | head -n 60 | sed 's/^/    /'; } || true
    else
      { grep -v '^#[0-9]' "$log" | tail -n 40 | sed 's/^/    /'; } || true
    fi
    found=0
    env_prefix="CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
    while IFS= read -r artifact; do
      found=1
      echo "!!! crash artifact: $artifact"
      echo "    reproduce:  $env_prefix cargo ${toolchain[*]} fuzz run --fuzz-dir fuzz --sanitizer $sanitizer $t $artifact"
      echo "    show input: $env_prefix cargo ${toolchain[*]} fuzz fmt --fuzz-dir fuzz --sanitizer $sanitizer $t $artifact"
    done < <(find "$artifacts" -type f -newer "$marker" | sort)
    [ "$found" -eq 1 ] || echo "!!! no new artifact in $artifacts: see $log"
  fi
  rm -f "$marker"
done

echo "==> results ($seconds s per target; whole run $SECONDS s)"
printf '    %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> ${#failed[@]} target(s) found a crash: ${failed[*]}" >&2
  exit 1
fi
echo "==> no crash found"
