-- The operator subcommands of the beeorm host (README, C API): `beeorm consume`, `beeorm
-- stats` and `beeorm errors list|retry|skip`, run as child processes against the test
-- servers with a YAML config file, and checked by their output, their exit codes and
-- what MySQL and the queues hold afterwards. The events are queued by this process
-- (flush_async with an entity the host knows nothing about).
local json = require("dkjson")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local REDIS_DB = 13
local T = "hc_item"
local item_def = {
  name = T,
  redis_cache = true,
  fields = {
    { "name", "string", length = 60, required = true, unique = true },
    { "n", "int" },
  },
}

-- The summary line of a consume run as a table of numbers, or nil.
local function summary(out) return au.consume_summary(out, true) end

local hu = require("support.host_util")
local host = hu.host
local q = util.shell_quote

-- A failure: the exit code, nothing on stdout, and exactly one line on stderr.
local function assert_one_line(code, expected_code, out, err)
  assert.equal(expected_code, code, "stdout: " .. out .. "\nstderr: " .. err)
  assert.equal("", out)
  assert.matches("^beeorm [%w]+: [^\n]+\n$", err)
end

describe("the beeorm host's operator commands", function()
  local engine
  local tmpfile = hu.tmpfiles()
  local config, password
  local behind = 900000000 -- ids of rows written behind beeorm's back

  local function sql_row(id)
    return assert(engine:sql_query("SELECT `id`, `name`, `n` FROM `" .. T .. "` WHERE `id` = ?", { id }))[1]
  end

  -- Inserts a row behind beeorm's back (no cache, no event); returns its id.
  local function insert_behind(name)
    behind = behind + 1
    assert(engine:sql_exec("INSERT INTO `" .. T .. "` (`id`, `name`, `n`) VALUES (?, ?, 0)", { behind, name }))
    return behind
  end

  -- Queues one flush_async of new rows named names; returns the entity tables.
  local function queue_new(names)
    local ctx = engine:context()
    local rows = {}
    for i, name in ipairs(names) do rows[i] = ctx:new_entity(T, { name = name, n = i }) end
    assert.is_true(ctx:flush_async())
    return rows
  end

  -- Queues an insert whose name is already taken in MySQL: it fails with 1062.
  local function queue_duplicate(name)
    local row = queue_new({ name })[1]
    insert_behind(name)
    return row
  end

  local function stats_of(queue)
    return au.stats(engine)[queue]
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { item_def })
    au.reset(engine, REDIS_DB, { T })
    assert.equal(1, engine:sync_schema())
    password = servers.mysql_parts().password
    config = tmpfile(string.format("default:\n  mysql: %s\n  redis: %s:%d\n", servers.mysql, servers.redis, REDIS_DB))
  end)

  teardown(function()
    if engine then
      au.finish(engine, REDIS_DB)
      engine = nil
    end
    tmpfile:remove()
    collectgarbage()
  end)

  after_each(function()
    au.skip_all_errors(engine)
    au.consume(engine:context())
    assert.equal(0, au.total(engine, "len"))
  end)

  describe("help", function()
    it("prints each command's usage with --help and -h, exit 0", function()
      for _, cmd in ipairs({ "consume", "stats", "errors" }) do
        for _, flag in ipairs({ "--help", "-h" }) do
          local code, out, err = host(cmd .. " " .. flag)
          assert.equal(0, code, err)
          assert.equal("", err)
          assert.matches("^usage: beeorm " .. cmd .. " ", out)
          assert.matches("--config FILE", out, 1, true)
          assert.matches("exit codes:\n  0  success\n  1  the operation failed", out, 1, true)
          assert.matches("  2  bad usage", out, 1, true)
          -- `beeorm help COMMAND` prints the same
          local code2, out2 = host("help " .. cmd)
          assert.equal(0, code2)
          assert.equal(out, out2)
        end
      end
      local _, consume = host("consume --help")
      for _, opt in ipairs({ "--workers N", "--resolver FILE", "--once", "SIGTERM", "consumed: entries=N" }) do
        assert.matches(opt, consume, 1, true)
      end
      local _, stats = host("stats --help")
      assert.matches("--json", stats, 1, true)
      local _, errors = host("errors --help")
      for _, opt in ipairs({ "list|show|retry|skip", "--queue Q", "--code N", "--limit N", "default 100",
        "--id STREAM_ID", "--event N" }) do
        assert.matches(opt, errors, 1, true)
      end
      -- help wins over a missing --config, also after other options
      local code = host("errors list --code 1062 --help")
      assert.equal(0, code)
    end)

    it("lists every command in `beeorm help`", function()
      local code, out, err = host("help")
      assert.equal(0, code)
      assert.equal("", err)
      for _, cmd in ipairs({ "run [--] SCRIPT", "consume --config FILE", "stats --config FILE", "errors list|show|retry|skip",
        "version", "help" }) do
        assert.matches("\n  " .. cmd, out, 1, true)
      end
      assert.matches("exit codes: 0 success; 1", out, 1, true)
    end)
  end)

  describe("bad usage", function()
    it("exits 2 with one line naming the problem", function()
      local cases = {
        { "consume --config " .. q(config) .. " --frob",
          "beeorm consume: unknown option '--frob' (try 'beeorm consume --help')\n" },
        { "consume --config " .. q(config) .. " --workers x",
          "beeorm consume: --workers must be an integer from 1 to 256, got 'x'\n" },
        { "consume --config " .. q(config) .. " --workers 0",
          "beeorm consume: --workers must be an integer from 1 to 256, got '0'\n" },
        { "consume --config " .. q(config) .. " --workers 257",
          "beeorm consume: --workers must be an integer from 1 to 256, got '257'\n" },
        { "consume --config " .. q(config) .. " --workers", "beeorm consume: missing value for --workers N\n" },
        { "consume --config --once", "beeorm consume: missing value for --config FILE\n" },
        { "consume --once", "beeorm consume: missing --config FILE (try 'beeorm consume --help')\n" },
        { "consume --config " .. q(config) .. " now",
          "beeorm consume: unexpected argument 'now' (try 'beeorm consume --help')\n" },
        { "consume --config " .. q(config) .. " --once=yes", "beeorm consume: --once takes no value\n" },
        { "stats", "beeorm stats: missing --config FILE (try 'beeorm stats --help')\n" },
        { "stats --config " .. q(config) .. " --jsn", "beeorm stats: unknown option '--jsn' (try 'beeorm stats --help')\n" },
        { "errors --config " .. q(config),
          "beeorm errors: missing action: list, show, retry or skip (try 'beeorm errors --help')\n" },
        { "errors purge --config " .. q(config),
          "beeorm errors: unknown action 'purge' (expected list, show, retry or skip)\n" },
        { "errors list", "beeorm errors: missing --config FILE (try 'beeorm errors --help')\n" },
        { "errors list --config " .. q(config) .. " --code x",
          "beeorm errors: --code must be a MySQL error number or 'malformed', got 'x'\n" },
        { "errors skip --config " .. q(config) .. " --force", "beeorm errors: --force applies to 'errors retry' only\n" },
        { "errors list --config " .. q(config) .. " --limit 0",
          "beeorm errors: --limit must be an integer of 1 or more, got '0'\n" },
        { "errors list --config " .. q(config) .. " --limit", "beeorm errors: missing value for --limit N\n" },
        { "errors retry --config " .. q(config) .. " --json",
          "beeorm errors: --json applies to 'errors list' and 'errors show' only\n" },
        { "errors show --config " .. q(config), "beeorm errors: show needs --id STREAM_ID\n" },
        { "errors list --config " .. q(config) .. " --id 1-0", "beeorm errors: --id applies to show, retry and skip\n" },
        { "errors skip --config " .. q(config) .. " --id 12",
          "beeorm errors: --id must be a stream id such as 1700000000000-0, got '12'\n" },
        { "errors skip --config " .. q(config) .. " --event 2",
          "beeorm errors: --event applies to 'errors skip --id' only (a retry puts the whole entry back)\n" },
        { "errors retry --config " .. q(config) .. " --id 1-0 --event 2",
          "beeorm errors: --event applies to 'errors skip --id' only (a retry puts the whole entry back)\n" },
        { "errors skip --config " .. q(config) .. " --id 1-0 --event 0",
          "beeorm errors: --event must be an integer of 1 or more, got '0'\n" },
        { "errors skip --config " .. q(config) .. " --id 1-0 --limit 3",
          "beeorm errors: --id names one entry: --code and --limit do not apply\n" },
        { "frobnicate", "beeorm: unknown command 'frobnicate' (try 'beeorm help')\n" },
      }
      for _, c in ipairs(cases) do
        local code, out, err = host(c[1])
        assert.equal(2, code, c[1] .. "\n" .. out .. err)
        assert.equal("", out, c[1])
        assert.equal(c[2], err, c[1])
      end
    end)

    it("exits 2 for a queue that does not exist", function()
      local code, out, err = host("errors list --config " .. q(config) .. " --queue nope:9")
      assert_one_line(code, 2, out, err)
      assert.matches("beeorm errors: no queue 'nope:9' (queues: default:0, default:1,", err, 1, true)
    end)
  end)

  describe("a config that cannot be used", function()
    it("exits 1 when the config file does not exist", function()
      for _, cmd in ipairs({ "consume --once", "stats", "errors list" }) do
        local code, out, err = host(cmd .. " --config /nonexistent/hc.yaml")
        assert_one_line(code, 1, out, err)
        assert.equal("beeorm " .. cmd:match("^%w+") .. ": cannot read config '/nonexistent/hc.yaml': "
          .. "No such file or directory\n", err)
      end
    end)

    it("exits 1 naming the file and line of a malformed config", function()
      local bad = tmpfile("default:\n  mysql: \"unterminated\n  redis: 127.0.0.1:1:13\n")
      local code, out, err = host("stats --config " .. q(bad))
      assert_one_line(code, 1, out, err)
      assert.matches("beeorm stats: invalid config '" .. bad .. "': " .. bad .. ":%d+", err)
      -- well-formed YAML with an unknown key
      local typo = tmpfile("default:\n  mysql: x:y@tcp(127.0.0.1:1)/x\n  redsi: 127.0.0.1:1:13\n")
      code, out, err = host("consume --once --config " .. q(typo))
      assert_one_line(code, 1, out, err)
      assert.matches(typo .. ":3: default: unknown key 'redsi'", err, 1, true)
    end)

    it("exits 1 with one line, and no password, when a server is unreachable", function()
      local port = au.free_port()
      local secret = "hc-secret-pw-8d2f"
      local unreachable = tmpfile(string.format("default:\n  mysql: hc:%s@tcp(127.0.0.1:%d)/hc\n  redis: %s:%d\n",
        secret, port, servers.redis, REDIS_DB))
      for _, cmd in ipairs({ "consume --once", "consume", "stats", "errors list", "errors retry" }) do
        local code, out, err = host(cmd .. " --config " .. q(unreachable))
        assert_one_line(code, 1, out, err)
        assert.matches("^beeorm %w+: cannot connect: pool 'default': cannot connect to mysql://hc@127%.0%.0%.1:" .. port
          .. "/hc: .*%(mysql %d+%)\n$", err)
        assert.is_nil(err:find(secret, 1, true))
      end
      -- the Redis of the queues unreachable
      local no_redis = tmpfile(string.format("default:\n  mysql: %s\n  redis: 127.0.0.1:%d:%d\n", servers.mysql, port,
        REDIS_DB))
      local code, out, err = host("stats --config " .. q(no_redis))
      assert_one_line(code, 1, out, err)
      assert.matches("cannot connect: pool 'default':", err, 1, true)
      assert.matches(tostring(port), err, 1, true)
      assert.is_nil(err:find(password, 1, true))
    end)

    it("exits 1 when the config has no Redis pool to hold the queues", function()
      local mysql_only = tmpfile(string.format("default:\n  mysql: %s\n", servers.mysql))
      local code, out, err = host("consume --once --config " .. q(mysql_only))
      assert_one_line(code, 1, out, err)
      assert.equal("beeorm consume: the config has no queues (they need a MySQL pool and a Redis pool)\n", err)
      assert.is_nil(err:find(password, 1, true))
    end)
  end)

  describe("consume", function()
    it("--once applies what this process queued and prints the summary", function()
      local rows = queue_new({ "hc-once-1", "hc-once-2", "hc-once-3" })
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(T, rows[2].id))
      e.n = 20
      assert.is_true(ctx:flush_async())
      local entries = au.total(engine, "len")
      assert.is_true(entries >= 2)
      assert.is_nil(sql_row(rows[1].id))
      local code, out, err = host("consume --once --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      local st = assert(summary(out), out)
      assert.same({ entries = entries, events = 4, failed = 0, skipped = 0, retried = 0 },
        { entries = st.entries, events = st.events, failed = st.failed, skipped = st.skipped, retried = st.retried })
      assert.is_true(st.batches >= 1 and st.batches <= entries)
      assert.is_true(st.workers >= 1 and st.workers <= 8)
      assert.same({ id = tostring(rows[1].id), name = "hc-once-1", n = "1" }, sql_row(rows[1].id))
      assert.same({ id = tostring(rows[2].id), name = "hc-once-2", n = "20" }, sql_row(rows[2].id))
      assert.same({ id = tostring(rows[3].id), name = "hc-once-3", n = "3" }, sql_row(rows[3].id))
      assert.equal(0, au.total(engine, "len"))
      -- nothing left: a second run applies nothing
      code, out = host("consume --once --config " .. q(config))
      assert.equal(0, code)
      assert.same({ 0, 0 }, { summary(out).entries, summary(out).events })
    end)

    it("--workers 2 runs two workers", function()
      local rows = queue_new({ "hc-w2-1", "hc-w2-2" })
      local code, out, err = host("consume --once --workers 2 --config " .. q(config))
      assert.equal(0, code, out .. err)
      local st = assert(summary(out), out)
      assert.equal(2, st.workers)
      assert.equal(2, st.events)
      assert.equal("hc-w2-2", sql_row(rows[2].id).name)
      -- the --name=value form too
      code, out = host("consume --once --workers=1 --config=" .. q(config))
      assert.equal(0, code, out)
      assert.equal(1, summary(out).workers)
    end)

    for _, sig in ipairs({ "TERM", "INT" }) do
      it("blocks until SIG" .. sig .. ", applying events queued meanwhile, then exits 0 with the summary", function()
        local log, pidf, codef = tmpfile(), tmpfile(), tmpfile()
        os.remove(pidf)
        os.remove(codef)
        -- a shell that starts the host, writes its pid, and its exit code when it ends
        local inner = string.format("%s consume --workers 2 --config %s & echo $! > %s; wait $!; echo $? > %s",
          q(servers.build_dir .. "/beeorm"), q(config), q(pidf), q(codef))
        local shell = au.spawn("bash -c " .. q(inner), log)
        local pid
        finally(function()
          if pid then au.kill(pid, "KILL") end
          au.kill(shell, "KILL")
        end)
        assert.is_true(util.eventually(function() return au.read(pidf):match("^%d+") ~= nil end, 10))
        pid = tonumber(au.read(pidf):match("^%d+"))
        local rows = queue_new({ "hc-block-" .. sig .. "-1", "hc-block-" .. sig .. "-2", "hc-block-" .. sig .. "-3" })
        local applied = util.eventually(function()
          return sql_row(rows[3].id) ~= nil and au.total(engine, "len") == 0
        end, 30)
        assert.is_true(applied, "the blocking consumer applied nothing; its output: " .. au.read(log))
        assert.is_true(au.alive(pid), "the consumer exited early: " .. au.read(log))
        au.kill(pid, sig)
        assert.is_true(au.wait_exit(pid, 20), "the consumer did not stop on SIG" .. sig)
        assert.is_true(util.eventually(function() return au.read(codef):match("^%d+") ~= nil end, 10))
        assert.equal("0", au.read(codef):match("^%d+"))
        pid = nil
        local st = assert(summary(au.read(log)), au.read(log))
        assert.equal(3, st.events)
        assert.equal(2, st.workers)
        assert.equal(0, st.failed)
        assert.equal("hc-block-" .. sig .. "-2", sql_row(rows[2].id).name)
      end)
    end

    it("--resolver FILE edits an event failing with a duplicate key, and it applies", function()
      local resolver = tmpfile([[
local seen = 0
return function(ev)
  seen = seen + 1
  if ev.error.code == 1062 and ev.entity == "hc_item" and ev.kind == "insert" then
    return { values = { name = ev.values.name .. " (2)", n = seen } }
  end
  return "keep"
end
]])
      local dup = queue_duplicate("hc-resolve")
      local fine = queue_new({ "hc-resolve-fine" })[1]
      local code, out, err = host("consume --once --resolver " .. q(resolver) .. " --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      local st = assert(summary(out), out)
      -- failed: parked; retried: the resolver's "retry" or edit
      assert.same({ 1, 0, 0 }, { st.retried, st.skipped, st.failed })
      assert.same({ id = tostring(dup.id), name = "hc-resolve (2)", n = "1" }, sql_row(dup.id))
      assert.equal("hc-resolve-fine", sql_row(fine.id).name)
      assert.equal(0, au.total(engine, "errors"))
      assert.equal(0, au.total(engine, "len"))
    end)

    it("--resolver returning \"skip\" drops the event", function()
      local resolver = tmpfile('return function(ev) return "skip" end\n')
      local dup = queue_duplicate("hc-resolve-skip")
      local code, out, err = host("consume --once --resolver " .. q(resolver) .. " --config " .. q(config))
      assert.equal(0, code, out .. err)
      local st = assert(summary(out), out)
      assert.same({ 0, 1, 0 }, { st.failed, st.skipped, st.retried })
      assert.is_nil(sql_row(dup.id))
      assert.equal(0, au.total(engine, "errors"))
    end)

    it("exits 1 for a resolver file that cannot be used, before touching the queues", function()
      local row = queue_new({ "hc-resolver-bad" })[1]
      local not_fn = tmpfile("return 42\n")
      local syntax = tmpfile("return function(ev\n")
      local cases = {
        { "/nonexistent/resolver.lua", "^beeorm consume: cannot load resolver '/nonexistent/resolver%.lua': " },
        { not_fn, "^beeorm consume: resolver '.-' must return a function%(ev%), returned a number\n$" },
        { syntax, "^beeorm consume: cannot load resolver '.-': " },
      }
      for _, c in ipairs(cases) do
        local code, out, err = host("consume --once --resolver " .. q(c[1]) .. " --config " .. q(config))
        assert_one_line(code, 1, out, err)
        assert.matches(c[2], err)
      end
      assert.is_nil(sql_row(row.id))
      assert.equal(1, au.total(engine, "len"))
    end)

    it("goes on when the resolver raises: exit 0, the resolver error on stderr, the summary on stdout, the event "
      .. "parked with the resolver's message", function()
      local resolver = tmpfile('return function(ev) error("resolver boom") end\n')
      local dup = queue_duplicate("hc-resolver-raises")
      local code, out, err = host("consume --once --resolver " .. q(resolver) .. " --config " .. q(config))
      assert.equal(0, code, "stdout: " .. out .. "\nstderr: " .. err)
      assert.matches("^beeorm consume: resolver '.-' failed on 1 entry %(kept in the error list%): .*resolver boom[^\n]*\n$",
        err)
      assert.matches("^consumed: entries=%d+ events=%d+ batches=%d+ failed=1 skipped=0 retried=0 workers=%d+\n$", out)
      assert.is_nil(sql_row(dup.id))
      assert.equal(1, stats_of(au.queue_of(dup.id)).errors)
      local parked = au.errors(engine)
      assert.equal(1, #parked)
      assert.matches("resolver boom", tostring(parked[1].resolver_error), 1, true)
      -- where it was raised: the resolver file's line, from the traceback
      assert.matches("(raised at: " .. resolver .. ":1: in ", tostring(parked[1].resolver_error), 1, true)
    end)
  end)

  describe("stats", function()
    it("shows the live consumer workers of every process, and what they applied and parked", function()
      local function stats_json()
        local code, out, err = host("stats --json --config " .. q(config))
        assert.equal(0, code, out .. err)
        return assert(json.decode(out))
      end
      local before = stats_json().consumers
      local log = tmpfile()
      local pid = au.spawn(string.format("%s %s consume --workers 2 --config %s", util.child_env(),
        q(servers.build_dir .. "/beeorm"), q(config)), log)
      local ok, perr = pcall(function()
        local rows = queue_new({ "hc-live-1", "hc-live-2", "hc-live-3" })
        local doc
        assert.is_true(util.eventually(function()
          doc = stats_json()
          local held = 0
          for _, w in ipairs(doc.consumers.workers) do if w.pid == pid then held = held + #w.queues end end
          return #doc.consumers.workers >= 2 and held == 8 and doc.consumers.applied_total >= before.applied_total + 3
        end, 10), "stats: " .. require("dkjson").encode(doc or {}))
        for _, w in ipairs(doc.consumers.workers) do
          assert.equal(pid, w.pid)
          assert.matches("^" .. pid .. "%-", w.token)
          assert.is_true(w.heartbeat_age_seconds >= 0 and w.heartbeat_age_seconds < 3)
          assert.is_true(#w.host > 0)
        end
        -- per queue: the events applied from it
        local q1 = au.queue_of(rows[1].id)
        local applied = 0
        for _, qs in ipairs(doc.queues) do if qs.name == q1 then applied = qs.applied_total end end
        assert.is_true(applied >= 1)
        -- events/s over the last minute: seen once their second is over
        assert.is_true(util.eventually(function() return stats_json().consumers.applied_per_second > 0 end, 3))
        local code, out = host("stats --config " .. q(config))
        assert.equal(0, code)
        assert.matches("consumers: 2 live workers; applied [%d.]+ events/s", out)
        assert.matches("\nworker +host +pid +queues +heartbeat_s\n" .. pid .. "%-", out)
      end)
      au.kill(pid, "TERM")
      assert.is_true(au.wait_exit(pid, 10), "the consumer did not stop")
      assert(ok, perr)
      -- a worker that stopped says goodbye: gone at once
      assert.equal(0, #stats_json().consumers.workers)
      -- a parked entry counts as failed, in its queue and in all
      local failed_before = stats_json().consumers.failed_total
      local dup = queue_duplicate("hc-live-dup")
      assert.equal(0, (host("consume --once --config " .. q(config))))
      local doc = stats_json()
      assert.equal(failed_before + 1, doc.consumers.failed_total)
      for _, qs in ipairs(doc.queues) do
        if qs.name == au.queue_of(dup.id) then assert.is_true(qs.failed_total >= 1) end
      end
      assert.equal(0, (host("errors skip --config " .. q(config))))
    end)

    it("prints one aligned row per queue, and the same as JSON", function()
      -- one parked error
      local dup = queue_duplicate("hc-stats-dup")
      assert.equal(0, (host("consume --once --config " .. q(config))))
      local parked = au.queue_of(dup.id)
      -- three flushes: each queues one entry in the queue of its row
      local expected = {}
      for i = 1, 3 do
        local row = queue_new({ "hc-stats-" .. i })[1]
        local name = au.queue_of(row.id)
        expected[name] = (expected[name] or 0) + 1
      end

      local code, out, err = host("stats --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      local lines = {}
      for line in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
      assert.equal(10, #lines, out)
      assert.matches("^consumers: no live worker; applied [%d.]+ events/s over the last minute; %d+ applied, %d+ failed "
        .. "in all$", table.remove(lines))
      assert.matches("^queue +len +oldest_s +lag_s +pending +errors$", lines[1])
      local seen = {}
      for i = 2, #lines do
        assert.equal(#lines[1], #lines[i], "columns are aligned:\n" .. out)
        local name, len, oldest, lag, pending, errors = lines[i]:match(
          "^(%S+) +(%d+) +(%d+%.%d%d%d) +(%d+%.%d%d%d) +(%d+) +(%d+)$")
        assert.is_truthy(name, lines[i])
        seen[name] = true
        assert.equal(expected[name] or 0, tonumber(len), name)
        assert.equal(name == parked and 1 or 0, tonumber(errors), name)
        assert.equal(0, tonumber(pending))
        assert.is_true(tonumber(oldest) >= tonumber(lag))
        if not expected[name] then assert.equal(0, tonumber(oldest)) end
      end
      for i = 0, 7 do assert.is_true(seen["default:" .. i], "default:" .. i) end

      code, out, err = host("stats --json --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      assert.matches("^{[^\n]*}\n$", out)
      local doc, _, perr = json.decode(out)
      assert.is_nil(perr)
      assert.equal(8, #doc.queues)
      for i, qs in ipairs(doc.queues) do
        assert.equal("default:" .. (i - 1), qs.name)
        assert.equal(expected[qs.name] or 0, qs.len, qs.name)
        assert.equal(qs.name == parked and 1 or 0, qs.errors)
        assert.equal(0, qs.pending)
        assert.equal("number", type(qs.oldest_event_seconds))
        assert.equal("number", type(qs.lag))
        if expected[qs.name] then assert.is_true(qs.oldest_event_seconds >= 0) end
      end
    end)
  end)

  describe("errors", function()
    -- The table rows (after the header) of `errors list`, split into cells.
    local function list_rows(out)
      local rows = {}
      local n = 0
      for line in out:gmatch("([^\n]*)\n") do
        n = n + 1
        if n == 1 then
          assert.matches("^queue +stream_id +event +kind +entity +id +code +attempts +failed_at +message$", line)
        else
          local queue, stream_id, event, kind, entity, id, code, attempts, day, time, message = line:match(
            "^(%S+) +(%d+%-%d+) +(%d+/%d+) +(%a+) +(%S+) +(%d+) +([%d-]+) +([%d-]+) +(%d%d%d%d%-%d%d%-%d%d) "
            .. "(%d%d:%d%d:%d%d) +(.*)$")
          assert.is_truthy(queue, line)
          rows[#rows + 1] = { queue = queue, stream_id = stream_id, event = event, kind = kind, entity = entity,
            id = tonumber(id), code = tonumber(code), attempts = tonumber(attempts), failed_at = day .. " " .. time,
            message = message }
        end
      end
      assert.is_true(n >= 1, "no header: " .. out)
      return rows
    end

    local function list(args)
      local code, out, err = host("errors list --config " .. q(config) .. " " .. (args or ""))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      return list_rows(out), out
    end

    -- Parks an insert that fails with 1062 (consumed by the host without a resolver).
    local function park(name)
      local dup = queue_duplicate(name)
      local before = stats_of(au.queue_of(dup.id)).errors
      local code, out, err = host("consume --once --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal(1, summary(out).failed)
      assert.equal(before + 1, stats_of(au.queue_of(dup.id)).errors)
      return dup
    end

    -- A queue other than q.
    local function other_queue(queue)
      local shard = tonumber(queue:match(":(%d+)$"))
      return "default:" .. ((shard + 1) % 8)
    end

    it("list shows a parked error, filtered by --code and --queue", function()
      local rows = list()
      assert.same({}, rows)
      local dup = park("hc-errors-list")
      local queue = au.queue_of(dup.id)
      rows = list()
      assert.equal(1, #rows)
      local r = rows[1]
      assert.same({ queue = queue, kind = "insert", entity = T, id = dup.id, code = 1062 },
        { queue = r.queue, kind = r.kind, entity = r.entity, id = r.id, code = r.code })
      assert.is_true(r.attempts >= 1)
      assert.matches("Duplicate entry 'hc-errors-list'", r.message, 1, true)
      assert.same(au.errors(engine)[1].stream_id, r.stream_id)
      -- filters
      assert.equal(1, #list("--code 1062"))
      assert.equal(1, #list("--code 1062 --queue " .. queue))
      assert.equal(1, #list("--queue default"))
      assert.equal(0, #list("--code 1146"))
      assert.equal(0, #list("--queue " .. other_queue(queue)))
      assert.equal(0, #list("--code 1062 --queue " .. other_queue(queue)))
      -- JSON: every field, the SQL and the values too
      local code, out, err = host("errors list --json --code 1062 --config " .. q(config))
      assert.equal(0, code, out .. err)
      local doc, _, perr = json.decode(out)
      assert.is_nil(perr, out)
      assert.equal(1, #doc.errors)
      local ev = doc.errors[1]
      assert.same({ queue, r.stream_id, "insert", T, T, dup.id, 1062, "hc-errors-list" },
        { ev.queue, ev.stream_id, ev.kind, ev.entity, ev.table, ev.id, ev.code, ev.values.name })
      assert.matches("^INSERT", ev.sql)
      assert.matches("Duplicate entry 'hc-errors-list'", ev.message, 1, true)
      assert.equal("number", type(ev.failed_at))
      -- failed_at in the table is the same instant, in UTC
      assert.equal(os.date("!%Y-%m-%d %H:%M:%S", math.floor(ev.failed_at)), r.failed_at)
      code, out = host("errors list --json --code 1146 --config " .. q(config))
      assert.equal(0, code)
      assert.equal('{"errors":[]}\n', out)
    end)

    it("retry puts matching records back in their queue; they apply once the cause is fixed", function()
      local dup = park("hc-errors-retry")
      local queue = au.queue_of(dup.id)
      -- no match: nothing retried
      local code, out, err = host("errors retry --code 1146 --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("retried 0 error records\n", out)
      assert.equal(1, stats_of(queue).errors)
      code, out, err = host("errors retry --queue " .. other_queue(queue) .. " --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("retried 0 error records\n", out)
      -- the match
      code, out, err = host("errors retry --code 1062 --queue " .. queue .. " --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      assert.equal("retried 1 error record\n", out)
      local s = stats_of(queue)
      assert.equal(0, s.errors)
      assert.equal(1, s.len)
      -- fix the cause, consume: it applies
      assert(engine:sql_exec("DELETE FROM `" .. T .. "` WHERE `name` = ? AND `id` <> ?", { "hc-errors-retry", dup.id }))
      code, out = host("consume --once --config " .. q(config))
      assert.equal(0, code, out)
      assert.same({ 1, 0 }, { summary(out).events, summary(out).failed })
      assert.equal("hc-errors-retry", sql_row(dup.id).name)
      assert.equal(0, stats_of(queue).errors)
    end)

    it("skip drops matching records for good", function()
      local dup = park("hc-errors-skip")
      local queue = au.queue_of(dup.id)
      local code, out, err = host("errors skip --code 1062 --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("", err)
      assert.equal("skipped 1 error record\n", out)
      local s = stats_of(queue)
      assert.equal(0, s.errors)
      assert.equal(0, s.len)
      assert.same({}, list())
      code, out = host("consume --once --config " .. q(config))
      assert.equal(0, code, out)
      assert.equal(0, summary(out).events)
      assert.is_nil(sql_row(dup.id))
    end)

    it("list shows every event of an entry; show --id prints its record; skip --id --event drops one event",
      function()
      -- one flush_async of three new rows, the second colliding with a row taken behind beeorm's back
      local ctx = engine:context()
      local rows, id0 = {}, nil
      repeat -- three rows of one queue: one entry
        local r = ctx:new_entity(T, { name = "hc-three-" .. #rows, n = #rows })
        id0 = id0 or r.id
        if au.queue_of(r.id) == au.queue_of(id0) then rows[#rows + 1] = r else ctx:delete_entity(r) end
      until #rows == 3
      assert.is_true(ctx:flush_async())
      insert_behind("hc-three-1")
      local queue = au.queue_of(id0)
      local code, out, err = host("consume --once --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal(1, summary(out).failed)
      local listed = list("--queue " .. queue)
      assert.equal(3, #listed)
      local sid = listed[1].stream_id
      for i, r in ipairs(listed) do
        assert.same({ sid, i .. "/3", rows[i].id }, { r.stream_id, r.event, r.id })
      end
      assert.same({ nil, 1062, nil }, { listed[1].code, listed[2].code, listed[3].code })
      assert.equal("(applies with its entry; event 2 failed)", listed[1].message)
      assert.matches("Duplicate entry 'hc-three-1'", listed[2].message, 1, true)
      -- show: the whole record
      code, out, err = host("errors show --id " .. sid .. " --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.matches("^queue: +" .. queue .. "\nstream_id: +" .. sid:gsub("%-", "%%-") .. "\nerror: +1062 [^\n]*Duplicate entry",
        out)
      assert.matches("event 1/3: insert " .. T .. " id " .. rows[1].id .. "\n  n = 0\n  name = \"hc%-three%-0\"\n", out)
      assert.matches("event 2/3: insert " .. T .. " id " .. rows[2].id .. "  <%- failed\n", out)
      assert.matches("  sql: INSERT", out, 1, true)
      code, out = host("errors show --json --id " .. sid .. " --queue " .. queue .. " --config " .. q(config))
      assert.equal(0, code, out)
      local doc = assert(json.decode(out))
      assert.same({ queue, sid, 1062, 2, 3 }, { doc.queue, doc.stream_id, doc.code, doc.failed_event, #doc.events })
      assert.same({ "hc-three-0", "hc-three-1", "hc-three-2" },
        { doc.events[1].values.name, doc.events[2].values.name, doc.events[3].values.name })
      assert.matches("^INSERT", doc.events[2].sql)
      assert.is_nil(doc.events[1].sql)
      -- not there, or no such event
      code, out, err = host("errors show --id 1-0 --config " .. q(config))
      assert.same({ 1, "" }, { code, out })
      assert.equal("beeorm errors: no parked entry 1-0\n", err)
      code, out, err = host("errors skip --id " .. sid .. " --event 4 --config " .. q(config))
      assert.same({ 2, "" }, { code, out })
      assert.equal("beeorm errors: entry " .. sid .. " has 3 events: there is no event 4\n", err)
      -- drop event 3 (a good one): the others go back, fail again, and are parked as an entry of two
      code, out, err = host("errors skip --id " .. sid .. " --event 3 --config " .. q(config))
      assert.equal(0, code, out .. err)
      assert.equal("skipped 1 error record\n", out)
      code, out = host("consume --once --config " .. q(config))
      assert.equal(0, code, out)
      listed = list("--queue " .. queue)
      assert.same({ 2, "1/2", "2/2" }, { #listed, listed[1].event, listed[2].event })
      -- skip the failing one by --id: the first row applies
      code, out, err = host("errors skip --id " .. listed[1].stream_id .. " --config " .. q(config))
      assert.equal(0, code, out .. err)
      code, out = host("consume --once --config " .. q(config))
      assert.equal(0, code, out)
      assert.same({}, list("--queue " .. queue))
      assert.equal("hc-three-0", sql_row(rows[1].id).name)
      assert.is_nil(sql_row(rows[3].id))
    end)

    it("--limit caps how many records are listed, retried or skipped", function()
      local a = park("hc-errors-limit-a")
      local b = park("hc-errors-limit-b")
      assert.equal(2, #list())
      assert.equal(1, #list("--limit 1"))
      assert.equal(1, #list("--limit 1 --code 1062"))
      local code, out = host("errors skip --limit 1 --config " .. q(config))
      assert.equal(0, code, out)
      assert.equal("skipped 1 error record\n", out)
      assert.equal(1, au.total(engine, "errors"))
      code, out = host("errors skip --config " .. q(config))
      assert.equal(0, code, out)
      assert.equal("skipped 1 error record\n", out)
      assert.equal(0, au.total(engine, "errors"))
      assert.is_nil(sql_row(a.id))
      assert.is_nil(sql_row(b.id))
    end)
  end)
end)
