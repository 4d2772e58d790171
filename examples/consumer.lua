-- consumer: a long-running flush_async consumer, as an operator runs it.
--
-- Run: beeorm run examples/consumer.lua MYSQL_DSN REDIS_ADDR [--once] [--workers N] [--resolver FILE]
--   MYSQL_DSN   e.g. 'app:secret@tcp(127.0.0.1:3306)/app' (the database the events go to)
--   REDIS_ADDR  the Redis holding the queues, e.g. 127.0.0.1:6379 or 127.0.0.1:6379:5 (db 5)
--   --once      drain what is queued and exit (a start-up or cron job)
--   --workers N worker threads (default: beeorm's, at most 2 per CPU)
--   --resolver  the error resolver module (default: resolver.lua beside this script)
--
-- It needs no entity definitions: queued events carry the table, columns and values.
-- At start it drains what is queued (non-blocking), then, unless --once, blocks on the
-- queues until SIGINT or SIGTERM (Ctrl-C, `kill`, systemd stop): the batch in hand is
-- finished, and it prints a summary and exits 0. Exit 1 when the servers cannot be
-- reached or consuming fails (a temporary error outlasting the retries in --once mode),
-- 2 on bad arguments.
--
-- A signal during the start-up drain ends the process at once; nothing is lost or
-- applied twice (a batch commits together with its queue's mark in MySQL).
--
-- Several of these may run at once, on one machine or many: they share the queues
-- through leases in Redis, and each event still reaches MySQL exactly once.
local beeorm = require("beeorm")

local USAGE = "usage: beeorm run examples/consumer.lua MYSQL_DSN REDIS_ADDR [--once] [--workers N] [--resolver FILE]"

local function fail(code, fmt, ...)
  io.stderr:write(("consumer: " .. fmt .. "\n"):format(...))
  os.exit(code, true) -- true: close the Lua state (and the engine) on the way out
end

-- Arguments.
local opts = { once = false }
local positional = {}
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--once" then
    opts.once = true
  elseif a == "--workers" or a == "--resolver" then
    i = i + 1
    if not arg[i] then fail(2, "%s needs a value\n%s", a, USAGE) end
    opts[a:sub(3)] = arg[i]
  elseif a == "-h" or a == "--help" then
    print(USAGE)
    os.exit(0, true)
  elseif a:sub(1, 1) == "-" then
    fail(2, "unknown option '%s'\n%s", a, USAGE)
  else
    positional[#positional + 1] = a
  end
  i = i + 1
end
if #positional ~= 2 then fail(2, "expected MYSQL_DSN and REDIS_ADDR\n%s", USAGE) end
local mysql_dsn, redis_address = positional[1], positional[2]
local workers
if opts.workers then
  workers = math.tointeger(tonumber(opts.workers))
  if not workers or workers < 1 or workers > 256 then fail(2, "--workers must be 1 to 256") end
end

-- The resolver: a Lua file returning function(ev) (see examples/resolver.lua).
local resolver_file = opts.resolver or ((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/resolver.lua")
local chunk, lerr = loadfile(resolver_file)
if not chunk then fail(1, "cannot load the resolver: %s", lerr) end
local ok, resolver = pcall(chunk)
if not ok then fail(1, "the resolver %s failed to load: %s", resolver_file, tostring(resolver)) end
if type(resolver) ~= "function" then
  fail(1, "the resolver %s must return a function, not a %s", resolver_file, type(resolver))
end

-- Pools: the MySQL database the events go to and the Redis that holds the queues.
local registry = beeorm.registry()
local rok, rerr = registry:register_mysql(mysql_dsn)
if rok then rok, rerr = registry:register_redis(redis_address) end
if not rok then fail(2, "%s", tostring(rerr)) end
local engine, err = registry:validate()
if not engine then fail(1, "cannot connect: %s", tostring(err)) end

-- Counters over both runs, and the queues as they are left.
local total = { events = 0, entries = 0, batches = 0, failed = 0, skipped = 0, retried = 0 }
local function add(stats)
  for k in pairs(total) do total[k] = total[k] + stats[k] end
end
local function queue_totals()
  local t = { queues = 0, len = 0, errors = 0 }
  for _, q in ipairs(engine:read_async_flush_events()) do
    local s, serr = q:stats()
    if not s then return nil, serr end
    t.queues, t.len, t.errors = t.queues + 1, t.len + s.len, t.errors + s.errors
  end
  return t
end
local function summary(label)
  local q, qerr = queue_totals()
  print(("consumer %s: %d event(s) in %d entries and %d batch(es); %d failed (kept in the error lists), "
    .. "%d skipped, %d retried"):format(label, total.events, total.entries, total.batches, total.failed,
    total.skipped, total.retried))
  if q then
    print(("queues: %d, waiting entries: %d, entries in error lists: %d"):format(q.queues, q.len, q.errors))
  else
    print("queues: stats unavailable: " .. tostring(qerr))
  end
end

local consumer = engine:consumer { workers = workers, resolver = resolver }
local started = beeorm.monotonic()

-- 1. Drain what is queued (non-blocking): catches up after a deploy or a crash.
local stats, cerr = consumer:run { block = false }
if not stats then
  summary("failed")
  fail(1, "draining failed: %s", tostring(cerr))
end
add(stats)
print(("drained at start-up: %d event(s), %d failed, %d skipped (%d worker(s))"):format(stats.events,
  stats.failed, stats.skipped, stats.workers))

-- 2. Block on the queues until SIGINT/SIGTERM. beeorm handles those two signals while a
-- blocking consume runs: it finishes the batch in hand and returns the stats.
if not opts.once then
  print("waiting for events (SIGINT or SIGTERM stops)")
  io.stdout:flush()
  stats, cerr = consumer:run { block = true }
  if not stats then
    summary("failed")
    fail(1, "consuming failed: %s", tostring(cerr))
  end
  add(stats)
end

summary(("stopped after %.1f s"):format(beeorm.monotonic() - started))
engine:close()
