#!/usr/bin/env bash
# Development servers that stay up (make servers / make servers-stop): MariaDB and Redis
# on free loopback ports under DIR, until `stop`. Prints their connection strings and
# writes DIR/beeorm.yaml, a config with both. Usage: scripts/dev_servers.sh start|stop DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-}
D=${2:-}
[[ -n "$cmd" && -n "$D" ]] || { echo "usage: scripts/dev_servers.sh start|stop DIR" >&2; exit 2; }
case "$cmd" in
  start)
    if [[ -f "$D/pids" ]]; then
      echo "development servers already running (make servers-stop stops them):"
    else
      mkdir -p "$D"
      # Owner pid 1: the watchdog never stops them; `stop` does.
      scripts/servers.sh start "$D" 1 > /dev/null
      # shellcheck disable=SC1091
      source "$D/env"
      {
        echo "# beeorm config of the development servers (make servers)"
        echo "default:"
        echo "  mysql: $BEEORM_TEST_MYSQL"
        echo "  redis: $BEEORM_TEST_REDIS:0"
      } > "$D/beeorm.yaml"
      echo "development servers started (make servers-stop stops them):"
    fi
    # shellcheck disable=SC1091
    source "$D/env"
    echo "  MySQL  $BEEORM_TEST_MYSQL"
    echo "  Redis  $BEEORM_TEST_REDIS"
    echo "  config $(cd "$D" && pwd)/beeorm.yaml"
    ;;
  stop)
    if [[ -f "$D/pids" ]]; then
      scripts/servers.sh stop "$D"
      echo "development servers stopped"
    else
      echo "no development servers running"
    fi
    ;;
  *)
    echo "usage: scripts/dev_servers.sh start|stop DIR" >&2
    exit 2
    ;;
esac
