# The two commands of the quick start are `make demo` and `make test`; the rest are for
# developers. Everything builds with CMake + Ninja into build/ (build-asan/, build-fuzz/).
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps build demo test unit integration conformance asan fuzz fuzz-smoke bench \
	bench-smoke format format-check checksrc install clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null

build: $(BUILD)/build.ninja
	@ninja -C $(BUILD) --quiet

# Runs the relay, an agent and a sample service, and prints how to reach it.
demo: deps build
	@scripts/demo.sh $(BUILD)/underpass

# Every test: style checks, unit + integration in the normal build, WebSocket conformance,
# then unit + integration again under ASan+UBSan, then the fuzzers and the benchmark in smoke
# form.
test: deps build checksrc format-check
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 900
	@CONFORMANCE_CASES='$(CONFORMANCE_SMOKE)' $(MAKE) --no-print-directory conformance
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory bench-smoke

unit: build
	@cd $(BUILD) && ctest --output-on-failure -L unit -j$(JOBS)

integration: build
	@cd $(BUILD) && ctest --output-on-failure -L integration

# Autobahn|Testsuite in both roles against echo programs built from our codec and shell
# (tests/autobahn/). CONFORMANCE_CASES picks the cases; the default is all 517 (about 22
# minutes on 2 cores, the two roles side by side; .ci/run runs it after make test). make test runs every case except the permessage-deflate ones with
# the larger messages (12.*.7-18, 13.*.7-18): every deflate setting is still covered.
CONFORMANCE_SMOKE = *,-12.*.7,-12.*.8,-12.*.9,-12.*.1[0-8],-13.*.7,-13.*.8,-13.*.9,-13.*.1[0-8]
conformance: build
	@scripts/conformance.sh $(BUILD)

asan:
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DUP_ASAN=ON >/dev/null
	@ninja -C build-asan --quiet
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j$(JOBS) --timeout 900

build-fuzz/build.ninja:
	@CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUP_FUZZ=ON \
		-DUP_TESTS=OFF >/dev/null

# FUZZ_SECONDS per target (CI smoke: 20 s each).
FUZZ_SECONDS ?= 300
fuzz: build-fuzz/build.ninja
	@ninja -C build-fuzz --quiet
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

# BASELINE=PATH: also measure that (older) underpass binary in the same run, A/B.
bench: build
	@bench/bench.sh $(if $(BASELINE),--baseline $(BASELINE))
	@bench/shaped.sh
	@bench/turn.sh

bench-smoke: build
	@bench/bench.sh --smoke
	@bench/shaped.sh --smoke
	@bench/turn.sh --smoke

checksrc:
	@scripts/checksrc.sh && scripts/checksrc.sh --self-test

# The binary, libunderpass (.so, .a), its headers and underpass.pc under PREFIX (DESTDIR is
# honoured, for packaging).
PREFIX ?= /usr/local
install: build
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX) >/dev/null

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
