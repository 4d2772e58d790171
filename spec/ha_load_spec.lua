-- Failover under load (acceptance of the Redis high-availability work): a producer
-- process runs flush_async of 1-20 new rows in a loop against a Redis pool registered
-- through Sentinel, while a blocking consumer process applies the queue to MySQL, and
-- the Redis primary is SIGKILLed again and again. After each kill the spec waits until
-- the sentinels promoted a replica (set:master() changed and the new one answers ROLE
-- master), starts the killed server again as a replica, lets the producer run a while,
-- then kills the next primary. At the end the producer is stopped (SIGTERM: it finishes
-- the flush in hand), the consumer drains every queue, and:
--   1. every flush_async that returned true is in MySQL, exactly once (the producer
--      logs the tags of each acknowledged flush; replicas = 1: none lost);
--   2. no tag twice, ids distinct;
--   3. no error record in the queues' error lists;
--   4. get_by_id in a fresh engine (its own local cache, Redis through the new master)
--      agrees with MySQL for every row;
--   5. the producer saw only temporary errors, and no flush kept failing longer than
--      15 s (one failover);
--   and the blocking consumer rode out every failover without returning an error.
-- The same run with replicas = 0 (no WAIT) prints how many acknowledged flushes were
-- lost (not asserted: without WAIT a failover may lose what the old primary had not
-- passed on yet); everything else is asserted as for replicas = 1.
--
-- The producer retries a failed flush_async on the same context with the same tracked
-- changes (the same flush token) every 75 ms until it returns true; it never abandons a
-- flush (spec/support/ha_producer.lua). Its SIGTERM goes to a wrapper shell that creates
-- a stop file, which the producer looks at between flushes.
--
-- Each run also reports what the sentinels did: a failover they ran that no kill asked
-- for (a freshly promoted master judged down under load) makes two masters for a while,
-- and the loss figures should be read with it.
--
-- Servers: the throwaway MariaDB of BEEORM_TEST_MYSQL (table ha_item, dropped and
-- created per run) and a fresh Sentinel set per run (servers.sentinel_set(), stopped in
-- `finally`, also on failure; every child process is killed by its pid there too). The
-- set's nodes get `CONFIG SET repl-diskless-sync-delay 0`, so that a restarted node
-- resyncs at once instead of after Redis's default 5 s wait. Logs (producer, consumer,
-- the spec's own timeline, and on failure a copy of the set's server logs) go to a
-- folder /tmp/beeorm-ha.XXXXXX, kept (and named in the output) when a run fails or when
-- BEEORM_HA_KEEP_LOGS is set.
--
-- Scale: BEEORM_HA_FAILOVERS (default 3) kills per run; BEEORM_HA_RATE (default 200)
-- producer flushes per second (0: as fast as it goes; on 2 cores that saturates the CPU,
-- and the sentinels then sometimes run a failover nobody asked for);
-- BEEORM_HA_TRAFFIC_SECONDS (default 1.5) of producer traffic before the first kill and
-- after each restart; BEEORM_HA_KILL_SPACING (default 6.5) seconds at least between two
-- kills; BEEORM_HA_TIMEOUT_MS, BEEORM_HA_WAIT_TIMEOUT_MS, BEEORM_HA_CONNECT_TIMEOUT_MS
-- (default 2000, 1000, 500) the Redis pool's timeouts (support/ha_defs.lua). At the
-- defaults the file takes about 55 s: ~5.5 s to start each Sentinel set, ~6.5 s per kill.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")
local def = require("support.ha_defs")

local function env_number(name, default)
  local v = tonumber(os.getenv(name) or "")
  return v or default
end

local FAILOVERS = math.tointeger(env_number("BEEORM_HA_FAILOVERS", 3)) or 3
local RATE = env_number("BEEORM_HA_RATE", 200)
local TRAFFIC = env_number("BEEORM_HA_TRAFFIC_SECONDS", 1.5)
local KEEP_LOGS = (os.getenv("BEEORM_HA_KEEP_LOGS") or "") ~= ""
local MAX_OUTAGE = 15 -- seconds a flush may keep failing (one failover takes a few)
local MIN_ACKS = 5    -- acknowledged flushes that prove the producer is through a failover
-- The set's sentinels have failover-timeout 3000 ms (scripts/servers.sh) and start no
-- new failover of a master within twice that of the last one.
local KILL_SPACING = env_number("BEEORM_HA_KILL_SPACING", 6.5)

local now = beeorm.monotonic
local q = util.shell_quote
local BEEORM = servers.build_dir .. "/beeorm"

-- The first word of ROLE on a node ("master", "slave"), or nil when it does not answer.
local function role(port)
  local code, out = servers.run("redis-cli -p " .. port .. " role")
  if code ~= 0 then return nil end
  return out:match("^(%a+)\n")
end

local function info_replication(port)
  local code, out = servers.run("redis-cli -p " .. port .. " info replication")
  return code == 0 and out or ""
end

-- A full resync of a replica (a killed node started again has no data) starts at once,
-- not after Redis's default 5 s wait for more replicas (repl-diskless-sync-delay): the
-- spec waits for that resync before the next kill.
local function no_sync_delay(port)
  local code, out = servers.run("redis-cli -p " .. port .. " config set repl-diskless-sync-delay 0")
  assert(code == 0 and out:match("OK"), "CONFIG SET on port " .. port .. " failed: " .. out)
end

-- The modification times of the host binary and the Lua module (another build could
-- replace them while the spec runs).
local function build_stamp()
  local _, out = servers.run("stat -c '%n %Y %s' " .. q(BEEORM) .. " "
    .. q(servers.build_dir .. "/lua/beeorm/core.so"))
  return (out:gsub("%s+$", ""):gsub("\n", "; "))
end

-- One line per node of the set: its replication state (for the spec's log).
local function replication_state(set)
  local names = {}
  for name in pairs(set.nodes) do names[#names + 1] = name end
  table.sort(names)
  local parts = {}
  for _, name in ipairs(names) do
    local info = info_replication(set.nodes[name])
    local function field(k) return info:match(k .. ":([^\r\n]*)") or "-" end
    parts[#parts + 1] = info == "" and (name .. " down") or string.format("%s %s master_port=%s link=%s "
      .. "replicas=%s offset=%s", name, field("role"), field("master_port"), field("master_link_status"),
      field("connected_slaves"), field("master_repl_offset"))
  end
  return table.concat(parts, " | ")
end

-- Calls fn() every `every` seconds until it returns a true value or limit seconds passed.
local function wait_for(fn, limit, every)
  local deadline = now() + limit
  while true do
    local v = fn()
    if v then return v end
    if now() > deadline then return nil end
    util.sleep(every or 0.1)
  end
end

-- The number of "ack" lines in a producer log (cheap enough to poll).
local function count_acks(path)
  local text = au.read(path)
  local n = 0
  for _ in ("\n" .. text):gmatch("\nack ") do n = n + 1 end
  return n
end

-- The producer log parsed: start pid, acks { first, t, flush, attempts, tags }, errs
-- { t, flush, attempt, code, temporary, message, line }, done (flush count or nil).
local function parse_producer(path)
  local out = { acks = {}, errs = {} }
  for line in au.read(path):gmatch("[^\n]+") do
    local kind, rest = line:match("^(%a+) (.*)$")
    if kind == "start" then
      out.pid = tonumber(rest:match("^%S+ (%d+)"))
    elseif kind == "ack" then
      local first, t, flush, attempts, tags = rest:match("^(%S+) (%S+) (%d+) (%d+) (%S+)$")
      local a = { first = tonumber(first), t = tonumber(t), flush = tonumber(flush), attempts = tonumber(attempts),
        tags = {} }
      a.ids = {}
      for tag, id in tags:gmatch("([^,:]+):(%d+)") do
        a.tags[#a.tags + 1] = tag
        a.ids[#a.tags] = id
      end
      out.acks[#out.acks + 1] = a
    elseif kind == "err" then
      local t, flush, attempt, code, temporary, message = rest:match("^(%S+) (%d+) (%d+) (%S+) (%S+) ?(.*)$")
      out.errs[#out.errs + 1] = { t = tonumber(t), flush = tonumber(flush), attempt = tonumber(attempt), code = code,
        temporary = temporary, message = message, line = line }
    elseif kind == "done" then
      out.done = tonumber(rest:match("^%S+ (%d+)"))
    end
  end
  return out
end

-- At most n lines of a list, for assertion messages.
local function first_lines(list, n)
  local out = {}
  for i = 1, math.min(#list, n) do out[i] = list[i] end
  if #list > n then out[#out + 1] = string.format("... (%d more)", #list - n) end
  return table.concat(out, "\n")
end

local function tail(path, n)
  local lines = {}
  for line in au.read(path):gmatch("[^\n]+") do lines[#lines + 1] = line end
  local from = math.max(1, #lines - n + 1)
  return table.concat(lines, "\n", from)
end

-- The command line prefix for a child: LUA_PATH etc. plus the BEEORM_HA_* settings.
local function child_env()
  local parts = { util.child_env() }
  for _, name in ipairs({ "BEEORM_HA_TIMEOUT_MS", "BEEORM_HA_WAIT_TIMEOUT_MS", "BEEORM_HA_CONNECT_TIMEOUT_MS" }) do
    local v = os.getenv(name)
    if v then parts[#parts + 1] = name .. "=" .. q(v) end
  end
  return table.concat(parts, " ")
end

-- An engine of this process: the test MySQL, Redis through the set's sentinels.
local function new_engine(set)
  local r = beeorm.registry()
  assert(r:register_mysql(servers.mysql))
  assert(r:register_redis_sentinel(set.master_name, 0, set.sentinels, def.redis_options(0)))
  assert(r:register_entity(def.entity()))
  return assert(r:validate())
end

describe("Redis failover under load (Sentinel, producer and blocking consumer processes)", function()
  -- Whatever a run started, so that teardown can stop it even when `finally` did not run.
  local live = {}

  local function cleanup(st)
    for _, key in ipairs({ "wrapper_pid", "producer_pid", "consumer_pid" }) do
      local pid = st[key]
      if pid then
        au.kill(pid, "KILL")
        au.wait_exit(pid, 5)
        st[key] = nil
      end
    end
    for _, key in ipairs({ "check_engine", "engine" }) do
      if st[key] then
        pcall(st[key].close, st[key])
        st[key] = nil
      end
    end
    if st.set then
      st.set:stop()
      st.set = nil
    end
  end

  teardown(function()
    for _, st in ipairs(live) do cleanup(st) end
    collectgarbage()
  end)

  -- One whole run with the given `replicas`; returns its figures (raises when a step
  -- cannot complete: no failover, the producer stuck, queues not drained...).
  local function run(st, replicas)
    local label = "replicas=" .. replicas
    st.dir = (select(2, servers.run("mktemp -d /tmp/beeorm-ha.XXXXXX")):gsub("%s+$", ""))
    local plog, pout = st.dir .. "/producer.log", st.dir .. "/producer.out"
    local clog, cout = st.dir .. "/consumer.log", st.dir .. "/consumer.out"
    local stop_file = st.dir .. "/producer.stop"
    local function event(fmt, ...) -- the spec's timeline (spec.log)
      local line = string.format("%.3f " .. fmt, now(), ...)
      local f = io.open(st.dir .. "/spec.log", "a")
      if f then
        f:write(line, "\n")
        f:close()
      end
    end

    local build_before = build_stamp()
    local t_start = now()
    st.set = servers.sentinel_set()
    local set = st.set
    event("sentinel set up in %.1f s (%s)", now() - t_start, set.dir)
    st.engine = new_engine(set)
    local engine = st.engine
    util.drop(engine, { def.TABLE })
    assert(engine:sync_schema())

    for _, port in pairs(set.nodes) do no_sync_delay(port) end
    local sentinels = table.concat(set.sentinels, ",")
    local script = servers.root .. "/spec/support/"
    st.consumer_pid = au.spawn(string.format("%s %s run %s %s %s %d %s", child_env(), q(BEEORM),
      q(script .. "ha_consumer.lua"), q(sentinels), q(set.master_name), replicas, q(clog)), cout)
    -- The wrapper shell turns SIGTERM into the stop file and waits for the producer.
    local wrapper = [[trap 'touch "$0"' TERM; "$@" & c=$!; while kill -0 "$c" 2>/dev/null; do wait "$c"; done]]
    st.wrapper_pid = au.spawn(string.format("bash -c %s %s %s %s run %s %s %s %d %s %s %s %s %d", q(wrapper),
      q(stop_file), child_env(), q(BEEORM), q(script .. "ha_producer.lua"), q(sentinels), q(set.master_name),
      replicas, q(plog), q(stop_file), "r" .. replicas, tostring(RATE), replicas + 1), pout)
    assert(wait_for(function() return au.read(clog):match("^start ") end, 10),
      "the consumer did not start: " .. au.read(cout))
    st.producer_pid = wait_for(function() return parse_producer(plog).pid end, 10)
    assert(st.producer_pid, "the producer did not start: " .. au.read(pout))

    -- Waits until at least `seconds` passed and the producer acknowledged MIN_ACKS more
    -- flushes than `since`; raises after limit seconds.
    local function traffic(since, seconds, what)
      local t0 = now()
      local ok = wait_for(function()
        return now() - t0 >= seconds and count_acks(plog) >= since + MIN_ACKS
      end, math.max(seconds, 30))
      assert(ok, string.format("%s: the producer acknowledged %d flushes in %.0f s (wanted %d); producer log tail:\n%s",
        what, count_acks(plog) - since, now() - t0, MIN_ACKS, tail(plog, 10)))
    end

    traffic(0, TRAFFIC, label .. ", before the first kill")
    local failovers, last_kill = {}, nil
    for i = 1, FAILOVERS do
      local old = assert(set:master(), "no master named by the sentinels")
      local old_name
      for name, port in pairs(set.nodes) do if port == old then old_name = name end end
      assert(old_name, "the master " .. old .. " is not a node of the set")
      assert.equal("master", role(old))
      -- Sentinels start no failover of a master within 2 x failover-timeout of the last
      -- one: kills closer than that would wait for the sentinels, not for beeorm.
      if last_kill then
        local wait = KILL_SPACING - (now() - last_kill)
        if wait > 0 then util.sleep(wait) end
      end
      local acks_before = count_acks(plog)
      au.kill(set:pid(old_name), "KILL")
      local t_kill = now() -- (after the kill: a flush started before may still get through)
      last_kill = t_kill
      event("failover %d: SIGKILL %s (port %d), %d flushes acknowledged so far", i, old_name, old, acks_before)
      local new = wait_for(function()
        local m = set:master()
        return m and m ~= old and role(m) == "master" and m
      end, 30)
      assert(new, string.format("%s, failover %d: no replica promoted within 30 s of killing %s", label, i, old_name))
      local t_promoted = now()
      event("failover %d: port %d promoted after %.2f s; %s", i, new, t_promoted - t_kill, replication_state(set))
      set:restart(old_name)
      no_sync_delay(set.nodes[old_name])
      local linked = wait_for(function()
        local info = info_replication(old)
        return info:match("role:slave") and info:match("master_port:" .. new .. "%s")
          and info:match("master_link_status:up")
      end, 20)
      assert(linked, string.format("%s, failover %d: %s did not come back as a replica of %d", label, i, old_name, new))
      event("failover %d: %s back as a replica after %.2f s; %s", i, old_name, now() - t_kill,
        replication_state(set))
      traffic(acks_before, TRAFFIC, string.format("%s, after failover %d", label, i))
      -- How long the producer was held up: from the kill to the acknowledgement of the
      -- first flush it started after the kill (the one in flight at the kill may come
      -- back at once: e.g. queued, then an error on the cache updates after it).
      local p = parse_producer(plog)
      local resumed
      for _, a in ipairs(p.acks) do
        if a.first > t_kill then resumed = a.t - t_kill break end
      end
      failovers[i] = { killed = old_name, promote = t_promoted - t_kill, resumed = resumed }
      event("failover %d: producer through %.2f s after the kill", i, resumed or -1)
    end

    -- Stop the producer: SIGTERM (to its wrapper); it finishes the flush in hand.
    event("stopping the producer; %s", replication_state(set))
    au.kill(st.wrapper_pid, "TERM")
    local stopped = au.wait_exit(st.producer_pid, 30)
    assert(stopped, label .. ": the producer did not stop within 30 s of SIGTERM; log tail:\n" .. tail(plog, 10))
    st.producer_pid = nil
    au.wait_exit(st.wrapper_pid, 5)
    st.wrapper_pid = nil
    local build_after = build_stamp()
    if build_after ~= build_before then
      print(string.format("%s: WARNING: the build changed during the run (%s -> %s): the children may have run "
        .. "another build than this process", label, build_before, build_after))
      event("build changed: %s -> %s", build_before, build_after)
    end
    local p = parse_producer(plog)
    assert(p.done, label .. ": the producer did not finish cleanly: " .. au.read(pout) .. "\n" .. tail(plog, 5))
    event("producer stopped: %d flushes acknowledged", #p.acks)

    -- Wait until the consumer drained every queue, then stop it.
    local last_err
    local drained = wait_for(function()
      local ok, len = pcall(au.total, engine, "len")
      if not ok then last_err = len end
      return ok and len == 0
    end, 60, 0.2)
    local lens = {}
    local ok_stats, stats = pcall(au.stats, engine)
    if ok_stats then for name, s in pairs(stats) do lens[#lens + 1] = name .. "=" .. s.len end end
    table.sort(lens)
    assert(drained, string.format("%s: the queues were not drained within 60 s (%s; last error %s); consumer log:\n%s",
      label, table.concat(lens, " "), tostring(last_err), tail(clog, 10)))
    event("queues drained")
    au.kill(st.consumer_pid, "TERM")
    assert(au.wait_exit(st.consumer_pid, 15), label .. ": the consumer did not stop on SIGTERM")
    st.consumer_pid = nil
    local consumer = {}
    for line in au.read(clog):gmatch("[^\n]+") do
      if line:match("^err ") then consumer[#consumer + 1] = line end
      if line:match("^ok ") then
        local entries, _, _, failed, _, _, duplicates = line:match("^ok %S+ (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$")
        consumer.entries, consumer.failed = tonumber(entries), tonumber(failed)
        consumer.duplicates = tonumber(duplicates)
      end
    end

    -- What MySQL holds.
    local mysql_rows = assert(engine:sql_query("SELECT `id`, `tag`, `n` FROM `" .. def.TABLE .. "` ORDER BY `id`"))
    local dups = assert(engine:sql_query("SELECT `tag`, COUNT(*) AS `c` FROM `" .. def.TABLE
      .. "` GROUP BY `tag` HAVING COUNT(*) > 1"))
    local counts = assert(engine:sql_query("SELECT COUNT(*) AS `n`, COUNT(DISTINCT `id`) AS `d` FROM `" .. def.TABLE
      .. "`"))[1]
    local ok_errors, records = pcall(au.errors, engine)
    if not ok_errors then records = { { queue = "?", stream_id = "?", kind = "?", entity = "?", id = "?",
      error = { code = "cannot list", message = tostring(records) } } } end

    -- Acknowledged flushes against MySQL.
    local in_mysql, by_id = {}, {}
    for _, r in ipairs(mysql_rows) do
      in_mysql[r.tag] = (in_mysql[r.tag] or 0) + 1
      by_id[r.id] = r.tag
    end
    local acked_tags, acked_entities, lost, lost_entities, lost_lines = {}, 0, 0, 0, {}
    for _, a in ipairs(p.acks) do
      local missing, taken = 0, {}
      for k, tag in ipairs(a.tags) do
        acked_tags[tag] = true
        acked_entities = acked_entities + 1
        if not in_mysql[tag] then
          missing = missing + 1
          -- (is its id in MySQL under another tag? then it was handed out twice)
          if by_id[a.ids[k]] then taken[#taken + 1] = a.ids[k] .. " held by " .. by_id[a.ids[k]] end
        end
      end
      if missing > 0 then
        lost = lost + 1
        lost_entities = lost_entities + missing
        lost_lines[#lost_lines + 1] = string.format("flush %d (acknowledged at %.3f after %d attempts): %d of %d rows "
          .. "missing (ids %s..%s)%s", a.flush, a.t, a.attempts, missing, #a.tags, a.ids[1], a.ids[#a.ids],
          #taken > 0 and ("; ids already in MySQL under other tags: " .. table.concat(taken, ", ")) or "")
      end
    end
    local phantoms = {}
    for _, r in ipairs(mysql_rows) do
      if not acked_tags[r.tag] then phantoms[#phantoms + 1] = r.id .. " " .. r.tag end
    end

    -- get_by_id in a fresh engine (its own local cache; Redis through the new master).
    st.check_engine = new_engine(set)
    local mismatches = {}
    local ctx = st.check_engine:context()
    for from = 1, #mysql_rows, 200 do
      local ids, rows = {}, {}
      for k = from, math.min(from + 199, #mysql_rows) do
        rows[#rows + 1] = mysql_rows[k]
        ids[#ids + 1] = math.tointeger(tonumber(mysql_rows[k].id))
      end
      local got, err = ctx:get_by_ids(def.NAME, ids)
      if not got then
        mismatches[#mismatches + 1] = "get_by_ids failed: " .. tostring(err)
        break
      end
      for k, r in ipairs(rows) do
        local g = got[k]
        if not g then
          mismatches[#mismatches + 1] = string.format("id %s (%s): not found", r.id, r.tag)
        elseif tostring(g.id) ~= r.id or g.tag ~= r.tag or tostring(g.n) ~= r.n then
          mismatches[#mismatches + 1] = string.format("id %s: MySQL %s/%s, get_by_id %s/%s/%s", r.id, r.tag, r.n,
            tostring(g.id), tostring(g.tag), tostring(g.n))
        end
      end
      if #mismatches > 50 then break end
    end
    ctx:close()
    st.check_engine:close()
    st.check_engine = nil

    -- What the sentinels did: failovers they started (one "+elected-leader" per
    -- failover, in the leader's log) against the kills (more: a failover nobody asked
    -- for, e.g. a fresh master judged down under load), and the masters they switched to.
    local elected, switches = 0, {}
    for k = 1, #set.sentinels do
      for line in au.read(string.format("%s/sentinel-%d/sentinel.log", set.dir, k)):gmatch("[^\n]+") do
        if line:match("%+elected%-leader") then elected = elected + 1 end
        if k == 1 and line:match("%+switch%-master") then
          switches[#switches + 1] = line:match("(%d%d:%d%d:%d%d%.%d+)") .. " " .. line:match("%+switch%-master (.*)$")
        end
      end
    end

    -- The producer's errors: all temporary? the longest time a flush kept failing?
    local permanent, codes, failing = {}, {}, {}
    for _, e in ipairs(p.errs) do
      if e.temporary ~= "true" then permanent[#permanent + 1] = e.line end
      local code = e.attempt == 0 and ("new_entity " .. e.code) or e.code
      codes[code] = (codes[code] or 0) + 1
      failing[e.flush] = true
    end
    -- A run of consecutive errors is one flush's: from its start (its first new_entity)
    -- to its acknowledgement (the producer never gives a flush up).
    local longest, longest_flush = 0, nil
    for _, a in ipairs(p.acks) do
      if failing[a.flush] and a.t - a.first > longest then longest, longest_flush = a.t - a.first, a end
    end
    local code_list = {}
    for code, n in pairs(codes) do code_list[#code_list + 1] = code .. " " .. n end
    table.sort(code_list)

    return {
      label = label, acks = #p.acks, acked_entities = acked_entities, rows = #mysql_rows, lost = lost,
      lost_entities = lost_entities, lost_lines = lost_lines, phantoms = phantoms, dups = dups,
      count = tonumber(counts.n), distinct = tonumber(counts.d), records = records, mismatches = mismatches,
      errs = #p.errs, permanent = permanent, codes = table.concat(code_list, ", "), longest = longest,
      longest_flush = longest_flush, consumer_errors = consumer, duplicates_dropped = consumer.duplicates,
      consumer_entries = consumer.entries, consumer_failed = consumer.failed, consumer_log = clog,
      failovers = failovers, seconds = now() - t_start, dir = st.dir, elected = elected, switches = switches,
    }
  end

  local function report(r)
    print(string.format("%s: %d of %d acknowledged flushes lost (%d of %d rows); %d rows in MySQL", r.label, r.lost,
      r.acks, r.lost_entities, r.acked_entities, r.rows))
    local fo = {}
    for i, f in ipairs(r.failovers) do
      fo[i] = string.format("#%d %s promoted %.1f s, producer through %.1f s", i, f.killed, f.promote,
        f.resumed or -1)
    end
    print(string.format("%s: %d kills (%s); the sentinels ran %d failovers", r.label, #r.failovers,
      table.concat(fo, "; "), r.elected))
    if r.elected ~= #r.failovers then
      print(string.format("%s: the sentinels switched masters: %s", r.label, table.concat(r.switches, "; ")))
    end
    print(string.format("%s: %d failed flush_async attempts (%s), longest run of errors %.2f s%s; consumer dropped "
      .. "%s duplicate entries; %.1f s", r.label, r.errs, r.codes ~= "" and r.codes or "none", r.longest,
      r.longest_flush and string.format(" (flush %d, %d attempts)", r.longest_flush.flush,
        r.longest_flush.attempts) or "", tostring(r.duplicates_dropped), r.seconds))
  end

  -- What is wrong with a run, as a list of messages (every check is made, so that one
  -- failure does not hide another). assert_lost: also lost and unexpected rows.
  local function problems(r, assert_lost)
    local out = {}
    local function expect(ok, msg) if not ok then out[#out + 1] = msg end end
    if assert_lost then
      expect(r.lost == 0, string.format("%d of %d acknowledged flushes missing from MySQL (%d kills, %d failovers by "
        .. "the sentinels: %s):\n%s", r.lost, r.acks, #r.failovers, r.elected, table.concat(r.switches, "; "),
        first_lines(r.lost_lines, 20)))
      expect(#r.phantoms == 0, "rows in MySQL that no acknowledged flush wrote:\n" .. first_lines(r.phantoms, 20))
    end
    expect(#r.consumer_errors == 0, "the blocking consumer returned errors during the run:\n"
      .. first_lines(r.consumer_errors, 20))
    local d = {}
    for _, row in ipairs(r.dups) do d[#d + 1] = row.tag .. " x" .. row.c end
    expect(#r.dups == 0, "rows applied more than once:\n" .. first_lines(d, 20))
    expect(r.count == r.distinct, string.format("ids not distinct: %d rows, %d ids", r.count, r.distinct))
    expect(#r.records == 0, "error records in the queues:\n" .. au.describe_errors(r.records))
    -- (the consumer's own count of entries it parked in an error list: none should be)
    expect(r.consumer_failed == 0, "the consumer parked " .. tostring(r.consumer_failed) .. " entries as failed; "
      .. "its log:\n" .. tail(r.consumer_log, 12))
    expect(#r.mismatches == 0, "get_by_id disagrees with MySQL:\n" .. first_lines(r.mismatches, 20))
    expect(#r.permanent == 0, "the producer saw errors that are not temporary:\n" .. first_lines(r.permanent, 20))
    expect(r.longest < MAX_OUTAGE, string.format("a flush kept failing for %.1f s (flush %s; at most %d s expected)",
      r.longest, r.longest_flush and r.longest_flush.flush or "?", MAX_OUTAGE))
    expect(r.acks > 0, "no flush acknowledged")
    return out
  end

  local function scenario(replicas, assert_lost)
    local st = {}
    live[#live + 1] = st
    local passed = false
    finally(function()
      if st.set and st.dir and not passed then -- the servers' own logs, for the report
        os.execute(string.format("cp -r %s %s/servers 2>/dev/null", q(st.set.dir), q(st.dir)))
      end
      cleanup(st)
      if st.dir then
        if passed and not KEEP_LOGS then
          os.execute("rm -rf " .. q(st.dir))
        else
          print(string.format("replicas=%d: logs kept in %s", replicas, st.dir))
        end
      end
    end)
    local r = run(st, replicas)
    report(r)
    local wrong = problems(r, assert_lost)
    assert(#wrong == 0, string.format("%s: %d problem(s) (logs: %s):\n- %s", r.label, #wrong, r.dir,
      table.concat(wrong, "\n- ")))
    passed = true
  end

  it(string.format("replicas = 1: %d primary kills lose no acknowledged flush_async, apply none twice, leave no "
    .. "error record, and the producer sees only short, temporary errors", FAILOVERS), function()
    scenario(1, true)
  end)

  it(string.format("replicas = 0: the same %d kills, measuring how many acknowledged flushes are lost", FAILOVERS),
    function()
      scenario(0, false)
    end)
end)
