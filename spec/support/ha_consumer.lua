-- The consumer of spec/ha_load_spec.lua, run in the `beeorm` host:
--   beeorm run spec/support/ha_consumer.lua SENTINELS MASTER REPLICAS LOG
-- A blocking consumer (max_retries 50) on the MySQL pool "default" and the Redis pool
-- registered through Sentinel, with the spec's entity (it needs none: the events carry
-- what it applies). It stops on SIGTERM/SIGINT. Log lines (LOG, flushed each time;
-- times are beeorm.monotonic() seconds):
--   start <time> <pid>
--   ok <time> entries events batches failed skipped retried duplicates   it returned (stopped)
--   queue <name> len=N errors=N records=N                                after "ok", per queue
--   err <time> <code> <temporary> <message>                              it returned an error
-- A blocking consumer must ride out a failover by itself: an "err" line is a failure
-- the spec reports. It then starts consuming again after 0.5 s (so that the rest of the
-- run still says what happened to the data), and writes "restart <time>".
local beeorm = require("beeorm")

local sentinels_csv, master, replicas, log_path = arg[1], arg[2], tonumber(arg[3]), arg[4]
assert(sentinels_csv and master and replicas and log_path, "usage: ha_consumer.lua SENTINELS MASTER REPLICAS LOG")

local def = require("support.ha_defs")
local engine, line, pid = def.child(sentinels_csv, master, replicas, log_path)

local now = beeorm.monotonic
line("start %.3f %d", now(), pid)
while true do
  local st, err = beeorm.consume_async_flush_events(engine:context(), true, { max_retries = 50 })
  if st then
    line("ok %.3f %d %d %d %d %d %d %d", now(), st.entries, st.events, st.batches, st.failed, st.skipped, st.retried,
      st.duplicates or 0)
    -- What the queues say now (the consumer's own view, through the current master).
    for _, q in ipairs(engine:read_async_flush_events()) do
      local s, serr = q:stats()
      local records = s and q:errors(1000)
      line("queue %s len=%s errors=%s records=%s%s", q.name, tostring(s and s.len), tostring(s and s.errors),
        tostring(records and #records), s and "" or (" " .. (tostring(serr):gsub("%s+", " "))))
    end
    break
  end
  line("err %.3f %s %s %s", now(), tostring(err and err.code), tostring(err and err.temporary),
    (tostring(err):gsub("%s+", " ")))
  os.execute("sleep 0.5")
  line("restart %.3f", now())
end
engine:close()
