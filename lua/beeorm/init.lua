--- beeorm: a data layer for Lua 5.4 over MySQL/MariaDB and Redis.
-- The engine is C (module beeorm.core); this facade is the public Lua entry point.
local core = require("beeorm.core")

local beeorm = {
  _VERSION = core._VERSION,
  -- Metatable shared by every error table returned as the second value of a failed
  -- operation: { code = <MySQL errno or short string>, message, temporary, pool, entity, field }.
  Error = core.Error,
}

--- A new, empty registry of pools (and, later, entities).
function beeorm.registry()
  return core.registry()
end

--- Parses a MySQL DSN without connecting. Returns a settings table (the password
-- is reported only as `password_set`) or nil, err.
beeorm.parse_mysql_dsn = core.parse_mysql_dsn

--- Parses a Redis address (host:port, host:port:db, redis://, unix:// or a socket path).
beeorm.parse_redis_address = core.parse_redis_address

--- Seconds on a monotonic clock with nanosecond resolution (for timing and benchmarks).
beeorm.monotonic = core.monotonic

--- True when v is an error table produced by beeorm.
function beeorm.is_error(v)
  return type(v) == "table" and getmetatable(v) == core.Error
end

return beeorm
