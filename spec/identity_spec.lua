-- One context tracks one table per row, and tracked tables stay tracked after a flush
-- (docs/guarantees.md G8, README "Contexts, flush and loaders"): edit_entity of a tracked row
-- returns the tracked table, a flush moves the baselines to what it wrote, deletes
-- replace tracked changes, clear_flush forgets everything.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local REDIS_DB = 14
local P, LINE = "ident_product", "ident_line"
local DEAD = "ident_dead_cache"

local product_def = {
  name = P,
  local_cache = 100,
  redis_cache = true,
  fields = {
    { "name", "string", length = 50, required = true },
    { "code", "string", length = 20, unique = true },
    { "stock", "int", bits = 32 },
    { "price", "decimal", precision = 10, scale = 2 },
    { "tags", "set", values = { "a", "b", "c" } },
  },
}

local line_def = {
  name = LINE,
  redis_cache = true,
  fields = { { "product", "ref", entity = P }, { "qty", "int", bits = 32 } },
}

describe("a context's identity map", function()
  local engine, ctx

  local function sql_row(id)
    return assert(engine:sql_query("SELECT * FROM `" .. P .. "` WHERE `id` = ?", { id }))[1]
  end

  -- A product row written by another context, so that ctx does not track it.
  local function existing(values)
    local c = engine:context()
    values.name = values.name or "existing"
    local t = c:new_entity(P, values)
    assert.is_true(c:flush())
    return t
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { product_def, line_def })
    au.reset(engine, REDIS_DB, { LINE, P })
    assert.equal(2, engine:sync_schema())
  end)

  before_each(function()
    ctx = engine:context()
  end)

  teardown(function()
    if engine then au.finish(engine, REDIS_DB) end
    ctx, engine = nil, nil
    collectgarbage()
  end)

  describe("edit_entity", function()
    it("returns the new_entity table itself for that table, before any flush", function()
      local t = ctx:new_entity(P, { name = "n1" })
      assert.is_true(rawequal(t, ctx:edit_entity(t)))
    end)

    it("returns the new_entity table itself for a loaded copy of its row after the flush", function()
      local t = ctx:new_entity(P, { name = "n2" })
      assert.is_true(ctx:flush())
      local loaded = ctx:get_by_id(P, t.id)
      assert.is_false(rawequal(t, loaded))
      assert.is_true(rawequal(t, ctx:edit_entity(loaded)))
    end)

    it("returns the same tracked copy for two loaded copies of one row", function()
      local row = existing({ name = "two-copies" })
      local first = ctx:edit_entity(ctx:get_by_id(P, row.id))
      local second = ctx:edit_entity(ctx:get_by_id(P, row.id))
      assert.is_true(rawequal(first, second))
    end)

    it("applies the stock decrements of two order lines of one product to its row", function()
      local product = existing({ name = "stocked", stock = 10 })
      for _, qty in ipairs({ 2, 3 }) do
        local p = ctx:edit_entity(ctx:get_by_id(P, product.id))
        p.stock = p.stock - qty
        ctx:new_entity(LINE, { product = p, qty = qty })
      end
      assert.is_true(ctx:flush())
      assert.equal("5", sql_row(product.id).stock)
      assert.equal(5, engine:context():get_by_id(P, product.id).stock)
    end)

    it("ignores the field values of the table it is given when the row is tracked", function()
      local t = ctx:new_entity(P, { name = "tracked", stock = 10 })
      assert.is_true(ctx:flush())
      local other = ctx:get_by_id(P, t.id)
      other.stock = 99
      local e = ctx:edit_entity(other)
      assert.is_true(rawequal(t, e))
      assert.equal(10, e.stock)
      assert.equal(99, other.stock) -- the given table is left as it is
      assert.is_true(ctx:flush())
      assert.equal("10", sql_row(t.id).stock)
    end)

    it("returns a new tracked copy, with the entity's metatable, for a row the context does not track", function()
      local row = existing({ name = "untracked", stock = 1 })
      local loaded = ctx:get_by_id(P, row.id)
      local e = ctx:edit_entity(loaded)
      assert.is_false(rawequal(loaded, e))
      assert.equal(getmetatable(loaded), getmetatable(e))
      e.stock = 2
      assert.is_true(ctx:flush())
      assert.equal("2", sql_row(row.id).stock)
      assert.equal(1, loaded.stock)
    end)

    it("gives another context its own copy of a row this context tracks", function()
      local t = ctx:new_entity(P, { name = "own-copy" })
      assert.is_true(ctx:flush())
      local other = engine:context()
      local e = other:edit_entity(t)
      assert.is_false(rawequal(t, e))
      assert.is_true(rawequal(e, other:edit_entity(t)))
    end)

    it("finds the tracked row also when the id is given as a decimal string", function()
      local t = ctx:new_entity(P, { name = "string-id" })
      local copy = setmetatable({ id = tostring(t.id), name = "other" }, getmetatable(t))
      assert.is_true(rawequal(t, ctx:edit_entity(copy)))
    end)

    it("tracks a row whose id is above 2^63-1 by that id", function()
      local mt = getmetatable(ctx:get_by_id(P, existing({ name = "mt" }).id))
      local big = setmetatable({ id = "18446744073709551615", name = "big" }, mt)
      local e = ctx:edit_entity(big)
      assert.is_true(rawequal(e, ctx:edit_entity(setmetatable({ id = "18446744073709551615" }, mt))))
      ctx:delete_entity(big)
      assert.error_matches(function() ctx:edit_entity(big) end,
        "entity '" .. P .. "' id 18446744073709551615 is deleted in this context", 1, true)
    end)

    it("raises for a table without a valid id", function()
      local t = setmetatable({ name = "no-id" }, getmetatable(ctx:new_entity(P, { name = "x" })))
      assert.error_matches(function() ctx:edit_entity(t) end, "the entity table has no valid id", 1, true)
    end)
  end)

  describe("after a successful flush", function()
    it("writes a change made to a new_entity table after its insert was flushed", function()
      local t = ctx:new_entity(P, { name = "late", stock = 1 })
      assert.is_true(ctx:flush())
      t.stock = 7
      assert.is_true(ctx:flush())
      assert.equal("7", sql_row(t.id).stock)
      assert.equal(7, engine:context():get_by_id(P, t.id).stock)
    end)

    it("writes a change made to an edit_entity copy after a flush", function()
      local row = existing({ name = "edit-late", stock = 1 })
      local e = ctx:edit_entity(ctx:get_by_id(P, row.id))
      e.name = "edit-late-1"
      assert.is_true(ctx:flush())
      e.stock = 3
      assert.is_true(ctx:flush())
      local got = sql_row(row.id)
      assert.same({ "edit-late-1", "3" }, { got.name, got.stock })
    end)

    it("writes only the fields changed since the last flush", function()
      local t = ctx:new_entity(P, { name = "since", stock = 1 })
      assert.is_true(ctx:flush())
      assert.equal(1, engine:sql_exec("UPDATE `" .. P .. "` SET `stock` = 99 WHERE `id` = ?", { t.id }))
      t.name = "since-2"
      assert.is_true(ctx:flush())
      local got = sql_row(t.id)
      assert.same({ "since-2", "99" }, { got.name, got.stock })
    end)

    it("writes nothing for a table whose values equal, in canonical form, what the flush wrote", function()
      local t = ctx:new_entity(P, { name = "canon", stock = 1, price = "1", tags = { "b", "a" } })
      assert.is_true(ctx:flush())
      assert.equal(1, engine:sql_exec("UPDATE `" .. P .. "` SET `stock` = 5, `price` = 5, `tags` = 'c' WHERE `id` = ?",
        { t.id }))
      t.price = "1.00"
      t.tags = "a,b"
      assert.is_true(ctx:flush())
      local got = sql_row(t.id)
      assert.same({ "5", "5.00", "c" }, { got.stock, got.price, got.tags })
    end)

    it("takes a snapshot as the baseline: a set list changed in place is written by the next flush", function()
      local t = ctx:new_entity(P, { name = "in-place", tags = { "a" } })
      assert.is_true(ctx:flush())
      table.insert(t.tags, "c")
      assert.is_true(ctx:flush())
      assert.equal("a,c", sql_row(t.id).tags)
    end)

    it("turns a new_entity table into an edit: the next flush updates the row, it does not insert it again", function()
      local t = ctx:new_entity(P, { name = "once", code = "once-1" })
      assert.is_true(ctx:flush())
      t.code = "once-2"
      local ok, err = ctx:flush()
      assert.is_nil(err)
      assert.is_true(ok)
      assert.same({ { n = "1" } }, engine:sql_query("SELECT COUNT(*) AS n FROM `" .. P .. "` WHERE `name` = 'once'"))
      assert.equal("once-2", sql_row(t.id).code)
    end)

    it("fails the flush, naming the id, when the id of a tracked table was changed", function()
      local t = ctx:new_entity(P, { name = "moved" })
      assert.is_true(ctx:flush())
      local tracked_id = t.id
      t.id = tracked_id + 1000000
      local ok, err = ctx:flush()
      assert.is_nil(ok)
      assert.equal("validation", err.code)
      assert.equal(P, err.entity)
      assert.equal("id", err.field)
      assert.equal("the id of a tracked entity table cannot change (it is " .. tracked_id .. ")", err.message)
      t.id = tracked_id
      assert.is_true(ctx:flush())
    end)
  end)

  describe("after a failed flush", function()
    it("keeps tracking as before when nothing was written: the retry writes every change", function()
      local a = ctx:new_entity(P, { name = "fail-a", code = "fail-1" })
      assert.is_true(ctx:flush())
      a.stock = 5
      local b = ctx:new_entity(P, { name = "fail-b", code = "fail-1" }) -- duplicate unique value
      local ok, err = ctx:flush()
      assert.is_nil(ok)
      assert.equal(1062, err.code)
      assert.is_nil(sql_row(a.id).stock)
      assert.is_nil(sql_row(b.id))
      b.code = "fail-2"
      assert.is_true(ctx:flush())
      assert.equal("5", sql_row(a.id).stock)
      assert.equal("fail-2", sql_row(b.id).code)
    end)

    it("keeps a failed new row an insert: edit_entity still returns it and the retry inserts it", function()
      local a = ctx:new_entity(P, { name = "ins-a", code = "ins-1" })
      assert.is_true(ctx:flush())
      local b = ctx:new_entity(P, { name = "ins-b", code = "ins-1" })
      assert.is_nil(ctx:flush())
      assert.is_true(rawequal(b, ctx:edit_entity(b)))
      b.code = "ins-2"
      assert.is_true(ctx:flush())
      assert.equal("ins-b", sql_row(b.id).name)
      assert.equal("ins-1", sql_row(a.id).code)
    end)
  end)

  describe("delete_entity", function()
    it("replaces the tracked change of a row by the delete", function()
      local t = ctx:new_entity(P, { name = "del-change", stock = 1 })
      assert.is_true(ctx:flush())
      t.stock = 9
      ctx:delete_entity(t)
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(t.id))
      assert.is_nil(engine:context():get_by_id(P, t.id))
    end)

    it("deletes the row of a loaded copy when another table of it is tracked", function()
      local t = ctx:new_entity(P, { name = "del-copy" })
      assert.is_true(ctx:flush())
      ctx:delete_entity(ctx:get_by_id(P, t.id))
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(t.id))
    end)

    it("writes nothing for a new_entity row deleted before its insert was flushed", function()
      local t = ctx:new_entity(P, {}) -- missing its required name: an insert would fail validation
      ctx:delete_entity(t)
      local ok, err = ctx:flush()
      assert.is_nil(err)
      assert.is_true(ok)
      assert.is_nil(sql_row(t.id))
    end)

    it("stops tracking a row once the flush that deleted it succeeded", function()
      local t = ctx:new_entity(P, { name = "del-forget" })
      assert.is_true(ctx:flush())
      ctx:delete_entity(t)
      assert.is_true(ctx:flush())
      local again = ctx:edit_entity(t)
      assert.is_false(rawequal(t, again))
      assert.equal("beeorm.Context (0 tracked changes, 1 tracked rows)", tostring(ctx))
    end)

    it("keeps the delete tracked when the flush fails with nothing written", function()
      local t = ctx:new_entity(P, { name = "del-fail" })
      existing({ name = "del-blocker", code = "del-fail-1" })
      assert.is_true(ctx:flush())
      ctx:delete_entity(t)
      local dup = ctx:new_entity(P, { name = "del-dup", code = "del-fail-1" }) -- duplicate unique value
      local ok, err = ctx:flush()
      assert.is_nil(ok)
      assert.equal(1062, err.code)
      assert.equal("del-fail", sql_row(t.id).name)
      dup.code = "del-fail-2"
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(t.id))
      assert.equal("del-fail-2", sql_row(dup.id).code)
    end)

    it("makes edit_entity raise for the row, before and after a new row's delete", function()
      local t = ctx:new_entity(P, { name = "del-edit" })
      ctx:delete_entity(t)
      local msg = "entity '" .. P .. "' id " .. t.id .. " is deleted in this context"
      assert.error_matches(function() ctx:edit_entity(t) end, msg, 1, true)
      local row = existing({ name = "del-edit-2" })
      ctx:delete_entity(ctx:get_by_id(P, row.id))
      assert.error_matches(function() ctx:edit_entity(ctx:get_by_id(P, row.id)) end,
        "entity '" .. P .. "' id " .. row.id .. " is deleted in this context", 1, true)
    end)
  end)

  describe("clear_flush", function()
    it("forgets the tracked tables: a later change to one is not written", function()
      local t = ctx:new_entity(P, { name = "cleared", stock = 1 })
      assert.is_true(ctx:flush())
      ctx:clear_flush()
      t.stock = 2
      assert.is_true(ctx:flush())
      assert.equal("1", sql_row(t.id).stock)
    end)

    it("forgets the identity map: edit_entity returns a new copy", function()
      local t = ctx:new_entity(P, { name = "cleared-map" })
      assert.is_true(ctx:flush())
      ctx:clear_flush()
      assert.is_false(rawequal(t, ctx:edit_entity(t)))
      assert.equal("beeorm.Context (0 tracked changes, 1 tracked rows)", tostring(ctx))
    end)
  end)

  describe("flush order", function()
    it("feeds the changes in the order the rows were first tracked", function()
      local a = existing({ name = "order-a", code = "order-1" })
      local first = ctx:edit_entity(ctx:get_by_id(P, a.id)) -- a is tracked before b
      local b = ctx:new_entity(P, { name = "order-b", code = "order-1" }) -- takes a's code
      local again = ctx:edit_entity(ctx:get_by_id(P, a.id))
      again.code = "order-2" -- so a's update must run before b's insert
      assert.is_true(rawequal(first, again))
      local ok, err = ctx:flush()
      assert.is_nil(err)
      assert.is_true(ok)
      assert.equal("order-2", sql_row(a.id).code)
      assert.equal("order-1", sql_row(b.id).code)
    end)
  end)

  describe("tostring", function()
    it("counts the rows the next flush writes and the rows tracked", function()
      local function shows(changes, rows)
        assert.equal(string.format("beeorm.Context (%d tracked changes, %d tracked rows)", changes, rows), tostring(ctx))
      end
      shows(0, 0)
      local t = ctx:new_entity(P, { name = "count", stock = 1 })
      shows(1, 1)
      assert.is_true(ctx:flush())
      shows(0, 1)
      t.stock = 1.0 -- the same value in canonical form
      shows(0, 1)
      t.stock = 2
      shows(1, 1)
      local row = existing({ name = "count-2" })
      local e = ctx:edit_entity(ctx:get_by_id(P, row.id))
      shows(1, 2)
      ctx:delete_entity(e)
      shows(2, 2)
      ctx:delete_entity(ctx:new_entity(P, { name = "count-3" })) -- writes nothing
      shows(2, 3)
      assert.is_true(ctx:flush())
      shows(0, 1)
      ctx:clear_flush()
      shows(0, 0)
    end)
  end)

  describe("flush_async", function()
    before_each(function()
      au.consume(engine:context()) -- what an earlier test left queued
    end)

    it("keeps the tables tracked: a change after the flush is queued and applied", function()
      local t = ctx:new_entity(P, { name = "async", stock = 1 })
      assert.is_true(ctx:flush_async())
      t.stock = 4
      assert.is_true(ctx:flush_async())
      assert.equal(4, engine:context():get_by_id(P, t.id).stock)
      assert.equal(2, au.consume(ctx).events)
      assert.equal("4", sql_row(t.id).stock)
    end)

    it("queues nothing when a tracked table is flushed again unchanged", function()
      local t = ctx:new_entity(P, { name = "async-same" })
      assert.is_true(ctx:flush_async())
      assert.is_true(ctx:flush_async())
      assert.equal(1, au.consume(ctx).events)
      assert.equal("async-same", sql_row(t.id).name)
    end)
  end)
end)

describe("a flush whose write stands but whose cache update failed", function()
  local engine, ctx, pid, dir

  setup(function()
    servers.need()
    dir = os.tmpname()
    os.remove(dir)
    local port
    pid, port = au.start_redis_anywhere(dir) -- the cache's Redis, stopped by the test
    local r = beeorm.registry()
    assert(r:register_mysql(servers.mysql))
    assert(r:register_redis(servers.redis, REDIS_DB))
    assert(r:register_redis("127.0.0.1:" .. port, "cache"))
    assert(r:register_entity({ name = DEAD, redis_cache = "cache",
      fields = { { "name", "string", length = 50 }, { "stock", "int", bits = 32 } } }))
    engine = assert(r:validate())
    util.drop(engine, { DEAD })
    assert.equal(1, engine:sync_schema())
    ctx = engine:context()
  end)

  teardown(function()
    ctx, engine = nil, nil
    collectgarbage()
    if pid then
      au.kill(pid, "KILL")
      au.wait_exit(pid, 5)
    end
    if dir then os.execute("rm -rf " .. util.shell_quote(dir)) end
  end)

  local function sql_row(id)
    return assert(engine:sql_query("SELECT * FROM `" .. DEAD .. "` WHERE `id` = ?", { id }))[1]
  end

  it("returns the error and moves the baselines: the row is not inserted twice, a later change is written",
    function()
      local t = ctx:new_entity(DEAD, { name = "stands", stock = 1 })
      au.kill(pid, "KILL")
      assert.is_true(au.wait_exit(pid, 5))
      pid = nil
      local ok, err = ctx:flush()
      assert.is_nil(ok)
      assert.equal("redis", err.code)
      assert.matches("committed", err.message)
      assert.equal("stands", sql_row(t.id).name)
      assert.equal("beeorm.Context (0 tracked changes, 1 tracked rows)", tostring(ctx))
      t.stock = 2
      ok, err = ctx:flush() -- an update (a second insert would fail with 1062)
      assert.is_nil(ok)
      assert.equal("redis", err.code)
      assert.matches("committed", err.message)
      assert.equal("2", sql_row(t.id).stock)
    end)
end)
