# beeorm: each target is one command. See README.md.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build test test-asan demo bench servers servers-stop clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# C unit tests and Lua specs against throwaway servers; ends with "N passed, N failed".
test: build
	@scripts/test.sh $(BUILD)

# The same suites built with AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBEEORM_ASAN=ON -DBEEORM_UBSAN=ON > /dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@BEEORM_SANITIZE=1 scripts/test.sh $(ASAN_BUILD)

# Builds, starts throwaway servers, runs examples/quickstart.lua, stops the servers.
demo: build
	@scripts/demo.sh $(BUILD)

# Development servers that stay up until `make servers-stop`: prints their connection
# strings and writes $(BUILD)/dev-servers/beeorm.yaml (README, "Your first app").
servers: build
	@scripts/dev_servers.sh start $(BUILD)/dev-servers

servers-stop:
	@scripts/dev_servers.sh stop $(BUILD)/dev-servers

bench: build
	@BENCH_QUICK=$(QUICK) scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
