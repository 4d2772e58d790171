-- The ORM layer through the Lua API (README, Lua API, G6, G7): tracked changes, sync flush,
-- every loader, canonical values, copies, argument errors and validation — run once
-- per cache configuration of the same entity shape.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")

local REDIS_DB = 2

local configs = {
  { key = "nc", label = "without caches", options = {} },
  { key = "rc", label = "with the Redis cache", options = { redis_cache = true } },
  {
    key = "lc",
    label = "with the local and Redis caches, cache_all, a cached index and a cached ref",
    options = { local_cache = 100, redis_cache = true, cache_all = true },
    cached = true,
  },
}

local function definitions(cfg)
  local parent = { name = "orm_" .. cfg.key .. "_parent", fields = { { "name", "string", length = 50 } } }
  local item = {
    name = "orm_" .. cfg.key .. "_item",
    fields = {
      { "name", "string", length = 50, required = true },
      { "code", "string", length = 20, unique = true },
      { "parent", "ref", entity = parent.name, cached = cfg.cached },
      { "status", "enum", values = { "active", "blocked" }, required = true },
      { "stock", "int", bits = 32 },
      { "price", "decimal", precision = 10, scale = 2 },
      { "tags", "set", values = { "a", "b", "c" } },
      { "ok", "bool" },
      { "weight", "float" },
      { "seen", "datetime" },
      { "big", "int", bits = 64, unsigned = true },
    },
    unique = { name_parent = { "name", "parent" } },
    indexes = { by_status = { "status", cached = cfg.cached } },
  }
  for k, v in pairs(cfg.options) do
    parent[k] = v
    item[k] = v
  end
  return parent, item
end

-- Ids of the rows an SQL query returns (as integers), in its order.
local function sql_ids(engine, sql, args)
  local out = {}
  for i, row in ipairs(assert(engine:sql_query(sql, args))) do out[i] = math.tointeger(tonumber(row.id)) end
  return out
end

-- Ids of loaded rows, sorted (for checks of content, not order).
local function sorted_ids(rows)
  local ids = util.ids(rows)
  table.sort(ids)
  return ids
end

for _, cfg in ipairs(configs) do
  describe("ORM " .. cfg.label, function()
    local P, I = "orm_" .. cfg.key .. "_parent", "orm_" .. cfg.key .. "_item"
    local engine, ctx

    -- A new tracked item with the required fields filled in.
    local function new_item(c, values)
      values.status = values.status or "active"
      return c:new_entity(I, values)
    end

    local function sql_row(id)
      return assert(engine:sql_query("SELECT * FROM `" .. I .. "` WHERE `id` = ?", { id }))[1]
    end

    setup(function()
      servers.need()
      local parent_def, item_def = definitions(cfg)
      engine = util.engine(REDIS_DB, { parent_def, item_def })
      util.drop(engine, { I, P })
      util.flushdb(REDIS_DB)
      assert.equal(2, engine:sync_schema())
    end)

    before_each(function()
      ctx = engine:context() -- a test that fails a flush leaves its changes tracked in its own context
    end)

    teardown(function()
      ctx = nil
      engine = nil
      collectgarbage()
    end)

    it("assigns distinct ids at once and inserts every new entity of one flush", function()
      local items, ids, seen = {}, {}, {}
      for i = 1, 5 do
        items[i] = new_item(ctx, { name = "ins" .. i, stock = i })
        ids[i] = items[i].id
        assert.equal("integer", math.type(ids[i]))
        assert.is_true(ids[i] > 0)
        assert.is_nil(seen[ids[i]], "id handed out twice: " .. ids[i])
        seen[ids[i]] = true
      end
      local in_list = "(?,?,?,?,?)"
      assert.same({ { n = "0" } },
        engine:sql_query("SELECT COUNT(*) AS n FROM `" .. I .. "` WHERE `id` IN " .. in_list, ids))
      assert.is_true(ctx:flush())
      local rows = assert(engine:sql_query("SELECT `id`, `name`, `stock` FROM `" .. I .. "` WHERE `id` IN "
        .. in_list .. " ORDER BY `id`", ids))
      table.sort(ids)
      assert.equal(5, #rows)
      for i, row in ipairs(rows) do
        assert.equal(tostring(ids[i]), row.id)
        local item
        for _, t in ipairs(items) do if t.id == ids[i] then item = t end end
        assert.equal(item.name, row.name)
        assert.equal(tostring(item.stock), row.stock)
      end
    end)

    it("flushes assignments made to a new entity table after new_entity", function()
      local t = new_item(ctx, { name = "late" })
      t.stock = 42
      t.code = "late-code"
      assert.is_true(ctx:flush())
      local row = sql_row(t.id)
      assert.equal("42", row.stock)
      assert.equal("late-code", row.code)
    end)

    it("forgets tracked changes on clear_flush", function()
      local t = new_item(ctx, { name = "cleared" })
      ctx:clear_flush()
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(t.id))
      assert.is_nil(ctx:get_by_id(I, t.id))
    end)

    it("get_by_id returns the row, nil for an id with no row, and nil after a delete", function()
      local t = new_item(ctx, { name = "byid", stock = 7 })
      assert.is_true(ctx:flush())
      local got = ctx:get_by_id(I, t.id)
      assert.equal(t.id, got.id)
      assert.equal("byid", got.name)
      assert.equal(7, got.stock)
      assert.equal(t.id, ctx:get_by_id(I, tostring(t.id)).id) -- ids may be decimal strings
      -- an id that was handed out but never flushed has no row
      local other = engine:context()
      local unflushed = new_item(other, { name = "never" }).id
      assert.is_nil(ctx:get_by_id(I, unflushed))
      assert.is_nil(ctx:get_by_id(I, unflushed)) -- also when the miss is cached
      ctx:delete_entity(got)
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(t.id))
      assert.is_nil(ctx:get_by_id(I, t.id))
      assert.is_nil(engine:context():get_by_id(I, t.id))
    end)

    it("get_by_ids returns rows in input order, keeps duplicates and puts false where missing", function()
      local a = new_item(ctx, { name = "ids-a" })
      local b = new_item(ctx, { name = "ids-b" })
      local c = new_item(ctx, { name = "ids-c" })
      local gone = new_item(ctx, { name = "ids-gone" })
      assert.is_true(ctx:flush())
      ctx:delete_entity(gone)
      assert.is_true(ctx:flush())
      local rows = ctx:get_by_ids(I, { c.id, gone.id, a.id, c.id, b.id })
      assert.equal(5, #rows)
      assert.same({ c.id, false, a.id, c.id, b.id }, util.ids(rows))
      assert.same({ "ids-c", "ids-a", "ids-c", "ids-b" }, { rows[1].name, rows[3].name, rows[4].name, rows[5].name })
      assert.are_not.equal(rows[1], rows[4]) -- each result is its own table
      assert.same({}, ctx:get_by_ids(I, {}))
    end)

    it("edit_entity writes only the columns that changed", function()
      local t = new_item(ctx, { name = "edit", stock = 1, price = "1" })
      assert.is_true(ctx:flush())
      local loaded = ctx:get_by_id(I, t.id)
      local e = ctx:edit_entity(loaded)
      assert.are_not.equal(loaded, e)
      assert.equal(1, engine:sql_exec("UPDATE `" .. I .. "` SET `stock` = 99 WHERE `id` = ?", { t.id }))
      e.name = "edited"
      assert.is_true(ctx:flush())
      local row = sql_row(t.id)
      assert.equal("edited", row.name)
      assert.equal("99", row.stock) -- not overwritten with the loaded 1
      assert.equal("edit", loaded.name) -- the loaded table is not the tracked copy
      local again = ctx:get_by_id(I, t.id)
      assert.equal("edited", again.name) -- caches hold what the flush committed
      assert.is_true(engine:clear_cache(I, { t.id })) -- and forget what plain SQL changed behind them
      assert.equal(99, ctx:get_by_id(I, t.id).stock)
    end)

    it("edit_entity writes nothing when the values are unchanged in canonical form", function()
      local t = new_item(ctx, { name = "same", stock = 1, price = "1" })
      assert.is_true(ctx:flush())
      local e = ctx:edit_entity(ctx:get_by_id(I, t.id))
      assert.equal(1, engine:sql_exec("UPDATE `" .. I .. "` SET `stock` = 5, `price` = 5 WHERE `id` = ?", { t.id }))
      e.stock = 1      -- as loaded
      e.price = "1.0"  -- "1.00" as loaded
      assert.is_true(ctx:flush())
      local row = sql_row(t.id)
      assert.equal("5", row.stock)
      assert.equal("5.00", row.price)
    end)

    it("get_by_unique_index finds a row by a one-field unique index, nil when no row has the value", function()
      local t = new_item(ctx, { name = "uniq", code = "u-1" })
      assert.is_true(ctx:flush())
      assert.equal(t.id, ctx:get_by_unique_index(I, "code", "u-1").id)
      assert.equal("uniq", ctx:get_by_unique_index(I, "code", "u-1").name)
      assert.is_nil(ctx:get_by_unique_index(I, "code", "u-none"))
      local e = ctx:edit_entity(ctx:get_by_id(I, t.id))
      e.code = "u-2"
      assert.is_true(ctx:flush())
      assert.is_nil(ctx:get_by_unique_index(I, "code", "u-1"))
      assert.equal(t.id, ctx:get_by_unique_index(I, "code", "u-2").id)
    end)

    it("get_by_unique_index finds a row by a composite unique index", function()
      local p1 = ctx:new_entity(P, { name = "comp-p1" })
      local p2 = ctx:new_entity(P, { name = "comp-p2" })
      local p3 = ctx:new_entity(P, { name = "comp-p3" })
      local a = new_item(ctx, { name = "comp", parent = p1 })
      local b = new_item(ctx, { name = "comp", parent = p2.id })
      assert.is_true(ctx:flush())
      assert.equal(a.id, ctx:get_by_unique_index(I, "name_parent", "comp", p1.id).id)
      assert.equal(b.id, ctx:get_by_unique_index(I, "name_parent", "comp", p2.id).id)
      assert.is_nil(ctx:get_by_unique_index(I, "name_parent", "comp", p3.id))
      assert.is_nil(ctx:get_by_unique_index(I, "name_parent", "other", p1.id))
    end)

    it("finds no row by a unique value that is NULL in that row, and follows a value set and cleared", function()
      local t = new_item(ctx, { name = "nullcode" })
      assert.is_true(ctx:flush())
      assert.is_nil(ctx:get_by_unique_index(I, "code", ""))
      assert.is_nil(ctx:get_by_unique_index(I, "code", "k-1"))
      local e = ctx:edit_entity(ctx:get_by_id(I, t.id))
      e.code = "k-1"
      assert.is_true(ctx:flush())
      assert.equal(t.id, ctx:get_by_unique_index(I, "code", "k-1").id)
      e = ctx:edit_entity(ctx:get_by_id(I, t.id))
      e.code = nil
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(t.id).code)
      assert.is_nil(ctx:get_by_unique_index(I, "code", "k-1"))
    end)

    it("finds nothing by a unique index when a lookup value is NULL (rows may share NULLs)", function()
      local a = new_item(ctx, { name = "dupnull" })
      local b = new_item(ctx, { name = "dupnull" })
      assert.is_true(ctx:flush())
      assert.equal(2, #sql_ids(engine, "SELECT `id` FROM `" .. I .. "` WHERE `name` = 'dupnull'"))
      assert.is_nil(ctx:get_by_unique_index(I, "name_parent", "dupnull", nil),
        "ambiguous: rows " .. a.id .. " and " .. b.id .. " both have ('dupnull', NULL)")
      assert.is_nil(ctx:get_by_unique_index(I, "code", nil), "every row with a NULL code matches")
    end)

    it("get_by_reference returns the rows pointing at a parent, given an id or an entity table", function()
      local p = ctx:new_entity(P, { name = "ref-p" })
      local lonely = ctx:new_entity(P, { name = "ref-lonely" })
      local r = {}
      for i = 1, 4 do r[i] = new_item(ctx, { name = "ref" .. i }) end
      assert.is_true(ctx:flush())
      -- point them at p in another order than their ids
      for _, i in ipairs({ 4, 1, 3 }) do ctx:edit_entity(ctx:get_by_id(I, r[i].id)).parent = p.id end
      assert.is_true(ctx:flush())
      local expected = { r[1].id, r[3].id, r[4].id }
      assert.same(expected, sorted_ids(ctx:get_by_reference(I, "parent", p.id)))
      local parent = ctx:get_by_id(P, p.id)
      assert.same(expected, sorted_ids(ctx:get_by_reference(I, "parent", parent)))
      assert.same(expected, sorted_ids(ctx:get_by_reference(I, "parent", tostring(p.id))))
      local names = {}
      for _, row in ipairs(ctx:get_by_reference(I, "parent", p)) do
        assert.equal(p.id, row.parent)
        names[#names + 1] = row.name
      end
      table.sort(names)
      assert.same({ "ref1", "ref3", "ref4" }, names)
      assert.same({}, ctx:get_by_reference(I, "parent", lonely.id))
    end)

    it("get_by_index returns the rows with the index values", function()
      local b1 = new_item(ctx, { name = "idx1", status = "blocked" })
      local b2 = new_item(ctx, { name = "idx2", status = "blocked" })
      new_item(ctx, { name = "idx3", status = "active" })
      assert.is_true(ctx:flush())
      local expected = sql_ids(engine, "SELECT `id` FROM `" .. I .. "` WHERE `status` = 'blocked' ORDER BY `id`")
      local got = ctx:get_by_index(I, "by_status", "blocked")
      assert.same(expected, sorted_ids(got))
      assert.is_true(#got >= 2)
      local has = {}
      for _, row in ipairs(got) do
        assert.equal("blocked", row.status)
        has[row.id] = true
      end
      assert.is_true(has[b1.id] and has[b2.id])
      assert.same(sql_ids(engine, "SELECT `id` FROM `" .. I .. "` WHERE `status` = 'active' ORDER BY `id`"),
        sorted_ids(ctx:get_by_index(I, "by_status", "active")))
    end)

    it("get_all returns every row, also after inserts and deletes", function()
      if cfg.options.cache_all then
      end
      local function all_in_mysql() return sql_ids(engine, "SELECT `id` FROM `" .. I .. "` ORDER BY `id`") end
      local first = new_item(ctx, { name = "all1" })
      assert.is_true(ctx:flush())
      assert.same(all_in_mysql(), sorted_ids(ctx:get_all(I)))
      local second = new_item(ctx, { name = "all2" })
      assert.is_true(ctx:flush())
      local with_second = all_in_mysql()
      assert.equal(second.id, with_second[#with_second])
      assert.same(with_second, sorted_ids(ctx:get_all(I)))
      ctx:delete_entity(first)
      assert.is_true(ctx:flush())
      assert.same(all_in_mysql(), sorted_ids(ctx:get_all(I)))
    end)

    it("returns list results ordered by id (search: in its SQL order) whatever cache layer each row is in",
      function()
        local p = ctx:new_entity(P, { name = "order-p" })
        local r, ids = {}, {}
        for i = 1, 4 do
          r[i] = new_item(ctx, { name = "order" .. i, parent = p, status = "blocked" })
          ids[i] = r[i].id
        end
        assert.is_true(ctx:flush())
        -- A reader with an empty local cache; r1 and r2 only in MySQL, r3 in Redis, r4 in
        -- the reader's local cache (each layer as far as the configuration has it).
        local function reader()
          local c = util.engine(REDIS_DB, { definitions(cfg) }):context()
          if cfg.options.redis_cache then
            for i = 1, 2 do
              local keys = util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. I .. "}:r:" .. r[i].id)
              assert.equal(1, #keys)
              util.redis_cli(REDIS_DB, "DEL", keys[1])
            end
          end
          assert.equal(r[4].id, c:get_by_id(I, r[4].id).id)
          return c
        end
        local function same_order(expected, rows, what)
          local got = util.ids(rows)
          assert.same(expected, got, what .. ": expected ids " .. table.concat(expected, ",") .. ", got "
            .. table.concat(got, ","))
        end
        same_order(ids, reader():get_by_reference(I, "parent", p.id), "get_by_reference")
        same_order(sql_ids(engine, "SELECT `id` FROM `" .. I .. "` WHERE `status` = 'blocked' ORDER BY `id`"),
          reader():get_by_index(I, "by_status", "blocked"), "get_by_index")
        same_order(sql_ids(engine, "SELECT `id` FROM `" .. I .. "` ORDER BY `id`"), reader():get_all(I), "get_all")
        same_order(ids, reader():search(I, "`name` LIKE ? ORDER BY `id`", { "order_" }), "search")
        same_order({ ids[2], ids[1], ids[4], ids[3] },
          reader():search(I, "`name` LIKE ? ORDER BY `name` IN ('order1', 'order2') DESC, `id` DESC", { "order_" }),
          "search in SQL order")
      end)

    it("accepts the values of a unique or index lookup as one table", function()
      local p = ctx:new_entity(P, { name = "tbl-p" })
      local t = new_item(ctx, { name = "tbl", parent = p, status = "blocked" })
      assert.is_true(ctx:flush())
      local got = ctx:get_by_unique_index(I, "name_parent", { "tbl", p.id })
      assert.is_table(got, "get_by_unique_index(I, 'name_parent', { 'tbl', p.id }) found nothing")
      assert.equal(t.id, got.id)
      assert.same(sorted_ids(ctx:get_by_index(I, "by_status", "blocked")),
        sorted_ids(ctx:get_by_index(I, "by_status", { "blocked" })))
    end)

    it("search returns the rows matching a condition with bound args, page by page", function()
      -- (rows are compared as sets here; their order is the subject of the test above)
      local r = {}
      for i = 1, 5 do r[i] = new_item(ctx, { name = "srch", code = "s-" .. i, stock = 500 + i }) end
      assert.is_true(ctx:flush())
      local where = "`name` = ? ORDER BY `id`"
      assert.same({ r[1].id, r[2].id, r[3].id, r[4].id, r[5].id }, sorted_ids(ctx:search(I, where, { "srch" })))
      assert.same({ r[3].id, r[4].id }, sorted_ids(ctx:search(I, where, { "srch" }, { page = 2, size = 2 })))
      assert.same({ r[5].id }, sorted_ids(ctx:search(I, where, { "srch" }, { page = 3, size = 2 })))
      assert.same({}, ctx:search(I, where, { "srch" }, { page = 4, size = 2 }))
      assert.same({ r[4].id, r[5].id },
        sorted_ids(ctx:search(I, "`name` = ? AND `stock` >= ? ORDER BY `id`", { "srch", 504 })))
      assert.same({ r[3].id, r[4].id, r[5].id }, -- the page of the SQL's order
        sorted_ids(ctx:search(I, "`name` = ? ORDER BY `stock` DESC", { "srch" }, { page = 1, size = 3 })))
      assert.same({}, ctx:search(I, "`name` = ?", { "it's ' OR 1=1 -- " }))
      local rows = ctx:search(I, "`code` = ?", { "s-2" })
      assert.equal(1, #rows)
      assert.equal("srch", rows[1].name)
      assert.equal(502, rows[1].stock)
    end)

    it("returns values in canonical form after a flush and a load", function()
      local t = new_item(ctx, {
        name = "canon", price = "7.5", tags = { "c", "a" }, ok = true, weight = 0.25,
        seen = "2024-02-29", big = "18446744073709551615", stock = -5,
      })
      local f = new_item(ctx, { name = "canon-false", ok = false, tags = "", price = 3 })
      assert.is_true(ctx:flush())
      local row = sql_row(t.id)
      assert.same({ "7.50", "a,c", "1", "0.25", "2024-02-29 00:00:00", "18446744073709551615", "-5" },
        { row.price, row.tags, row.ok, row.weight, row.seen, row.big, row.stock })
      if cfg.options.redis_cache then -- so that a fresh engine decodes what MySQL returns
        for _, id in ipairs({ t.id, f.id }) do
          local keys = util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. I .. "}:r:" .. id)
          assert.equal(1, #keys)
          util.redis_cli(REDIS_DB, "DEL", keys[1])
        end
      end
      local fresh = util.engine(REDIS_DB, { definitions(cfg) })
      for _, reader in ipairs({ { "a fresh engine", fresh:context() }, { "this engine", ctx } }) do
        local where, c = reader[1], reader[2]
        for _ = 1, 2 do -- the first load may fill a cache, the second reads it
          local got = c:get_by_id(I, t.id)
          assert.equal("7.50", got.price, where)
          assert.equal("a,c", got.tags, where)
          assert.is_true(got.ok, where)
          assert.equal(0.25, got.weight, where)
          assert.equal("float", math.type(got.weight), where)
          assert.equal("2024-02-29 00:00:00", got.seen, where)
          assert.equal("18446744073709551615", got.big, where)
          assert.equal(-5, got.stock, where)
          assert.equal("integer", math.type(got.stock), where)
          assert.is_nil(got.code, where)
          assert.is_nil(got.parent, where)
          local g2 = c:get_by_id(I, f.id)
          assert.is_false(g2.ok, where)
          assert.equal("", g2.tags, where)
          assert.equal("3.00", g2.price, where)
        end
      end
    end)

    it("hands out copies: changing a returned table changes nothing a later load returns", function()
      local t = new_item(ctx, { name = "copy", stock = 1, tags = { "a" } })
      assert.is_true(ctx:flush())
      t.name = "changed after flush"
      local a = ctx:get_by_id(I, t.id)
      assert.equal("copy", a.name)
      a.name = "mutated"
      a.stock = 1000
      a.extra = true
      local listed = ctx:get_by_ids(I, { t.id })[1]
      listed.name = "mutated too"
      for _, row in ipairs(ctx:get_all(I)) do row.name = "mutated all" end
      local b = ctx:get_by_id(I, t.id)
      assert.are_not.equal(a, b)
      assert.equal("copy", b.name)
      assert.equal(1, b.stock)
      assert.is_nil(b.extra)
      assert.equal("copy", engine:context():get_by_id(I, t.id).name)
    end)

    it("gives every entity table of an entity the same metatable naming the entity", function()
      local t = new_item(ctx, { name = "meta" })
      local p = ctx:new_entity(P, { name = "meta-p" })
      assert.is_true(ctx:flush())
      local mt = getmetatable(t)
      assert.equal(I, mt.__beeorm)
      assert.equal(mt, getmetatable(ctx:get_by_id(I, t.id)))
      assert.equal(mt, getmetatable(ctx:get_by_ids(I, { t.id })[1]))
      assert.equal(mt, getmetatable(ctx:get_all(I)[1]))
      assert.equal(mt, getmetatable(ctx:edit_entity(ctx:get_by_id(I, t.id))))
      assert.equal(mt, getmetatable(engine:context():get_by_id(I, t.id)))
      ctx:clear_flush()
      assert.equal(P, getmetatable(p).__beeorm)
      assert.are_not.equal(mt, getmetatable(p))
      assert.equal(getmetatable(p), getmetatable(ctx:get_by_id(P, p.id)))
    end)

    it("raises on bad arguments", function()
      local t = new_item(ctx, { name = "badargs" })
      assert.is_true(ctx:flush())
      local function raises(pattern, fn) assert.error_matches(fn, pattern, 1, true) end
      raises("unknown entity 'orm_nope'", function() ctx:new_entity("orm_nope", {}) end)
      raises("unknown entity 'orm_nope'", function() ctx:get_by_id("orm_nope", 1) end)
      raises("unknown entity 'orm_nope'", function() ctx:get_all("orm_nope") end)
      raises("entity '" .. I .. "' has no field 'nope'", function() ctx:new_entity(I, { name = "x", nope = 1 }) end)
      raises("not an entity table of this engine", function() ctx:edit_entity({ id = t.id, name = "x" }) end)
      raises("not an entity table of this engine", function() ctx:delete_entity({ id = t.id }) end)
      raises("ids are 1 or more", function() ctx:get_by_id(I, 0) end)
      raises("ids are 1 or more", function() ctx:get_by_id(I, -3) end)
      raises("expected an id", function() ctx:get_by_id(I, "abc") end)
      raises("expected an id", function() ctx:get_by_id(I, "0") end)
      raises("expected an id", function() ctx:get_by_id(I, 1.5) end)
      raises("ids[2] is not an id", function() ctx:get_by_ids(I, { t.id, 0 }) end)
      raises("has no unique index 'nope'", function() ctx:get_by_unique_index(I, "nope", "x") end)
      raises("has no index 'nope'", function() ctx:get_by_index(I, "nope", "x") end)
      raises("has no ref field 'name'", function() ctx:get_by_reference(I, "name", 1) end)
      -- nothing was tracked by the calls that raised
      assert.is_true(ctx:flush())
      assert.equal("badargs", sql_row(t.id).name)
    end)

    it("fails a flush with an invalid value before writing anything, naming entity and field", function()
      local to_edit = new_item(ctx, { name = "to-edit" })
      assert.is_true(ctx:flush())
      local c = engine:context()
      local good = new_item(c, { name = "valid" })
      local edited = c:edit_entity(ctx:get_by_id(I, to_edit.id))
      edited.stock = 12
      local bad = new_item(c, { name = "invalid", status = "nope" })
      local ok, err = c:flush()
      assert.is_nil(ok)
      assert.is_true(beeorm.is_error(err))
      assert.equal("validation", err.code)
      assert.equal(I, err.entity)
      assert.equal("status", err.field)
      assert.is_false(err.temporary)
      assert.matches(I .. "%.status", tostring(err))
      assert.is_nil(sql_row(good.id))
      assert.is_nil(sql_row(bad.id))
      assert.is_nil(sql_row(edited.id).stock)
      if cfg.options.redis_cache then
        assert.same({}, util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. I .. "}:r:" .. good.id))
      end
      assert.is_nil(ctx:get_by_id(I, good.id)) -- and now cached as not found
      -- the changes stay tracked: fixing the value lets the same flush through
      bad.status = "blocked"
      assert.is_true(c:flush())
      assert.equal("valid", sql_row(good.id).name)
      assert.equal("blocked", sql_row(bad.id).status)
      assert.equal("12", sql_row(edited.id).stock)
      assert.equal("blocked", ctx:get_by_id(I, bad.id).status)
      assert.equal("valid", ctx:get_by_id(I, good.id).name)
    end)
  end)
end
