# The two commands of the README: `make run` and `make test`. Everything else
# is a helper for them or for CI.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
# CI builds with warnings as errors; locally they stay warnings.
ifdef CI
CMAKE_FLAGS += -DDOCFLOW_WERROR=ON
endif
JOBS ?= $(shell nproc)

.PHONY: all deps build run test unit integration lint format bench clean

all: build

deps:
	@scripts/install-deps

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/src/docflow serve

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

integration: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L integration

SOURCES = $(shell git ls-files '*.cpp' '*.hpp')

lint: deps $(BUILD_DIR)/build.ninja
	clang-format --dry-run --Werror $(SOURCES)
	scripts/tidy $(BUILD_DIR)

format:
	clang-format -i $(SOURCES)

# Every benchmark scenario against docflow and nginx, one table (bench/README.md).
bench:
	@scripts/install-deps bench
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build build-release -j $(JOBS) --target docflow
	bench/run.sh build-release/src/docflow

clean:
	rm -rf $(BUILD_DIR) build-release
