-- quickstart: beeorm end to end. Connect to MySQL and Redis, define an entity, bring the
-- schema up to date, write with flush (synchronous) and flush_async (queued in Redis),
-- run the consumer that applies the queue to MySQL, read everything back through the
-- caches, and look at the queues.
--
-- Run: beeorm run examples/quickstart.lua 'user:password@tcp(127.0.0.1:3306)/app' 127.0.0.1:6379
--   REDIS_ADDR may name a db: 127.0.0.1:6379:5 (default db 0).
-- (`make demo` starts throwaway servers and runs this for you.)
--
-- It owns the table `category` of that database: rows left by an earlier run are
-- deleted (through beeorm, so the caches follow) before it starts.
local beeorm = require("beeorm")

local mysql_dsn = arg[1] or "root@tcp(127.0.0.1:3306)/app"
local redis_address = arg[2] or "127.0.0.1:6379"

-- Prints a step header, so the output reads as a story.
local function step(n, title) print(("\n%d. %s"):format(n, title)) end

-- Stops with a readable message (no traceback) when an operation returns nil, err.
-- os.exit(1, true) closes the Lua state first, so the engine is closed cleanly.
local function check(ok, err, what)
  if ok == nil then
    io.stderr:write(("quickstart: %s failed: %s\n"):format(what or "an operation", tostring(err)))
    os.exit(1, true)
  end
  return ok
end

-- "Cars, Bikes" from a list of entity tables.
local function names(rows)
  local out = {}
  for i, row in ipairs(rows) do out[i] = row.name end
  return table.concat(out, ", ")
end

------------------------------------------------------------------------------------------
step(1, "connect and define an entity")
local registry = beeorm.registry()
check(registry:register_mysql(mysql_dsn))            -- pool "default"
check(registry:register_redis(redis_address))        -- pool "default" (db from the address, else 0)
check(registry:register_entity {
  name = "category",
  local_cache = true, redis_cache = true, cache_all = true,
  fields = {
    { "name", "string", length = 100, required = true, unique = "name" },
    { "parent", "ref", entity = "category" },
    { "price", "decimal", precision = 10, scale = 2 },
    { "status", "enum", values = { "active", "blocked" }, required = true },
    { "tags", "set", values = { "new", "sale", "top" } },
  },
  indexes = { by_status = { "status", cached = true } },
})

local engine, err = registry:validate()              -- connects to every pool
if not engine then
  -- err.code is the MySQL errno or a short string; tostring gives one line, no password.
  io.stderr:write("quickstart: cannot connect: ", tostring(err), "\n")
  os.exit(1, true)
end
print(("beeorm %s connected:"):format(beeorm._VERSION))
for _, pool in ipairs(engine:pools()) do
  print(("  %-8s %-6s %-45s server %s"):format(pool.name, pool.kind, pool.address, pool.server_version))
end

------------------------------------------------------------------------------------------
step(2, "schema: what would change, then apply the safe changes")
for _, alter in ipairs(check(engine:schema_alters())) do
  print(("  [%s] %s"):format(alter.safe and "safe" or "UNSAFE", alter.sql))
end
local applied = check(engine:sync_schema())
print(("applied %d statement(s); left to do: %d"):format(applied, #check(engine:schema_alters())))

------------------------------------------------------------------------------------------
step(3, "values are checked against their fields before anything is written")
local canonical = check(engine:check_values("category", {
  name = "Cars", status = "active", price = "19.9", tags = { "top", "new" },
}))
print(("canonical values: price=%s tags=%s"):format(canonical.price, canonical.tags))
-- ... and a bad one is a value, not an exception.
local _, bad = engine:check_values("category", { name = "Cars", status = "archived" })
print("a bad value gives: " .. tostring(bad))

------------------------------------------------------------------------------------------
step(4, "flush: new entities, written to MySQL now")
local ctx = engine:context()                         -- one per request/coroutine
local leftovers = check(ctx:get_all("category"))
for _, row in ipairs(leftovers) do ctx:delete_entity(row) end
check(ctx:flush(), nil, "removing an earlier run's rows")
print(("removed %d row(s) of an earlier run"):format(#leftovers))

local cars = ctx:new_entity("category", { name = "Cars", status = "active", price = "19.9", tags = { "top", "new" } })
local bikes = ctx:new_entity("category", { name = "Bikes", status = "active", price = 5 })
local ebikes = ctx:new_entity("category", { name = "E-bikes", status = "active", parent = bikes, tags = "new" })
print(("ids exist before the flush: %s"):format(type(cars.id) == "number" and "yes" or "no"))
check(ctx:flush())                                   -- one transaction; caches after the commit
print(("flush: inserted 3 categories (%s)"):format(names({ cars, bikes, ebikes })))

------------------------------------------------------------------------------------------
step(5, "flush_async: the caches change now, the SQL is queued in Redis")
local boats = ctx:new_entity("category", { name = "Boats", status = "blocked", price = "120000" })
local edit = ctx:edit_entity(check(ctx:get_by_id("category", cars.id)))
edit.price = "17.5"                                  -- only changed columns are written
check(ctx:flush_async())
print("flush_async: queued 1 insert (Boats) and 1 update (Cars price 17.50)")

local queued = 0
for _, q in ipairs(engine:read_async_flush_events()) do queued = queued + check(q:stats()).len end
local in_mysql = check(engine:sql_query("SELECT COUNT(*) AS n FROM category"))[1].n
print(("before the consumer: cache sees Boats: %s; MySQL rows: %s; queued entries: %d")
  :format(ctx:get_by_id("category", boats.id) and "yes" or "no", in_mysql, queued))

------------------------------------------------------------------------------------------
step(6, "consume: apply the queue to MySQL (non-blocking: drain, then return)")
local stats = check(beeorm.consume_async_flush_events(ctx, false))
print(("consumed %d event(s), %d failed, %d skipped"):format(stats.events, stats.failed, stats.skipped))

------------------------------------------------------------------------------------------
step(7, "read back through the caches")
local c2 = engine:context()
print(("get_by_id(Cars): price=%s tags=%s"):format(c2:get_by_id("category", cars.id).price,
  c2:get_by_id("category", cars.id).tags))
print(("get_by_unique_index(name=Boats): %s, %s"):format(check(c2:get_by_unique_index("category", "name", "Boats")).name,
  c2:get_by_unique_index("category", "name", "Boats").status))
print(("get_by_index(by_status=active): %s"):format(names(check(c2:get_by_index("category", "by_status", "active")))))
print(("get_by_index(by_status=blocked): %s"):format(names(check(c2:get_by_index("category", "by_status", "blocked")))))
print(("get_by_reference(parent=Bikes): %s"):format(names(check(c2:get_by_reference("category", "parent", bikes.id)))))
print(("get_all: %d categories"):format(#check(c2:get_all("category"))))
local cs = engine:cache_stats("category")
print(("local cache: %d entries, %d hits, %d misses"):format(cs.entries, cs.hits, cs.misses))

------------------------------------------------------------------------------------------
step(8, "plain SQL: what MySQL holds now")
for _, row in ipairs(check(engine:sql_query(
  "SELECT name, status, price, tags FROM category WHERE status IN (?, ?) ORDER BY name", { "active", "blocked" }))) do
  print(("row: name=%s status=%s price=%s tags=%s"):format(row.name, row.status, row.price or "NULL",
    row.tags or "NULL"))
end

------------------------------------------------------------------------------------------
step(9, "queue stats")
local total = { len = 0, pending = 0, errors = 0 }
local queues = engine:read_async_flush_events()
for _, q in ipairs(queues) do
  local s = check(q:stats())  -- { len, oldest_event_seconds, lag, pending, errors }
  for k in pairs(total) do total[k] = total[k] + s[k] end
end
print(("queues: %d, waiting entries: %d, pending: %d, errors: %d"):format(#queues, total.len, total.pending,
  total.errors))

------------------------------------------------------------------------------------------
step(10, "a failed connection is a value too (a Redis port where nothing listens)")
local down = beeorm.registry()
check(down:register_redis("127.0.0.1:1", 0))
local _, derr = down:validate()
print(("an unreachable pool gives: %s (temporary = %s)"):format(tostring(derr), tostring(derr.temporary)))

engine:close()
print("\ndone")
