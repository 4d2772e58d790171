-- A consumer child process for the consumer specs, run in the `beeorm` host:
--   beeorm run spec/support/async_consumer.lua REDIS_DB MODE OUT MAX_BATCH WORKERS DEFS
-- MODE "once": drain what is queued and exit; "block": consume until SIGTERM/SIGINT.
-- Writes one line to OUT at the end: "ok entries events batches failed skipped retried"
-- or "err <code> <temporary> <message>" (exit code 0 / 1). The engine has the MySQL
-- pool "default", the Redis pool "default" on REDIS_DB, and the entity definitions
-- support.async_defs[DEFS] ("none": no entities, the events carry what the consumer
-- needs).
local beeorm = require("beeorm")
local servers = require("support.servers")

local db, mode, out = tonumber(arg[1]), arg[2], arg[3]
local max_batch, workers, defs = tonumber(arg[4] or "0"), tonumber(arg[5] or "1"), arg[6] or "none"
assert(db and (mode == "once" or mode == "block") and out, "usage: async_consumer.lua REDIS_DB once|block OUT")

local function finish(line, code)
  local f = assert(io.open(out, "w"))
  f:write(line, "\n")
  f:close()
  os.exit(code)
end

local registry = beeorm.registry()
assert(registry:register_mysql(servers.mysql))
assert(registry:register_redis(servers.redis, db))
for _, def in ipairs(require("support.async_defs")[defs]()) do assert(registry:register_entity(def)) end
local engine, verr = registry:validate()
if not engine then finish("err " .. tostring(verr.code) .. " " .. tostring(verr.temporary) .. " " .. tostring(verr), 1) end

local opts = { max_retries = 50 }
if max_batch and max_batch > 0 then opts.max_batch = max_batch end
if workers and workers > 1 then opts.workers = workers end
local st, err = beeorm.consume_async_flush_events(engine:context(), mode == "block", opts)
if not st then finish("err " .. tostring(err.code) .. " " .. tostring(err.temporary) .. " " .. tostring(err), 1) end
finish(string.format("ok %d %d %d %d %d %d", st.entries, st.events, st.batches, st.failed, st.skipped, st.retried), 0)
