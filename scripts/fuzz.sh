#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan into build-fuzz/, then
# runs each for FUZZ_SECONDS (default 60) with its seed corpus and dictionary, one at a time.
#   scripts/fuzz.sh              every target          scripts/fuzz.sh sse http   only these
# New inputs the fuzzer finds go to build-fuzz/corpus/TARGET/ (scratch, never the committed corpus);
# a crash, leak, UB report or timeout leaves its input under build-fuzz/artifacts/TARGET/ and makes
# the script exit 1 after the remaining targets have run. See docs/ROBUSTNESS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
all=(http body sse config tokens errors metrics route anthropic messages)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# The largest input per target: a little above what the parser meets in a realistic unit (a request
# head plus a small body, a config file, a few SSE events), so the fuzzer explores structure rather
# than length. Longer inputs are covered by the unit tests' limits.
max_len() {
  case "$1" in
    http) echo 8192 ;; body | sse | tokens | route | anthropic | messages) echo 16384 ;; config) echo 8192 ;; *) echo 4096 ;;
  esac
}

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLEXORA_FUZZ=ON \
  -DLEXORA_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"${JOBS:-2}" -- --no-print-directory

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${targets[@]}"; do
  [ -x "build-fuzz/fuzz_$t" ] || { echo "fuzz.sh: no target $t (have: ${all[*]})" >&2; exit 2; }
  scratch=build-fuzz/corpus/$t
  artifacts=build-fuzz/artifacts/$t
  mkdir -p "$scratch" "$artifacts"
  dirs=("$scratch" "tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  echo "== fuzz $t: ${seconds}s"
  log=build-fuzz/fuzz_$t.log
  if "build-fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -dict="tests/fuzz/$t.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
  else
    tail -40 "$log"
    echo "fuzz.sh: $t FAILED; input in $artifacts/, log in $log" >&2
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
