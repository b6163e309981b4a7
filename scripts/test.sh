#!/usr/bin/env bash
# Runs every test against a sanitizer build (build-asan/): the cmocka unit tests (ctest), then the
# integration and compatibility tests (node's test runner), which start the real binaries on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLEXORA_SANITIZE=ON >/dev/null
cmake --build build-asan -j"${JOBS:-2}"

echo "== unit tests"
ctest --test-dir build-asan --output-on-failure

echo "== integration and compatibility tests"
if [ ! -d tests/node_modules ] || [ tests/package-lock.json -nt tests/node_modules ]; then
  (cd tests && npm ci --no-audit --no-fund --loglevel=error)
fi
export LEXORA_BIN="$PWD/build-asan/lexora" LEXORA_SIM_BIN="$PWD/build-asan/lexora-sim"
node --test --test-concurrency=1 tests/integration/ tests/compat/
