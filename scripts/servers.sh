#!/usr/bin/env bash
# Throwaway MariaDB and Redis servers on free loopback ports, all state in one folder.
#
#   scripts/servers.sh start DIR [OWNER_PID]   start, wait until they answer, write DIR/env
#   scripts/servers.sh stop DIR                stop by recorded PID, remove DIR
#   scripts/servers.sh sentinel DIR [OWNER_PID]
#       a Redis primary, two replicas and three sentinels (master name "mymaster",
#       down-after-milliseconds 1000), no MariaDB; waits until every sentinel sees the
#       primary, both replicas and the two other sentinels; writes DIR/env
#   scripts/servers.sh restart-redis DIR NAME  starts node NAME (redis-a, redis-b, redis-c)
#       of a sentinel set again on its port, as a replica of the current master
#
# DIR/env is a shell file of `export` lines that tests read:
#   BEEORM_TEST_MYSQL          bee:<pw>@tcp(127.0.0.1:<port>)/beeorm_test
#   BEEORM_TEST_MYSQL_SOCKET   the server's unix socket path
#   BEEORM_TEST_REDIS          127.0.0.1:<port>
#   BEEORM_TEST_REDIS_SOCKET   that server's unix socket path
#   BEEORM_TEST_REDIS_AUTH     redis://:<pw>@127.0.0.1:<port2>/0 (a second server with requirepass)
# For a sentinel set, DIR/env has instead:
#   BEEORM_TEST_SENTINELS        127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>
#   BEEORM_TEST_SENTINEL_MASTER  mymaster
#   BEEORM_TEST_SENTINEL_NODES   redis-a=<port>,redis-b=<port>,redis-c=<port> (redis-a
#                                starts as the primary)
# A watchdog stops the servers when OWNER_PID (default: the caller) exits, so even a
# killed test run leaves nothing behind. Two runs never share a folder or a port.
set -euo pipefail

die() { echo "servers.sh: $*" >&2; exit 1; }
PATH="$PATH:/usr/sbin:/sbin"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port nothing listens on, below the kernel's ephemeral range: a port from that range
# may be the local end of some connection (the replicas' and sentinels' own), which no
# connect test shows and which makes a server's bind fail.
free_port() {
  local p lo=32768 top
  read -r lo _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  top=$lo
  [[ "$top" -gt 22000 ]] || top=60000 # (no room below it: any port, as a last resort)
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % (top - 20000)))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port found"
}
random_secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
record() { echo "$1 $2" >> "$D/pids"; }
# A pid that runs (a zombie nobody reaped yet has stopped running).
alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]; }

start_mariadb() {
  local data="$D/mysql/data" user_opt=()
  mkdir -p "$D/mysql"
  [[ $(id -u) -eq 0 ]] && user_opt=(--user=root)
  mariadb-install-db --no-defaults "${user_opt[@]}" --datadir="$data" \
    --auth-root-authentication-method=normal --skip-test-db > "$D/mysql/install.log" 2>&1 \
    || die "mariadb-install-db failed: see $D/mysql/install.log"
  for attempt in 1 2 3 4 5; do
    MYSQL_PORT=$(free_port)
    mariadbd --no-defaults "${user_opt[@]}" --datadir="$data" --port="$MYSQL_PORT" \
      --bind-address=127.0.0.1 --socket="$D/mysql/mysqld.sock" --pid-file="$D/mysql/mysqld.pid" \
      --log-error="$D/mysql/error.log" --skip-name-resolve --character-set-server=utf8mb4 \
      --collation-server=utf8mb4_general_ci --innodb-buffer-pool-size=128M \
      --innodb-log-file-size=64M --max-connections=500 < /dev/null > /dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 300); do
      if mariadb-admin --no-defaults -S "$D/mysql/mysqld.sock" -uroot ping > /dev/null 2>&1; then
        record mariadb "$pid"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "servers.sh: MariaDB did not start on port $MYSQL_PORT (attempt $attempt), retrying" >&2
  done
  tail -n 20 "$D/mysql/error.log" >&2 || true
  die "MariaDB did not start"
}

# Waits (5 s at most) until server NAME, just started as PID, answers PING to
# redis-cli with the given connection arguments, and records it; kills it otherwise.
await_pong() { # name pid redis-cli args...
  local name=$1 pid=$2; shift 2
  for _ in $(seq 1 100); do
    if redis-cli "$@" ping 2>/dev/null | grep -q PONG; then
      record "$name" "$pid"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
  return 1
}

start_redis() { # name port dir [extra args]
  local name=$1 port=$2 dir=$3; shift 3
  mkdir -p "$dir"
  rm -f "$dir/redis.sock" # (a node started again)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --unixsocket "$dir/redis.sock" --unixsocketperm 700 --daemonize no \
    --logfile "$dir/redis.log" "$@" < /dev/null > /dev/null 2>&1 &
  await_pong "$name" $! -s "$dir/redis.sock" ${REDIS_PW:+--no-auth-warning -a "$REDIS_PW"}
}

start_redis_retry() { # name dir var [extra args]
  local name=$1 dir=$2 var=$3; shift 3
  for attempt in 1 2 3 4 5; do
    local port
    port=$(free_port)
    if start_redis "$name" "$port" "$dir" "$@"; then
      printf -v "$var" '%s' "$port"
      return 0
    fi
    echo "servers.sh: Redis did not start on port $port (attempt $attempt), retrying" >&2
  done
  tail -n 20 "$dir/redis.log" >&2 || true
  die "Redis did not start"
}

# The node NAME of a sentinel set, started on PORT; as a replica of MASTER_PORT unless that is empty.
start_node() { # name port master_port
  local name=$1 port=$2 master=$3
  # (a replica that comes back resyncs at once, not after Redis's default 5 s wait)
  local extra=(--replica-announce-ip 127.0.0.1 --repl-diskless-sync-delay 0)
  [[ -n "$master" ]] && extra+=(--replicaof 127.0.0.1 "$master")
  start_redis "$name" "$port" "$D/$name" "${extra[@]}"
}

start_sentinel() { # name port master_port
  local name=$1 port=$2 master=$3 dir="$D/$1"
  mkdir -p "$dir"
  cat > "$dir/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
daemonize no
dir $dir
logfile $dir/sentinel.log
sentinel announce-ip 127.0.0.1
sentinel resolve-hostnames no
sentinel monitor mymaster 127.0.0.1 $master 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 3000
sentinel parallel-syncs mymaster 1
CONF
  redis-server "$dir/sentinel.conf" --sentinel < /dev/null > /dev/null 2>&1 &
  await_pong "$name" $! -p "$port"
}

# Starts a sentinel set in $D (see the top of this file).
start_sentinel_set() {
  local ports=() p
  while [[ ${#ports[@]} -lt 6 ]]; do
    p=$(free_port)
    [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
  done
  start_node redis-a "${ports[0]}" "" || die "Redis redis-a did not start on port ${ports[0]}"
  start_node redis-b "${ports[1]}" "${ports[0]}" || die "Redis redis-b did not start on port ${ports[1]}"
  start_node redis-c "${ports[2]}" "${ports[0]}" || die "Redis redis-c did not start on port ${ports[2]}"
  for i in 1 2 3; do
    start_sentinel "sentinel-$i" "${ports[$((i + 2))]}" "${ports[0]}" || die "sentinel-$i did not start"
  done
  # Every sentinel must know the primary, both replicas and the two other sentinels
  # (replicas in sync: master_link_status up), or a failover test could start too early.
  local ready=0
  for _ in $(seq 1 300); do
    ready=1
    for i in 3 4 5; do
      local info
      info=$(redis-cli -p "${ports[$i]}" sentinel master mymaster 2>/dev/null | paste -sd' ')
      [[ "$info" == *"num-slaves 2 "* && "$info" == *"num-other-sentinels 2 "* ]] || ready=0
    done
    for i in 1 2; do
      redis-cli -p "${ports[$i]}" info replication 2>/dev/null | grep -q "master_link_status:up" || ready=0
    done
    [[ $ready -eq 1 ]] && break
    sleep 0.1
  done
  [[ $ready -eq 1 ]] || die "the sentinels did not see the whole set within 30 s (see $D/sentinel-*/sentinel.log)"
  cat > "$D/env" <<ENV
export BEEORM_TEST_SENTINELS='127.0.0.1:${ports[3]},127.0.0.1:${ports[4]},127.0.0.1:${ports[5]}'
export BEEORM_TEST_SENTINEL_MASTER='mymaster'
export BEEORM_TEST_SENTINEL_NODES='redis-a=${ports[0]},redis-b=${ports[1]},redis-c=${ports[2]}'
export BEEORM_TEST_SERVER_DIR='$D'
ENV
}

# Starts node NAME of the sentinel set in $D again, as a replica of the current master.
restart_node() { # name
  local name=$1 port master
  port=$(sed -n "s/.*$name=\([0-9]*\).*/\1/p" "$D/env")
  [[ -n "$port" ]] || die "no node '$name' in $D/env"
  local sentinel
  sentinel=$(sed -n "s/.*BEEORM_TEST_SENTINELS='127.0.0.1:\([0-9]*\),.*/\1/p" "$D/env")
  master=$(redis-cli -p "$sentinel" sentinel get-master-addr-by-name mymaster 2>/dev/null | sed -n 2p)
  [[ -n "$master" && "$master" != "$port" ]] || die "no master other than $name to follow"
  local old
  old=$(awk -v n="$name" '$1 == n { print $2 }' "$D/pids" | tail -n 1)
  [[ -n "$old" ]] && alive "$old" && die "$name (pid $old) is still running"
  start_node "$name" "$port" "$master" || die "Redis $name did not start again on port $port"
}

stop_all() {
  local dir=$1
  [[ -f "$dir/pids" ]] || { rm -rf "$dir"; return 0; }
  local pids=()
  while read -r name pid; do
    [[ "$name" == watchdog ]] && continue
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done < "$dir/pids"
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do alive "$pid" && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  local wd
  wd=$(awk '$1 == "watchdog" { print $2 }' "$dir/pids")
  [[ -n "$wd" && "$wd" != "${WATCHDOG_SELF:-}" ]] && kill -KILL "$wd" 2>/dev/null || true
  [[ -n "${BEEORM_KEEP_SERVER_STATE:-}" ]] || rm -rf "$dir"
}

cmd=${1:-}; D=${2:-}
[[ -n "$cmd" && -n "$D" ]] || die "usage: servers.sh start|sentinel|stop DIR [OWNER_PID], or restart-redis DIR NAME"
case "$cmd" in
  start|sentinel)
    OWNER=${3:-$PPID}
    mkdir -p "$D"
    D=$(cd "$D" && pwd)
    [[ -e "$D/pids" ]] && die "$D already holds servers; stop them first"
    : > "$D/pids"
    # The watchdog outlives this script and stops the servers when the owner is gone.
    (
      trap '' INT TERM HUP
      exec 0</dev/null 1>/dev/null 2>&1
      while kill -0 "$OWNER" 2>/dev/null && [[ -f "$D/pids" ]]; do sleep 1; done
      [[ -f "$D/pids" ]] && WATCHDOG_SELF=$BASHPID stop_all "$D"
    ) &
    record watchdog $!
    trap 'stop_all "$D"; exit 1' ERR INT TERM
    if [[ "$cmd" == sentinel ]]; then
      start_sentinel_set
      trap - ERR INT TERM
      exit 0
    fi
    start_mariadb
    MYSQL_PW=$(random_secret)
    mariadb --no-defaults -S "$D/mysql/mysqld.sock" -uroot <<SQL
CREATE DATABASE beeorm_test CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER 'bee'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PW';
CREATE USER 'bee'@'localhost' IDENTIFIED BY '$MYSQL_PW';
GRANT ALL PRIVILEGES ON *.* TO 'bee'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'bee'@'localhost' WITH GRANT OPTION;
SQL
    start_redis_retry redis "$D/redis" REDIS_PORT
    REDIS_PW=$(random_secret)
    start_redis_retry redis-auth "$D/redis-auth" REDIS_AUTH_PORT --requirepass "$REDIS_PW"
    cat > "$D/env" <<ENV
export BEEORM_TEST_MYSQL='bee:$MYSQL_PW@tcp(127.0.0.1:$MYSQL_PORT)/beeorm_test'
export BEEORM_TEST_MYSQL_SOCKET='$D/mysql/mysqld.sock'
export BEEORM_TEST_REDIS='127.0.0.1:$REDIS_PORT'
export BEEORM_TEST_REDIS_SOCKET='$D/redis/redis.sock'
export BEEORM_TEST_REDIS_AUTH='redis://:$REDIS_PW@127.0.0.1:$REDIS_AUTH_PORT/0'
export BEEORM_TEST_SERVER_DIR='$D'
ENV
    trap - ERR INT TERM
    ;;
  restart-redis)
    D=$(cd "$D" && pwd)
    restart_node "${3:-}"
    ;;
  stop)
    [[ -d "$D" ]] || exit 0
    stop_all "$(cd "$D" && pwd)"
    ;;
  *) die "unknown command '$cmd' (use start, sentinel, restart-redis or stop)" ;;
esac
