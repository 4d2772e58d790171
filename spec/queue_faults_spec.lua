-- The queue under faults and operators (issue 12; docs/guarantees.md G1-G5, G11, G13, §4): a
-- flush_async whose outcome is unknown never duplicates, a consumer waits out a
-- read-only MySQL, `skip` drops one event only, a resolver that raises never stops
-- consumption, stale retries refuse unless forced, and malformed stream entries are
-- listed and removable. Written against the contract before the engine implements it:
-- most of these fail until it does.
--
-- Servers: the shared throwaway MariaDB and Redis (db 1); the unknown-outcome tests start
-- their own redis-server (SIGSTOP on the shared one would stall every other spec) and
-- stop it by PID in teardown (SIGCONT, then SIGTERM, then SIGKILL). The read-only test
-- creates a MySQL user with privileges on the test database only, for its consumer
-- process, and drops it again; it always sets read_only back to 0, also when it fails.
-- Every child process (consumer, stopper helpers) is stopped by its PID.
--
-- Scale: BEEORM_QF_REPEAT (default 10, the contract's number) rounds of each
-- unknown-outcome test; BEEORM_QF_EVENTS (default 2000) events and
-- BEEORM_QF_READ_ONLY_SECONDS (default 5) seconds per read-only period (3 periods) in the
-- read-only test. Against today's build the file takes ~15 s (most tests fail early).
-- Once the engine implements the contract, about 40 s (estimated from the parts that run
-- today: the read-only test ~25 s, 15 s of it the contract's read-only MySQL; 20 rounds
-- of the unknown-outcome tests ~10 s, each at most one 300 ms timeout plus a consume).
-- A stopper helper resumes Redis after 3 s whatever happens, so a flush_async that
-- ignores its timeout costs one round 3 s, and its test stops at that round.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local REDIS_DB = 1
local REPEAT = tonumber(os.getenv("BEEORM_QF_REPEAT") or "") or 10
local RO_EVENTS = tonumber(os.getenv("BEEORM_QF_EVENTS") or "") or 2000
local RO_SECONDS = tonumber(os.getenv("BEEORM_QF_READ_ONLY_SECONDS") or "") or 5
local RO_TIMES = 3
local TIMEOUT_MS = 300

local U, RO, RO_LOG, G = "qf_user", "qf_ro", "qf_ro_log", "qf_flush"

-- Rows with a unique email: duplicates (1062) for skip, resolvers and stale retries.
local user_def = {
  name = U,
  redis_cache = true,
  fields = {
    { "name", "string", length = 60, required = true },
    { "email", "string", length = 80, unique = "email" },
    { "note", "string", length = 60 },
    { "n", "int" },
  },
}

-- Rows the read-only test changes (no unique index: nothing but read-only can fail).
local ro_def = {
  name = RO,
  redis_cache = true,
  fields = {
    { "name", "string", length = 40, required = true },
    { "n", "int" },
    { "note", "string", length = 40 },
  },
}

-- Rows of the unknown-outcome tests (on their own Redis server).
local flush_def = {
  name = G,
  redis_cache = true,
  fields = {
    { "name", "string", length = 60, required = true },
    { "note", "string", length = 60 },
    { "n", "int" },
  },
}

local q = util.shell_quote
local BEEORM = servers.build_dir .. "/beeorm"

-- The summary line of a consume run as a table of numbers, or nil.
local function summary(out) return au.consume_summary(out, false) end

local tmp = {}
local function tmpfile(text)
  local path = os.tmpname()
  tmp[#tmp + 1] = path
  if text then
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end
  return path
end

-- Runs `beeorm ARGS` (a shell fragment); returns exit code, stdout, stderr.
local function host(args)
  local errf = os.tmpname()
  local code, out = servers.run(string.format("(%s %s 2>%s)", q(BEEORM), args, q(errf)))
  local err = au.read(errf)
  os.remove(errf)
  return code, out, err
end

-- A YAML config for the host: the test MySQL (or dsn) and the shared Redis, db 1.
local function config_file(dsn)
  return tmpfile(string.format("default:\n  mysql: %s\n  redis: %s:%d\n", dsn or servers.mysql, servers.redis,
    REDIS_DB))
end

-- The state letter of a process ("R", "S", "T" stopped, ...), or nil when it is gone.
local function proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s:match("%) (%a)")
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

describe("the queue under faults and operators", function()
  local engine
  local behind = 900000000 -- ids of rows written behind beeorm's back (far above what the allocator hands out)

  local function sql_user(id)
    return assert(engine:sql_query("SELECT `id`, `name`, `email`, `note`, `n` FROM `" .. U .. "` WHERE `id` = ?",
      { id }))[1]
  end

  -- Inserts a row with that email behind beeorm's back (no cache, no event); returns its id.
  local function insert_behind(email)
    behind = behind + 1
    assert(engine:sql_exec("INSERT INTO `" .. U .. "` (`id`, `name`, `email`, `n`) VALUES (?, ?, ?, 0)",
      { behind, "behind", email }))
    return behind
  end

  local function sync_user(values)
    local c = engine:context()
    local t = c:new_entity(U, values)
    assert.is_true(c:flush())
    return t
  end

  local function queue(name)
    return assert(au.queues(engine)[name], "no queue " .. tostring(name))
  end

  -- Every error record of every queue, one line each (for failure messages).
  local function listed()
    local ok, list = pcall(au.errors, engine)
    if not ok then return "(cannot list errors: " .. tostring(list) .. ")" end
    return au.describe_errors(list)
  end

  -- The error records of one queue for one row id.
  local function records_of(qname, id)
    local out = {}
    for _, ev in ipairs(assert(queue(qname):errors(100))) do
      if ev.id == id then out[#out + 1] = ev end
    end
    return out
  end

  -- Runs a small Lua script in the shared Redis (db 1); returns redis-cli's output.
  local function eval(script, keys, ...)
    local args = { "EVAL", script, tostring(#keys) }
    for _, k in ipairs(keys) do args[#args + 1] = k end
    for i = 1, select("#", ...) do args[#args + 1] = select(i, ...) end
    local out = util.redis_cli(REDIS_DB, table.unpack(args))
    assert(not out:match("^ERR") and not out:match("^%(error%)"), "EVAL failed: " .. out)
    return out
  end

  -- Leaves the queues of db 1 empty: consume, drop error records, and delete what
  -- remains (entries or records the engine could not handle).
  local function clean_queues()
    pcall(au.skip_all_errors, engine)
    pcall(beeorm.consume_async_flush_events, engine:context(), false, { max_retries = 2 })
    for s = 0, au.SHARDS - 1 do
      local name = "default:" .. s
      util.redis_cli(REDIS_DB, "DEL", au.errors_key(name))
      for _, id in ipairs(au.stream_ids(REDIS_DB, name)) do util.redis_cli(REDIS_DB, "XDEL", au.stream_key(name), id) end
    end
    for _, k in ipairs(util.redis_keys(REDIS_DB, "beeorm:{q:*}:qf_saved")) do util.redis_cli(REDIS_DB, "DEL", k) end
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { user_def, ro_def })
    assert(engine:sql_exec("SET GLOBAL read_only = 0"))
    au.reset(engine, REDIS_DB, { U, RO, RO_LOG, G })
    assert.equal(2, engine:sync_schema())
  end)

  teardown(function()
    if engine then
      pcall(engine.sql_exec, engine, "SET GLOBAL read_only = 0")
      pcall(clean_queues)
      util.flushdb(REDIS_DB)
      engine:close()
      engine = nil
    end
    for _, path in ipairs(tmp) do os.remove(path) end
    collectgarbage()
  end)

  after_each(function()
    assert(engine:sql_exec("SET GLOBAL read_only = 0"))
    clean_queues()
  end)

  -- ----------------------------------------------------------------------------------
  describe("a Redis pool's timeouts", function()
    local function uri(params)
      return "redis://" .. servers.redis .. "/" .. REDIS_DB .. "?" .. params
    end

    -- The parameter named as a whole word (timeout_ms is not found in connect_timeout_ms).
    local function names(message, param)
      return tostring(message):find("%f[%w_]" .. param .. "%f[^%w_]") ~= nil
    end

    it("are accepted as query parameters timeout_ms and connect_timeout_ms of a redis:// URI", function()
      for _, params in ipairs({ "timeout_ms=300", "connect_timeout_ms=500", "timeout_ms=300&connect_timeout_ms=500",
        "timeout_ms=1", "timeout_ms=60000" }) do
        local r = beeorm.registry()
        assert(r:register_mysql(servers.mysql))
        local ok, err = r:register_redis(uri(params))
        assert.is_nil(err, params .. ": " .. tostring(err))
        assert.is_true(ok, params)
        local e, verr = r:validate()
        assert(e, params .. ": " .. tostring(verr))
        e:close()
      end
    end)

    it("are rejected by register_redis when not an integer, 0, or (timeout_ms) above 60000, naming the parameter",
      function()
        local cases = {
          { "timeout_ms", "abc" }, { "timeout_ms", "1.5" }, { "timeout_ms", "" }, { "timeout_ms", "0" },
          { "timeout_ms", "-5" }, { "timeout_ms", "60001" }, { "timeout_ms", "300ms" },
          { "connect_timeout_ms", "x" }, { "connect_timeout_ms", "0" }, { "connect_timeout_ms", "" },
        }
        for _, c in ipairs(cases) do
          local label = c[1] .. "=" .. c[2]
          local r = beeorm.registry()
          local ok, err = r:register_redis(uri(label))
          assert.is_nil(ok, label .. " was accepted")
          assert.is_true(beeorm.is_error(err), label)
          assert.equal("dsn", err.code, label)
          assert.is_true(names(err.message, c[1]), label .. ": the message does not name " .. c[1] .. ": "
            .. tostring(err.message))
        end
      end)

    it("are accepted as keys timeout_ms and connect_timeout_ms of a pool in YAML, and bad values are rejected "
      .. "naming the key", function()
      local good = {
        string.format("default:\n  mysql: %s\n  redis: %s:%d\n  timeout_ms: 300\n  connect_timeout_ms: 500\n",
          servers.mysql, servers.redis, REDIS_DB),
        string.format("default:\n  mysql: %s\n  redis: %s\n", servers.mysql, uri("timeout_ms=300")),
      }
      for _, text in ipairs(good) do
        local r = beeorm.registry()
        local ok, err = r:load_yaml(tmpfile(text))
        assert.is_nil(err, text .. tostring(err))
        assert.is_true(ok)
        local e, verr = r:validate()
        assert(e, tostring(verr))
        e:close()
      end
      local bad = { { "timeout_ms", "abc" }, { "timeout_ms", "0" }, { "timeout_ms", "60001" }, { "timeout_ms", "2.5" },
        { "connect_timeout_ms", "0" }, { "connect_timeout_ms", "soon" } }
      for _, c in ipairs(bad) do
        local label = c[1] .. ": " .. c[2]
        local r = beeorm.registry()
        local ok, err = r:load_yaml(tmpfile(string.format("default:\n  redis: %s:%d\n  %s\n", servers.redis, REDIS_DB,
          label)))
        assert.is_nil(ok, label .. " was accepted")
        assert.is_true(beeorm.is_error(err), label)
        assert.equal("config", err.code, label)
        assert.is_true(names(err.message, c[1]), label .. ": the message does not name " .. c[1] .. ": "
          .. tostring(err.message))
      end
    end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("a flush_async whose outcome is unknown (its own Redis, frozen with SIGSTOP)", function()
    local pid, port, dir, fifo
    local g_engine, setup_err
    local base, base_n -- a row every round increments, and its n as it must be
    local helpers = {}

    local function cli(...)
      local args = {}
      for i = 1, select("#", ...) do args[#args + 1] = q(select(i, ...)) end
      local code, out = servers.run(string.format("redis-cli -h 127.0.0.1 -p %d -n %d %s", port, REDIS_DB,
        table.concat(args, " ")))
      assert(code == 0, "redis-cli failed: " .. out)
      return out
    end

    local function g_row(id)
      return assert(g_engine:sql_query("SELECT `id`, `name`, `note`, `n` FROM `" .. G .. "` WHERE `id` = ?", { id }))[1]
    end

    -- The cached row's column as Redis holds it ("=<text>"), false when the row is not
    -- cached, nil when the row is cached without that column.
    local function cached(id, col)
      local key = "bee:{" .. util.database() .. "." .. G .. "}:r:" .. id
      if not cli("EXISTS", key):match("1") then return false end
      local v = cli("HGET", key, col):gsub("\n$", "")
      if v == "" then return nil end
      return v
    end

    -- A helper process (one bash, no child: `read -t` on a FIFO opened read-write is its
    -- sleep) running `script` with P = the Redis pid; returns its pid.
    local function helper(script)
      local h = au.spawn("bash -c " .. q("exec 3<> " .. q(fifo) .. "; P=" .. pid .. "; " .. script))
      helpers[#helpers + 1] = h
      return h
    end

    local function end_helper(h)
      if au.alive(h) then
        au.kill(h, "KILL")
        au.wait_exit(h, 5)
      end
    end

    -- Stops Redis (SIGSTOP) and waits until it is stopped; a helper resumes it after 3 s
    -- whatever happens here (so nothing hangs forever); returns the helper's pid.
    local function freeze()
      local h = helper("read -t 3 -u 3; kill -CONT $P")
      au.kill(pid, "STOP")
      assert(util.eventually(function() return proc_state(pid) == "T" end, 2), "redis-server did not stop")
      return h
    end

    -- Resumes Redis (after waiting up to 1 s for a stopper helper to have stopped it).
    local function thaw(h, stopper)
      if stopper then util.eventually(function() return proc_state(pid) == "T" or not au.alive(h) end, 1) end
      au.kill(pid, "CONT")
      end_helper(h)
      assert(util.eventually(function() return proc_state(pid) ~= "T" end, 2), "redis-server did not resume")
    end

    setup(function()
      servers.need()
      local f = assert(io.popen("mktemp -d " .. q(servers.build_dir .. "/qf-redis.XXXXXX")))
      dir = f:read("l")
      f:close()
      assert(dir and dir ~= "", "mktemp failed")
      fifo = dir .. "/sleep.fifo"
      assert(servers.run("mkfifo " .. q(fifo)) == 0, "mkfifo failed")
      pid, port = au.start_redis_anywhere(dir)
      local r = beeorm.registry()
      assert(r:register_mysql(servers.mysql))
      local ok, err = r:register_redis(string.format("redis://127.0.0.1:%d/%d?timeout_ms=%d", port, REDIS_DB,
        TIMEOUT_MS))
      if not ok then
        setup_err = "register_redis with ?timeout_ms=" .. TIMEOUT_MS .. " failed: " .. tostring(err)
        return
      end
      assert(r:register_entity(flush_def))
      g_engine, err = r:validate()
      if not g_engine then
        setup_err = "validate failed: " .. tostring(err)
        return
      end
      util.drop(g_engine, { G })
      assert.equal(1, g_engine:sync_schema())
      local c = g_engine:context()
      base = c:new_entity(G, { name = "qf-base", n = 0 })
      assert.is_true(c:flush())
      base_n = 0
    end)

    teardown(function()
      for _, h in ipairs(helpers) do end_helper(h) end
      if pid then au.kill(pid, "CONT") end
      if g_engine then
        pcall(au.drain, g_engine)
        g_engine:close()
        g_engine = nil
      end
      collectgarbage()
      if pid then au.stop(pid) end
      if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    after_each(function()
      for _, h in ipairs(helpers) do end_helper(h) end
      helpers = {}
      if pid then au.kill(pid, "CONT") end
    end)

    -- What must hold after a round's changes were consumed: the inserted rows once with
    -- their values, the base row incremented once per increment, caches that agree with
    -- MySQL, nothing parked, nothing left queued. Returns a list of problems.
    local function audit(rows, problems)
      local st, cerr = beeorm.consume_async_flush_events(g_engine:context(), false)
      if not st then
        problems[#problems + 1] = "consume failed: " .. tostring(cerr)
        return
      end
      for _, r in ipairs(rows) do
        local got = g_row(r.id)
        local want = string.format("%s|%s|%s", r.name, tostring(r.note), tostring(r.n))
        local have = got and string.format("%s|%s|%s", got.name, tostring(got.note), tostring(got.n)) or "missing"
        if have ~= want then problems[#problems + 1] = "row " .. r.id .. " in MySQL: " .. have .. ", want " .. want end
      end
      local n = tonumber(g_row(base.id).n)
      if n ~= base_n then
        problems[#problems + 1] = string.format("base row n in MySQL: %d, want %d (an increment applied %s)", n,
          base_n, n > base_n and "twice" or "never")
      end
      local c = cached(base.id, "n")
      if c and c ~= "=" .. n then -- (a row cached without n is read from MySQL)
        problems[#problems + 1] = "base row n in the Redis cache: " .. tostring(c) .. ", MySQL: " .. n
      end
      local fresh = g_engine:context():get_by_id(G, base.id)
      if not fresh or fresh.n ~= n then
        problems[#problems + 1] = "a fresh context reads base n = " .. tostring(fresh and fresh.n) .. ", MySQL: " .. n
      end
      if rows[1] then
        local c1 = cached(rows[1].id, "n")
        if c1 and c1 ~= "=" .. rows[1].n then
          problems[#problems + 1] = "row " .. rows[1].id .. " n in the Redis cache: " .. tostring(c1)
        end
      end
      local errs = au.errors(g_engine)
      if #errs > 0 then problems[#problems + 1] = "error list not empty:\n" .. au.describe_errors(errs) end
      local len = au.total(g_engine, "len")
      if len ~= 0 then problems[#problems + 1] = len .. " entries still queued" end
    end

    -- One round: k new rows and an increment of the base row in one context; Redis is
    -- stopped before the call (delay nil) or, by a helper process, about `delay` seconds
    -- after the call started; then Redis is resumed and, if the call failed, the same
    -- context's flush_async called again; then the queue is consumed and audited.
    local function round(label, delay)
      local ctx = g_engine:context()
      local k = math.random(1, 200)
      local rows = {}
      for j = 1, k do
        rows[j] = ctx:new_entity(G, { name = label .. "-" .. j, note = (j % 3 == 0) and "n" .. j or nil, n = j })
      end
      local delta = math.random(1, 9)
      ctx:increment(G, base.id, "n", delta)
      local h
      if delay then
        -- the helper waits for one byte on the FIFO, then `delay` seconds, then stops Redis
        h = helper(string.format("read -n 1 -u 3; read -t %.4f -u 3; kill -STOP $P; read -t 3 -u 3; kill -CONT $P",
          delay))
        local go = assert(io.open(fifo, "w")) -- returns once the helper opened the FIFO
        go:write("g")
        go:close()
      else
        h = freeze()
      end
      local t0 = beeorm.monotonic()
      local ok, err = ctx:flush_async()
      local took = beeorm.monotonic() - t0
      thaw(h, delay ~= nil)
      local problems = {}
      local function problem(s) problems[#problems + 1] = s end
      if took >= 1 then problem(string.format("flush_async took %.3f s with timeout_ms=%d", took, TIMEOUT_MS)) end
      if ok then
        if not delay then problem(string.format("flush_async returned true after %.3f s while Redis was stopped", took)) end
      else
        if not (beeorm.is_error(err) and err.code == "timeout" and err.temporary == true
          and tostring(err.message):lower():find("may or may not", 1, true)) then
          problem("flush_async returned nil, " .. tostring(err) .. " (code " .. tostring(err and err.code)
            .. ", temporary " .. tostring(err and err.temporary) .. "), want code \"timeout\", temporary, and a message "
            .. "saying the changes may or may not have been queued")
        end
        local want = string.format("beeorm.Context (%d tracked changes,", k + 1)
        if tostring(ctx):sub(1, #want) ~= want then
          problem("after the timeout " .. tostring(ctx) .. ", want " .. want .. " ...: the changes stay tracked")
        end
        local ok2, err2 = ctx:flush_async()
        if ok2 ~= true then problem("the retry after SIGCONT returned " .. tostring(ok2) .. ", " .. tostring(err2)) end
      end
      if ok or #problems == 0 then base_n = base_n + delta end
      if #problems == 0 then audit(rows, problems) end
      return problems, ok, took
    end

    local function rounds(delayed)
      assert(g_engine, setup_err)
      local seed = os.time()
      math.randomseed(seed)
      local failures, timeouts = {}, 0
      for i = 1, REPEAT do
        local delay = delayed and (math.random(0, 25) / 10000) or nil
        local label = string.format("qf-%s-%d-%d", delayed and "d" or "s", seed, i)
        local problems, ok = round(label, delay)
        if not ok then timeouts = timeouts + 1 end
        if #problems > 0 then
          failures[#failures + 1] = string.format("round %d (%s): %s", i,
            delay and string.format("stopped %.4f s after the call started", delay) or "stopped before the call",
            table.concat(problems, "; "))
          break -- the state of later rounds would be muddled
        end
      end
      assert(#failures == 0, "seed " .. seed .. ": " .. table.concat(failures, "\n"))
      return timeouts
    end

    it("returns a temporary timeout within 1 s when Redis is stopped before the call; after SIGCONT its unchanged "
      .. "retry returns true and everything applies exactly once (" .. REPEAT .. " rounds)", function()
      assert.equal(REPEAT, rounds(false))
    end)

    it("returns true or a temporary timeout when Redis stops at a random moment during the call; everything applies "
      .. "exactly once (" .. REPEAT .. " rounds)", function()
      rounds(true)
    end)

    it("after a timeout, a retry that changed another field first is a new flush: the first changes and the new one "
      .. "each apply once", function()
      assert(g_engine, setup_err)
      local ctx = g_engine:context()
      local x = ctx:new_entity(G, { name = "qf-changed", note = "v1", n = 1 })
      ctx:increment(G, base.id, "n", 5)
      local h = freeze()
      local ok, err = ctx:flush_async()
      thaw(h)
      assert.is_nil(ok)
      assert.equal("timeout", err.code)
      x.note = "v2"
      local ok2, err2 = ctx:flush_async()
      assert.is_nil(err2)
      assert.is_true(ok2)
      -- nothing left: a third call queues nothing
      local before = au.total(g_engine, "len")
      assert.is_true(ctx:flush_async())
      assert.equal(before, au.total(g_engine, "len"))
      base_n = base_n + 5
      local problems = {}
      audit({ { id = x.id, name = "qf-changed", note = "v2", n = 1 } }, problems)
      assert(#problems == 0, table.concat(problems, "\n"))
    end)

    it("bounds flush_async by a timeout_ms given as a pool key in YAML", function()
      assert(g_engine, setup_err)
      local r = beeorm.registry()
      local ok, err = r:load_yaml(tmpfile(string.format("default:\n  mysql: %s\n  redis: 127.0.0.1:%d:%d\n"
        .. "  timeout_ms: %d\n", servers.mysql, port, REDIS_DB, TIMEOUT_MS)))
      assert(ok, tostring(err))
      assert(r:register_entity(flush_def))
      local y = assert(r:validate())
      finally(function() y:close() end)
      local ctx = y:context()
      local x = ctx:new_entity(G, { name = "qf-yaml", n = 3 })
      local h = freeze()
      local t0 = beeorm.monotonic()
      local ok1, err1 = ctx:flush_async()
      local took = beeorm.monotonic() - t0
      thaw(h)
      assert.is_nil(ok1, string.format("flush_async returned true after %.3f s while Redis was stopped", took))
      assert.equal("timeout", err1.code)
      assert.is_true(err1.temporary)
      assert.is_true(took < 1, string.format("took %.3f s", took))
      assert.is_true(ctx:flush_async())
      local problems = {}
      audit({ { id = x.id, name = "qf-yaml", n = 3 } }, problems)
      assert(#problems == 0, table.concat(problems, "\n"))
    end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("a blocking consumer whose MySQL turns read-only", function()
    local RO_USER = "qf_ro_user"
    local RO_HOSTS = { "127.0.0.1", "localhost" }

    local function drop_user()
      for _, h in ipairs(RO_HOSTS) do pcall(engine.sql_exec, engine, "DROP USER IF EXISTS '" .. RO_USER .. "'@'" .. h .. "'") end
    end

    -- The workload: flush_async calls of 1-20 operations (inserts, updates, deletes and a
    -- few increments), one operation per row per call, each in a fresh context.
    local function new_model(rng)
      local m = { state = {}, history = {}, events = 0, serial = 0 }
      local notes = { "alpha", "beta", false, "gamma" }
      local function line(op, s)
        return op .. " " .. s.name .. "|" .. s.n .. "|" .. (s.note or "~")
      end
      local live = au.live_set(rng)
      local add, remove, pick = live.add, live.remove, live.pick

      function m.flush(n)
        local ctx = engine:context()
        local taken, done = {}, 0
        for _ = 1, n do
          local r = rng()
          if live.count() < 40 or r < 0.35 then
            m.serial = m.serial + 1
            local s = { name = "ro-" .. m.serial, n = 0, note = notes[rng(#notes)] or nil }
            local t = ctx:new_entity(RO, { name = s.name, n = s.n, note = s.note })
            m.state[t.id] = s
            m.history[t.id] = { line("I", s) }
            add(t.id)
            taken[t.id] = true
          else
            local id = pick(taken)
            if not id then break end
            taken[id] = true
            local s = m.state[id]
            if r < 0.42 then
              local d = rng(1, 5) * (rng() < 0.5 and -1 or 1)
              ctx:increment(RO, id, "n", d)
              s.n = s.n + d
              table.insert(m.history[id], line("U", s))
            elseif r < 0.88 then
              local t = ctx:get_by_id(RO, id)
              assert(t and t.n == s.n, "row " .. id .. " through the caches: n = " .. tostring(t and t.n) .. ", model "
                .. s.n .. "; errors: " .. listed())
              local e = ctx:edit_entity(t)
              s.n = s.n + 1
              e.n = s.n
              if rng() < 0.4 then s.name = "ro-" .. id .. "-" .. s.n; e.name = s.name end
              if rng() < 0.3 then s.note = notes[rng(#notes)] or nil; e.note = s.note end
              table.insert(m.history[id], line("U", s))
            else
              ctx:delete_entity(assert(ctx:get_by_id(RO, id)))
              m.state[id] = nil
              table.insert(m.history[id], "D")
              remove(id)
            end
          end
          done = done + 1
        end
        if done == 0 then return 0 end
        local ok, err = ctx:flush_async()
        assert(ok, "flush_async failed: " .. tostring(err))
        m.events = m.events + done
        return done
      end

      function m.produce(n)
        local target = m.events + n
        while m.events < target do m.flush(math.min(rng(20), target - m.events)) end
      end

      return m
    end

    it("waits out three 5 s read-only periods: it never exits, applies " .. RO_EVENTS .. " events exactly once, "
      .. "parks nothing, and exits 0 on SIGTERM", function()
      local parts = servers.mysql_parts()
      local pw = "qf-ro-" .. hex(random_bytes(6))
      local consumer, shell
      local log, pidf, codef = tmpfile(), tmpfile(), tmpfile()
      os.remove(pidf)
      os.remove(codef)
      finally(function()
        pcall(engine.sql_exec, engine, "SET GLOBAL read_only = 0")
        if consumer and au.alive(consumer) then
          au.kill(consumer, "KILL")
          au.wait_exit(consumer, 5)
        end
        if shell and au.alive(shell) then
          au.kill(shell, "KILL")
          au.wait_exit(shell, 5)
        end
        drop_user()
      end)
      drop_user()
      for _, h in ipairs(RO_HOSTS) do
        assert(engine:sql_exec("CREATE USER '" .. RO_USER .. "'@'" .. h .. "' IDENTIFIED BY '" .. pw .. "'"))
        assert(engine:sql_exec("GRANT ALL ON `" .. parts.database .. "`.* TO '" .. RO_USER .. "'@'" .. h .. "'"))
      end
      local dsn = string.format("%s:%s@tcp(%s:%d)/%s", RO_USER, pw, parts.host, parts.port, parts.database)
      local config = config_file(dsn)
      au.install_audit(engine, RO, RO_LOG, { "name", "n", "note" })
      for s = 0, au.SHARDS - 1 do util.redis_cli(REDIS_DB, "DEL", au.lease_key("default:" .. s)) end

      local inner = string.format("%s consume --config %s & echo $! > %s; wait $!; echo $? > %s", q(BEEORM), q(config),
        q(pidf), q(codef))
      shell = au.spawn("bash -c " .. q(inner), log)
      assert(util.eventually(function() return au.read(pidf):match("^%d+") ~= nil end, 10), "the consumer did not start")
      consumer = tonumber(au.read(pidf):match("^%d+"))

      local seed = os.time()
      local rng = math.random
      math.randomseed(seed)
      local m = new_model(rng)
      local function check_alive(when)
        assert(au.alive(consumer), string.format("seed %d: the consumer exited %s (exit code %s): %s", seed, when,
          au.read(codef):match("%d+") or "?", au.read(log)))
      end
      local per = RO_EVENTS // (2 * RO_TIMES + 1)
      for p = 1, RO_TIMES do
        m.produce(per) -- a burst: the consumer is busy when MySQL turns read-only
        check_alive("before read-only period " .. p)
        assert(engine:sql_exec("SET GLOBAL read_only = 1"))
        local t0 = util.now()
        local chunks = math.max(1, math.floor(RO_SECONDS / 0.1))
        for c = 1, chunks do
          m.produce(per * c // chunks - per * (c - 1) // chunks)
          local due = t0 + RO_SECONDS * c / chunks
          if util.now() < due then util.sleep(due - util.now()) end
        end
        check_alive("during read-only period " .. p)
        local waiting = au.total(engine, "len")
        assert(engine:sql_exec("SET GLOBAL read_only = 0"))
        assert(waiting > 0, "nothing waited while MySQL was read-only: the test proves nothing")
      end
      m.produce(RO_EVENTS - m.events)
      assert.equal(RO_EVENTS, m.events)

      local drained = util.eventually(function()
        return not au.alive(consumer) or (au.total(engine, "len") == 0 and au.total(engine, "pending") == 0
          and au.all_applied(engine, REDIS_DB))
      end, 60)
      check_alive("after read-only ended")
      if not drained then -- what was left, per queue
        local left = {}
        local marks = au.marks(engine, REDIS_DB)
        for s = 0, au.SHARDS - 1 do
          local qn = "default:" .. s
          left[#left + 1] = string.format("%s len=%s mark=%s last=%s", qn, util.redis_cli(REDIS_DB, "XLEN",
            au.stream_key(qn)):gsub("\n", ""), tostring(marks[qn]), tostring(au.last_stream_id(REDIS_DB, qn)))
        end
        error("seed " .. seed .. ": the queues were not drained within 60 s of read-only ending; errors: " .. listed()
          .. "\n" .. table.concat(left, "\n") .. "\n" .. au.read(log))
      end

      -- nothing parked, nothing left queued
      for _, qq in ipairs(engine:read_async_flush_events()) do
        local s = assert(qq:stats())
        assert.equal(0, s.errors, qq.name .. ": " .. listed())
        assert.same({}, assert(qq:errors(100)), qq.name)
        assert.equal(0, s.len, qq.name)
      end
      -- MySQL is the model, every row and column, no missing and no extra row
      local rows = assert(engine:sql_query("SELECT `id`, `name`, `n`, `note` FROM `" .. RO .. "` ORDER BY `id`"))
      local want_ids = {}
      for id in pairs(m.state) do want_ids[#want_ids + 1] = id end
      table.sort(want_ids)
      assert.equal(#want_ids, #rows, "seed " .. seed .. ": rows in MySQL")
      for i, r in ipairs(rows) do
        local id = want_ids[i]
        local s = m.state[id]
        assert.same({ id = tostring(id), name = s.name, n = tostring(s.n), note = s.note }, r, "seed " .. seed)
      end
      -- every change applied exactly once, in order (the triggers log what MySQL committed)
      local log_rows, logged = au.audit(engine, RO_LOG)
      assert.equal(RO_EVENTS, logged, "seed " .. seed .. ": row changes MySQL committed")
      for id, h in pairs(m.history) do
        assert.same(h, log_rows[id] or {}, "seed " .. seed .. ": the changes of row " .. id)
      end

      au.kill(consumer, "TERM")
      assert(au.wait_exit(consumer, 20), "the consumer did not stop on SIGTERM: " .. au.read(log))
      assert(util.eventually(function() return au.read(codef):match("^%d+") ~= nil end, 10))
      assert.equal("0", au.read(codef):match("^%d+"), au.read(log))
      consumer = nil
      local st = assert(summary(au.read(log)), "no summary line: " .. au.read(log))
      assert.equal(0, st.failed)
      assert.equal(RO_EVENTS, st.events, "the events counter counts applied events, not attempts")
    end)
  end)

  -- ----------------------------------------------------------------------------------
  -- One flush_async of three new rows of one queue (one stream entry): c1 and c2 collide
  -- (1062) with rows inserted behind beeorm's back with the same email, good does not.
  local function entry_with_collisions(tag)
    local ctx = engine:context()
    local function new(suffix, n)
      return ctx:new_entity(U, { name = tag .. "-" .. suffix, email = tag .. "-" .. suffix .. "@qf", n = n })
    end
    local c1, good, c2
    for _ = 1, 10 do
      c1, good, c2 = new("c1", 1), new("good", 2), new("c2", 3)
      if au.queue_of(c1.id) == au.queue_of(c2.id) and au.queue_of(c1.id) == au.queue_of(good.id) then break end
      for _, t in ipairs({ c1, good, c2 }) do ctx:delete_entity(t) end -- never written
      c1 = nil
    end
    assert(c1, "no three new ids in one queue")
    local qname = au.queue_of(c1.id)
    local before = queue(qname):stats().len
    assert.is_true(ctx:flush_async())
    assert.equal(before + 1, queue(qname):stats().len, "one stream entry")
    local b1 = insert_behind(tag .. "-c1@qf")
    local b2 = insert_behind(tag .. "-c2@qf")
    return { ctx = ctx, c1 = c1, good = good, c2 = c2, b1 = b1, b2 = b2, queue = qname }
  end

  local function assert_skipped_two_applied_good(x, tag)
    assert.same({ id = tostring(x.good.id), name = tag .. "-good", email = tag .. "-good@qf", n = "2" },
      sql_user(x.good.id), "the entry's good insert was not applied; errors: " .. listed())
    assert.is_nil(sql_user(x.c1.id), "the skipped insert c1 is in MySQL")
    assert.is_nil(sql_user(x.c2.id), "the skipped insert c2 is in MySQL")
    assert.equal(tag .. "-c1@qf", sql_user(x.b1).email)
    assert.equal(tag .. "-c2@qf", sql_user(x.b2).email)
    for name, s in pairs(au.stats(engine)) do
      assert.equal(0, s.errors, name .. ": " .. listed())
      assert.equal(0, s.len, name)
    end
  end

  describe("skip", function()
    it("by a resolver drops only the failing events of an entry: its good insert applies", function()
      local tag = "qf-rskip"
      local x = entry_with_collisions(tag)
      local seen = {}
      local st, err = engine:consumer { workers = 1, resolver = function(ev)
        seen[#seen + 1] = ev.id
        return "skip"
      end }:run { block = false }
      assert(st, tostring(err))
      assert_skipped_two_applied_good(x, tag)
      assert.equal(0, st.failed)
      assert.equal(1, st.events, "applied events: the good insert")
      for _, id in ipairs(seen) do assert.is_true(id == x.c1.id or id == x.c2.id, "the resolver saw row " .. id) end
    end)

    it("by a resolver: the resolver sees each failing event with ev.attempts == 1 the first time, counted per event "
      .. "and not per entry", function()
      local tag = "qf-attempts"
      local x = entry_with_collisions(tag)
      local calls, first, retried = {}, {}, nil
      local st, err = engine:consumer { workers = 1, resolver = function(ev)
        calls[#calls + 1] = string.format("%s#%s attempts=%s code=%s email=%s", ev.kind, tostring(ev.id),
          tostring(ev.attempts), tostring(ev.error.code), tostring(ev.values and ev.values.email))
        if first[ev.id] == nil then first[ev.id] = ev.attempts end
        -- the first failing event seen is retried once without a fix (it fails again),
        -- then skipped; the other one is skipped at once
        if retried == nil then
          retried = ev.id
          return "retry"
        end
        return "skip"
      end }:run { block = false }
      assert(st, tostring(err))
      local trace = table.concat(calls, "\n")
      assert.same({ [x.c1.id] = 1, [x.c2.id] = 1 }, first, trace)
      assert.equal(3, #calls, trace)
      -- the retried event was asked again with attempts 2; the other one never saw 2
      local n_retried = 0
      for _, line in ipairs(calls) do
        if line:find("#" .. retried .. " attempts=2 ", 1, true) then n_retried = n_retried + 1 end
      end
      assert.equal(1, n_retried, trace)
      for _, line in ipairs(calls) do
        assert.matches("^insert#%d+ attempts=%d code=1062 email=" .. tag:gsub("%p", "%%%0") .. "%-c[12]@qf$", line)
      end
      assert_skipped_two_applied_good(x, tag)
    end)

    it("by q:skip of a parked event drops only that event: the entry's other events apply on the next consume",
      function()
        local tag = "qf-qskip"
        local x = entry_with_collisions(tag)
        local st = au.consume(x.ctx)
        assert.is_true(st.failed >= 1)
        -- parked: nothing of the entry applied (G3), the entry not queued and parked at once
        assert.is_nil(sql_user(x.good.id))
        local qq = queue(x.queue)
        local list = assert(qq:errors(100))
        assert.is_true(#list >= 1)
        assert.equal(#list, qq:stats().errors)
        assert.equal(0, qq:stats().len)
        local skipped = {}
        for _ = 1, 2 do
          list = assert(qq:errors(100))
          if #list == 0 then break end
          for _, ev in ipairs(list) do
            assert.is_true(ev.id == x.c1.id or ev.id == x.c2.id, "a record of row " .. tostring(ev.id) .. ": " .. listed())
            assert.equal(1062, ev.error.code)
            local ok, err = qq:skip(ev)
            assert.is_nil(err)
            assert.is_true(ok)
            skipped[#skipped + 1] = ev.id
          end
          au.consume(x.ctx)
        end
        table.sort(skipped)
        local good = sql_user(x.good.id)
        assert.same({ x.c1.id, x.c2.id }, skipped, "records skipped: rows " .. table.concat(skipped, ", ")
          .. "; the good insert is " .. (good and "in MySQL" or "not in MySQL") .. "; queued "
          .. qq:stats().len .. "; errors: " .. listed())
        assert_skipped_two_applied_good(x, tag)
      end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("a resolver that raises", function()
    -- Two failing inserts (1062) and two fine ones, in four flush_async calls.
    local function workload(tag)
      local ctx = engine:context()
      local rows = {}
      for i, name in ipairs({ "bad1", "fine1", "bad2", "fine2" }) do
        rows[name] = ctx:new_entity(U, { name = tag .. "-" .. name, email = tag .. "-" .. name .. "@qf", n = i })
        assert.is_true(ctx:flush_async())
      end
      insert_behind(tag .. "-bad1@qf")
      insert_behind(tag .. "-bad2@qf")
      return rows
    end

    it("does not stop consumer:run: it returns stats, applies every other entry, and parks the entry with "
      .. "ev.resolver_error", function()
      local tag = "qf-raise"
      local rows = workload(tag)
      local calls = 0
      local ok_call, st, err = pcall(function()
        return engine:consumer { workers = 1, resolver = function()
          calls = calls + 1
          if calls == 1 then error("boom") end
          return "skip"
        end }:run { block = false }
      end)
      assert(ok_call, "consumer:run raised: " .. tostring(st))
      assert(st, "consumer:run returned nil, " .. tostring(err))
      assert.equal("table", type(st))
      assert.equal(2, calls, "the resolver is still asked after it raised")
      assert.equal(1, st.failed)
      assert.equal(tag .. "-fine1", (sql_user(rows.fine1.id) or {}).name)
      assert.equal(tag .. "-fine2", (sql_user(rows.fine2.id) or {}).name)
      assert.is_nil(sql_user(rows.bad1.id))
      assert.is_nil(sql_user(rows.bad2.id))
      local errs = au.errors(engine)
      assert.equal(1, #errs, listed())
      local ev = errs[1]
      assert.is_true(ev.id == rows.bad1.id or ev.id == rows.bad2.id)
      assert.equal(1062, ev.error.code)
      assert.equal("string", type(ev.resolver_error))
      assert.matches("boom", ev.resolver_error, 1, true)
      assert.equal(0, au.total(engine, "len"))
    end)

    it("does not stop `beeorm consume --once --resolver`: it exits 0, prints the resolver's error and the summary",
      function()
        local tag = "qf-raise-cli"
        local rows = workload(tag)
        local bad = tmpfile('return function(ev) error("qf resolver boom") end\n')
        local code, out, err = host("consume --once --resolver " .. q(bad) .. " --config " .. q(config_file()))
        assert.equal(0, code, out .. err)
        assert.matches("qf resolver boom", out .. err, 1, true)
        local st = assert(summary(out), "no summary line on stdout: " .. out .. err)
        assert.equal(2, st.failed)
        assert.equal(tag .. "-fine1", (sql_user(rows.fine1.id) or {}).name)
        assert.equal(tag .. "-fine2", (sql_user(rows.fine2.id) or {}).name)
        assert.equal(2, au.total(engine, "errors"))
        for _, ev in ipairs(au.errors(engine)) do
          assert.matches("qf resolver boom", tostring(ev.resolver_error), 1, true)
        end
      end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("a retry of a parked update", function()
    -- Row a's email update to b's email is parked (1062); then b gets another email
    -- (sync flush), which makes a's update applicable again.
    local function park(tag)
      local a = sync_user({ name = tag .. "-a", email = tag .. "-a@qf", note = "first", n = 0 })
      local b = sync_user({ name = tag .. "-b", email = tag .. "-b@qf", n = 0 })
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(U, a.id))
      e.email = tag .. "-b@qf"
      assert.is_true(ctx:flush_async())
      assert.equal(1, au.consume(ctx).failed)
      local recs = records_of(au.queue_of(a.id), a.id)
      assert.equal(1, #recs, listed())
      local ev = recs[1]
      assert.equal("update", ev.kind)
      assert.equal(1062, ev.error.code)
      local cb = engine:context()
      local eb = cb:edit_entity(cb:get_by_id(U, b.id))
      eb.email = tag .. "-b2@qf"
      assert.is_true(cb:flush())
      return a, b, ev, queue(au.queue_of(a.id))
    end

    -- park, then a later update of another column of row a, queued and applied.
    local function park_stale(tag)
      local a, b, ev, qq = park(tag)
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(U, a.id))
      e.note = "later"
      assert.is_true(ctx:flush_async())
      local st = au.consume(ctx)
      assert.same({ 1, 0 }, { st.events, st.failed })
      assert.same({ email = tag .. "-a@qf", note = "later" }, { email = sql_user(a.id).email, note = sql_user(a.id).note })
      return a, b, ev, qq
    end

    it("is refused with code \"stale\", naming the row, once the row got a newer change; MySQL keeps the later value",
      function()
        local tag = "qf-stale"
        local a, _, ev, qq = park_stale(tag)
        local ok, err = qq:retry(ev)
        assert.is_nil(ok, "q:retry of a stale record returned true")
        assert.is_true(beeorm.is_error(err))
        assert.equal("stale", err.code)
        assert.matches(U, err.message, 1, true)
        assert.matches("%f[%d]" .. a.id .. "%f[%D]", err.message)
        -- still parked, not queued
        assert.equal(1, qq:stats().errors)
        assert.equal(0, qq:stats().len)
        assert.equal(0, au.consume(engine:context()).events)
        assert.same({ email = tag .. "-a@qf", note = "later" }, { email = sql_user(a.id).email, note = sql_user(a.id).note })
      end)

    it("with { force = true } is queued although stale, and applies only the parked columns", function()
      local tag = "qf-force"
      local a, _, ev, qq = park_stale(tag)
      local ok, err = qq:retry(ev, { force = true })
      assert.is_nil(err)
      assert.is_true(ok)
      assert.equal(0, qq:stats().errors)
      assert.equal(1, qq:stats().len)
      assert.equal(1, au.consume(engine:context()).events)
      assert.same({ email = tag .. "-b@qf", note = "later" }, { email = sql_user(a.id).email, note = sql_user(a.id).note })
      assert.is_true(util.eventually(function()
        local t = engine:context():get_by_id(U, a.id)
        return t ~= nil and t.email == tag .. "-b@qf" and t.note == "later"
      end, 1), "the caches do not show what MySQL holds")
      assert.same({}, au.errors(engine))
    end)

    it("queued behind a newer change of the same row that was not applied yet is parked again as stale when its turn "
      .. "comes: MySQL and the caches keep the newer value; a forced retry applies it", function()
      local tag = "qf-stale-queued"
      local a, _, ev, qq = park(tag) -- b changed: a's update applies cleanly now
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(U, a.id))
      e.note = "newer"
      e.email = tag .. "-newer@qf"
      assert.is_true(ctx:flush_async()) -- queued, not applied: not stale yet
      local ok, err = qq:retry(ev)
      assert.is_nil(err)
      assert.is_true(ok)
      assert.equal(2, qq:stats().len)
      local st = au.consume(engine:context())
      assert.same({ 1, 1 }, { st.events, st.failed }, "the newer change applies, the retry is parked again")
      assert.same({ email = tag .. "-newer@qf", note = "newer" },
        { email = sql_user(a.id).email, note = sql_user(a.id).note })
      local recs = records_of(au.queue_of(a.id), a.id)
      assert.equal(1, #recs, listed())
      local again = recs[1]
      assert.equal("stale", again.error.code)
      assert.matches(U .. ":" .. a.id, again.error.message, 1, true)
      assert.matches(ev.stream_id, again.error.message, 1, true)
      assert.equal(tag .. "-b@qf", again.values.email)
      assert.is_true(util.eventually(function()
        local t = engine:context():get_by_id(U, a.id)
        return t ~= nil and t.email == tag .. "-newer@qf" and t.note == "newer"
      end, 1), "the caches lost the newer change")
      -- the record it became is stale too: refused unless forced
      local ok2, err2 = qq:retry(again)
      assert.is_nil(ok2)
      assert.equal("stale", err2.code)
      assert.is_true(qq:retry(again, { force = true }))
      assert.equal(1, au.consume(engine:context()).events)
      assert.same({ email = tag .. "-b@qf", note = "newer" }, { email = sql_user(a.id).email, note = sql_user(a.id).note })
      assert.same({}, au.errors(engine))
      -- nothing is held back any more: a later change of the row does not mark anything
      local e2 = ctx:edit_entity(ctx:get_by_id(U, a.id))
      e2.note = "last"
      assert.is_true(ctx:flush_async())
      assert.equal(1, au.consume(engine:context()).events)
      local left = {}
      for _, k in ipairs(util.redis_keys(REDIS_DB, "beeorm:{q:*}:parked")) do left[#left + 1] = k end
      for _, k in ipairs(util.redis_keys(REDIS_DB, "beeorm:{q:*}:stale")) do left[#left + 1] = k end
      assert.same({}, left)
    end)

    it("of a row that got no newer change is not stale: it applies, and a second q:retry of the same record is refused",
      function()
        local tag = "qf-fresh"
        local a, _, ev, qq = park(tag) -- b changed, a did not
        local ok, err = qq:retry(ev)
        assert.is_nil(err)
        assert.is_true(ok)
        local ok2, err2 = qq:retry(ev)
        assert.is_nil(ok2)
        assert.equal("not_found", err2.code)
        assert.equal(1, qq:stats().len)
        assert.equal(1, au.consume(engine:context()).events)
        assert.equal(tag .. "-b@qf", sql_user(a.id).email)
        assert.equal(0, au.consume(engine:context()).events)
        assert.same({}, au.errors(engine))
      end)

    it("from `beeorm errors retry` refuses stale records (non-zero exit, \"stale\"), and --force retries them",
      function()
        local tag = "qf-stale-cli"
        local config = config_file()
        local a, _, _, qq = park_stale(tag)
        local code, out, err = host("errors retry --config " .. q(config))
        assert.is_true(code ~= 0, "exit 0: " .. out .. err)
        assert.matches("stale", out .. err, 1, true)
        assert.equal(1, qq:stats().errors)
        assert.equal(0, qq:stats().len)
        assert.equal("later", sql_user(a.id).note)
        code, out, err = host("errors retry --force --config " .. q(config))
        assert.equal(0, code, out .. err)
        assert.equal("retried 1 error record\n", out)
        assert.equal(0, qq:stats().errors)
        assert.equal(1, au.consume(engine:context()).events)
        assert.same({ email = tag .. "-b@qf", note = "later" }, { email = sql_user(a.id).email, note = sql_user(a.id).note })
      end)

    it("of a record whose entry is still queued (a consumer died between parking it and moving its mark) is refused "
      .. "or harmless: the entry's increment applies once", function()
      local tag = "qf-queued"
      local a = sync_user({ name = tag .. "-a", email = tag .. "-a@qf", n = 0 })
      local b = sync_user({ name = tag .. "-b", email = tag .. "-b@qf", n = 0 })
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(U, a.id))
      e.email = tag .. "-b@qf"
      ctx:increment(U, a.id, "n", 1)
      assert.is_true(ctx:flush_async())
      assert.equal(1, au.consume(ctx).failed)
      local qname = au.queue_of(a.id)
      local qq = queue(qname)
      local ev = assert(records_of(qname, a.id)[1], listed())
      local errors_key = au.errors_key(qname)
      local saved = "beeorm:{q:" .. qname .. "}:qf_saved"
      eval("redis.call('SET', KEYS[2], redis.call('HGET', KEYS[1], ARGV[1])) return 1", { errors_key, saved },
        ev.stream_id)
      -- fix the cause (b is another row: a's record is not stale) and retry
      local cb = engine:context()
      local eb = cb:edit_entity(cb:get_by_id(U, b.id))
      eb.email = tag .. "-b2@qf"
      assert.is_true(cb:flush())
      assert.is_true(qq:retry(ev))
      local ids = au.stream_ids(REDIS_DB, qname)
      local requeued = assert(ids[#ids], "the retried entry is not in the stream")
      -- the state a consumer killed after recording but before its mark moved leaves:
      -- the record of an entry that is still in the stream, above the mark
      eval("redis.call('HSET', KEYS[1], ARGV[1], redis.call('GET', KEYS[2])) return 1", { errors_key, saved }, requeued)
      for _, rec in ipairs(assert(qq:errors(100))) do
        if rec.stream_id == requeued then qq:retry(rec) end -- refused or harmless, both fine
      end
      au.consume(engine:context())
      for _, rec in ipairs(assert(qq:errors(100))) do qq:skip(rec) end
      au.consume(engine:context())
      local row = sql_user(a.id)
      assert.equal(tag .. "-b@qf", row.email)
      assert.equal("1", row.n, "the parked entry's increment was applied " .. row.n .. " times")
      assert.is_true(util.eventually(function()
        local t = engine:context():get_by_id(U, a.id)
        return t ~= nil and t.n == 1
      end, 1), "the caches do not show n = 1")
      assert.equal(0, qq:stats().errors)
      assert.equal(0, qq:stats().len)
    end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("malformed stream entries", function()
    -- Builds junk from the real entry `tmpl` of the stream (its token replaced by a fresh
    -- one, so it never passes for the real entry) and XADDs it; returns the new id.
    local JUNK = [[
local key, mode, tmpl, bytes, tok = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function unhex(h) return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end
local fields = redis.call('XRANGE', key, tmpl, tmpl)[1][2]
assert(fields[1] == 'e' and #fields == 2, 'the template is not a beeorm entry')
local real = fields[2]
if tok ~= '' then real = real:sub(1, 6) .. unhex(tok) .. real:sub(15) end -- '': the template's own token
local v
if mode == 'random' then v = unhex(bytes)
elseif mode == 'empty' then v = ''
elseif mode == 'truncated' then v = real:sub(1, math.floor(#real / 2))
elseif mode == 'huge_count' then v = real:sub(1, 2) .. unhex('ffffff7f') .. real:sub(7)
elseif mode == 'count_0' then v = real:sub(1, 2) .. unhex('00000000') .. real:sub(7)
elseif mode == 'trailing' then v = real .. 'trailing bytes'
elseif mode == 'version' then v = real:sub(1, 1) .. unhex('09') .. real:sub(3)
elseif mode == 'field_name' then return redis.call('XADD', key, '*', 'x', real)
elseif mode == 'two_fields' then return redis.call('XADD', key, '*', 'e', real, 'x', 'junk')
elseif mode == 'kind' then v = real:sub(1, 14) .. 'X' .. real:sub(16)
else error('unknown mode ' .. mode) end
return redis.call('XADD', key, '*', 'e', v)
]]
    local KINDS = { "random", "empty", "truncated", "huge_count", "count_0", "trailing", "version", "field_name",
      "two_fields", "kind" }

    -- Three real entries (each the insert of one row) with ten kinds of junk between
    -- them, all in one queue; returns the rows, the queue name and junk id -> kind.
    local function junk_queue(tag)
      local ctx = engine:context()
      local rows = {}
      rows[1] = ctx:new_entity(U, { name = tag .. "-1", email = tag .. "-1@qf", n = 1 })
      local qname = au.queue_of(rows[1].id)
      assert.is_true(ctx:flush_async())
      local ids = au.stream_ids(REDIS_DB, qname)
      local tmpl = assert(ids[#ids], "the entry is not in the stream")
      local junk = {}
      local function add_junk(kind)
        local first = math.random(0, 255)
        if first == 0x42 then first = 0x43 end -- never 'B'
        local out = eval(JUNK, { au.stream_key(qname) }, kind, tmpl, string.format("%02x", first) .. hex(random_bytes(47)),
          hex(random_bytes(8)))
        local id = assert(out:match("(%d+%-%d+)"), "XADD failed: " .. out)
        junk[id] = kind
      end
      local function next_real(i)
        for _ = 1, 64 * au.SHARDS + 1 do
          local t = ctx:new_entity(U, { name = tag .. "-" .. i, email = tag .. "-" .. i .. "@qf", n = i })
          if au.queue_of(t.id) == qname then return t end
          ctx:delete_entity(t)
        end
        error("no id in queue " .. qname)
      end
      for k = 1, 5 do add_junk(KINDS[k]) end
      rows[2] = next_real(2)
      assert.is_true(ctx:flush_async())
      for k = 6, 10 do add_junk(KINDS[k]) end
      rows[3] = next_real(3)
      assert.is_true(ctx:flush_async())
      assert.equal(13, queue(qname):stats().len)
      return rows, qname, junk
    end

    local function assert_real_applied(rows, tag)
      for i, r in ipairs(rows) do
        assert.same({ id = tostring(r.id), name = tag .. "-" .. i, email = tag .. "-" .. i .. "@qf", n = tostring(i) },
          sql_user(r.id))
      end
      local n = assert(engine:sql_query("SELECT COUNT(*) AS c FROM `" .. U .. "` WHERE `name` LIKE ?", { tag .. "-%" }))[1].c
      assert.equal("3", n)
    end

    it("are listed with code \"malformed\", their stream id and raw bytes, while every real entry around them applies",
      function()
        local tag = "qf-junkA"
        local rows, qname, junk = junk_queue(tag)
        local st, err = beeorm.consume_async_flush_events(engine:context(), false)
        assert(st, "consume failed: " .. tostring(err))
        assert_real_applied(rows, tag)
        local qq = queue(qname)
        local list = assert(qq:errors(100))
        local found, problems = {}, {}
        for _, ev in ipairs(list) do
          local kind = junk[ev.stream_id]
          local function problem(what) problems[#problems + 1] = tostring(kind) .. ": " .. what end
          if not kind then
            problem("a record of an entry that is not junk: " .. au.describe_errors({ ev }))
          else
            found[kind] = true
            if ev.error.code ~= "malformed" then problem("code " .. tostring(ev.error.code) .. ", want \"malformed\"") end
            if type(ev.error.message) ~= "string" or ev.error.message == "" then problem("no message") end
            if type(ev.raw) ~= "string" then
              problem("no field raw")
            elseif kind ~= "empty" and #ev.raw == 0 then
              problem("raw is empty")
            end
          end
        end
        for _, kind in pairs(junk) do if not found[kind] then problems[#problems + 1] = kind .. ": not listed" end end
        table.sort(problems)
        assert(#problems == 0, #list .. " records listed, of 10 junk entries:\n" .. table.concat(problems, "\n")
          .. "\nthe list:\n" .. au.describe_errors(list))
        assert.equal(10, #list)
        assert.equal(#list, qq:stats().errors)
        assert.equal(0, qq:stats().len)
        for name, s in pairs(au.stats(engine)) do
          if name ~= qname then assert.equal(0, s.errors, name) end
        end
      end)

    it("carrying the token of a real flush are listed as malformed, not dropped as its duplicate", function()
      local tag = "qf-junkC"
      local ctx = engine:context()
      local row = ctx:new_entity(U, { name = tag .. "-1", email = tag .. "-1@qf", n = 1 })
      local qname = au.queue_of(row.id)
      assert.is_true(ctx:flush_async())
      local ids = au.stream_ids(REDIS_DB, qname)
      local tmpl = assert(ids[#ids], "the entry is not in the stream")
      local junk = {}
      for _, kind in ipairs({ "trailing", "truncated", "kind" }) do
        local out = eval(JUNK, { au.stream_key(qname) }, kind, tmpl, "00", "")
        junk[assert(out:match("(%d+%-%d+)"), "XADD failed: " .. out)] = kind
      end
      local st = au.consume(engine:context())
      assert.same({ 1, 0, 3 }, { st.events, st.duplicates, st.failed })
      assert.same({ id = tostring(row.id), name = tag .. "-1", email = tag .. "-1@qf", n = "1" }, sql_user(row.id))
      local list = assert(queue(qname):errors(100))
      assert.equal(3, #list, au.describe_errors(list))
      for _, ev in ipairs(list) do
        assert(junk[ev.stream_id], "not junk: " .. au.describe_errors({ ev }))
        assert.equal("malformed", ev.error.code)
      end
      au.skip_all_errors(engine)
    end)

    it("are removable: five by q:skip and the rest by `beeorm errors skip` bring q:stats().errors to 0", function()
      local tag = "qf-junkB"
      local rows, qname, junk = junk_queue(tag)
      assert(beeorm.consume_async_flush_events(engine:context(), false))
      local qq = queue(qname)
      local list = assert(qq:errors(100))
      assert.equal(10, #list, au.describe_errors(list))
      for i = 1, 5 do
        assert(junk[list[i].stream_id], "not junk: " .. au.describe_errors({ list[i] }))
        local ok, err = qq:skip(list[i])
        assert.is_nil(err)
        assert.is_true(ok)
      end
      assert.equal(5, qq:stats().errors)
      local code, out, err = host("errors skip --config " .. q(config_file()))
      assert.equal(0, code, out .. err)
      assert.equal("skipped 5 error records\n", out)
      for name, s in pairs(au.stats(engine)) do
        assert.equal(0, s.errors, name)
        assert.equal(0, s.len, name)
      end
      assert.same({}, assert(qq:errors(100)))
      assert.equal(0, au.consume(engine:context()).events)
      assert_real_applied(rows, tag)
    end)
  end)
end)
