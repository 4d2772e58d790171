-- quickstart: connect beeorm to MySQL and Redis and show what it connected to.
-- Run: beeorm run examples/quickstart.lua 'user:password@tcp(127.0.0.1:3306)/app' 127.0.0.1:6379
-- (`make demo` starts throwaway servers and runs this for you.)
local beeorm = require("beeorm")

local mysql_dsn = arg[1] or "root@tcp(127.0.0.1:3306)/app"
local redis_address = arg[2] or "127.0.0.1:6379"

local registry = beeorm.registry()
assert(registry:register_mysql(mysql_dsn))           -- pool "default"
assert(registry:register_redis(redis_address, 0))     -- pool "default", db 0
assert(registry:register_redis(redis_address, 1, "queue"))

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

-- A failed connection is a value, not an exception: here a Redis port where nothing listens.
local bad = beeorm.registry()
assert(bad:register_redis("127.0.0.1:1", 0))
local _, down = bad:validate()
print(("an unreachable pool gives: %s"):format(tostring(down)))
print(("  err.code = %s, err.temporary = %s"):format(down.code, tostring(down.temporary)))
