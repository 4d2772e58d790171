--- beeorm: a data layer for Lua 5.4 over MySQL/MariaDB and Redis.
-- The engine is C (module beeorm.core); this facade is the public Lua entry point.
local core = require("beeorm.core")

local beeorm = {
  _VERSION = core._VERSION,
  -- Metatable shared by every error table returned as the second value of a failed
  -- operation: { code = <MySQL errno or short string>, message, temporary, pool, entity, field }.
  Error = core.Error,
}
core.Engine = core.Engine or {}

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

--- Applies queued flush_async events to MySQL (BeeORM's function). block = false
-- drains what is queued and returns; block = true waits for events until SIGINT,
-- SIGTERM or beeorm.stop_consuming(). Returns a stats table, or nil, err.
function beeorm.consume_async_flush_events(ctx, block, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.block = block and true or false
  return core.consume(ctx, o)
end

--- Stops a blocking consumer (from a signal handler, another coroutine's callback...).
beeorm.stop_consuming = core.stop_consuming

--- Overrides whether a MySQL errno is temporary (retried) or permanent (error list)
-- for consumers; nil restores the default classification.
beeorm.set_error_class = core.set_error_class

local Consumer = {}
Consumer.__index = Consumer

--- engine:consumer{ workers = N, resolver = function(event) ... end, max_retries =, max_batch = }
-- workers: default 11 (as BeeORM) but at most twice the CPUs, never more than the queues.
function core.Engine.consumer(engine, opts)
  opts = opts or {}
  assert(type(opts) == "table", "consumer options must be a table")
  if opts.resolver ~= nil then assert(type(opts.resolver) == "function", "resolver must be a function") end
  return setmetatable({ engine = engine, opts = opts }, Consumer)
end

--- consumer:run{ block = true|false } -> stats | nil, err
function Consumer:run(run_opts)
  local o = { block = run_opts and run_opts.block or false, resolver = self.opts.resolver,
              max_retries = self.opts.max_retries, max_batch = self.opts.max_batch,
              workers = self.opts.workers }
  return core.consume(self.engine, o)
end

function Consumer:stop()
  core.stop_consuming()
end

local Queue = {}
Queue.__index = Queue
Queue.__name = "beeorm.Queue"

--- engine:read_async_flush_events() -> queue objects, one per (MySQL pool, shard)
function core.Engine.read_async_flush_events(engine)
  local out = {}
  for i, name in ipairs(engine:queues()) do
    out[i] = setmetatable({ engine = engine, index = i, name = name }, Queue)
  end
  return out
end

function Queue:stats() return self.engine:queue_stats(self.index) end
function Queue:errors(n, opts) return self.engine:queue_errors(self.index, n, opts) end
--- q:retry(ev [, { force = true }]): refused with code "stale" when a newer change of its
-- row was applied since it was parked, unless forced.
function Queue:retry(ev, opts) return self.engine:queue_retry(self.index, ev, opts) end
function Queue:skip(ev, event) return self.engine:queue_skip(self.index, ev, event) end

--- True when v is an error table produced by beeorm.
function beeorm.is_error(v)
  return type(v) == "table" and getmetatable(v) == core.Error
end

return beeorm
