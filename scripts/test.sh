#!/usr/bin/env bash
# Runs every test suite against throwaway servers and prints one closing line
# "N passed, N failed". Usage: scripts/test.sh [BUILD_DIR]
#
# Servers: started under BUILD_DIR/servers and always stopped, unless BEEORM_TEST_MYSQL
# and BEEORM_TEST_REDIS are set, in which case the specs use those (see README).
# Sanitizer builds: BEEORM_SANITIZE=1 runs Lua under LD_PRELOAD=libasan.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${1:-build}
shift || true
BUILD=$(cd "$BUILD" && pwd)
passed=0 failed=0 skipped=0

add_counts() { # parses the last "N passed, N failed[, N skipped]" line of a file
  local line
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  if [[ -z "$line" ]]; then
    echo "test.sh: $2 printed no result line: counted as 1 failure" >&2
    failed=$((failed + 1))
    return
  fi
  local p f s
  p=$(sed -E 's/.*\b([0-9]+) passed.*/\1/' <<< "$line")
  f=$(sed -E 's/.*\b([0-9]+) failed.*/\1/' <<< "$line")
  s=$(sed -nE 's/.*\b([0-9]+) skipped.*/\1/p' <<< "$line")
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${s:-0}))
}

LOGS=$BUILD/test-logs
mkdir -p "$LOGS"

echo "== C unit tests (no servers)"
"$BUILD/bee_unit_tests" 2>&1 | tee "$LOGS/unit.log"
add_counts "$LOGS/unit.log" "C unit tests"

SERVER_DIR=""
cleanup() { [[ -n "$SERVER_DIR" ]] && scripts/servers.sh stop "$SERVER_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n "${BEEORM_TEST_MYSQL:-}" && -n "${BEEORM_TEST_REDIS:-}" ]]; then
  echo "== using existing servers from BEEORM_TEST_MYSQL / BEEORM_TEST_REDIS"
else
  echo "== starting throwaway MariaDB and Redis"
  mkdir -p "$BUILD/servers"
  SERVER_DIR=$(mktemp -d "$BUILD/servers/run.XXXXXX")
  if scripts/servers.sh start "$SERVER_DIR" $$; then
    # shellcheck disable=SC1091
    source "$SERVER_DIR/env"
  else
    echo "test.sh: could not start servers" >&2
    failed=$((failed + 1))
  fi
fi

export BEEORM_BUILD_DIR=$BUILD BEEORM_ROOT=$ROOT
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/spec/?.lua;;"
export LUA_CPATH="$BUILD/lua/?.so;;"
LUA_RUN=(lua5.4)
if [[ -n "${BEEORM_SANITIZE:-}" ]]; then
  LUA_RUN=(env "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" lua5.4)
fi
echo "== Lua specs"
"${LUA_RUN[@]}" "$(command -v busted)" --cpath="$BUILD/lua/?.so" "$@" 2>&1 | tee "$LOGS/specs.log"
add_counts "$LOGS/specs.log" "busted"
if grep -qE 'ERROR: (Address|Undefined|Leak)Sanitizer|runtime error:' "$LOGS/specs.log" "$LOGS/unit.log"; then
  echo "test.sh: a sanitizer reported a problem (see above): counted as 1 failure" >&2
  failed=$((failed + 1))
fi

echo "$passed $failed $skipped" > "$BUILD/test-counts"
if [[ $skipped -gt 0 ]]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
