# Thin wrapper over CMake (as Redis's root Makefile). `make` installs missing
# Debian packages (scripts/setup.sh), then builds build/dpsgd and libdpsgd.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup configure test test-asan demo bench clean format test-hosts

all: configure
	@cmake --build $(BUILD) -j $(JOBS)

setup:
	@sh scripts/setup.sh

configure: setup
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

test: all
	@cd $(BUILD) && ctest --output-on-failure -j 1

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: setup
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDP_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j 1

# MPI ranks on four emulated hosts (network namespaces, 1 Gbit/s links):
# tests/hosts/run.sh. Root only; not part of `make test` (CI's default path).
test-hosts: all
	@sh tests/hosts/run.sh $(BUILD)

demo: all
	@sh scripts/demo.sh $(BUILD)/dpsgd

format:
	@clang-format -i $$(find src include tests bench -name '*.[ch]')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
