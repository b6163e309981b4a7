# Thin wrapper over CMake. `make` builds build/lexora and build/lexora-sim; it, `make test`, `make fuzz` and
# `make demo` install their own dependencies first (scripts/install-deps.sh; `make` only the build's), so each
# works on a fresh machine. When everything is there, that check is one dpkg-query call.
JOBS ?= 2

.PHONY: all build deps test test-unit test-integration fuzz soak demo bench clean format format-check

all: build

deps:
	@scripts/install-deps.sh

build:
	@scripts/install-deps.sh build
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLEXORA_TESTS=OFF >/dev/null
	@cmake --build build -j$(JOBS) -- --no-print-directory

# Every test, under AddressSanitizer + UndefinedBehaviorSanitizer.
test: deps
	@scripts/test.sh

# Every libFuzzer target for FUZZ_SECONDS (default 60) each, under ASan + UBSan (clang; build-fuzz/).
fuzz: deps
	@scripts/fuzz.sh

# A bounded soak under LeakSanitizer (SOAK_REQUESTS, SOAK_SECONDS); not part of `make test`.
soak:
	@scripts/soak.sh

demo: deps build
	@scripts/demo.sh

bench: deps build
	@bench/run.sh

clean:
	rm -rf build build-asan build-fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Fails, naming the files, when a C file is not formatted as .clang-format says (CI runs it).
format-check: deps
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')
