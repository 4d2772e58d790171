-- The kill test (docs/guarantees.md G2, G3, §4): consumers killed with SIGKILL at random moments,
-- and two consumers started at once, still apply every queued event exactly once and
-- in order per row. The producer is this spec; the consumers are child processes
-- (spec/support/async_consumer.lua in the `beeorm` host) that register no entity: the
-- events carry what they need.
--
-- Scale: the acceptance run of issue 5 itself: 20,000 operations (inserts, updates and
-- deletes on ~500 live rows, in flush_async calls of 1-20 operations) and 20 SIGKILLs
-- at random moments (20-300 ms after the consumer started, half of the round's work
-- queued before it started and half while it ran; workers and max_batch vary per
-- round). Measured on the 2-core test machine: ~12 s for the kill test and ~18 s for
-- the file, so no smaller scale is needed. BEEORM_KILL_OPS / BEEORM_KILL_ROUNDS change
-- the scale, BEEORM_KILL_SEED fixes the workload (the seed is in every failure message;
-- BEEORM_SPEC_VERBOSE=1 prints it and a line per kill).
--
-- Checks: MySQL equals the state computed here, every row and every column, no missing
-- and no extra rows; triggers log every row change MySQL commits, and the log equals,
-- row by row, the sequence of changes flushed (so nothing was applied twice, skipped or
-- reordered); no error records (no false duplicate keys from replays); each queue's
-- applied mark is the last entry ever added to its stream.
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local REDIS_DB = 11
local K, LOG = "ck_item", "ck_item_log"
local OPS = tonumber(os.getenv("BEEORM_KILL_OPS") or "") or 20000
local ROUNDS = tonumber(os.getenv("BEEORM_KILL_ROUNDS") or "") or 20
local PAIR_OPS = 4000 -- operations of each two-consumer test
local SEED = tonumber(os.getenv("BEEORM_KILL_SEED") or "") or os.time()
local ROWS = 500
local COLS = { "name", "code", "n", "note" }

local item_def = require("support.async_defs").kill()[1]

local verbose = os.getenv("BEEORM_SPEC_VERBOSE")
local function say(...)
  if verbose then io.stderr:write(string.format(...), "\n") end
end

-- The workload: flush_async calls of 1-20 random operations, and what they must do.
local function new_model(engine, rng)
  assert(engine)
  local m = {
    ctx = engine:context(),
    state = {},    -- id -> { name, code, n, note }
    history = {},  -- id -> the row changes in flush order, as the audit log writes them
    ops = 0,
    entries = 0,   -- stream entries queued (one per flush and touched shard)
    events = 0,
  }

  local function audit_line(op, s)
    if op == "D" then return "D" end
    return op .. " " .. s.name .. "|" .. (s.code or "~") .. "|" .. s.n .. "|" .. (s.note or "~")
  end

  local live = au.live_set(rng)
  local add, remove, pick = live.add, live.remove, live.pick

  local notes = { "alpha", "beta", false, "gamma" }

  --- Queues one flush_async of up to n operations.
  function m.flush(n)
    local ctx, taken, shards = m.ctx, {}, {}
    local done = 0
    for _ = 1, n do
      local r = rng()
      local id
      if live.count() < 50 or r < (live.count() < ROWS and 0.4 or 0.12) then
        local s = { name = "row" .. rng(1000), n = 0, note = notes[rng(#notes)] or nil }
        local t = ctx:new_entity(K, { name = s.name, n = s.n, note = s.note })
        id = t.id
        s.code = "c" .. id .. "-0"
        t.code = s.code
        m.state[id] = s
        m.history[id] = { audit_line("I", s) }
        add(id)
      else
        id = pick(taken)
        if not id then break end
        local t = ctx:get_by_id(K, id)
        assert(t, "row " .. id .. " not found through the caches")
        if r < 0.85 then
          local e = ctx:edit_entity(t)
          local s = m.state[id]
          s.n = s.n + 1
          e.n = s.n
          if rng() < 0.5 then s.name = "row" .. rng(1000); e.name = s.name end
          if rng() < 0.3 then
            if rng() < 0.2 then s.code = nil else s.code = "c" .. id .. "-" .. s.n end
            e.code = s.code
          end
          if rng() < 0.3 then s.note = notes[rng(#notes)] or nil; e.note = s.note end
          table.insert(m.history[id], audit_line("U", s))
        else
          ctx:delete_entity(t)
          m.state[id] = nil
          table.insert(m.history[id], "D")
          remove(id)
        end
      end
      taken[id] = true
      shards[au.shard_of(id)] = true
      done = done + 1
    end
    if done == 0 then return 0 end
    local ok, err = ctx:flush_async()
    assert(ok, "flush_async failed: " .. tostring(err))
    for _ in pairs(shards) do m.entries = m.entries + 1 end
    m.ops = m.ops + done
    m.events = m.events + done
    return done
  end

  --- The cached lists read through a fresh context (G8): nil when they equal the model,
  --- else what differs.
  function m.lists_differ()
    local ctx = engine:context()
    local function ids(rows)
      local out = {}
      for i, r in ipairs(assert(rows)) do out[i] = r.id end
      return table.concat(out, ",")
    end
    local want_all, by_note = {}, {}
    for id in pairs(m.state) do want_all[#want_all + 1] = id end
    table.sort(want_all)
    for _, id in ipairs(want_all) do
      local note = m.state[id].note or "~"
      by_note[note] = by_note[note] or {}
      table.insert(by_note[note], id)
    end
    local got = ids(ctx:get_all(K))
    if got ~= table.concat(want_all, ",") then return "get_all: " .. got .. "\nexpected: " .. table.concat(want_all, ",") end
    for _, note in ipairs({ "alpha", "beta", "gamma", "~" }) do
      local value = note
      if note == "~" then value = nil end
      got = ids(ctx:get_by_index(K, "by_note", value))
      local want = table.concat(by_note[note] or {}, ",")
      if got ~= want then return "get_by_index(by_note, " .. note .. "): " .. got .. "\nexpected: " .. want end
    end
  end

  --- Queues about n operations.
  function m.produce(n)
    local target = m.ops + n
    while m.ops < target do m.flush(math.min(rng(20), target - m.ops)) end
  end

  return m
end

describe("consumers", function()
  local engine

  -- MySQL against the model: every row, every column; and the audit log against the
  -- history. Returns a list of differences (empty when they agree).
  local function differences(m)
    local diffs = {}
    local rows = assert(engine:sql_query("SELECT `id`, `name`, `code`, `n`, `note` FROM `" .. K .. "` ORDER BY `id`"))
    local seen = {}
    for _, r in ipairs(rows) do
      local id = math.tointeger(tonumber(r.id))
      seen[id] = true
      local s = m.state[id]
      if not s then
        diffs[#diffs + 1] = "extra row " .. id .. " in MySQL"
      else
        local want = string.format("%s|%s|%d|%s", s.name, s.code or "~", s.n, s.note or "~")
        local got = string.format("%s|%s|%s|%s", r.name, r.code or "~", r.n, r.note or "~")
        if got ~= want then diffs[#diffs + 1] = "row " .. id .. ": MySQL " .. got .. ", expected " .. want end
      end
    end
    for id in pairs(m.state) do
      if not seen[id] then diffs[#diffs + 1] = "row " .. id .. " missing in MySQL" end
    end
    local log, n = au.audit(engine, LOG)
    if n ~= m.events then diffs[#diffs + 1] = "MySQL applied " .. n .. " row changes, " .. m.events .. " were queued" end
    for id, want in pairs(m.history) do
      local got = table.concat(log[id] or {}, ", ")
      if got ~= table.concat(want, ", ") then
        diffs[#diffs + 1] = "row " .. id .. " changes applied: [" .. got .. "], queued: [" .. table.concat(want, ", ") .. "]"
      end
    end
    for id in pairs(log) do
      if not m.history[id] then diffs[#diffs + 1] = "changes applied to row " .. id .. " that nobody queued" end
    end
    return diffs
  end

  local function check_final(m)
    local diffs = differences(m)
    assert(#diffs == 0, #diffs .. " differences (seed " .. SEED .. "):\n" .. table.concat(diffs, "\n", 1, math.min(#diffs, 30)))
    local errs = au.errors(engine)
    assert(#errs == 0, #errs .. " error records (seed " .. SEED .. "):\n" .. au.describe_errors(errs))
    -- every queue's mark is the last entry ever added to it, and nothing waits after it
    local marks = au.marks(engine)
    for s = 0, au.SHARDS - 1 do
      local q = "default:" .. s
      local last = au.last_stream_id(REDIS_DB, q)
      if last then
        assert.equal(last, marks[q], "applied mark of " .. q)
        for _, id in ipairs(au.stream_ids(REDIS_DB, q)) do
          assert(not au.id_after(id, marks[q]), q .. ": entry " .. id .. " after the mark " .. marks[q] .. " not applied")
        end
      end
    end
  end

  -- Truncates the tables and the log (between tests).
  local function fresh()
    assert(engine:sql_exec("DELETE FROM `" .. K .. "`"))
    assert(engine:sql_exec("DELETE FROM `" .. LOG .. "`"))
  end

  local tmp = {}
  local function tmpfile()
    local p = os.tmpname()
    tmp[#tmp + 1] = p
    return p
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { item_def })
    au.reset(engine, REDIS_DB, { K, LOG })
    assert.equal(1, engine:sync_schema())
    au.install_audit(engine, K, LOG, COLS)
    say("consumer_kill_spec: seed %d, %d operations, %d kills", SEED, OPS, ROUNDS)
  end)

  teardown(function()
    for _, p in ipairs(tmp) do os.remove(p) end
    if engine then
      au.finish(engine, REDIS_DB)
      engine = nil
    end
    collectgarbage()
  end)

  it(string.format("apply %d operations exactly once though killed (SIGKILL) %d times", OPS, ROUNDS), function()
    fresh()
    local rng = math.random
    math.randomseed(SEED)
    local m = new_model(engine, rng)
    local t0 = util.now()
    local busy_kills, log = 0, tmpfile()
    for round = 1, ROUNDS do
      local out = tmpfile()
      local workers = round % 2 == 0 and 4 or 1
      local max_batch = ({ 1, 5, 20, 200 })[rng(4)]
      -- half of this round's work is queued before the consumer starts, half while it runs
      m.produce(OPS // ROUNDS // 2)
      -- the killed consumer's leases would expire 3 s after its last renewal; drop them
      -- now so that this round's consumer starts on the queues at once
      for s = 0, au.SHARDS - 1 do util.redis_cli(REDIS_DB, "DEL", au.lease_key("default:" .. s)) end
      local cmd = au.consumer_cmd(REDIS_DB, "block", out, { max_batch = max_batch, workers = workers })
      local pid = au.spawn(cmd, log)
      local cleanup_pid = pid
      finally(function() au.kill(cleanup_pid, "KILL") end) -- also when an assertion fails below
      local t = util.now()
      m.produce(OPS // ROUNDS - OPS // ROUNDS // 2)
      -- the cached lists show every flush_async at once, while the consumer applies them
      local differ = m.lists_differ()
      assert(not differ, "round " .. round .. " (seed " .. SEED .. "), lists read while consuming: " .. tostring(differ))
      util.sleep(math.max(0, rng(20, 300) / 1000 - (util.now() - t)))
      au.kill(pid, "KILL")
      local lived = util.now() - t
      assert(au.wait_exit(pid, 10), "consumer " .. pid .. " did not die")
      if au.read(out) ~= "" then
        error("the consumer of round " .. round .. " ended before it was killed: " .. au.read(out) .. au.read(log))
      end
      local waiting = au.total(engine, "len")
      local _, applied = au.audit(engine, LOG)
      if applied < m.events then busy_kills = busy_kills + 1 end
      say("round %d: workers %d, max_batch %3d, killed after %.2f s; %4d of %4d events applied, %4d entries waiting",
        round, workers, max_batch, lived, applied, m.events, waiting)
    end
    say("produced %d operations in %d entries; %d of %d kills left work undone; %.1f s", m.ops, m.entries,
      busy_kills, ROUNDS, util.now() - t0)
    assert.equal(OPS, m.ops)
    -- a last consumer runs to completion
    local out = tmpfile()
    local code = servers.run(au.consumer_cmd(REDIS_DB, "once", out, {}))
    assert.equal(0, code, "final consumer: " .. au.read(out) .. au.read(log))
    assert.matches("^ok ", au.read(out))
    check_final(m)
    assert.equal(0, au.consume(engine:context()).events)
    local differ = m.lists_differ()
    assert(not differ, "lists after consuming (seed " .. SEED .. "): " .. tostring(differ))
    -- no pending mark outlives its event, also for batches a kill cut short
    assert.same({}, util.redis_keys(REDIS_DB, "*:p:*"))
    -- (entries applied but left in their streams by a kill between COMMIT and XDEL are
    -- counted by q:stats().len forever: a known bug, asserted in async_spec)
    say("checked in %.1f s; %d applied entries left in the streams", util.now() - t0, au.total(engine, "len"))
  end)

  describe("two started at once", function()
    local counts = function(line)
      local entries = line:match("^ok (%d+)")
      assert(entries, "consumer said: " .. line)
      return tonumber(entries)
    end

    it("drain the same queues (non-blocking): every entry applied once by one of them", function()
      fresh()
      math.randomseed(SEED + 1)
      local m = new_model(engine, math.random)
      m.produce(PAIR_OPS)
      local outs, procs = { tmpfile(), tmpfile() }, {}
      for i = 1, 2 do
        local cmd = au.consumer_cmd(REDIS_DB, "once", outs[i], { max_batch = 10 })
        procs[i] = assert(io.popen(cmd .. " 2>&1"))
      end
      local applied = 0
      for i = 1, 2 do
        local printed = procs[i]:read("a")
        assert(procs[i]:close(), "consumer " .. i .. " failed: " .. printed .. au.read(outs[i]))
        applied = applied + counts(au.read(outs[i]))
      end
      check_final(m)
      assert.equal(m.entries, applied) -- entries committed by one, fenced out of the other
    end)

    it("consume the same queues (blocking) while events are queued, then stop on SIGTERM", function()
      fresh()
      math.randomseed(SEED + 2)
      local m = new_model(engine, math.random)
      local outs, pids, log = { tmpfile(), tmpfile() }, {}, tmpfile()
      finally(function() for _, p in pairs(pids) do au.kill(p, "KILL") end end)
      for i = 1, 2 do
        pids[i] = au.spawn(au.consumer_cmd(REDIS_DB, "block", outs[i], { max_batch = 10, workers = i }), log)
      end
      for _ = 1, 10 do
        m.produce(PAIR_OPS // 10)
        util.sleep(0.02)
      end
      -- wait until every queue's mark reached its last entry
      local drained = util.eventually(function() return au.all_applied(engine, REDIS_DB) end, 30)
      assert(drained, "the blocking consumers did not apply everything within 30 s: " .. au.read(log))
      local applied = 0
      for i = 1, 2 do
        au.kill(pids[i], "TERM")
        assert(au.wait_exit(pids[i], 10), "consumer " .. i .. " did not stop on SIGTERM")
        applied = applied + counts(au.read(outs[i]))
      end
      check_final(m)
      assert.equal(m.entries, applied)
    end)

    -- pid -> number of queues whose lease a worker of that process holds
    local function holders()
      local by_pid = {}
      for s = 0, au.SHARDS - 1 do
        local token = util.redis_get(REDIS_DB, au.lease_key("default:" .. s))
        local pid = token and tonumber(token:match("^(%d+)%-"))
        if pid then by_pid[pid] = (by_pid[pid] or 0) + 1 end
      end
      return by_pid
    end

    -- user + system CPU seconds of a process so far
    local function cpu_seconds(pid)
      local stat = au.read("/proc/" .. pid .. "/stat")
      local fields = {}
      for f in (stat:match("%) (.*)$") or ""):gmatch("%S+") do fields[#fields + 1] = f end
      return ((tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)) / 100
    end

    it("share the queues (blocking, 4 workers each): half each, a killed one's move over, nobody spins", function()
      fresh()
      math.randomseed(SEED + 3)
      local m = new_model(engine, math.random)
      for s = 0, au.SHARDS - 1 do util.redis_cli(REDIS_DB, "DEL", au.lease_key("default:" .. s)) end
      util.redis_cli(REDIS_DB, "DEL", "beeorm:workers")
      local outs, pids, log = { tmpfile(), tmpfile() }, {}, tmpfile()
      finally(function() for _, p in pairs(pids) do au.kill(p, "KILL") end end)
      pids[1] = au.spawn(au.consumer_cmd(REDIS_DB, "block", outs[1], { workers = 4 }), log)
      assert(util.eventually(function() return holders()[pids[1]] == au.SHARDS end, 10),
        "the first consumer did not take every queue: " .. au.read(log))
      pids[2] = au.spawn(au.consumer_cmd(REDIS_DB, "block", outs[2], { workers = 4 }), log)
      local balanced = util.eventually(function()
        local h = holders()
        return h[pids[1]] == au.SHARDS // 2 and h[pids[2]] == au.SHARDS // 2
      end, 20)
      local h = holders()
      assert(balanced, string.format("not shared: %s queues / %s queues", tostring(h[pids[1]]), tostring(h[pids[2]])))
      -- both apply while events flow, without spinning on the queues the other holds
      local cpu0 = { cpu_seconds(pids[1]), cpu_seconds(pids[2]) }
      for _ = 1, 20 do
        m.produce(PAIR_OPS // 20)
        util.sleep(0.1)
      end
      -- (a worker spinning on a queue held elsewhere burns a core: 2 s here; applying
      -- this load takes 0.2-0.25 s. The sanitizer build needs 1.2-1.3 s for the same
      -- work, too close to tell a spin apart: there the plain run's check stands.)
      for i = 1, 2 do
        local used = cpu_seconds(pids[i]) - cpu0[i]
        say("consumer %d: %.2f s of CPU in 2 s of light load", i, used)
        if not os.getenv("BEEORM_SANITIZE") then
          assert(used < 1.0, "consumer " .. i .. " used " .. used .. " s of CPU in 2 s of light load")
        end
      end
      -- the first dies: its queues move to the second once its heartbeat and leases run out
      au.kill(pids[1], "KILL")
      assert(au.wait_exit(pids[1], 10))
      m.produce(PAIR_OPS // 4)
      assert(util.eventually(function() return holders()[pids[2]] == au.SHARDS end, 20),
        "the second consumer did not take the queues over")
      local drained = util.eventually(function() return au.all_applied(engine, REDIS_DB) end, 30)
      assert(drained, "not everything applied: " .. au.read(log))
      au.kill(pids[2], "TERM")
      assert(au.wait_exit(pids[2], 10), "the second consumer did not stop on SIGTERM")
      assert.matches("^ok ", au.read(outs[2]))
      check_final(m)
    end)
  end)
end)
