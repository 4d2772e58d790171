-- flush_async and the consumer (README, Lua API, G1-G3, G7, §4): the caches change at once,
-- the SQL waits in the shard queues until a consumer applies it, exactly once and in
-- order; a validation failure or a Redis failure queues nothing and changes no cache.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local REDIS_DB = 10
local I = "as_item"

local item_def = {
  name = I,
  local_cache = 100,
  redis_cache = true,
  fields = {
    { "name", "string", length = 50, required = true, unique = true },
    { "note", "string", length = 50 },
    { "n", "int" },
  },
}

-- Cached lists: a cached non-unique index, a cached reference and cache_all.
local L = "as_list"
local list_def = {
  name = L,
  local_cache = 100,
  redis_cache = true,
  cache_all = true,
  fields = {
    { "name", "string", length = 50 },
    { "status", "enum", values = { "active", "blocked" }, required = true },
    { "owner", "ref", entity = I, cached = true },
  },
  indexes = { by_status = { "status", cached = true } },
}

describe("flush_async", function()
  local engine

  local function sql_row(id)
    return assert(engine:sql_query("SELECT `id`, `name`, `note`, `n` FROM `" .. I .. "` WHERE `id` = ?", { id }))[1]
  end

  local function sql_count()
    return tonumber(assert(engine:sql_query("SELECT COUNT(*) AS c FROM `" .. I .. "`"))[1].c)
  end

  -- "name|note|n" of a loaded row (or "nil").
  local function show(row)
    if not row then return "nil" end
    return string.format("%s|%s|%s", row.name, tostring(row.note), tostring(row.n))
  end

  -- Rows written synchronously, for updates and deletes to start from.
  local function sync_rows(tag, n)
    local c = engine:context()
    local rows = {}
    for i = 1, n do rows[i] = c:new_entity(I, { name = tag .. "-" .. i, note = "sync", n = i }) end
    assert.is_true(c:flush())
    return rows
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { item_def, list_def })
    au.reset(engine, REDIS_DB, { L, I })
    assert.equal(2, engine:sync_schema())
  end)

  teardown(function()
    if engine then
      au.finish(engine, REDIS_DB)
      engine = nil
    end
    collectgarbage()
  end)

  after_each(function()
    -- every test leaves its queues empty
    au.skip_all_errors(engine)
    au.consume(engine:context())
  end)

  it("changes the caches at once, queues per shard, and a consumer applies it to MySQL", function()
    local base = sync_rows("crud", 2)
    local upd, del = base[1], base[2]
    util.sleep(0.05) -- this engine's own invalidations of the sync flush arrive first
    local ctx = engine:context()
    assert.equal("crud-1|sync|1", show(ctx:get_by_id(I, upd.id))) -- warm in both caches
    assert.equal("crud-2|sync|2", show(ctx:get_by_id(I, del.id)))
    assert.is_nil(ctx:get_by_unique_index(I, "name", "crud-new")) -- cached as not found
    local before = au.stats(engine)

    local new = ctx:new_entity(I, { name = "crud-new", note = "async", n = 10 })
    local e = ctx:edit_entity(ctx:get_by_id(I, upd.id))
    e.name = "crud-1b"
    e.n = 11
    ctx:delete_entity(ctx:get_by_id(I, del.id))
    local ok, err = ctx:flush_async()
    assert.is_nil(err)
    assert.is_true(ok)

    -- every reader sees the new state before any consumer ran: this context, another
    -- context, and another engine (its own local cache, the shared Redis cache)
    local other = util.engine(REDIS_DB, { item_def })
    for label, c in pairs({ same = ctx, context = engine:context(), engine = other:context() }) do
      assert.equal("crud-new|async|10", show(c:get_by_id(I, new.id)), label)
      assert.equal("crud-1b|sync|11", show(c:get_by_id(I, upd.id)), label)
      assert.is_nil(c:get_by_id(I, del.id), label)
      assert.equal(new.id, (c:get_by_unique_index(I, "name", "crud-new") or {}).id, label)
      assert.equal(upd.id, (c:get_by_unique_index(I, "name", "crud-1b") or {}).id, label)
      assert.is_nil(c:get_by_unique_index(I, "name", "crud-2"), label)
      -- (the old name of the renamed row: see the next test)
    end
    -- MySQL does not have it yet
    assert.is_nil(sql_row(new.id))
    assert.equal("crud-1", sql_row(upd.id).name)
    assert.equal("crud-2", sql_row(del.id).name)

    -- one entry per touched shard
    local after = au.stats(engine)
    local touched = {}
    for _, id in ipairs({ new.id, upd.id, del.id }) do touched[au.queue_of(id)] = true end
    for name, s in pairs(after) do
      if touched[name] then
        assert.equal(before[name].len + 1, s.len, name)
        assert.is_true(s.oldest_event_seconds >= 0, name)
        assert.is_true(s.oldest_event_seconds < 30, name .. ": " .. s.oldest_event_seconds)
        assert.is_true(s.lag >= 0, name)
        assert.equal(0, s.errors, name)
      else
        assert.equal(before[name].len, s.len, name)
      end
    end

    local st = au.consume(ctx)
    assert.equal(3, st.events)
    local n_touched = 0
    for _ in pairs(touched) do n_touched = n_touched + 1 end
    assert.equal(n_touched, st.entries)
    assert.equal(0, st.failed)
    assert.same({ id = tostring(new.id), name = "crud-new", note = "async", n = "10" }, sql_row(new.id))
    assert.same({ id = tostring(upd.id), name = "crud-1b", note = "sync", n = "11" }, sql_row(upd.id))
    assert.is_nil(sql_row(del.id))
    for name, s in pairs(au.stats(engine)) do
      assert.equal(0, s.len, name)
      assert.equal(0, s.oldest_event_seconds, name)
      assert.equal(0, s.errors, name)
    end
    -- and the caches still agree with MySQL
    assert.equal("crud-new|async|10", show(ctx:get_by_id(I, new.id)))
    assert.equal("crud-1b|sync|11", show(other:context():get_by_id(I, upd.id)))
    assert.is_nil(engine:context():get_by_id(I, del.id))
  end)

  it("frees the old value of a renamed unique field at once: get_by_unique_index gives nil", function()
    local row = sync_rows("ren", 1)[1]
    util.sleep(0.05)
    local ctx = engine:context()
    assert.equal(row.id, ctx:get_by_unique_index(I, "name", "ren-1").id) -- cached
    local e = ctx:edit_entity(ctx:get_by_id(I, row.id))
    e.name = "ren-1b"
    assert.is_true(ctx:flush_async())
    local other = util.engine(REDIS_DB, { item_def })
    for label, c in pairs({ same = ctx, context = engine:context(), engine = other:context() }) do
      assert.equal(row.id, (c:get_by_unique_index(I, "name", "ren-1b") or {}).id, label)
      local old = c:get_by_unique_index(I, "name", "ren-1")
      assert.is_nil(old, label .. ": got " .. show(old))
    end
  end)

  it("changes cached lists at once: get_by_index, get_by_reference and get_all show the new state (G8)", function()
    local c0 = engine:context()
    local o1, o2 = c0:new_entity(I, { name = "owner-1" }), c0:new_entity(I, { name = "owner-2" })
    local x = c0:new_entity(L, { name = "x", status = "active", owner = o1.id })
    local y = c0:new_entity(L, { name = "y", status = "active", owner = o1.id })
    assert.is_true(c0:flush())
    util.sleep(0.05)
    local function ids(rows)
      local out = {}
      for i, r in ipairs(assert(rows)) do out[i] = r.id end
      return out
    end
    local ctx = engine:context()
    -- warm every list
    assert.same({ x.id, y.id }, ids(ctx:get_by_index(L, "by_status", "active")))
    assert.same({}, ids(ctx:get_by_index(L, "by_status", "blocked")))
    assert.same({ x.id, y.id }, ids(ctx:get_by_reference(L, "owner", o1.id)))
    assert.same({}, ids(ctx:get_by_reference(L, "owner", o2.id)))
    assert.same({ x.id, y.id }, ids(ctx:get_all(L)))
    local e = ctx:edit_entity(ctx:get_by_id(L, x.id))
    e.status = "blocked"
    e.owner = o2.id
    ctx:delete_entity(ctx:get_by_id(L, y.id))
    local z = ctx:new_entity(L, { name = "z", status = "active", owner = o1.id })
    assert.is_true(ctx:flush_async())
    local function check(c, label)
      assert.same({ z.id }, ids(c:get_by_index(L, "by_status", "active")), label)
      assert.same({ x.id }, ids(c:get_by_index(L, "by_status", "blocked")), label)
      assert.same({ z.id }, ids(c:get_by_reference(L, "owner", o1.id)), label)
      assert.same({ x.id }, ids(c:get_by_reference(L, "owner", o2.id)), label)
      assert.same({ x.id, z.id }, ids(c:get_all(L)), label)
    end
    local other = util.engine(REDIS_DB, { item_def, list_def })
    check(ctx, "this engine, before consuming")
    check(other:context(), "another engine, before consuming")
    -- the rows with queued changes are marked in each list they leave or join
    assert.is_true(#util.redis_keys(REDIS_DB, "*:p:*") >= 4)
    au.consume(ctx)
    check(engine:context(), "this engine, after consuming")
    check(other:context(), "another engine, after consuming")
    assert.same({}, util.redis_keys(REDIS_DB, "*:p:*"), "pending marks left after consuming")
  end)

  it("consumes with 11 workers by default, at most 2 per CPU and no more than the queues; or as many as asked", function()
    local f = assert(io.popen("nproc"))
    local cpus = assert(tonumber(f:read("l")))
    f:close()
    local st = assert(engine:consumer {}:run { block = false })
    assert.equal(math.min(11, 2 * cpus, au.SHARDS), st.workers)
    assert.equal(st.workers, assert(beeorm.consume_async_flush_events(engine:context(), false)).workers)
    assert.equal(3, assert(engine:consumer { workers = 3 }:run { block = false }).workers)
    assert.equal(au.SHARDS, assert(engine:consumer { workers = 50 }:run { block = false }).workers)
    local ok, err = pcall(function() return engine:consumer { workers = 0 }:run { block = false } end)
    assert.is_false(ok)
    assert.matches("workers must be 1 to 256", tostring(err))
  end)

  it("fails validation (G7) before queuing anything or touching a cache; the changes stay tracked", function()
    local base = sync_rows("val", 1)
    util.sleep(0.05)
    local ctx = engine:context()
    assert.equal("val-1|sync|1", show(ctx:get_by_id(I, base[1].id)))
    local len_before = au.total(engine, "len")
    local c = engine:context()
    local good = c:new_entity(I, { name = "val-good", n = 1 })
    local e = c:edit_entity(c:get_by_id(I, base[1].id))
    e.note = "changed"
    local bad = c:new_entity(I, { name = string.rep("x", 51) }) -- longer than 50
    local ok, err = c:flush_async()
    assert.is_nil(ok)
    assert.is_true(beeorm.is_error(err))
    assert.equal("validation", err.code)
    assert.equal(I, err.entity)
    assert.equal("name", err.field)
    assert.is_false(err.temporary)
    assert.equal(len_before, au.total(engine, "len")) -- nothing queued
    -- no cache changed: Redis holds no row of the new ids, the reads give the old state
    assert.same({}, util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. I .. "}:r:" .. good.id))
    assert.same({}, util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. I .. "}:r:" .. bad.id))
    for _, r in ipairs({ ctx, engine:context() }) do
      assert.is_nil(r:get_by_id(I, good.id))
      assert.is_nil(r:get_by_unique_index(I, "name", "val-good"))
      assert.equal("val-1|sync|1", show(r:get_by_id(I, base[1].id)))
    end
    assert.equal(0, au.consume(ctx).events)
    assert.is_nil(sql_row(good.id))
    -- fixing the value lets the same tracked changes through
    bad.name = "val-bad-fixed"
    assert.is_true(c:flush_async())
    assert.equal("val-1|changed|1", show(ctx:get_by_id(I, base[1].id)))
    assert.equal(3, au.consume(ctx).events)
    assert.equal("val-good", sql_row(good.id).name)
    assert.equal("val-bad-fixed", sql_row(bad.id).name)
    assert.equal("changed", sql_row(base[1].id).note)
  end)

  it("applies 1,000 successive updates of one row in order: the last one wins", function()
    local row = sync_rows("order", 1)[1]
    local ctx = engine:context()
    local waiting = au.stats(engine)[au.queue_of(row.id)].len
    for i = 1, 1000 do
      local e = ctx:edit_entity(ctx:get_by_id(I, row.id))
      e.n = i
      e.note = "v" .. i
      assert.is_true(ctx:flush_async())
    end
    assert.equal("order-1|v1000|1000", show(engine:context():get_by_id(I, row.id)))
    assert.equal(waiting + 1000, au.stats(engine)[au.queue_of(row.id)].len)
    assert.equal(1, sql_row(row.id).n + 0)
    -- small batches, so that the updates span many transactions
    local st = au.consume(ctx, { max_batch = 37 })
    assert.equal(1000, st.entries)
    assert.equal(1000, st.events)
    assert.same({ id = tostring(row.id), name = "order-1", note = "v1000", n = "1000" }, sql_row(row.id))
    assert.equal(waiting, au.stats(engine)[au.queue_of(row.id)].len)
  end)

  it("applies one flush_async of several entities of one shard atomically (G3)", function()
    util.sleep(0.05)
    local ctx = engine:context()
    -- new rows until two share a shard (ids are handed out in a row: soon)
    local rows, by_shard = {}, {}
    local queue, pair
    for i = 1, 9 do
      rows[i] = ctx:new_entity(I, { name = "atom-" .. i, n = i })
      local q = au.queue_of(rows[i].id)
      by_shard[q] = by_shard[q] or {}
      table.insert(by_shard[q], rows[i])
      if #by_shard[q] == 2 then
        queue, pair = q, by_shard[q]
        break
      end
    end
    assert(pair, "no shard with two of the new rows")
    -- the second event of that entry will fail: its unique name is taken behind beeorm's back
    assert(engine:sql_exec("INSERT INTO `" .. I .. "` (`id`, `name`) VALUES (?, ?)", { 999000001, pair[2].name }))
    assert.is_true(ctx:flush_async())
    local st = au.consume(ctx)
    assert.equal(1, st.failed)
    -- neither event of the failing entry is applied; every other entry is
    assert.is_nil(sql_row(pair[1].id))
    assert.is_nil(sql_row(pair[2].id))
    for _, r in ipairs(rows) do
      if r ~= pair[1] and r ~= pair[2] then assert.equal(r.name, (sql_row(r.id) or {}).name) end
    end
    local errs = au.errors(engine)
    assert.equal(1, #errs, au.describe_errors(errs))
    local ev = errs[1]
    assert.equal(queue, ev.queue)
    assert.equal(2, ev.events)
    assert.equal("insert", ev.kind)
    assert.equal(pair[2].id, ev.id)
    assert.equal(1062, ev.error.code)
    assert.equal(1, au.stats(engine)[queue].errors)
    -- the caches of both rows converge on MySQL (not found) once the consumer has run
    for _, r in ipairs(pair) do
      assert.is_true(util.eventually(function() return ctx:get_by_id(I, r.id) == nil end, 1),
        "row " .. r.id .. " still cached after its entry failed")
      assert.is_nil(engine:context():get_by_id(I, r.id))
    end
    -- clean up: the row taken behind beeorm's back, and the error record
    assert(engine:sql_exec("DELETE FROM `" .. I .. "` WHERE `id` = 999000001"))
    assert.is_true(au.queues(engine)[queue]:skip(ev))
    assert.equal(0, au.stats(engine)[queue].errors)
  end)

  it("is applied by a consumer process that registers no entity (events carry what it needs)", function()
    local ctx = engine:context()
    local t = ctx:new_entity(I, { name = "bare-consumer", n = 1 })
    assert.is_true(ctx:flush_async())
    local out = os.tmpname()
    local code = servers.run(au.consumer_cmd(REDIS_DB, "once", out, { defs = "none" }))
    local said = au.read(out)
    os.remove(out)
    assert.equal(0, code, said)
    assert.matches("^ok ", said)
    assert.equal("bare-consumer", (sql_row(t.id) or {}).name)
  end)

  it("waits for no process that closed its engine, also when a process it started still runs", function()
    local function numsub()
      local out = util.redis_cli(REDIS_DB, "PUBSUB", "NUMSUB", "beeorm:invalidate:bee:{" .. util.database() .. "." .. I .. "}:")
      return tonumber(out:match("\n(%d+)"))
    end
    local before = numsub()
    local closing = util.engine(REDIS_DB, { item_def }) -- local cache: it subscribes
    assert.is_true(util.eventually(function() return numsub() == before + 1 end, 2))
    local f = assert(io.popen("sleep 30 > /dev/null 2>&1 & echo $!")) -- an application starting a helper
    local child = tonumber(f:read("l"))
    f:close()
    local ok, err = pcall(function()
      closing:close()
      closing = nil
      collectgarbage()
      local ctx = engine:context()
      local row = ctx:new_entity(I, { name = "closed-engine", n = 1 })
      assert.is_true(ctx:flush_async())
      local t0 = beeorm.monotonic()
      for i = 1, 10 do
        local e = ctx:edit_entity(ctx:get_by_id(I, row.id))
        e.n = i
        assert.is_true(ctx:flush_async())
      end
      local took = beeorm.monotonic() - t0
      assert.is_true(util.eventually(function() return numsub() == before end, 2),
        string.format("the closed engine is still subscribed (%d subscribers, %d before it); 10 flush_async "
          .. "calls took %.2f s", numsub(), before, took))
      assert.is_true(took < 0.5, string.format("10 flush_async calls took %.2f s", took))
    end)
    au.kill(child, "KILL")
    assert(ok, err)
  end)

  describe("consumed twice", function()
    local x, y, copies

    -- Queues an insert and an update, keeps a copy of the streams, consumes, then
    -- changes both rows synchronously and puts the copied (applied) entries back, as
    -- if a consumer had died after its COMMIT and before removing them from Redis.
    local function replayed(tag)
      local ctx = engine:context()
      y = sync_rows(tag, 1)[1]
      x = ctx:new_entity(I, { name = tag .. "-x", n = 1 })
      local e = ctx:edit_entity(ctx:get_by_id(I, y.id))
      e.n = 5
      assert.is_true(ctx:flush_async())
      copies = {}
      for _, id in ipairs({ x.id, y.id }) do
        local key = au.stream_key(au.queue_of(id))
        if not copies[key] then
          copies[key] = key .. ":copy"
          util.redis_cli(REDIS_DB, "COPY", key, copies[key], "REPLACE")
        end
      end
      assert.equal(2, au.consume(ctx).events)
      local c = engine:context()
      local ex, ey = c:edit_entity(c:get_by_id(I, x.id)), c:edit_entity(c:get_by_id(I, y.id))
      ex.n, ey.n = 7, 6
      assert.is_true(c:flush())
      for key, copy in pairs(copies) do util.redis_cli(REDIS_DB, "COPY", copy, key, "REPLACE") end
      return ctx
    end

    after_each(function()
      for _, copy in pairs(copies or {}) do util.redis_cli(REDIS_DB, "DEL", copy) end
    end)

    it("applies nothing twice: the second run skips what the mark says was applied (G2)", function()
      local ctx = replayed("twice")
      local count = sql_count()
      local st = au.consume(ctx)
      assert.equal(0, st.events)
      assert.equal(0, st.failed)
      assert.equal(count, sql_count())
      assert.equal("7", sql_row(x.id).n)
      assert.equal("6", sql_row(y.id).n)
      assert.same({}, au.errors(engine))
      -- and once more, with nothing in the streams at all
      assert.equal(0, au.consume(ctx).events)
      assert.equal(count, sql_count())
    end)

    it("removes entries the mark says were applied from the queue (len counts waiting entries only)", function()
      local ctx = replayed("stale")
      au.consume(ctx)
      for name, s in pairs(au.stats(engine)) do
        assert.equal(0, s.len, name)
        assert.equal(0, s.oldest_event_seconds, name)
      end
    end)
  end)

  describe("on an engine whose queues live on a second Redis server", function()
    local port, pid, dir, second

    local function registry()
      local r = beeorm.registry()
      assert(r:register_mysql(servers.mysql))
      assert(r:register_redis("127.0.0.1:" .. port, 0))
      assert(r:register_entity(item_def))
      return r
    end

    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      pid, port = au.start_redis_anywhere(dir)
      second = assert(registry():validate())
    end)

    teardown(function()
      if second then
        au.drain(second)
        second = nil
      end
      collectgarbage()
      if pid then
        au.kill(pid, "KILL")
        au.wait_exit(pid, 5)
      end
      if dir then os.execute("rm -rf " .. util.shell_quote(dir)) end
    end)

    it("with that server down returns a temporary redis error, changes no cache, keeps the changes tracked (G1)", function()
      local ctx = second:context()
      local base = ctx:new_entity(I, { name = "down-base", note = "before", n = 1 })
      assert.is_true(ctx:flush())
      util.sleep(0.05)
      assert.equal("down-base|before|1", show(ctx:get_by_id(I, base.id))) -- warm in the local cache
      local new = ctx:new_entity(I, { name = "down-new", n = 2 })
      local e = ctx:edit_entity(ctx:get_by_id(I, base.id))
      e.note = "after"

      au.kill(pid, "KILL")
      assert.is_true(au.wait_exit(pid, 5))
      pid = nil
      local ok, err = ctx:flush_async()
      assert.is_nil(ok)
      assert.is_true(beeorm.is_error(err))
      assert.equal("redis", err.code)
      assert.is_true(err.temporary)
      -- the local cache did not take the change (a read may fail while Redis is down,
      -- but it never shows the unqueued state)
      local reader = second:context()
      local row = reader:get_by_id(I, base.id)
      if row then assert.equal("down-base|before|1", show(row)) end
      assert.is_nil(sql_row(new.id))
      assert.equal("before", sql_row(base.id).note)

      local log
      pid, log = au.start_redis(port, dir) -- empty: the cache keys never existed there
      assert(pid, "redis-server did not start again on port " .. port .. ": " .. tostring(log))
      local ok2, err2 = ctx:flush_async()
      assert.is_nil(err2)
      assert.is_true(ok2)
      assert.equal("down-new|nil|2", show(ctx:get_by_id(I, new.id)))
      assert.equal("down-base|after|1", show(ctx:get_by_id(I, base.id)))
      local st = au.consume(ctx)
      assert.equal(2, st.events)
      assert.equal("down-new", sql_row(new.id).name)
      assert.equal("after", sql_row(base.id).note)
      -- nothing was queued twice: the tracked changes were cleared by the successful flush
      assert.is_true(ctx:flush_async())
      assert.equal(0, au.consume(ctx).events)
    end)

    it("keeps its events when another Redis feeds the same MySQL database: none is skipped unapplied", function()
      local c2 = second:context()
      local x = c2:new_entity(I, { name = "other-redis", n = 1 })
      assert.is_true(c2:flush_async())
      util.sleep(0.01)
      local c1 = engine:context()
      local same, n = nil, 0
      while not same and n < 64 * au.SHARDS do -- consecutive ids: one of them shares x's shard
        n = n + 1
        local t = c1:new_entity(I, { name = "this-redis-" .. n, n = n })
        if au.queue_of(t.id) == au.queue_of(x.id) then same = t end
      end
      assert(same, "no id in the shard of " .. x.id)
      assert.is_true(c1:flush_async())
      assert.equal(n, au.consume(c1).events)
      local st = au.consume(c2)
      assert.equal(1, st.events)
      assert.equal("other-redis", (sql_row(x.id) or {}).name)
      assert.equal(0, au.total(second, "len"))
    end)
  end)
end)
