-- Loader and sync-flush benchmark: beeorm rates beside the raw client libraries,
-- measured in the same run. Run through `make bench` (starts throwaway servers), or:
--   beeorm run bench/loaders.lua <mysql dsn> <redis host:port> [build dir]
-- BENCH_SECONDS (default 0.5) sets each run's length; every figure is the median of 3.
local beeorm = require("beeorm")

local mysql_dsn, redis_addr, build_dir = arg[1], arg[2], arg[3] or "build"
assert(mysql_dsn and redis_addr, "usage: loaders.lua <mysql dsn> <redis host:port> [build dir]")
local seconds = tonumber(os.getenv("BENCH_SECONDS") or "0.5")
local wall = beeorm.monotonic

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local median3 = common.median3

-- Runs body(n) in growing batches until `seconds` of wall time passed; returns ops/s.
local function rate(body, per_call)
  local n, t0 = 0, wall()
  local batch = 1000
  repeat
    body(batch)
    n = n + batch * (per_call or 1)
  until wall() - t0 >= seconds
  return n / (wall() - t0)
end

local raw = common.raw_limits(build_dir, redis_addr, mysql_dsn, seconds)

local registry = beeorm.registry()
assert(registry:register_mysql(mysql_dsn))
assert(registry:register_redis(redis_addr, 9))
local fields = {
  { "name", "string", length = 100, required = true },
  { "status", "enum", values = { "active", "blocked" }, required = true },
  { "price", "decimal", precision = 10, scale = 2 },
}
assert(registry:register_entity { name = "bench_local", local_cache = 100000, redis_cache = true, fields = fields })
assert(registry:register_entity { name = "bench_redis", redis_cache = true, fields = fields })
assert(registry:register_entity { name = "bench_plain", fields = fields })
local engine = assert(registry:validate())
for _, t in ipairs({ "bench_local", "bench_redis", "bench_plain" }) do
  assert(engine:sql_exec("DROP TABLE IF EXISTS " .. t))
end
assert(engine:sync_schema())
local ctx = engine:context()

local function seed(name, n)
  local ids = {}
  for i = 1, n do
    ids[i] = ctx:new_entity(name, { name = "row " .. i, status = "active", price = "12.50" }).id
  end
  assert(ctx:flush())
  return ids
end
local local_ids, redis_ids = seed("bench_local", 1000), seed("bench_redis", 1000)
for _, id in ipairs(local_ids) do ctx:get_by_id("bench_local", id) end -- warm
for _, id in ipairs(redis_ids) do ctx:get_by_id("bench_redis", id) end

local results = {}
-- target: an absolute rate, or (when 10 or less) a ratio to the peer
local function add(name, value, unit, peer_name, peer, target, target_text)
  results[#results + 1] = { name = name, value = value, unit = unit, peer_name = peer_name, peer = peer,
                            target = target > 10 and target or nil, ratio_target = target <= 10 and target or nil,
                            target_text = target_text }
end

local get = ctx.get_by_id
add("get_by_id, local cache hit", median3(function()
  local i = 0
  return rate(function(n)
    for _ = 1, n do
      i = i % 1000 + 1
      get(ctx, "bench_local", local_ids[i])
    end
  end)
end), "gets/s", nil, nil, 1e6, ">= 1M/s")

local redis_hit, redis_hit_raw = common.interleaved_with_redis_get(build_dir, redis_addr, mysql_dsn, seconds,
  function()
    local i = 0
    return rate(function(n)
      for _ = 1, n do
        i = i % 1000 + 1
        get(ctx, "bench_redis", redis_ids[i])
      end
    end)
  end)
add("get_by_id, Redis hit", redis_hit, "gets/s", "raw hiredis GET (interleaved)", redis_hit_raw, 0.8, ">= 0.8x raw")

local batches = {}
for b = 0, 9 do
  local ids = {}
  for i = 1, 100 do ids[i] = redis_ids[b * 100 + i] end
  batches[b + 1] = ids
end
add("get_by_ids of 100, Redis hits", median3(function()
  local b = 0
  return rate(function(n)
    for _ = 1, n do
      b = b % 10 + 1
      ctx:get_by_ids("bench_redis", batches[b])
    end
  end, 100)
end) , "entities/s", "raw hiredis GET pipelined x100", raw.redis_get_pipelined100, 300000, ">= 300k/s")

add("sync flush of 100 new entities", median3(function()
  return rate(function(n)
    for _ = 1, n / 100 do
      for i = 1, 100 do ctx:new_entity("bench_plain", { name = "new " .. i, status = "active", price = "1.00" }) end
      assert(ctx:flush())
    end
  end, 1)
end), "entities/s", "raw multi-row INSERT x100 in a transaction", raw.mysql_insert100, 50000, ">= 50k/s")

common.report(results)
local stats = engine:cache_stats("bench_local")
print(("local cache: %d entries, %d bytes (%.0f bytes/entry), %d hits, %d misses"):format(stats.entries, stats.bytes,
  stats.bytes / math.max(1, stats.entries), stats.hits, stats.misses))
