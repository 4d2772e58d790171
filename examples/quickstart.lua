-- quickstart: connect beeorm to MySQL and Redis, define an entity, bring the schema
-- up to date, validate values, and use plain SQL.
-- Run: beeorm run examples/quickstart.lua 'user:password@tcp(127.0.0.1:3306)/app' 127.0.0.1:6379
-- (`make demo` starts throwaway servers and runs this for you.)
local beeorm = require("beeorm")

local mysql_dsn = arg[1] or "root@tcp(127.0.0.1:3306)/app"
local redis_address = arg[2] or "127.0.0.1:6379"

local registry = beeorm.registry()
assert(registry:register_mysql(mysql_dsn))           -- pool "default"
assert(registry:register_redis(redis_address, 0))     -- pool "default", db 0
assert(registry:register_redis(redis_address, 1, "queue"))
assert(registry:register_entity {
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

local engine, err = registry:validate()
if not engine then
  -- err.code is the MySQL errno or a short string; tostring gives one line, no password.
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

print(("beeorm %s connected:"):format(beeorm._VERSION))
for _, pool in ipairs(engine:pools()) do
  print(("  %-8s %-6s %-45s server %s"):format(pool.name, pool.kind, pool.address, pool.server_version))
end

-- Schema: what would change, then apply the safe changes.
print("schema changes:")
for _, alter in ipairs(assert(engine:schema_alters())) do
  print(("  [%s] %s"):format(alter.safe and "safe" or "UNSAFE", alter.sql))
end
print(("applied %d statement(s); left to do: %d"):format(assert(engine:sync_schema()), #engine:schema_alters()))

-- Values are checked against their fields before anything is written (G7) ...
local canonical = assert(engine:check_values("category", {
  name = "Cars", status = "active", price = "19.9", tags = { "top", "new" },
}))
print(("canonical values: price=%s tags=%s"):format(canonical.price, canonical.tags))
-- ... and a bad one is a value, not an exception.
local _, bad = engine:check_values("category", { name = "Cars", status = "archived" })
print("a bad value gives: " .. tostring(bad))

-- Plain SQL with bound arguments.
assert(engine:sql_exec("DELETE FROM category"))
assert(engine:sql_exec("INSERT INTO category (id, name, status, price, tags) VALUES (?, ?, ?, ?, ?)",
  { 1, canonical.name, canonical.status, canonical.price, canonical.tags }))
for _, row in ipairs(assert(engine:sql_query("SELECT id, name, price, tags FROM category"))) do
  print(("row: id=%s name=%s price=%s tags=%s"):format(row.id, row.name, row.price, row.tags))
end

-- A failed connection is a value too: here a Redis port where nothing listens.
local down = beeorm.registry()
assert(down:register_redis("127.0.0.1:1", 0))
local _, derr = down:validate()
print(("an unreachable pool gives: %s (temporary = %s)"):format(tostring(derr), tostring(derr.temporary)))
