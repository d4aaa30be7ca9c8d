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

.PHONY: all deps deps-server configure configure-tests build server run test unit integration fault lint format bench clean

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

SOURCES = $(shell git ls-files '*.cpp' '*.hpp')

lint: deps configure-tests
	clang-format --dry-run --Werror $(SOURCES)
	scripts/tidy $(BUILD_DIR)

format:
	clang-format -i $(SOURCES)

# Every benchmark scenario against docflow and nginx, one table (bench/README.md).
bench:
	@scripts/install-deps bench
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
	cmake --build build-release -j $(JOBS) --target docflow
	bench/run.sh build-release/src/docflow

clean:
	rm -rf $(BUILD_DIR) build-release
