-- An id allocator child for spec/sentinel_spec.lua, run in the `beeorm` host:
--   beeorm run spec/support/sentinel_ids.lua OUT MASTER_NAME SENTINELS(comma-separated)
-- Takes ids of sn_item without end (new_entity, then clear_flush), retrying temporary
-- errors (a failover), and appends each id to OUT (flushed every line) until killed.
-- A permanent error ends it with exit code 1 and the error on stderr.
local beeorm = require("beeorm")
local servers = require("support.servers")

local out, master, list = arg[1], arg[2], arg[3]
local sentinels = {}
for s in list:gmatch("[^,]+") do sentinels[#sentinels + 1] = s end

-- A new engine every 20 ids: each starts with small id ranges, so Redis is asked often.
local function engine_new()
  local reg = beeorm.registry()
  assert(reg:register_mysql(servers.mysql))
  assert(reg:register_redis_sentinel(master, 0, sentinels, "default", { timeout_ms = 2000, connect_timeout_ms = 500 }))
  assert(reg:register_entity({ name = "sn_item", redis_cache = true, local_cache = true,
    fields = { { "name", "string", length = 60 }, { "n", "int" } } }))
  return reg:validate()
end

local f = assert(io.open(out, "a"))
while true do
  local engine, verr = engine_new()
  if not engine then
    if not verr.temporary then
      io.stderr:write("permanent error: ", tostring(verr), "\n")
      os.exit(1)
    end
    os.execute("sleep 0.05")
  else
    local ctx = engine:context()
    local taken = 0
    while taken < 20 do
      local row, err = ctx:new_entity("sn_item")
      if row then
        f:write(row.id, "\n")
        f:flush()
        ctx:clear_flush()
        taken = taken + 1
      elseif err.temporary then
        os.execute("sleep 0.05")
      else
        io.stderr:write("permanent error: ", tostring(err), "\n")
        os.exit(1)
      end
    end
    engine:close()
  end
end
