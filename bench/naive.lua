-- The naive Lua peer of beeorm's benchmarks: what a Lua developer writes by hand today
-- with Debian's LuaSQL (lua-sql-mysql) and redis-lua (lua-redis), one command per call.
--
--   lua5.4 bench/naive.lua MYSQL_DSN REDIS_HOST:PORT
--
-- MYSQL_DSN is in Go form, user:password@tcp(host:port)/database. Prints one line per
-- scenario on stdout, `RESULT <id> <value> <unit>` or `SKIP <id> <reason>`; anything
-- else goes to stderr.
--
-- Environment: BENCH_QUICK=1 is quick mode (each timed run ~0.1 s, 5,000-event
-- workloads, memory at 100,000 entities, one run per scenario). Otherwise each timed
-- run lasts ~0.5 s (BENCH_SECONDS overrides), memory is measured at 1,000,000 entities,
-- and every scenario runs three times and prints the median. BENCH_EVENTS sets the
-- consumer workloads (see CONSUME_EVENTS below for the default).
--
-- Entity: table `naive_item` (id bigint unsigned PK, name varchar(100) NOT NULL,
-- status enum('active','blocked') NOT NULL, price decimal(10,2)); Redis cache key
-- `naive_item:<id>` holding `name|status|price` (price empty for NULL; a name with a `|`
-- would break it: that is the naive part), decoded back into a Lua table on read. Ids
-- come from a counter in the process, as beeorm's do (no AUTO_INCREMENT round trip).
-- The Redis side uses db 10, flushed before every run and at the end; the table is
-- dropped and created before every run and dropped at the end.

io.stdout:setvbuf("line")

local function log(fmt, ...) io.stderr:write(fmt:format(...), "\n") end

---------------------------------------------------------------------------------------
-- Memory child: `naive.lua --memory-child N` fills a Lua table cache with N rows and
-- prints the resident bytes per entity. The parent runs it in a fresh process per run, so
-- no run reuses memory that an earlier scenario (or run) freed into malloc's free lists.
---------------------------------------------------------------------------------------

local function page_size()
  local f = io.popen("getconf PAGESIZE 2>/dev/null")
  local n = f and tonumber(f:read("a"))
  if f then f:close() end
  return n or 4096
end

local function rss_bytes(pagesize)
  local f = assert(io.open("/proc/self/statm"))
  local resident = tonumber(f:read("a"):match("^%d+%s+(%d+)"))
  f:close()
  return resident * pagesize
end

local function measure_memory(count)
  local pagesize = page_size()
  collectgarbage()
  collectgarbage()
  local before = rss_bytes(pagesize)
  local cache = {}
  for id = 1, count do
    cache[id] = {
      id = id,
      name = "name " .. id,
      status = id % 5 == 0 and "blocked" or "active",
      price = ("%d.%02d"):format(id % 1000, id % 100),
    }
  end
  collectgarbage()
  collectgarbage()
  local after = rss_bytes(pagesize)
  assert(cache[count].id == count)
  return (after - before) / count
end

if arg[1] == "--memory-child" then
  print(("%.2f"):format(measure_memory(assert(tonumber(arg[2])))))
  return
end

---------------------------------------------------------------------------------------
-- Settings
---------------------------------------------------------------------------------------

local mysql_dsn, redis_addr = arg[1], arg[2]
if not (mysql_dsn and redis_addr) then
  log("usage: lua5.4 bench/naive.lua 'user:password@tcp(host:port)/database' REDIS_HOST:PORT")
  os.exit(2)
end

local QUICK = os.getenv("BENCH_QUICK") == "1"
local SECONDS = tonumber(os.getenv("BENCH_SECONDS") or "") or (QUICK and 0.1 or 0.5)
local RUNS = QUICK and 1 or 3
local MEMORY_COUNT = QUICK and 100000 or 1000000
-- The naive consumer does one LPOP and one autocommit statement (one durable commit) per
-- event: about 3-4k events/s here. At beeorm's 40,000 events that would be ~11 s per
-- run, 9 runs, well past the 2-minute budget, so the consumer workloads default to
-- 10,000 events (5,000 in quick mode): the timed part still lasts a few seconds (~1.5 s
-- in quick mode). BENCH_EVENTS, when set, is used as given.
local CONSUME_EVENTS = tonumber(os.getenv("BENCH_EVENTS") or "") or (QUICK and 5000 or 10000)
local REDIS_DB = 10
local TABLE = "naive_item"
local QUEUE = "naive_item:queue"

local SCENARIOS = { "get_local", "get_redis", "get_many100", "flush1", "flush100", "async1", "async100",
  "async_incr", "consume_insert", "consume_update", "consume_mixed", "memory_1m" }
-- What each scenario needs beyond plain Lua.
local NEEDS = {
  get_redis = { redis = true }, get_many100 = { redis = true },
  flush1 = { redis = true, mysql = true }, flush100 = { redis = true, mysql = true },
  async1 = { redis = true }, async100 = { redis = true }, async_incr = { redis = true },
  consume_insert = { redis = true, mysql = true }, consume_update = { redis = true, mysql = true },
  consume_mixed = { redis = true, mysql = true },
}

---------------------------------------------------------------------------------------
-- Modules. Debian installs LuaSQL and LuaSocket for 5.4 in the standard 5.4 directories
-- (/usr/lib/x86_64-linux-gnu/lua/5.4/luasql/mysql.so, .../5.4/socket/core.so,
-- /usr/share/lua/5.4/socket.lua); those are put first on the paths explicitly, in case
-- LUA_PATH/LUA_CPATH or an embedding host changed the defaults. redis-lua is installed
-- only for 5.1-5.3 (/usr/share/lua/5.3/redis.lua, pure Lua and works under 5.4 except for
-- pipelining): it is loaded from that one file through package.preload, without putting
-- the 5.3 tree on package.path (which could shadow 5.4 modules).
---------------------------------------------------------------------------------------

local function multiarch()
  local f = io.popen("dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null")
  local m = f and f:read("l")
  if f then f:close() end
  return (m and m ~= "") and m or "x86_64-linux-gnu"
end
local ma = multiarch()
package.path = "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;" .. package.path
package.cpath = ("/usr/lib/%s/lua/5.4/?.so;/usr/lib/lua/5.4/?.so;"):format(ma) .. package.cpath
if not package.preload.redis then
  for _, v in ipairs({ "5.4", "5.3", "5.2", "5.1" }) do
    local file = ("/usr/share/lua/%s/redis.lua"):format(v)
    local f = io.open(file)
    if f then
      f:close()
      package.preload.redis = function(...) return assert(loadfile(file))(...) end
      break
    end
  end
end

local function try_require(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  return nil, (tostring(mod):gsub("%s+", " "))
end

local socket, socket_err = try_require("socket")
local redis, redis_err = try_require("redis")
if not socket then redis, redis_err = nil, "socket (lua-socket) cannot be loaded: " .. socket_err end
local luasql, luasql_err = try_require("luasql.mysql")
local missing = {}
if not redis then missing.redis = "redis-lua cannot be loaded under " .. _VERSION .. ": " .. redis_err end
if not luasql then missing.mysql = "luasql.mysql cannot be loaded under " .. _VERSION .. ": " .. luasql_err end

-- Wall time from a monotonic clock: lua-system's system.monotime() (CLOCK_MONOTONIC, ns
-- resolution; lua-busted depends on it). Without it: socket.gettime() (gettimeofday, µs
-- resolution, but a wall clock that NTP may step), and last os.clock() (CPU time only).
local now, clock_name
do
  local sys = try_require("system")
  if sys and sys.monotime then
    now, clock_name = sys.monotime, "system.monotime (CLOCK_MONOTONIC)"
  elseif socket then
    now, clock_name = socket.gettime, "socket.gettime (gettimeofday, not monotonic)"
  else
    now, clock_name = os.clock, "os.clock (CPU time: I/O waits are not counted)"
  end
end

---------------------------------------------------------------------------------------
-- Connections
---------------------------------------------------------------------------------------

-- Go DSN: user[:password]@tcp(host[:port])/database[?params]. The password may contain
-- ':' or '@' (the last '@tcp(' ends it); params are ignored.
local function parse_dsn(dsn)
  local userinfo, host, port, db = dsn:match("^(.*)@tcp%(([^:)]*):?(%d*)%)/([^?]*)")
  if not userinfo then error("cannot parse MySQL DSN (want user:password@tcp(host:port)/database): " .. dsn) end
  local user, pass = userinfo:match("^([^:]*):(.*)$")
  if not user then user = userinfo end
  return { user = user, password = pass, host = host ~= "" and host or "127.0.0.1",
    port = tonumber(port) or 3306, database = db }
end

local r, env, conn
if not missing.redis then
  local host, port = redis_addr:match("^(.*):(%d+)$")
  if not host then error("REDIS address must be host:port, got " .. redis_addr) end
  r = redis.connect(host, tonumber(port))
  assert(r:select(REDIS_DB))
end
if not missing.mysql then
  local c = parse_dsn(mysql_dsn)
  env = assert(luasql.mysql())
  local err
  conn, err = env:connect(c.database, c.user, c.password, c.host, c.port)
  if not conn then error("MySQL connect failed: " .. tostring(err)) end
end

local function sql(q)
  local res, err = conn:execute(q)
  if not res then error(("MySQL error: %s\n  in: %s"):format(err, q:sub(1, 200))) end
  return res
end

-- Every run starts from an empty Redis db and, when it writes MySQL, an empty table
-- (scenarios that only use Redis leave MySQL alone, so its background work after a drop
-- does not weigh on them).
local next_id = 0
local function reset(with_mysql)
  next_id = 0
  if with_mysql and conn then
    sql("DROP TABLE IF EXISTS " .. TABLE)
    sql("CREATE TABLE " .. TABLE .. [[ (
      id bigint unsigned NOT NULL PRIMARY KEY,
      name varchar(100) NOT NULL,
      status enum('active','blocked') NOT NULL,
      price decimal(10,2)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4]])
  end
  if r then assert(r:flushdb()) end
end

---------------------------------------------------------------------------------------
-- The naive pattern
---------------------------------------------------------------------------------------

local function new_row()
  next_id = next_id + 1
  local id = next_id
  return { id = id, name = "name " .. id, status = id % 5 == 0 and "blocked" or "active",
    price = ("%d.%02d"):format(id % 1000, id % 100) }
end

local function cache_key(id) return "naive_item:" .. id end

local function encode(row) return row.name .. "|" .. row.status .. "|" .. (row.price or "") end

local function decode(id, s)
  if not s then return nil end
  local name, status, price = s:match("^(.-)|(.-)|(.*)$")
  return { id = id, name = name, status = status, price = price ~= "" and price or nil }
end

local function insert_sql(row)
  return ("INSERT INTO naive_item (id, name, status, price) VALUES (%d, '%s', '%s', %s)"):format(row.id,
    conn:escape(row.name), conn:escape(row.status), row.price and ("'" .. conn:escape(row.price) .. "'") or "NULL")
end

local function update_sql(row)
  return ("UPDATE naive_item SET name = '%s', status = '%s', price = %s WHERE id = %d"):format(
    conn:escape(row.name), conn:escape(row.status), row.price and ("'" .. conn:escape(row.price) .. "'") or "NULL",
    row.id)
end

-- Queue events: "insert|id|name|status|price", "update|id|name|status|price", "delete|id".
local function event(kind, row)
  if kind == "delete" then return "delete|" .. row.id end
  return kind .. "|" .. row.id .. "|" .. encode(row)
end

local function apply_event(ev)
  local kind, id, rest = ev:match("^(%a+)|(%d+)|?(.*)$")
  id = tonumber(id)
  if kind == "delete" then
    sql("DELETE FROM naive_item WHERE id = " .. id)
  else
    local row = decode(id, rest)
    sql(kind == "insert" and insert_sql(row) or update_sql(row))
  end
end

-- Inserts `count` rows quickly (untimed setup): multi-row INSERTs in one transaction.
local function seed_rows(count)
  local rows = {}
  conn:setautocommit(false)
  for i = 1, count do
    local row = new_row()
    rows[#rows + 1] = ("(%d, '%s', '%s', '%s')"):format(row.id, row.name, row.status, row.price)
    if #rows == 1000 or i == count then
      sql("INSERT INTO naive_item (id, name, status, price) VALUES " .. table.concat(rows, ","))
      rows = {}
    end
  end
  assert(conn:commit())
  conn:setautocommit(true)
end

---------------------------------------------------------------------------------------
-- Measuring
---------------------------------------------------------------------------------------

-- Calls body(n) with growing n until SECONDS of wall time passed; returns ops/s, where
-- one call of body(n) does n * per_call operations. Batches grow while one takes less
-- than 1/50 of the run, so the clock is read rarely for fast bodies.
local function rate(body, per_call)
  local n, batch = 0, 1
  local t0 = now()
  while true do
    local b0 = now()
    body(batch)
    n = n + batch
    local t = now()
    if t - t0 >= SECONDS then return n * (per_call or 1) / (t - t0) end
    if t - b0 < SECONDS / 50 then batch = batch * 2 end
  end
end

local RUN = {}

-- NB: the naive local cache is a plain Lua table: no bound, no eviction, and no
-- invalidation across processes (another process's write is never seen here).
function RUN.get_local()
  reset()
  local N = 10000
  local cache = {}
  for _ = 1, N do
    local row = new_row()
    cache[row.id] = row
  end
  local id, hits = 0, 0
  local result = rate(function(n)
    for _ = 1, n do
      id = id % N + 1
      local row = cache[id]
      if row then hits = hits + 1 end
    end
  end)
  assert(hits > 0)
  return result
end

local function fill_redis(count)
  for _ = 1, count do
    local row = new_row()
    r:set(cache_key(row.id), encode(row))
  end
end

function RUN.get_redis()
  reset()
  local N = 10000
  fill_redis(N)
  local id = 0
  return rate(function(n)
    for _ = 1, n do
      id = id % N + 1
      local row = decode(id, r:get(cache_key(id)))
      assert(row and row.id == id)
    end
  end)
end

function RUN.get_many100()
  reset()
  local N = 10000
  fill_redis(N)
  local base = 0
  return rate(function(n)
    for _ = 1, n do
      local rows = {}
      for i = 1, 100 do
        local id = (base + i - 1) % N + 1
        rows[i] = decode(id, r:get(cache_key(id)))
      end
      assert(#rows == 100)
      base = (base + 100) % N
    end
  end, 100)
end

local function flush_one(row)
  sql(insert_sql(row))
  r:set(cache_key(row.id), encode(row))
end

function RUN.flush1()
  reset(true)
  return rate(function(n)
    for _ = 1, n do flush_one(new_row()) end
  end)
end

-- The naive transaction: the cache is SET inside the loop, before the commit (a reader
-- may see a row that a rollback then removes).
function RUN.flush100()
  reset(true)
  return rate(function(n)
    for _ = 1, n do
      conn:setautocommit(false)
      for _ = 1, 100 do flush_one(new_row()) end
      assert(conn:commit())
      conn:setautocommit(true)
    end
  end, 100)
end

-- "Asynchronous" the naive way: SET the cache, then RPUSH the event (two round trips,
-- not atomic: a crash between them leaves a cached row MySQL never gets).
local function async_one(row)
  r:set(cache_key(row.id), encode(row))
  r:rpush(QUEUE, event("insert", row))
end

function RUN.async1()
  reset()
  return rate(function(n)
    for _ = 1, n do async_one(new_row()) end
  end)
end

function RUN.async100()
  reset()
  return rate(function(n)
    for _ = 1, n do
      for _ = 1, 100 do async_one(new_row()) end
    end
  end, 100)
end

-- An increment the naive way: read the cached row, add, write it back, queue the new
-- value (three round trips; two processes doing it at once lose increments).
function RUN.async_incr()
  reset()
  local row = new_row()
  row.price = "0.00"
  r:set(cache_key(row.id), encode(row))
  return rate(function(n)
    for _ = 1, n do
      local cur = decode(row.id, r:get(cache_key(row.id)))
      cur.price = string.format("%.2f", tonumber(cur.price) + 0.01)
      r:set(cache_key(row.id), encode(cur))
      r:rpush(QUEUE, event("update", cur))
    end
  end)
end

-- The naive consumer: LPOP one event, run its statement (autocommit), until the list is
-- empty. Nothing makes it exactly-once: an event popped by a consumer that dies before
-- its statement is lost.
local function consume(events)
  for _, ev in ipairs(events) do r:rpush(QUEUE, ev) end
  local t0 = now()
  local done = 0
  while true do
    local ev = r:lpop(QUEUE)
    if not ev then break end
    apply_event(ev)
    done = done + 1
  end
  local elapsed = now() - t0
  assert(done == #events, "consumed " .. done .. " of " .. #events)
  return done / elapsed
end

local function count_rows()
  local cur = sql("SELECT COUNT(*) FROM naive_item")
  local n = tonumber(cur:fetch())
  cur:close()
  return n
end

function RUN.consume_insert()
  reset(true)
  local events = {}
  for i = 1, CONSUME_EVENTS do events[i] = event("insert", new_row()) end
  local result = consume(events)
  assert(count_rows() == CONSUME_EVENTS)
  return result
end

function RUN.consume_update()
  reset(true)
  seed_rows(CONSUME_EVENTS)
  local events = {}
  for id = 1, CONSUME_EVENTS do
    events[id] = event("update", { id = id, name = "renamed " .. id, status = "blocked", price = "99.99" })
  end
  return consume(events)
end

-- 50/30/20 insert/update/delete, interleaved by a fixed pattern of 10; updates and
-- deletes hit rows seeded first (each deleted row once).
function RUN.consume_mixed()
  reset(true)
  local n = CONSUME_EVENTS
  local pattern = { "insert", "update", "insert", "delete", "insert", "update", "insert", "update", "delete",
    "insert" }
  local kinds, counts = {}, { insert = 0, update = 0, delete = 0 }
  for i = 1, n do
    local k = pattern[(i - 1) % 10 + 1]
    kinds[i] = k
    counts[k] = counts[k] + 1
  end
  seed_rows(counts.update + counts.delete)
  local next_update, next_delete = 0, counts.update
  local events = {}
  for i = 1, n do
    local k = kinds[i]
    if k == "insert" then
      events[i] = event("insert", new_row())
    elseif k == "update" then
      next_update = next_update + 1
      events[i] = event("update", { id = next_update, name = "renamed " .. next_update, status = "blocked",
        price = "99.99" })
    else
      next_delete = next_delete + 1
      events[i] = event("delete", { id = next_delete })
    end
  end
  local result = consume(events)
  assert(count_rows() == counts.insert + counts.update)
  return result
end

-- In a fresh lua5.4 process per run (see --memory-child above); in this process if that
-- fails.
function RUN.memory_1m()
  local interp = arg[-1]
  if not (interp and interp:match("lua[%d.]*$")) then interp = "lua5.4" end
  local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local f = io.popen(("%s %s --memory-child %d"):format(q(interp), q(arg[0]), MEMORY_COUNT))
  local value = f and tonumber(f:read("a"))
  if f then f:close() end
  if value then return value end
  log("naive: memory child failed, measuring in this process")
  return measure_memory(MEMORY_COUNT)
end

---------------------------------------------------------------------------------------
-- Main
---------------------------------------------------------------------------------------

log("naive: %s mode, %.2f s per timed run, %d run(s) per scenario, %d consumer events, clock %s",
  QUICK and "quick" or "normal", SECONDS, RUNS, CONSUME_EVENTS, clock_name)

local t_start = now()
for _, id in ipairs(SCENARIOS) do
  local need = NEEDS[id] or {}
  local why = (need.redis and missing.redis) or (need.mysql and missing.mysql)
  if why then
    print(("SKIP %s %s"):format(id, why))
  else
    local values = {}
    for i = 1, RUNS do values[i] = RUN[id]() end
    table.sort(values)
    local value = values[(#values + 1) // 2]
    if id == "memory_1m" then
      print(("RESULT %s %.1f bytes/entity"):format(id, value))
    else
      print(("RESULT %s %.0f ops/s"):format(id, value))
    end
    log("naive: %s runs: %s", id, table.concat((function()
      local t = {}
      for i, v in ipairs(values) do t[i] = ("%.1f"):format(v) end
      return t
    end)(), " "))
  end
end

if conn then
  sql("DROP TABLE IF EXISTS " .. TABLE)
  conn:close()
  env:close()
end
if r then
  r:flushdb()
  r:quit()
end
log("naive: done in %.1f s", now() - t_start)
