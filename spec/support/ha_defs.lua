-- What spec/ha_load_spec.lua and its child processes (ha_producer.lua, ha_consumer.lua)
-- share: the entity, and the options of the Redis pool registered through Sentinel.
local M = {}

M.NAME = "HaItem"
M.TABLE = "ha_item"

-- Rows with a tag that no other row has (no unique index: a row applied twice would
-- show as two rows with one tag, not as an error).
function M.entity()
  return {
    name = M.NAME,
    table = M.TABLE,
    redis_cache = true,
    local_cache = 1000,
    fields = {
      { "tag", "string", length = 40, required = true },
      { "n", "int" },
    },
  }
end

-- Short timeouts, so that calls fail fast while the primary is gone; replicas: how
-- many replicas must acknowledge a flush_async's entry (WAIT) before it returns true.
-- BEEORM_HA_TIMEOUT_MS / BEEORM_HA_WAIT_TIMEOUT_MS / BEEORM_HA_CONNECT_TIMEOUT_MS
-- override them (the spec passes its environment to the children).
function M.redis_options(replicas)
  local function ms(name, default)
    return math.tointeger(tonumber(os.getenv(name) or "")) or default
  end
  local o = {
    timeout_ms = ms("BEEORM_HA_TIMEOUT_MS", 2000),
    connect_timeout_ms = ms("BEEORM_HA_CONNECT_TIMEOUT_MS", 500),
  }
  if replicas > 0 then
    o.replicas = replicas
    o.wait_timeout_ms = ms("BEEORM_HA_WAIT_TIMEOUT_MS", 1000)
  end
  return o
end

-- What both children do first: a log opened for appending (line(fmt, ...) writes and
-- flushes one line), their pid, and an engine whose Redis is behind the set's sentinels.
function M.child(sentinels_csv, master, replicas, log_path)
  local beeorm = require("beeorm")
  local servers = require("support.servers")
  local log = assert(io.open(log_path, "a"))
  local function line(fmt, ...)
    log:write(string.format(fmt, ...), "\n")
    log:flush()
  end
  local stat = assert(io.open("/proc/self/stat"))
  local pid = stat:read("n")
  stat:close()
  local sentinels = {}
  for addr in sentinels_csv:gmatch("[^,]+") do sentinels[#sentinels + 1] = addr end
  local registry = beeorm.registry()
  assert(registry:register_mysql(servers.mysql))
  assert(registry:register_redis_sentinel(master, 0, sentinels, M.redis_options(replicas)))
  assert(registry:register_entity(M.entity()))
  return assert(registry:validate()), line, pid
end

return M
