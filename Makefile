# Portico: `make run` (demo), `make test` (everything through ctest), `make bench` (vs nginx).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CONFIG ?= conf/config.yaml

.PHONY: all deps build run test bench clean format

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@bash scripts/run-demo.sh $(BUILD_DIR)/portico $(CONFIG)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900

bench: build
	@bash bench/run.sh $(BUILD_DIR)/portico

format:
	@clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp')

clean:
	@rm -rf $(BUILD_DIR)
