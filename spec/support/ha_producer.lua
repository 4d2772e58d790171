-- The producer of spec/ha_load_spec.lua, run in the `beeorm` host:
--   beeorm run spec/support/ha_producer.lua SENTINELS MASTER REPLICAS LOG STOP PREFIX RATE SEED
-- SENTINELS: "host:port,host:port,..."; MASTER: the Sentinel master name; REPLICAS: the
-- pool's `replicas` option (1: flush_async waits until one replica has the entry); LOG:
-- the file it appends to (flushed after every line); STOP: a file whose existence means
-- "stop" (the spec's SIGTERM reaches a wrapper shell that creates it: the Lua host has
-- no signal handler of its own); PREFIX: the start of every tag; RATE: flushes per
-- second (0: as fast as it goes); SEED: for the random batch sizes.
--
-- In a loop, until STOP exists: a fresh context, 1 to 20 new HaItem rows with unique
-- tags, flush_async. A flush that fails is retried on the SAME context with the SAME
-- tracked changes (so the same flush token) after a pause, until it returns true:
-- never abandoned. The stop file is only looked at between flushes, so the flush in
-- hand is finished first. Log lines (times are beeorm.monotonic() seconds, shared by
-- every process on the machine):
--   start <time> <pid>
--   err <time> <flush#> <attempt> <code> <temporary> <message>   one per failed attempt
--       (attempt 0: a new_entity that failed, retried the same way; its message starts
--       with "new_entity: ")
--   ack <the flush's start (before its new_entity calls)> <time> <flush#> <attempts> <tag:id,...>
--   done <time> <flushes>
local beeorm = require("beeorm")

local sentinels_csv, master, replicas, log_path, stop_path, prefix = arg[1], arg[2], tonumber(arg[3]), arg[4],
  arg[5], arg[6]
local rate, seed = tonumber(arg[7] or "0") or 0, tonumber(arg[8] or "1") or 1
assert(sentinels_csv and master and replicas and log_path and stop_path and prefix,
  "usage: ha_producer.lua SENTINELS MASTER REPLICAS LOG STOP PREFIX RATE SEED")

local def = require("support.ha_defs")
local engine, line, pid = def.child(sentinels_csv, master, replicas, log_path)

local now = beeorm.monotonic
local function sleep(s)
  if s > 0 then os.execute(string.format("sleep %.3f", s)) end
end
local function stopping()
  local f = io.open(stop_path)
  if f then f:close() end
  return f ~= nil
end
local function oneline(s)
  return (tostring(s):gsub("%s+", " "))
end

math.randomseed(seed)
line("start %.3f %d", now(), pid)
local flushes = 0
local next_at = now()
while not stopping() do
  flushes = flushes + 1
  local ctx = engine:context()
  local tags = {}
  local first, attempts = now(), 0
  for i = 1, math.random(1, 20) do
    local tag = string.format("%s-%06d-%02d", prefix, flushes, i)
    -- (new_entity may need MySQL: a counter on a promoted replica is seeded again)
    local row
    while true do
      local okcall, r, err = pcall(ctx.new_entity, ctx, def.NAME, { tag = tag, n = flushes })
      if okcall and r then
        row = r
        break
      end
      if not okcall then
        line("err %.3f %d 0 raised false new_entity: %s", now(), flushes, oneline(r))
      else
        line("err %.3f %d 0 %s %s new_entity: %s", now(), flushes, oneline(err and err.code),
          tostring(err and err.temporary), oneline(err))
      end
      sleep(0.075)
    end
    tags[i] = tag .. ":" .. tostring(row.id)
  end
  while true do
    attempts = attempts + 1
    local okcall, ok, err = pcall(ctx.flush_async, ctx)
    if okcall and ok == true then break end
    if not okcall then -- raised: not an error table (recorded as such: never temporary)
      line("err %.3f %d %d raised false %s", now(), flushes, attempts, oneline(ok))
    else
      line("err %.3f %d %d %s %s %s", now(), flushes, attempts, oneline(err and err.code),
        tostring(err and err.temporary), oneline(err))
    end
    sleep(0.075)
  end
  line("ack %.3f %.3f %d %d %s", first, now(), flushes, attempts, table.concat(tags, ","))
  ctx:close()
  if rate > 0 then
    next_at = math.max(next_at + 1 / rate, now() - 1)
    sleep(next_at - now())
  end
end
line("done %.3f %d", now(), flushes)
engine:close()
