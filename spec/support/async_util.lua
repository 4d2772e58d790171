-- Helpers shared by the flush_async and consumer specs (async_spec, consumer_kill_spec,
-- consumer_faults_spec): clean queues, queue statistics and marks, child processes
-- started in the background (with their pid, so they can be killed), extra servers.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")

local M = {}

M.SHARDS = 8

--- The shard of a row id: runs of 64 ids share one (bee__shard in core/src/event.h).
function M.shard_of(id)
  return (id // 64) % M.SHARDS
end

--- The queue ("<pool>:<shard>") of a row id on the default pool.
function M.queue_of(id, pool)
  return (pool or "default") .. ":" .. M.shard_of(id)
end

--- True when every queue of the default pool on Redis db has applied its last entry.
function M.all_applied(engine, db)
  local marks = M.marks(engine, db)
  for s = 0, M.SHARDS - 1 do
    local last = M.last_stream_id(db, "default:" .. s)
    if last and marks["default:" .. s] ~= last then return false end
  end
  return true
end

--- The Redis stream key of a queue name.
function M.stream_key(queue)
  return "beeorm:{q:" .. queue .. "}:s"
end

function M.lease_key(queue)
  return "beeorm:{q:" .. queue .. "}:lease"
end

function M.errors_key(queue)
  return "beeorm:{q:" .. queue .. "}:errors"
end

--- Queue objects by name.
function M.queues(engine)
  local out = {}
  for _, q in ipairs(engine:read_async_flush_events()) do out[q.name] = q end
  return out
end

--- Stats of every queue by name (raises on error).
-- The summary line of `beeorm consume` ("consumed: entries=N ... workers=N", maybe
-- followed by " duplicates=N") as a table of numbers, or nil. whole: out must be that
-- line and nothing else; otherwise the line may be anywhere in out.
function M.consume_summary(out, whole)
  local base = "consumed: entries=(%d+) events=(%d+) batches=(%d+) failed=(%d+) skipped=(%d+) retried=(%d+) "
    .. "workers=(%d+)"
  local e, ev, b, f, s, r, w, rest = out:match(whole and ("^" .. base .. "([^\n]*)\n$") or (base .. "([^\n]*)"))
  if not e then return nil end
  local dup = rest == "" and "0" or rest:match("^ duplicates=(%d+)$")
  if not dup then return nil end
  return { entries = tonumber(e), events = tonumber(ev), batches = tonumber(b), failed = tonumber(f),
    skipped = tonumber(s), retried = tonumber(r), workers = tonumber(w), duplicates = tonumber(dup) }
end

-- The ids of the rows a workload model holds live: add and remove in O(1), pick one at
-- random (rng(n) -> 1..n) that is not in taken (nil after 50 tries).
function M.live_set(rng)
  local set = { ids = {}, pos = {} }
  function set.add(id)
    set.ids[#set.ids + 1] = id
    set.pos[id] = #set.ids
  end
  function set.remove(id)
    local i, last = set.pos[id], set.ids[#set.ids]
    set.ids[i], set.pos[last] = last, i
    set.ids[#set.ids] = nil
    set.pos[id] = nil
  end
  function set.pick(taken)
    for _ = 1, 50 do
      local id = set.ids[rng(#set.ids)]
      if not taken[id] then return id end
    end
  end
  function set.count() return #set.ids end
  return set
end

function M.stats(engine)
  local out = {}
  for _, q in ipairs(engine:read_async_flush_events()) do
    local s, err = q:stats()
    assert(s, tostring(err))
    out[q.name] = s
  end
  return out
end

--- Sum of a stats field over every queue.
function M.total(engine, field)
  local n = 0
  for _, s in pairs(M.stats(engine)) do n = n + s[field] end
  return n
end

--- Every error record of every queue (up to 1000 per queue), as one array.
function M.errors(engine)
  local out = {}
  for _, q in ipairs(engine:read_async_flush_events()) do
    for _, ev in ipairs(assert(q:errors(1000))) do out[#out + 1] = ev end
  end
  return out
end

--- One line per error record, for assertion messages.
function M.describe_errors(list)
  local lines = {}
  for _, ev in ipairs(list) do
    lines[#lines + 1] = string.format("%s %s %s %s#%s code %s: %s", ev.queue, ev.stream_id, ev.kind, ev.entity,
      tostring(ev.id), tostring(ev.error.code), tostring(ev.error.message))
  end
  return table.concat(lines, "\n")
end

--- Drops every error record (q:skip) of every queue of engine.
function M.skip_all_errors(engine)
  for _, q in ipairs(engine:read_async_flush_events()) do
    for _, ev in ipairs(assert(q:errors(1000))) do assert(q:skip(ev)) end
  end
end

--- Applies what is queued (non-blocking); returns the stats (raises on error).
function M.consume(ctx, opts)
  local st, err = beeorm.consume_async_flush_events(ctx, false, opts)
  assert(st, "consume failed: " .. tostring(err))
  return st
end

--- Leaves the queues of engine empty: consumes, drops error records, checks len 0.
function M.drain(engine)
  local ctx = engine:context()
  beeorm.consume_async_flush_events(ctx, false)
  M.skip_all_errors(engine)
  beeorm.consume_async_flush_events(ctx, false)
  return M.total(engine, "len")
end

--- Ends a spec using queues on Redis db: applies or drops what is queued, then empties
--- db (no entry left behind, not even applied ones a consumer did not remove).
function M.finish(engine, db)
  M.drain(engine)
  util.flushdb(db)
end

--- Forgets the applied marks of every queue (all queues share _beeorm_applied).
function M.reset_marks(engine, pool)
  local ok, err = engine:sql_exec("DELETE FROM `_beeorm_applied`", nil, pool or "default")
  if not ok and err.code ~= 1146 then error("cannot reset _beeorm_applied: " .. tostring(err)) end
end

--- Drops tables, resets the marks and flushes the spec's Redis db.
function M.reset(engine, db, tables)
  util.drop(engine, tables)
  M.reset_marks(engine)
  util.flushdb(db)
end

--- The applied marks: { ["default:3"] = "ms-seq", ... } (rows are "<queue>@<queue id>").
function M.marks(engine, db)
  local out = {}
  local ok, rows = pcall(engine.sql_query, engine, "SELECT `queue`, `ms`, `seq` FROM `_beeorm_applied`")
  if not ok or not rows then return out end
  local ids = {} -- with db: only the marks of that Redis db's queues (marks are kept per queue identity)
  for _, r in ipairs(rows) do
    local name, identity = r.queue:match("^([^@]+)@?(.*)$")
    if db and ids[name] == nil then ids[name] = util.redis_get(db, "beeorm:{q:" .. name .. "}:id") or false end
    if not db or identity == ids[name] then out[name] = r.ms .. "-" .. r.seq end
  end
  return out
end

--- The last id ever added to a queue's stream (XINFO STREAM last-generated-id), or nil.
function M.last_stream_id(db, queue)
  local host, port = util.redis_host_port()
  local code, out = servers.run(string.format("redis-cli -h %s -p %d -n %d XINFO STREAM %s", host, port, db,
    util.shell_quote(M.stream_key(queue))))
  if code ~= 0 then return nil end
  return out:match("last%-generated%-id\n(%d+%-%d+)\n")
end

--- Entry ids of a queue's stream, in order.
function M.stream_ids(db, queue)
  local out = util.redis_cli(db, "XRANGE", M.stream_key(queue), "-", "+")
  local ids = {}
  for id in out:gmatch("(%d+%-%d+)\n") do ids[#ids + 1] = id end
  return ids
end

--- True when stream id a ("ms-seq") is after b.
function M.id_after(a, b)
  local am, as = a:match("^(%d+)%-(%d+)$")
  local bm, bs = b:match("^(%d+)%-(%d+)$")
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end

-- ------------------------------------------------------------------------
-- Processes

--- Is process pid alive (and not a zombie)?
function M.alive(pid)
  local code, out = servers.run("ps -o stat= -p " .. pid)
  return code == 0 and out:match("%S") ~= nil and not out:match("^%s*Z")
end

--- Waits up to limit seconds for pid to exit; returns true when it did.
function M.wait_exit(pid, limit)
  local deadline = util.now() + (limit or 10)
  while M.alive(pid) do
    if util.now() > deadline then return false end
    util.sleep(0.02)
  end
  return true
end

--- Sends a signal ("KILL", "TERM", ...) to pid.
function M.kill(pid, sig)
  os.execute("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
end

-- Closes every inherited descriptor above 2, then runs the rest of the command line.
-- A background process must not keep this process's sockets open: a copy of a Redis
-- subscriber connection would keep a subscription nobody reads (and every flush would
-- wait for its acknowledgement) long after this process closed its engine.
local CLOSE_FDS = [[bash -c 'for fd in /proc/$$/fd/*; do n=${fd##*/}; ]]
  .. [[if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; exec "$@"' close-fds ]]

--- Starts a shell command in the background (with no inherited descriptor but the
-- standard ones), output to log; returns its pid.
function M.spawn(cmd, log)
  local f = assert(io.popen(string.format("%s%s > %s 2>&1 < /dev/null & echo $!", CLOSE_FDS, cmd,
    util.shell_quote(log or "/dev/null"))))
  local pid = f:read("l")
  f:close()
  return assert(tonumber(pid), "no pid for: " .. cmd)
end

--- The command line of the consumer child (spec/support/async_consumer.lua in the
-- `beeorm` host): mode "block" or "once", the file it writes its result to, and opts
-- { max_batch =, workers =, defs = (a support.async_defs function name, default "none") }.
function M.consumer_cmd(db, mode, out, opts)
  opts = opts or {}
  local script = servers.root .. "/spec/support/async_consumer.lua"
  return string.format("%s %s run %s %d %s %s %d %d %s", util.child_env(),
    util.shell_quote(servers.build_dir .. "/beeorm"), util.shell_quote(script), db, mode, util.shell_quote(out),
    opts.max_batch or 0, opts.workers or 1, opts.defs or "none")
end

--- Reads a whole file ("" when missing).
function M.read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- A free TCP port on 127.0.0.1 (below the usual ephemeral range, which outgoing
-- connections use).
function M.free_port()
  for _ = 1, 200 do
    local p = 20000 + math.random(0, 12000)
    if servers.run(string.format("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null", p)) ~= 0 then return p end
  end
  error("no free port")
end

--- Starts a throwaway redis-server on port; returns its pid once it answers PING, or
-- nil, log when it could not start (e.g. the port was taken meanwhile).
function M.start_redis(port, dir)
  os.execute("mkdir -p " .. util.shell_quote(dir))
  local log = dir .. "/redis.log"
  os.remove(log)
  local pid = M.spawn(string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
    .. "--daemonize no --dir %s", port, util.shell_quote(dir)), log)
  local ok = util.eventually(function()
    if not M.alive(pid) then return true end
    local _, out = servers.run(string.format("redis-cli -h 127.0.0.1 -p %d PING", port))
    return out:match("PONG") ~= nil
  end, 10)
  if ok and M.alive(pid) then return pid end
  M.kill(pid, "KILL")
  return nil, M.read(log)
end

--- Stops a child process: SIGTERM, then SIGKILL if it has not exited after 5 s; returns
-- once it exited. A stopped (SIGSTOP) child is not woken: send it CONT first.
function M.stop(pid)
  if not M.alive(pid) then return end
  M.kill(pid, "TERM")
  if not M.wait_exit(pid, 5) then
    M.kill(pid, "KILL")
    M.wait_exit(pid, 5)
  end
end

--- Starts a throwaway redis-server on a free port; returns pid, port.
function M.start_redis_anywhere(dir)
  local log
  for _ = 1, 5 do
    local port = M.free_port()
    local pid
    pid, log = M.start_redis(port, dir)
    if pid then return pid, port end
  end
  error("redis-server did not start: " .. tostring(log))
end

--- Installs triggers that log every row change of `tbl` (columns cols) into `log_tbl`,
-- in commit order of the statements: (seq, row_id, op, values). Changes made by rolled
-- back transactions leave no log row, so the log holds exactly the applied events.
function M.install_audit(engine, tbl, log_tbl, cols)
  assert(engine:sql_exec("DROP TABLE IF EXISTS `" .. log_tbl .. "`"))
  assert(engine:sql_exec("CREATE TABLE `" .. log_tbl .. "` (`seq` bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    .. "`row_id` bigint unsigned NOT NULL, `op` char(1) NOT NULL, `v` text NULL) ENGINE=InnoDB"))
  local function concat(prefix)
    local parts = {}
    for _, c in ipairs(cols) do parts[#parts + 1] = "IFNULL(" .. prefix .. ".`" .. c .. "`, '~')" end
    return "CONCAT_WS('|', " .. table.concat(parts, ", ") .. ")"
  end
  for _, t in ipairs({ { "ai", "INSERT", "I", "NEW" }, { "au", "UPDATE", "U", "NEW" }, { "ad", "DELETE", "D", "OLD" } }) do
    local name = tbl .. "_" .. t[1]
    assert(engine:sql_exec("DROP TRIGGER IF EXISTS `" .. name .. "`"))
    assert(engine:sql_exec(string.format("CREATE TRIGGER `%s` AFTER %s ON `%s` FOR EACH ROW INSERT INTO `%s` "
      .. "(`row_id`, `op`, `v`) VALUES (%s.`id`, '%s', %s)", name, t[2], tbl, log_tbl, t[4], t[3],
      t[3] == "D" and "NULL" or concat(t[4]))))
  end
end

--- The audit log: { [row_id] = { "I a|1|~", "U b|2|x", "D" } } in applied order, and the count.
function M.audit(engine, log_tbl)
  local out, n = {}, 0
  for _, r in ipairs(assert(engine:sql_query("SELECT `row_id`, `op`, `v` FROM `" .. log_tbl .. "` ORDER BY `seq`"))) do
    local id = math.tointeger(tonumber(r.row_id))
    out[id] = out[id] or {}
    table.insert(out[id], r.op == "D" and "D" or (r.op .. " " .. r.v))
    n = n + 1
  end
  return out, n
end

return M
