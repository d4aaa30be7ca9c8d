# The two commands of the README: `make run` and `make test`. Everything else
# is a helper for them or for CI.
#
# `make run` installs and builds only what the server needs; `make test` adds
# the test tools (GoogleTest, Chromium, the npm dev packages...) and the tests.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
# CI builds with warnings as errors; locally they stay warnings.
ifdef CI
CMAKE_FLAGS += -DDOCFLOW_WERROR=ON
endif
JOBS ?= $(shell nproc)

.PHONY: all deps deps-server configure configure-tests build server run test unit integration fault fuzz test-asan test-tsan \
        lint format bench bench-cluster cluster cluster-down clean

all: build

deps-server:
	@scripts/install-deps build

deps:
	@scripts/install-deps

configure:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

# With DOCFLOW_TESTS=ON a missing test tool is an error, not a skipped tier.
configure-tests:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DDOCFLOW_TESTS=ON $(CMAKE_FLAGS)

server: deps-server
	@[ -f $(BUILD_DIR)/build.ninja ] || $(MAKE) --no-print-directory configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target docflow

run: server
	$(BUILD_DIR)/src/docflow serve

build: deps configure-tests
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

integration: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L integration

fault: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L fault

# Every libFuzzer target of tests/fuzz (or FUZZ_TARGETS) for FUZZ_SECONDS
# each, on a copy of its committed corpus (tests/fuzz/README.md). The
# targets are built with clang in $(BUILD_DIR)/fuzz.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: deps configure-tests
	cmake --build $(BUILD_DIR) -j $(JOBS) --target docflow_fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(BUILD_DIR)/fuzz/tests/fuzz $(FUZZ_TARGETS)

# The unit and integration tests under AddressSanitizer and UBSan, and the
# unit tests under ThreadSanitizer, each in a build directory of its own.
# Both run the sanitizer-built `docflow` too: the unit tests start it as the
# extraction child, the integration tests as the server. Any report fails
# the run; tests/sanitizers/ holds the suppressions, each with its reason.
SANITIZER_SUPP = $(CURDIR)/tests/sanitizers
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1 \
	LSAN_OPTIONS=suppressions=$(SANITIZER_SUPP)/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$(SANITIZER_SUPP)/ubsan.supp
TSAN_ENV = TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(SANITIZER_SUPP)/tsan.supp

test-asan: deps
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DDOCFLOW_TESTS=ON \
	  '-DDOCFLOW_SANITIZE=address;undefined' $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS) --target docflow docflow_unit
	cd build-asan && $(ASAN_ENV) ctest --output-on-failure -j $(JOBS) -L 'unit|integration' -LE slow

test-tsan: deps
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DDOCFLOW_TESTS=ON \
	  -DDOCFLOW_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS) --target docflow docflow_unit
	cd build-tsan && $(TSAN_ENV) ctest --output-on-failure -j $(JOBS) -L unit

SOURCES = $(shell git ls-files '*.cpp' '*.hpp')

lint: deps configure-tests
	scripts/check-layers
	clang-format --dry-run --Werror $(SOURCES)
	scripts/tidy $(BUILD_DIR)

format:
	clang-format -i $(SOURCES)

# A local cluster on 127.0.0.1 (docs/operations.md, "Scaling out"):
# PostgreSQL, radosgw, 2 serve behind nginx on :8080, 2 workers. It stays up
# in the background: `scripts/cluster status`, `make cluster-down`.
cluster: deps configure-tests
	cmake --build $(BUILD_DIR) -j $(JOBS) --target docflow
	DOCFLOW_BIN=$(abspath $(BUILD_DIR))/src/docflow scripts/cluster up

cluster-down:
	scripts/cluster down

# Every benchmark scenario against docflow (on SQLite and PostgreSQL) and nginx, one table (bench/README.md).
bench:
	@scripts/install-deps bench
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
	cmake --build build-release -j $(JOBS) --target docflow
	bench/run.sh build-release/src/docflow

# Scaling on the local cluster (PostgreSQL, S3, serve processes behind nginx, worker processes): the burst
# through nginx, and processing with 1, 2 and 4 worker processes (bench/README.md, "The cluster").
bench-cluster:
	@scripts/install-deps bench
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
	cmake --build build-release -j $(JOBS) --target docflow
	bench/cluster.py build-release/src/docflow

clean:
	rm -rf $(BUILD_DIR) build-release build-asan build-tsan
