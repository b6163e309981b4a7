#!/usr/bin/env bash
# The soak (`make soak`; not part of `make test`): builds the sanitizer build (build-asan/), then runs
# tests/soak/soak.mjs, which drives SOAK_REQUESTS mixed requests (default 200,000; at most SOAK_SECONDS,
# default 900) through lexora in front of lexora-sim on 127.0.0.1, with LeakSanitizer on, and checks
# answers, accounting, RSS and a clean exit. docs/ROBUSTNESS.md#soak explains it and keeps the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLEXORA_SANITIZE=ON >/dev/null
cmake --build build-asan -j"${JOBS:-2}" --target lexora lexora-sim -- --no-print-directory

export LEXORA_BIN="$PWD/build-asan/lexora" LEXORA_SIM_BIN="$PWD/build-asan/lexora-sim"
exec node tests/soak/soak.mjs
