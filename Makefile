# kiln — the two set-up commands: `make run` and `make test`.
BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-asan bench fuzz clean package

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@./scripts/quickstart.sh $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

bench: deps
	cmake -S . -B $(BUILD) -DKILN_BENCH=ON && cmake --build $(BUILD) -j $(JOBS)
	./bench/run.sh $(BUILD)

# Debian packages kiln-coordinator, kiln-agent and kiln (CPack) in $(BUILD)/packages/.
package: build
	cd $(BUILD) && cpack -G DEB

# libFuzzer targets (clang); FUZZ_SECONDS each, corpus kept in tests/fuzz/corpus/.
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake -S . -B build-fuzz -DKILN_FUZZ=ON -DKILN_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	./tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz
