#!/usr/bin/env bash
# Starts throwaway servers, runs examples/quickstart.lua with the beeorm host program,
# and stops the servers (also on failure or Ctrl-C). Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(cd "${1:-build}" && pwd)
mkdir -p "$BUILD/servers"
DIR=$(mktemp -d "$BUILD/servers/demo.XXXXXX")
trap 'scripts/servers.sh stop "$DIR"' EXIT
trap 'exit 130' INT TERM
echo "starting throwaway MariaDB and Redis..."
scripts/servers.sh start "$DIR" $$
# shellcheck disable=SC1091
source "$DIR/env"
"$BUILD/beeorm" run examples/quickstart.lua "$BEEORM_TEST_MYSQL" "$BEEORM_TEST_REDIS"
