#!/usr/bin/env bash
# Runs the benchmark (bench/run.lua: beeorm, the naive Lua peer, the raw limit) against
# throwaway servers; results in BUILD_DIR/bench. Usage: [BENCH_QUICK=1] scripts/bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(cd "${1:-build}" && pwd)
mkdir -p "$BUILD/servers"
DIR=$(mktemp -d "$BUILD/servers/bench.XXXXXX")
trap 'scripts/servers.sh stop "$DIR"' EXIT
trap 'exit 130' INT TERM
scripts/servers.sh start "$DIR" $$
# shellcheck disable=SC1091
source "$DIR/env"
# BENCH_QUICK=1 (make bench QUICK=1): one short run per scenario, to catch a crash.
"$BUILD/beeorm" run bench/run.lua "$BEEORM_TEST_MYSQL" "$BEEORM_TEST_REDIS" "$BUILD" "$BUILD/bench"
