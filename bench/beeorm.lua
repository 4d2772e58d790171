-- beeorm's side of the benchmark (bench/run.lua runs it beside the naive Lua peer and
-- the raw limit). Run in the `beeorm` host:
--   beeorm run bench/beeorm.lua <mysql dsn> <redis host:port>
-- Prints one line per scenario: "RESULT <id> <value> <unit>" (bench/run.lua lists the
-- ids). Every value is the median of 3 runs of BENCH_SECONDS (default 0.5) each; with
-- BENCH_QUICK=1, one run of 0.1 s, smaller workloads and memory at 100,000 entities.
-- Diagnostics go to stderr.
local beeorm = require("beeorm")

local mysql_dsn, redis_addr = arg[1], arg[2]
assert(mysql_dsn and redis_addr, "usage: beeorm run bench/beeorm.lua <mysql dsn> <redis host:port>")
local quick = os.getenv("BENCH_QUICK") == "1"
local seconds = tonumber(os.getenv("BENCH_SECONDS") or "") or (quick and 0.1 or 0.5)
local events = tonumber(os.getenv("BENCH_EVENTS") or "") or (quick and 5000 or 40000)
local memory_rows = quick and 100000 or 1000000
local wall = beeorm.monotonic

local function say(...) io.stderr:write(string.format(...), "\n") end

local function emit(id, value, unit)
  print(string.format("RESULT %s %.0f %s", id, value, unit))
  io.stdout:flush()
end

-- The median of 3 calls of fn (1 in quick mode).
local function median(fn)
  if quick then return fn() end
  local r = { fn(), fn(), fn() }
  table.sort(r)
  return r[2]
end

-- Runs body(n) in batches of `batch` until `seconds` of wall time passed; returns
-- (operations counted by per_call) per second.
local function rate(body, per_call, batch)
  batch = batch or 1000
  local n, t0 = 0, wall()
  repeat
    body(batch)
    n = n + batch * (per_call or 1)
  until wall() - t0 >= seconds
  return n / (wall() - t0)
end

local fields = {
  { "name", "string", length = 100, required = true },
  { "status", "enum", values = { "active", "blocked" }, required = true },
  { "price", "decimal", precision = 10, scale = 2 },
}
local registry = beeorm.registry()
assert(registry:register_mysql(mysql_dsn))
assert(registry:register_redis(redis_addr, 9))
assert(registry:register_entity { name = "bench_local", local_cache = 100000, redis_cache = true, fields = fields })
assert(registry:register_entity { name = "bench_redis", redis_cache = true, fields = fields })
assert(registry:register_entity { name = "bench_write", redis_cache = true, fields = fields })
assert(registry:register_entity { name = "bench_async", redis_cache = true, fields = fields })
assert(registry:register_entity { name = "bench_mem", local_cache = memory_rows, fields = fields })
local engine = assert(registry:validate())
local ctx = engine:context()

local function reset(tables)
  for _, t in ipairs(tables) do assert(engine:sql_exec("DROP TABLE IF EXISTS " .. t)) end
  assert(engine:sql_exec("DELETE FROM _beeorm_applied") or true)
  assert(engine:sync_schema())
  assert(beeorm.consume_async_flush_events(ctx, false))
end
engine:sql_exec("CREATE TABLE IF NOT EXISTS _beeorm_applied (queue varchar(100) NOT NULL PRIMARY KEY, "
  .. "ms bigint unsigned NOT NULL, seq bigint unsigned NOT NULL)")
reset({ "bench_local", "bench_redis", "bench_write", "bench_async", "bench_mem" })

local function seed(name, n)
  local ids = {}
  for i = 1, n do
    ids[i] = ctx:new_entity(name, { name = "row " .. i, status = "active", price = "12.50" }).id
    if i % 1000 == 0 then assert(ctx:flush()) ctx:clear_flush() end
  end
  assert(ctx:flush())
  ctx:clear_flush()
  return ids
end

-- Reads -------------------------------------------------------------------------------
local local_ids, redis_ids = seed("bench_local", 1000), seed("bench_redis", 1000)
for _, id in ipairs(local_ids) do ctx:get_by_id("bench_local", id) end -- warm both caches
for _, id in ipairs(redis_ids) do ctx:get_by_id("bench_redis", id) end
local get = ctx.get_by_id

-- get_by_id over `ids` in turn, gets per second.
local function gets(entity, ids, batch)
  return median(function()
    local i = 0
    return rate(function(n)
      for _ = 1, n do
        i = i % #ids + 1
        get(ctx, entity, ids[i])
      end
    end, 1, batch)
  end)
end
emit("get_local", gets("bench_local", local_ids), "ops/s")
emit("get_redis", gets("bench_redis", redis_ids, 100), "ops/s")

local batches = {}
for b = 0, 9 do
  local ids = {}
  for i = 1, 100 do ids[i] = redis_ids[b * 100 + i] end
  batches[b + 1] = ids
end
emit("get_many100", median(function()
  local b = 0
  return rate(function(n)
    for _ = 1, n do
      b = b % 10 + 1
      ctx:get_by_ids("bench_redis", batches[b])
    end
  end, 100, 10)
end), "ops/s")

-- Writes ------------------------------------------------------------------------------
local function writes(entity, flush, per_flush)
  return median(function()
    local r = rate(function(n)
      for _ = 1, n do
        for i = 1, per_flush do ctx:new_entity(entity, { name = "new " .. i, status = "active", price = "1.00" }) end
        assert(flush(ctx))
        ctx:clear_flush() -- the end of a unit of work: a context keeps what it tracked until then
      end
    end, per_flush, per_flush == 1 and 100 or 5)
    if flush == ctx.flush_async then assert(beeorm.consume_async_flush_events(ctx, false)) end -- untimed
    return r
  end)
end
emit("flush1", writes("bench_write", ctx.flush, 1), "ops/s")
emit("flush100", writes("bench_write", ctx.flush, 100), "ops/s")
emit("async1", writes("bench_async", ctx.flush_async, 1), "ops/s")
emit("async100", writes("bench_async", ctx.flush_async, 100), "ops/s")

-- ctx:increment of one row's decimal field, one per flush_async (the consumer after, untimed).
emit("async_incr", median(function()
  local id = ctx:new_entity("bench_async", { name = "counter", status = "active", price = "0.00" }).id
  assert(ctx:flush())
  ctx:clear_flush()
  local r = rate(function(n)
    for _ = 1, n do
      ctx:increment("bench_async", id, "price", "0.01")
      assert(ctx:flush_async())
    ctx:clear_flush()
    end
  end, 1, 100)
  assert(beeorm.consume_async_flush_events(ctx, false))
  return r
end), "ops/s")

-- The consumer: queue `events` events (untimed), then time the default consumer
-- draining them. ---------------------------------------------------------------------
local function consume(queue_work)
  return median(function()
    reset({ "bench_async" })
    local queued = queue_work()
    local t0 = wall()
    local st = assert(engine:consumer {}:run { block = false })
    local dt = wall() - t0
    assert(st.events >= queued, "consumed " .. st.events .. " of " .. queued .. " events")
    say("consumer: %d events by %d workers in %.3f s", st.events, st.workers, dt)
    return st.events / dt
  end)
end

local function insert_rows(n, sync)
  local ids = {}
  for b = 0, n // 100 - 1 do
    for i = 1, 100 do
      ids[#ids + 1] = ctx:new_entity("bench_async", { name = "c" .. (b * 100 + i), status = "active", price = "2.50" }).id
    end
    assert(sync and ctx:flush() or ctx:flush_async())
    ctx:clear_flush()
  end
  return ids
end

emit("consume_insert", consume(function()
  insert_rows(events, false)
  return events
end), "ops/s")

emit("consume_update", consume(function()
  local ids = insert_rows(events, true)
  for b = 0, #ids // 100 - 1 do
    for i = 1, 100 do
      local e = ctx:edit_entity(ctx:get_by_id("bench_async", ids[b * 100 + i]))
      e.name, e.price = "updated", "9.99"
    end
    assert(ctx:flush_async())
    ctx:clear_flush()
  end
  return #ids
end), "ops/s")

-- 50% inserts, 30% updates, 20% deletes of rows that exist, in flushes of 100.
emit("consume_mixed", consume(function()
  local existing = insert_rows(events // 2, true) -- untimed: the rows to update and delete
  local next_existing = 1
  for b = 0, events // 100 - 1 do
    for i = 1, 100 do
      local k = i % 10
      if k < 5 then
        ctx:new_entity("bench_async", { name = "m" .. (b * 100 + i), status = "active", price = "3.00" })
      else
        local id = existing[next_existing]
        next_existing = next_existing + 1
        local row = ctx:get_by_id("bench_async", id)
        if k < 8 then
          local e = ctx:edit_entity(row)
          e.status = "blocked"
        else
          ctx:delete_entity(row)
        end
      end
    end
    assert(ctx:flush_async())
    ctx:clear_flush()
  end
  return events
end), "ops/s")

-- Memory: resident bytes per entity held in the local cache, at memory_rows entities.
-- The rows come from MySQL (MariaDB's sequence engine fills the table at once). -------
local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local pages = tonumber(f:read("a"):match("^%d+%s+(%d+)"))
  f:close()
  return pages * 4096
end
assert(engine:sql_exec("INSERT INTO bench_mem (id, name, status, price) SELECT seq, CONCAT('name ', seq), 'active', "
  .. "12.50 FROM seq_1_to_" .. memory_rows))
local ids = {}
for i = 1, 1000 do ids[i] = 0 end
collectgarbage()
local before = rss()
for b = 0, memory_rows // 1000 - 1 do
  for i = 1, 1000 do ids[i] = b * 1000 + i end
  ctx:get_by_ids("bench_mem", ids)
end
collectgarbage()
local after = rss()
local st = engine:cache_stats("bench_mem")
say("local cache: %d entries, %d bytes counted by the cache (%.0f bytes/entry), RSS +%d bytes",
  st.entries, st.bytes, st.bytes / math.max(1, st.entries), after - before)
assert(st.entries == memory_rows, "the local cache holds " .. st.entries .. " of " .. memory_rows .. " rows")
emit("memory_1m", (after - before) / memory_rows, "bytes/entity")

reset({ "bench_local", "bench_redis", "bench_write", "bench_async", "bench_mem" })
for _, t in ipairs({ "bench_local", "bench_redis", "bench_write", "bench_async", "bench_mem" }) do
  assert(engine:sql_exec("DROP TABLE IF EXISTS " .. t))
end
