#!/usr/bin/env bash
# Runs every benchmark under bench/ against throwaway servers. Usage: scripts/bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(cd "${1:-build}" && pwd)
shopt -s nullglob
benches=()
for b in bench/*.lua; do [[ "$b" == bench/common.lua ]] || benches+=("$b"); done
if [[ ${#benches[@]} -eq 0 ]]; then
  echo "no benchmarks yet: the loader, flush and consumer benchmarks come with those features"
  exit 0
fi
mkdir -p "$BUILD/servers"
DIR=$(mktemp -d "$BUILD/servers/bench.XXXXXX")
trap 'scripts/servers.sh stop "$DIR"' EXIT
trap 'exit 130' INT TERM
scripts/servers.sh start "$DIR" $$
# shellcheck disable=SC1091
source "$DIR/env"
for b in "${benches[@]}"; do
  "$BUILD/beeorm" run "$b" "$BEEORM_TEST_MYSQL" "$BEEORM_TEST_REDIS" "$BUILD"
done
