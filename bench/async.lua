-- flush_async and consumer benchmark: beeorm rates beside the raw client libraries,
-- measured in the same run. Run through `make bench`, or:
--   beeorm run bench/async.lua <mysql dsn> <redis host:port> [build dir]
-- BENCH_SECONDS (default 0.5) sets each timed run; BENCH_EVENTS (default 40000) the
-- size of each consumer workload. Every figure is the median of 3 runs.
local beeorm = require("beeorm")

local mysql_dsn, redis_addr, build_dir = arg[1], arg[2], arg[3] or "build"
assert(mysql_dsn and redis_addr, "usage: async.lua <mysql dsn> <redis host:port> [build dir]")
local seconds = tonumber(os.getenv("BENCH_SECONDS") or "0.5")
local events = tonumber(os.getenv("BENCH_EVENTS") or "40000")
local wall = beeorm.monotonic

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local median3 = common.median3

local raw = common.raw_limits(build_dir, redis_addr, mysql_dsn, seconds)

local registry = beeorm.registry()
assert(registry:register_mysql(mysql_dsn))
assert(registry:register_redis(redis_addr, 9))
assert(registry:register_entity {
  name = "bench_async", redis_cache = true,
  fields = {
    { "name", "string", length = 100, required = true },
    { "status", "enum", values = { "active", "blocked" }, required = true },
    { "price", "decimal", precision = 10, scale = 2 },
  },
})
local engine = assert(registry:validate())
local ctx = engine:context()

local function reset()
  assert(engine:sql_exec("DROP TABLE IF EXISTS bench_async"))
  assert(engine:sql_exec("DELETE FROM _beeorm_applied WHERE queue LIKE 'default:%'") or true)
  assert(engine:sync_schema())
  assert(beeorm.consume_async_flush_events(ctx, false))
end
engine:sql_exec("CREATE TABLE IF NOT EXISTS _beeorm_applied (queue varchar(100) NOT NULL PRIMARY KEY, ms bigint unsigned NOT NULL, seq bigint unsigned NOT NULL)")
reset()

local results = {}
local function add(r) results[#results + 1] = r end

local function timed(body, per_call)
  local n, t0 = 0, wall()
  repeat
    body()
    n = n + per_call
  until wall() - t0 >= seconds
  return n / (wall() - t0)
end

add { name = "flush_async of 100 new entities", unit = "entities/s", target = 100000, target_text = ">= 100k/s",
  value = median3(function()
    return timed(function()
      for i = 1, 100 do ctx:new_entity("bench_async", { name = "n" .. i, status = "active", price = "1.00" }) end
      assert(ctx:flush_async())
    end, 100)
  end) }
reset()

local one, one_raw, one_xadd = common.interleaved_with_redis_get(build_dir, redis_addr, mysql_dsn, seconds, function()
  return timed(function()
    ctx:new_entity("bench_async", { name = "one", status = "active" })
    assert(ctx:flush_async())
  end, 1)
end)
add { name = "flush_async of 1 new entity", unit = "flushes/s", peer_name = "raw hiredis GET (interleaved)",
  peer = one_raw, ratio_target = 0.8, target_text = ">= 0.8x raw", value = one }
add { name = "flush_async of 1 new entity", unit = "flushes/s", peer_name = "raw MULTI XADD SET EXEC (interleaved)",
  peer = one_xadd, target_text = "(the least it must do)", value = one }
reset()

-- Consumer workloads: queue `events` events, then time one consumer draining them
-- (workers: nil as engine:consumer runs by default, 11 but at most 2 per CPU and 8 per
-- MySQL pool; or a number). default_workers: what the default came to.
local default_workers
local function consume_rate(queue_work, workers)
  return median3(function()
    reset()
    queue_work()
    local t0 = wall()
    local st = assert(engine:consumer { workers = workers }:run { block = false })
    local dt = wall() - t0
    assert(st.events >= events, "consumed " .. st.events .. " of " .. events .. " events")
    if not workers then default_workers = st.workers end
    return st.events / dt
  end)
end

local function queue_inserts()
  for _ = 1, events / 100 do
    for i = 1, 100 do ctx:new_entity("bench_async", { name = "c" .. i, status = "active", price = "2.50" }) end
    assert(ctx:flush_async())
  end
end
local insert_rate = consume_rate(queue_inserts, nil)
add { name = "consumer: inserts (default: " .. default_workers .. " workers)", unit = "events/s",
  peer_name = "raw bulk binding x1000", peer = raw.mysql_bulk1000, ratio_target = 0.6, target_text = ">= 0.6x raw",
  value = insert_rate }
add { name = "consumer: inserts (1 worker)", unit = "events/s", peer_name = "raw multi-row INSERT x1000",
  peer = raw.mysql_insert1000, target_text = "(for reference)", value = consume_rate(queue_inserts, 1) }

local update_ids
add { name = "consumer: updates (default workers)", unit = "events/s", peer_name = "raw UPDATE per statement, tx of 1000",
  peer = raw.mysql_update_tx1000, ratio_target = 4, target_text = ">= 4x raw",
  value = consume_rate(function()
    update_ids = {}
    for _ = 1, events / 100 do
      for i = 1, 100 do
        update_ids[#update_ids + 1] = ctx:new_entity("bench_async", { name = "u" .. i, status = "active" }).id
      end
      assert(ctx:flush())
    end
    for b = 0, events / 100 - 1 do
      for i = 1, 100 do
        local e = ctx:edit_entity(ctx:get_by_id("bench_async", update_ids[b * 100 + i]))
        e.name, e.price = "updated", "9.99"
      end
      assert(ctx:flush_async())
    end
  end, nil) }

common.report(results)
