-- The examples (examples/), run against the real servers: the quickstart, the
-- long-running consumer, the error resolver module and the C embedding host. Each test
-- checks what the example did to MySQL and Redis, not only what it printed.
--
-- Redis dbs 6 (quickstart, consumer.lua) and 7 (resolver, bee_embed_host); tables
-- ex_member and ex_note, and the quickstart's own table `category`.
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local DB_CONSUMER = 6 -- quickstart.lua and consumer.lua
local DB_RESOLVER = 7 -- resolver.lua in this process and bee_embed_host
local M = "ex_member"
local N = "ex_note"

local member_def = {
  name = M, local_cache = 1000, redis_cache = true,
  fields = {
    { "name", "string", length = 40, required = true, unique = "name" },
    { "code", "int", unique = "code" },
    { "note", "string", length = 40 },
  },
}
local note_def = { name = N, redis_cache = true, fields = { { "body", "string", length = 40 } } }

local q = util.shell_quote

local function redis_addr(db)
  return servers.redis .. ":" .. db
end

local function example(name)
  return servers.root .. "/examples/" .. name
end

-- The command line of `beeorm run examples/<script> args...`.
local function beeorm_run(script, ...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = q(select(i, ...)) end
  return string.format("%s %s run %s %s", util.child_env(), q(servers.build_dir .. "/beeorm"), q(example(script)),
    table.concat(args, " "))
end

local function embed_host(...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = q(select(i, ...)) end
  return string.format("%s %s %s", util.child_env(), q(servers.build_dir .. "/bee_embed_host"),
    table.concat(args, " "))
end

-- No sanitizer report in a child's output (the sanitizer build reports on stderr).
local function assert_clean(out)
  assert.is_nil(out:match("Sanitizer") or out:match("runtime error:"), out)
end

-- Waits until a file contains text; returns its content.
local function wait_for(path, text, limit)
  local content
  local ok = util.eventually(function()
    content = au.read(path)
    return content:find(text, 1, true) ~= nil
  end, limit or 15)
  assert(ok, "no '" .. text .. "' in " .. path .. " after " .. (limit or 15) .. " s:\n" .. tostring(content))
  return content
end

-- Kills what au.spawn started as `sh -c 'PROGRAM; echo ...'`: the program (the shell's
-- child) and the shell, if still there; removes the log.
local function stop_spawned(shell, log)
  local _, out = servers.run("pgrep -P " .. shell)
  for pid in out:gmatch("%d+") do au.kill(pid, "KILL") end
  au.kill(shell, "KILL")
  os.remove(log)
end

-- Runs fn with io.stderr collected; returns fn's results, then the text written.
local function capture_stderr(fn)
  local saved, parts = io.stderr, {}
  io.stderr = { write = function(self, ...)
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring(select(i, ...)) end
    return self
  end }
  local res = table.pack(pcall(fn))
  io.stderr = saved
  assert(res[1], res[2])
  return res[2], table.concat(parts)
end

describe("examples", function()
  local engines = {} -- by Redis db
  local behind = 800000000 -- ids of rows written behind beeorm's back

  local function engine(db) return engines[db] end

  -- The MySQL row of a member (text values), or nil.
  local function sql_member(id)
    return assert(engine(DB_RESOLVER):sql_query("SELECT `id`, `name`, `code`, `note` FROM `" .. M
      .. "` WHERE `id` = ?", { id }))[1]
  end

  local function sql_names(tbl, where, args)
    local out = {}
    for _, r in ipairs(assert(engine(DB_RESOLVER):sql_query("SELECT `name` FROM `" .. tbl .. "` WHERE " .. where
      .. " ORDER BY `name`", args))) do
      out[#out + 1] = r.name
    end
    return out
  end

  -- Inserts a member behind beeorm's back (no cache, no event); returns its id.
  local function insert_behind(name, code)
    behind = behind + 1
    assert(engine(DB_RESOLVER):sql_exec("INSERT INTO `" .. M .. "` (`id`, `name`, `code`) VALUES (?, ?, ?)",
      { behind, name, code, n = 3 }))
    return behind
  end

  -- Queues one flush_async insert of a member on db; returns the entity table.
  local function queue_member(db, values)
    local ctx = engine(db):context()
    local t = ctx:new_entity(M, values)
    assert.is_true(ctx:flush_async())
    return t
  end

  setup(function()
    servers.need()
    for _, db in ipairs({ DB_CONSUMER, DB_RESOLVER }) do
      util.flushdb(db) -- no queue, cache or id counter of an earlier run
      engines[db] = util.engine(db, { member_def, note_def })
    end
    util.drop(engine(DB_RESOLVER), { M, N, "category" })
    assert.equal(2, engine(DB_RESOLVER):sync_schema())
  end)

  teardown(function()
    for db, e in pairs(engines) do
      au.drain(e)
      if db == DB_RESOLVER then util.drop(e, { M, N, "category" }) end
      e:close()
      util.flushdb(db)
    end
    engines = {}
    collectgarbage()
  end)

  before_each(function()
    for _, db in ipairs({ DB_CONSUMER, DB_RESOLVER }) do
      assert.equal(0, au.drain(engine(db)))
    end
  end)

  -- --------------------------------------------------------------------------
  describe("quickstart.lua", function()
    local function category_rows()
      return assert(engine(DB_RESOLVER):sql_query(
        "SELECT `name`, `status`, `price`, `tags`, `parent` FROM `category` ORDER BY `name`"))
    end

    local function check_run(out, removed)
      for _, line in ipairs({
        "beeorm 0.1.0 connected:",
        "removed " .. removed .. " row(s) of an earlier run",
        "ids exist before the flush: yes",
        "flush: inserted 3 categories (Cars, Bikes, E-bikes)",
        "flush_async: queued 1 insert (Boats) and 1 update (Cars price 17.50)",
        "before the consumer: cache sees Boats: yes; MySQL rows: 3; queued entries: ",
        "consumed 2 event(s), 0 failed, 0 skipped",
        "get_by_id(Cars): price=17.50 tags=new,top",
        "get_by_unique_index(name=Boats): Boats, blocked",
        "get_by_index(by_status=active): Cars, Bikes, E-bikes",
        "get_by_index(by_status=blocked): Boats",
        "get_by_reference(parent=Bikes): E-bikes",
        "get_all: 4 categories",
        "row: name=Cars status=active price=17.50 tags=new,top",
        "queues: 8, waiting entries: 0, pending: 0, errors: 0",
        "an unreachable pool gives: beeorm error [redis, temporary]",
        "\ndone\n",
      }) do
        assert.is_truthy(out:find(line, 1, true), "missing line '" .. line .. "' in:\n" .. out)
      end
      assert_clean(out)
      -- MySQL holds what it wrote, the flush_async changes applied by its consumer
      local rows = category_rows()
      assert.equal(4, #rows)
      local by_name = {}
      for _, r in ipairs(rows) do by_name[r.name] = r end
      assert.same({ name = "Bikes", status = "active", price = "5.00" }, by_name.Bikes)
      assert.same({ name = "Boats", status = "blocked", price = "120000.00" }, by_name.Boats)
      assert.same({ name = "Cars", status = "active", price = "17.50", tags = "new,top" }, by_name.Cars)
      assert.equal("new", by_name["E-bikes"].tags)
      assert.is_truthy(by_name["E-bikes"].parent)
      assert.same({}, au.errors(engine(DB_CONSUMER)))
      assert.equal(0, au.total(engine(DB_CONSUMER), "len"))
    end

    it("runs end to end: schema, flush, flush_async, consume, reads; exits 0; MySQL holds its rows", function()
      local code, out = servers.run(beeorm_run("quickstart.lua", servers.mysql, redis_addr(DB_CONSUMER)))
      assert.equal(0, code, out)
      assert.is_truthy(out:find("[safe] CREATE TABLE `category`", 1, true), out)
      assert.is_truthy(out:find("applied 1 statement(s); left to do: 0", 1, true), out)
      check_run(out, 0)
    end)

    it("runs again on the same servers: its earlier rows are removed first, the caches follow", function()
      local code, out = servers.run(beeorm_run("quickstart.lua", servers.mysql, redis_addr(DB_CONSUMER)))
      assert.equal(0, code, out)
      assert.is_truthy(out:find("applied 0 statement(s); left to do: 0", 1, true), out)
      check_run(out, 4)
    end)

    it("exits 1 with one line naming the failure when MySQL cannot be reached", function()
      local code, out = servers.run(beeorm_run("quickstart.lua", "u:p@tcp(127.0.0.1:1)/x", redis_addr(DB_CONSUMER)))
      assert.equal(1, code, out)
      assert.matches("quickstart: cannot connect: beeorm error %[mysql 200%d, temporary%]", out)
      assert.is_nil(out:find("stack traceback", 1, true), out)
      assert_clean(out)
    end)
  end)

  -- --------------------------------------------------------------------------
  describe("resolver.lua", function()
    local resolver

    setup(function()
      resolver = assert(dofile(example("resolver.lua")))
      assert.equal("function", type(resolver))
    end)

    -- Consumes db DB_RESOLVER with the resolver; returns the stats and what it logged.
    local function consume()
      return capture_stderr(function()
        return assert(engine(DB_RESOLVER):consumer { workers = 1, resolver = resolver }:run { block = false })
      end)
    end

    it("renames the unique value of an insert hitting a duplicate key and retries: MySQL has the renamed row", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-dup", code = 1, note = "queued" })
      local other = queue_member(DB_RESOLVER, { name = "ex-dup-other", code = 2 })
      local taken = insert_behind("ex-dup", 101)
      local st, log = consume()
      assert.equal(0, st.failed)
      assert.equal(0, st.skipped)
      assert.equal(1, st.retried)
      assert.same({ id = tostring(t.id), name = "ex-dup (2)", code = "1", note = "queued" }, sql_member(t.id))
      assert.equal("ex-dup", sql_member(taken).name)
      assert.equal("ex-dup-other", sql_member(other.id).name)
      assert.same({}, au.errors(engine(DB_RESOLVER)), au.describe_errors(au.errors(engine(DB_RESOLVER))))
      assert.equal(0, au.total(engine(DB_RESOLVER), "len"))
      assert.matches("resolver: rename ex_member #" .. t.id .. ": name 'ex-dup' is taken, retrying as 'ex-dup (2)'",
        log, 1, true)
      -- the caches agree with MySQL
      local ctx = engine(DB_RESOLVER):context()
      assert.is_true(util.eventually(function()
        local row = ctx:get_by_id(M, t.id)
        return row ~= nil and row.name == "ex-dup (2)"
      end, 2))
      assert.equal(t.id, (ctx:get_by_unique_index(M, "name", "ex-dup (2)") or {}).id)
      assert.equal(taken, (ctx:get_by_unique_index(M, "name", "ex-dup") or {}).id)
    end)

    it("renames again while the new value is taken too: \" (2)\", then \" (3)\"", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-twice", code = 3 })
      insert_behind("ex-twice", 102)
      insert_behind("ex-twice (2)", 103)
      local st, log = consume()
      assert.equal(0, st.failed)
      assert.equal(0, st.skipped)
      assert.equal(2, st.retried)
      assert.equal("ex-twice (3)", sql_member(t.id).name)
      assert.same({}, au.errors(engine(DB_RESOLVER)))
      assert.matches("retrying as 'ex-twice (2)'", log, 1, true)
      assert.matches("retrying as 'ex-twice (3)'", log, 1, true)
    end)

    it("keeps a value that looks renamed already: \"x (2)\" taken becomes \"x (2) (2)\"", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-room (2)", code = 4 })
      insert_behind("ex-room (2)", 104)
      local st = consume()
      assert.equal(0, st.failed)
      assert.equal("ex-room (2) (2)", sql_member(t.id).name)
    end)

    -- The one record parked in DB_RESOLVER: for row id, error code; then dropped (skip).
    local function parked_once(id, code)
      local list = au.errors(engine(DB_RESOLVER))
      assert.equal(1, #list, au.describe_errors(list))
      assert.equal(id, list[1].id)
      assert.equal(code, list[1].error.code)
      au.skip_all_errors(engine(DB_RESOLVER))
      return list[1]
    end

    it("keeps an insert still a duplicate after its renames in the error list: not in MySQL, not cached", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-full", code = 5 })
      local fine = queue_member(DB_RESOLVER, { name = "ex-full-fine", code = 6 })
      for i, name in ipairs({ "ex-full", "ex-full (2)", "ex-full (3)" }) do insert_behind(name, 104 + i) end
      local st, log = consume()
      assert.equal(0, st.skipped)
      assert.equal(1, st.failed)
      assert.equal(2, st.retried)
      assert.is_nil(sql_member(t.id))
      assert.equal("ex-full-fine", sql_member(fine.id).name)
      assert.same({ "ex-full", "ex-full (2)", "ex-full (3)", "ex-full-fine" }, sql_names(M, "`name` LIKE ?",
        { "ex-full%" }))
      assert.matches("resolver: keep insert of ex_member #" .. t.id .. " (still a duplicate after 2 renames)", log, 1,
        true)
      assert.equal(3, parked_once(t.id, 1062).attempts)
      local ctx = engine(DB_RESOLVER):context()
      assert.is_true(util.eventually(function() return ctx:get_by_id(M, t.id) == nil end, 2))
    end)

    it("keeps a duplicate it cannot rename (a number column)", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-code", code = 77 })
      insert_behind("ex-code-behind", 77)
      local st, log = consume()
      assert.equal(0, st.skipped)
      assert.equal(1, st.failed)
      assert.equal(0, st.retried)
      assert.is_nil(sql_member(t.id))
      assert.matches("resolver: keep insert of ex_member #" .. t.id .. " (duplicate not on a text column): ", log, 1,
        true)
      assert.matches("Duplicate entry '77' for key 'code'", log, 1, true)
      assert.equal(1, parked_once(t.id, 1062).attempts)
    end)

    it("keeps a duplicate on an update (the row keeps its value in MySQL and in the caches)", function()
      local ctx = engine(DB_RESOLVER):context()
      local t = ctx:new_entity(M, { name = "ex-upd", code = 8 })
      assert.is_true(ctx:flush())
      local e = ctx:edit_entity(ctx:get_by_id(M, t.id))
      e.name = "ex-upd-taken"
      assert.is_true(ctx:flush_async())
      insert_behind("ex-upd-taken", 108)
      local st, log = consume()
      assert.equal(1, st.failed)
      assert.equal("ex-upd", sql_member(t.id).name)
      assert.equal("ex-upd-taken", parked_once(t.id, 1062).values.name)
      assert.matches("(duplicate on update)", log, 1, true)
      assert.is_true(util.eventually(function() return (ctx:get_by_id(M, t.id) or {}).name == "ex-upd" end, 2))
    end)

    it("keeps other permanent errors (data too long, 1406)", function()
      -- behind beeorm's back, the column becomes too short for what is queued
      assert(engine(DB_RESOLVER):sql_exec("ALTER TABLE `" .. N .. "` MODIFY `body` varchar(3) NULL"))
      local ctx = engine(DB_RESOLVER):context()
      local long = ctx:new_entity(N, { body = "too long" })
      assert.is_true(ctx:flush_async())
      local short = ctx:new_entity(N, { body = "ok" })
      assert.is_true(ctx:flush_async())
      local st, log = consume()
      assert(engine(DB_RESOLVER):sql_exec("ALTER TABLE `" .. N .. "` MODIFY `body` varchar(40) NULL"))
      assert.equal(0, st.skipped)
      assert.equal(1, st.failed)
      local rows = assert(engine(DB_RESOLVER):sql_query("SELECT `id`, `body` FROM `" .. N .. "` ORDER BY `id`"))
      assert.same({ { id = tostring(short.id), body = "ok" } }, rows)
      assert.matches("resolver: keep insert of ex_note #" .. long.id .. " (error 1406)", log, 1, true)
      assert.equal("too long", parked_once(long.id, 1406).values.body)
    end)
  end)

  -- --------------------------------------------------------------------------
  describe("consumer.lua", function()
    -- Queues, on DB_CONSUMER, in one flush_async: two inserts (one hitting a duplicate
    -- key), an update and a delete of rows written with flush (4 events). Returns the rows.
    local function queue_work(tag)
      insert_behind(tag .. "-dup") -- first: a blocking consumer applies the events at once
      local ctx = engine(DB_CONSUMER):context()
      local upd = ctx:new_entity(M, { name = tag .. "-upd", note = "before" })
      local del = ctx:new_entity(M, { name = tag .. "-del" })
      assert.is_true(ctx:flush())
      local a = ctx:new_entity(M, { name = tag .. "-a", note = "async" })
      local dup = ctx:new_entity(M, { name = tag .. "-dup" })
      local e = ctx:edit_entity(ctx:get_by_id(M, upd.id))
      e.note = "after"
      ctx:delete_entity(ctx:get_by_id(M, del.id))
      assert.is_true(ctx:flush_async())
      return { upd = upd, del = del, a = a, dup = dup }
    end

    local function check_applied(tag, rows)
      assert.same({ tag .. "-a", tag .. "-dup", tag .. "-dup (2)", tag .. "-upd" }, sql_names(M, "`name` LIKE ?",
        { tag .. "-%" }))
      assert.equal("after", sql_member(rows.upd.id).note)
      assert.is_nil(sql_member(rows.del.id))
      assert.equal(tag .. "-dup (2)", sql_member(rows.dup.id).name)
      assert.same({}, au.errors(engine(DB_CONSUMER)))
      assert.equal(0, au.total(engine(DB_CONSUMER), "len"))
    end

    it("--once applies the events queued by the spec, resolving a duplicate key, and prints a summary", function()
      local rows = queue_work("ex-once")
      local code, out = servers.run(beeorm_run("consumer.lua", servers.mysql, redis_addr(DB_CONSUMER), "--once"))
      assert.equal(0, code, out)
      assert.matches("drained at start%-up: %d+ event%(s%), 0 failed, 0 skipped", out)
      assert.matches("resolver: rename ex_member #" .. rows.dup.id .. ": name 'ex-once-dup' is taken", out, 1, true)
      assert.matches("consumer stopped after [%d.]+ s: %d+ event%(s%) in %d+ entries and %d+ batch%(es%); 0 failed "
        .. "%(kept in the error lists%), 0 skipped, 1 retried", out)
      assert.matches("queues: 8, waiting entries: 0, entries in error lists: 0", out, 1, true)
      assert.is_nil(out:find("waiting for events", 1, true))
      assert_clean(out)
      check_applied("ex-once", rows)
    end)

    it("drains at start, then applies what arrives until SIGTERM, and exits 0 with its summary", function()
      local first = queue_member(DB_CONSUMER, { name = "ex-pre-block" })
      local log = os.tmpname()
      local shell = au.spawn("sh -c " .. q(beeorm_run("consumer.lua", servers.mysql, redis_addr(DB_CONSUMER))
        .. "; echo \"::exit=$?\""), log)
      finally(function() stop_spawned(shell, log) end)
      wait_for(log, "waiting for events")
      assert.equal("ex-pre-block", (sql_member(first.id) or {}).name)
      -- events queued while it blocks are applied (a duplicate too, through the resolver)
      local rows = queue_work("ex-block")
      assert.is_true(util.eventually(function()
        return #sql_names(M, "`name` LIKE ?", { "ex-block-%" }) == 4 and au.total(engine(DB_CONSUMER), "len") == 0
      end, 15), au.read(log))
      check_applied("ex-block", rows)
      -- SIGTERM to the beeorm process (the child of the shell)
      local code, out = servers.run("pgrep -P " .. shell)
      assert.equal(0, code, out)
      local pid = assert(tonumber(out:match("%d+")))
      au.kill(pid, "TERM")
      assert.is_true(au.wait_exit(pid, 15), "the consumer did not stop on SIGTERM")
      local text = wait_for(log, "::exit=")
      assert.matches("::exit=0", text, 1, true)
      assert.matches("drained at start-up: 1 event(s), 0 failed", text, 1, true)
      assert.matches("consumer stopped after [%d.]+ s: %d+ event%(s%)", text)
      assert.matches("0 failed %(kept in the error lists%), 0 skipped, 1 retried", text)
      assert_clean(text)
    end)

    it("exits 2 with a usage line on bad arguments, 1 when the servers cannot be reached", function()
      for _, args in ipairs({ {}, { servers.mysql }, { servers.mysql, redis_addr(DB_CONSUMER), "--bogus" },
        { servers.mysql, redis_addr(DB_CONSUMER), "--workers", "0" } }) do
        local code, out = servers.run(beeorm_run("consumer.lua", table.unpack(args)))
        assert.equal(2, code, out)
        assert.matches("^consumer: ", out)
        if #args < 3 or args[3] == "--bogus" then
          assert.matches("usage: beeorm run examples/consumer.lua MYSQL_DSN REDIS_ADDR", out, 1, true)
        end
        assert_clean(out)
      end
      local code, out = servers.run(beeorm_run("consumer.lua", servers.mysql, "127.0.0.1:1", "--once"))
      assert.equal(1, code, out)
      assert.matches("consumer: cannot connect: beeorm error [redis, temporary]", out, 1, true)
      assert_clean(out)
    end)
  end)

  -- --------------------------------------------------------------------------
  describe("embed_host.c (bee_embed_host)", function()
    local resolver_file = example("resolver.lua")

    it("--once resolves an injected duplicate key with examples/resolver.lua and prints its stats", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-embed", code = 20, note = "from C" })
      local fine = queue_member(DB_RESOLVER, { name = "ex-embed-fine", code = 21 })
      insert_behind("ex-embed", 120)
      local code, out = servers.run(embed_host(servers.mysql, redis_addr(DB_RESOLVER), resolver_file, "--once"))
      assert.equal(0, code, out)
      assert.matches("bee_embed_host: beeorm 0.1.0 on Lua 5.4", out, 1, true)
      assert.matches("bee_embed_host: drained %d+ event%(s%) at start%-up", out)
      assert.matches("resolver: rename ex_member #" .. t.id .. ": name 'ex-embed' is taken, retrying as 'ex-embed (2)'",
        out, 1, true)
      assert.matches("bee_embed_host: consumed %d+ event%(s%) in %d+ entries and %d+ batch%(es%); failed 0, skipped 0, "
        .. "retried 1; workers %d+; queues 8, waiting 0, errors 0\n", out)
      assert_clean(out)
      assert.same({ id = tostring(t.id), name = "ex-embed (2)", code = "20", note = "from C" }, sql_member(t.id))
      assert.equal("ex-embed-fine", sql_member(fine.id).name)
      assert.same({}, au.errors(engine(DB_RESOLVER)))
      assert.equal(0, au.total(engine(DB_RESOLVER), "len"))
    end)

    it("keeps with the resolver what it cannot fix, and says so in its stats", function()
      local t = queue_member(DB_RESOLVER, { name = "ex-embed-code", code = 88 })
      insert_behind("ex-embed-code-behind", 88)
      local code, out = servers.run(embed_host(servers.mysql, redis_addr(DB_RESOLVER), resolver_file, "--once"))
      assert.equal(0, code, out)
      assert.matches("failed 1, skipped 0, retried 0;", out, 1, true)
      assert.matches("errors 1\n", out)
      assert.is_nil(sql_member(t.id))
      local list = au.errors(engine(DB_RESOLVER))
      assert.equal(1, #list, au.describe_errors(list))
      assert.equal(t.id, list[1].id)
      au.skip_all_errors(engine(DB_RESOLVER))
      assert_clean(out)
    end)

    it("without --once consumes until SIGTERM, then prints its stats and exits 0", function()
      local log = os.tmpname()
      local shell = au.spawn("sh -c " .. q(embed_host(servers.mysql, redis_addr(DB_RESOLVER), resolver_file)
        .. "; echo \"::exit=$?\""), log)
      finally(function() stop_spawned(shell, log) end)
      wait_for(log, "waiting for events")
      insert_behind("ex-embed-block", 130) -- first: the consumer applies the insert at once
      local t = queue_member(DB_RESOLVER, { name = "ex-embed-block", code = 30 })
      assert.is_true(util.eventually(function() return (sql_member(t.id) or {}).name == "ex-embed-block (2)" end, 15),
        au.read(log))
      local code, out = servers.run("pgrep -P " .. shell)
      assert.equal(0, code, out)
      local pid = assert(tonumber(out:match("%d+")))
      au.kill(pid, "TERM")
      assert.is_true(au.wait_exit(pid, 15), "bee_embed_host did not stop on SIGTERM")
      local text = wait_for(log, "::exit=")
      assert.matches("::exit=0", text, 1, true)
      assert.matches("bee_embed_host: consumed %d+ event%(s%) in %d+ entries and %d+ batch%(es%); failed 0, skipped 0, "
        .. "retried 1;", text)
      assert_clean(text)
      assert.same({}, au.errors(engine(DB_RESOLVER)))
    end)

    it("exits 2 with a usage line on bad arguments", function()
      local usage = "usage: bee_embed_host MYSQL_DSN REDIS_ADDR RESOLVER_LUA [--once]"
      for _, case in ipairs({
        { {}, "bee_embed_host: expected 3 arguments, got 0" },
        { { servers.mysql, redis_addr(DB_RESOLVER) }, "bee_embed_host: expected 3 arguments, got 2" },
        { { servers.mysql, redis_addr(DB_RESOLVER), resolver_file, "--twice" }, "bee_embed_host: unknown option '--twice'" },
        { { servers.mysql, redis_addr(DB_RESOLVER), resolver_file, "--once", "x" }, "bee_embed_host: expected 3 arguments, got 5" },
        { { "not a dsn", redis_addr(DB_RESOLVER), resolver_file, "--once" }, "bee_embed_host: bad MYSQL_DSN: beeorm error [dsn]" },
        { { servers.mysql, "redis://h:1/x", resolver_file, "--once" }, "bee_embed_host: bad REDIS_ADDR: beeorm error [dsn]" },
      }) do
        local code, out = servers.run(embed_host(table.unpack(case[1])))
        assert.equal(2, code, out)
        assert.matches(case[2], out, 1, true)
        assert.matches(usage, out, 1, true)
        assert_clean(out)
      end
      local code, out = servers.run(embed_host("--help"))
      assert.equal(0, code, out)
      assert.equal(usage .. "\n", out)
    end)

    it("exits 1 with a message when the resolver cannot be loaded or the servers cannot be reached", function()
      local bad = os.tmpname()
      finally(function() os.remove(bad) end)
      local function write(text)
        local f = assert(io.open(bad, "w"))
        f:write(text)
        f:close()
      end
      local function run(dsn, redis, resolver)
        local code, out = servers.run(embed_host(dsn, redis, resolver, "--once"))
        assert.equal(1, code, out)
        assert_clean(out)
        return out
      end
      assert.matches("bee_embed_host: cannot load the resolver: cannot open /nonexistent/r.lua",
        run(servers.mysql, redis_addr(DB_RESOLVER), "/nonexistent/r.lua"), 1, true)
      write("return function(ev) return 'skip' end end")
      assert.matches("bee_embed_host: cannot load the resolver: ", run(servers.mysql, redis_addr(DB_RESOLVER), bad), 1, true)
      write("error('resolver setup failed')")
      local out = run(servers.mysql, redis_addr(DB_RESOLVER), bad)
      assert.matches("resolver setup failed", out, 1, true)
      assert.matches("stack traceback", out, 1, true)
      write("return 42")
      assert.matches("the resolver " .. bad .. " must return a function, not a number",
        run(servers.mysql, redis_addr(DB_RESOLVER), bad), 1, true)
      assert.matches("bee_embed_host: cannot connect: beeorm error [redis, temporary]",
        run(servers.mysql, "127.0.0.1:1", resolver_file), 1, true)
      assert.matches("bee_embed_host: cannot connect: beeorm error %[mysql 200%d, temporary%]",
        run("u:p@tcp(127.0.0.1:1)/x", redis_addr(DB_RESOLVER), resolver_file))
    end)

    it("goes on when the resolver raises while consuming: exit 0, the message on stderr, the entry kept with it",
      function()
      local bad = os.tmpname()
      finally(function() os.remove(bad) end)
      local f = assert(io.open(bad, "w"))
      f:write("return function(ev) error('resolver broke on ' .. ev.kind) end\n")
      f:close()
      local t = queue_member(DB_RESOLVER, { name = "ex-embed-raise", code = 40 })
      insert_behind("ex-embed-raise", 140)
      local code, out = servers.run(embed_host(servers.mysql, redis_addr(DB_RESOLVER), bad, "--once"))
      assert.equal(0, code, out)
      assert.matches("bee_embed_host: the resolver failed on 1 entry (kept in the error list): ", out, 1, true)
      assert.matches("resolver broke on insert", out, 1, true)
      assert.matches("failed 1, skipped 0, retried 0;", out, 1, true)
      assert_clean(out)
      assert.is_nil(sql_member(t.id))
      local errs = au.errors(engine(DB_RESOLVER))
      assert.equal(1, #errs, au.describe_errors(errs))
      assert.equal(t.id, errs[1].id)
      assert.equal(1062, errs[1].error.code)
      assert.matches("resolver broke on insert", tostring(errs[1].resolver_error), 1, true)
      au.skip_all_errors(engine(DB_RESOLVER))
    end)
  end)
end)
