#!/usr/bin/env bash
# Runs every cargo-fuzz target of the decoders for a bounded time.
#
#   e2e/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET…]     (default 60 s, every target)
#
# Installs cargo-fuzz (crates.io) when it is missing. Works on the stable
# toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags, and the
# default sanitizer is none (the crate forbids unsafe code; coverage-guided
# search is what finds panics). FUZZ_SANITIZER=address to change it.
#
# The corpus grows in e2e/fuzz/corpus/ (ignored by git) from the committed
# seeds in e2e/fuzz/seeds/; a crash lands in e2e/fuzz/artifacts/TARGET/ and
# makes the script exit 1 once every target has run. The last line per
# target is its libFuzzer totals (executions, corpus size); logs under
# target/fuzz-logs/.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
seconds="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io…" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"
fuzz=(--fuzz-dir e2e/fuzz --sanitizer "$sanitizer" --target-dir target/fuzz)
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir e2e/fuzz)
fi

mkdir -p target/fuzz-logs

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "e2e/fuzz/corpus/$target"
  log="target/fuzz-logs/$target.log"
  echo "== $target: ${seconds} s" >&2
  # Build first (with the flags `cargo fuzz run` uses), so the time below is fuzzing.
  cargo fuzz run "${fuzz[@]}" "$target" -- -runs=0 >"$log" 2>&1 \
    || { cat "$log" >&2; echo "$target does not build" >&2; exit 1; }
  started=$(date +%s)
  set +e
  cargo fuzz run "${fuzz[@]}" "$target" \
    "e2e/fuzz/corpus/$target" "e2e/fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -dict=e2e/fuzz/json.dict -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  took=$(( $(date +%s) - started ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  corpus=$(find "e2e/fuzz/corpus/$target" -type f | wc -l)
  crashes=$(find "e2e/fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
  line="$target: ${execs:-?} executions in ${took} s, corpus ${corpus}, crash artifacts ${crashes}, exit ${status}"
  summary+=("$line")
  echo "$line" >&2
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    grep -m 20 -E "panicked|ERROR|SUMMARY|Test unit written" "$log" >&2 || tail -n 30 "$log" >&2
  fi
done

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs under e2e/fuzz/artifacts/)" >&2
  exit 1
fi
