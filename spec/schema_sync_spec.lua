local beeorm = require("beeorm")
local servers = require("support.servers")

-- Every field type and option of README, Lua API on one entity.
local function all_types(name)
  return {
    name = name,
    fields = {
      { "i8", "int", bits = 8 }, { "u8", "int", bits = 8, unsigned = true },
      { "i16", "int", bits = 16 }, { "u16", "int", bits = 16, unsigned = true },
      { "i24", "int", bits = 24 }, { "u24", "int", bits = 24, unsigned = true },
      { "i32", "int" }, { "u32", "int", unsigned = true },
      { "i64", "int", bits = 64 }, { "u64", "int", bits = 64, unsigned = true },
      { "flag", "bool", required = true },
      { "ratio", "float" },
      { "price", "decimal", precision = 10, scale = 2 },
      { "whole", "decimal", precision = 65, scale = 0 },
      { "title", "string", length = 5, required = true, unique = true },
      { "body", "text" }, { "raw", "bytes" },
      { "born", "date" }, { "seen", "datetime" },
      { "status", "enum", values = { "active", "it's", "back\\slash" }, required = true },
      { "tags", "set", values = { "a", "b", "c" } },
      { "parent", "ref", entity = name },
    },
    unique = { title_parent = { "title", "parent" } },
    indexes = { by_status = { "status", "born", cached = true } },
  }
end

local function engine_for(...)
  local r = beeorm.registry()
  assert(r:register_mysql(servers.mysql))
  assert(r:register_redis(servers.redis, 0))
  for _, def in ipairs({ ... }) do assert(r:register_entity(def)) end
  return assert(r:validate())
end

local function drop(engine, ...)
  for _, t in ipairs({ ... }) do assert(engine:sql_exec("DROP TABLE IF EXISTS `" .. t .. "`")) end
end

local function show_create(engine, t)
  return assert(engine:sql_query("SHOW CREATE TABLE `" .. t .. "`"))[1]["Create Table"]
end

describe("schema sync against MariaDB", function()
  setup(servers.need)

  it("creates a column of the right type for every field type", function()
    local engine = engine_for(all_types("sch_types"))
    drop(engine, "sch_types")
    local alters = assert(engine:schema_alters())
    assert.equal(1, #alters)
    assert.is_true(alters[1].safe)
    assert.equal("default", alters[1].pool)
    assert.equal("sch_types", alters[1].table)
    assert.matches("^CREATE TABLE `sch_types`", alters[1].sql)
    assert.equal(1, engine:sync_schema())
    local ddl = show_create(engine, "sch_types")
    for _, line in ipairs({
      "`id` bigint(20) unsigned NOT NULL,",
      "`i8` tinyint(4) DEFAULT NULL,", "`u8` tinyint(3) unsigned DEFAULT NULL,",
      "`i16` smallint(6) DEFAULT NULL,", "`u16` smallint(5) unsigned DEFAULT NULL,",
      "`i24` mediumint(9) DEFAULT NULL,", "`u24` mediumint(8) unsigned DEFAULT NULL,",
      "`i32` int(11) DEFAULT NULL,", "`u32` int(10) unsigned DEFAULT NULL,",
      "`i64` bigint(20) DEFAULT NULL,", "`u64` bigint(20) unsigned DEFAULT NULL,",
      "`flag` tinyint(1) NOT NULL,", "`ratio` double DEFAULT NULL,",
      "`price` decimal(10,2) DEFAULT NULL,", "`whole` decimal(65,0) DEFAULT NULL,",
      "`title` varchar(5) NOT NULL,", "`body` text DEFAULT NULL,", "`raw` blob DEFAULT NULL,",
      "`born` date DEFAULT NULL,", "`seen` datetime DEFAULT NULL,",
      "`status` enum('active','it''s','back\\\\slash') NOT NULL,",
      "`tags` set('a','b','c') DEFAULT NULL,", "`parent` bigint(20) unsigned DEFAULT NULL,",
      "PRIMARY KEY (`id`),", "UNIQUE KEY `title_parent` (`title`,`parent`),",
      "KEY `by_status` (`status`,`born`),", "UNIQUE KEY `title` (`title`),", "KEY `parent` (`parent`)",
      ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    }) do
      assert.is_truthy(ddl:find(line, 1, true), "missing: " .. line .. "\nin:\n" .. ddl)
    end
  end)

  it("finds nothing to change after a sync, also in a new engine", function()
    local engine = engine_for(all_types("sch_twice"))
    drop(engine, "sch_twice")
    assert.equal(1, engine:sync_schema())
    assert.same({}, engine:schema_alters())
    assert.equal(0, engine:sync_schema())
    assert.same({}, engine_for(all_types("sch_twice")):schema_alters())
  end)

  it("round-trips a value at each bound through its column unchanged", function()
    local engine = engine_for(all_types("sch_bounds"))
    drop(engine, "sch_bounds")
    engine:sync_schema()
    local cases = {
      i8 = { -128, 127 }, u8 = { 0, 255 }, i16 = { -32768, 32767 }, u16 = { 0, 65535 },
      i24 = { -8388608, 8388607 }, u24 = { 0, 16777215 },
      i32 = { -2147483648, 2147483647 }, u32 = { 0, 4294967295 },
      i64 = { math.mininteger, math.maxinteger }, u64 = { 0, "18446744073709551615" },
      ratio = { -1.7976931348623157e308, 2.2250738585072014e-308, 0.1 },
      price = { "-99999999.99", "99999999.99", "0.00" },
      whole = { "-" .. string.rep("9", 65), string.rep("9", 65) },
      title = { "", "ééééé", "😀😀😀😀😀" },
      body = { string.rep("ü", 32767) }, raw = { "\0\255\1'\\", string.rep("\255", 65535) },
      born = { "1000-01-01", "9999-12-31", "2024-02-29" },
      seen = { "1000-01-01 00:00:00", "9999-12-31 23:59:59" },
      status = { "active", "it's", "back\\slash" }, tags = { "", "a,b,c" },
      flag = { false, true }, parent = { 1, "18446744073709551615" },
    }
    local id = 0
    for field, values in pairs(cases) do
      for _, value in ipairs(values) do
        id = id + 1
        local row = { title = "t" .. id, flag = true, status = "active" }
        row[field] = value
        local canonical = assert(engine:check_values("sch_bounds", row))
        local v = canonical[field]
        local cols, args = { "id" }, { id }
        for _, f in ipairs({ "title", "flag", "status", field }) do
          if not cols[f] then
            cols[f] = true
            cols[#cols + 1] = "`" .. f .. "`"
            local x = canonical[f]
            if type(x) == "boolean" then x = x and 1 or 0 end
            args[#args + 1] = x
          end
        end
        if type(v) == "boolean" then v = v and 1 or 0 end
        assert(engine:sql_exec(("INSERT INTO sch_bounds (%s) VALUES (%s)"):format(table.concat(cols, ", "),
          string.rep("?", #cols, ", ")), args))
        local got = assert(engine:sql_query("SELECT `" .. field .. "` AS v FROM sch_bounds WHERE id = ?", { id }))[1].v
        if type(v) == "number" and math.type(v) == "float" then
          assert.equal(v, tonumber(got), field)
        else
          assert.equal(tostring(v), got, field .. " = " .. tostring(value))
        end
      end
    end
  end)

  describe("after a definition changes", function()
    local before = {
      name = "sch_change",
      fields = {
        { "name", "string", length = 50, required = true },
        { "qty", "int", bits = 32 },
        { "code", "string", length = 20 },
        { "kind", "enum", values = { "a", "b" } },
        { "note", "string", length = 100 },
      },
      indexes = { by_qty = { "qty" } },
    }
    local after = {
      name = "sch_change",
      fields = {
        { "name", "string", length = 100, required = true }, -- widened: safe
        { "qty", "int", bits = 16 },                          -- narrowed: unsafe
        { "kind", "enum", values = { "a", "b", "c" } },       -- member appended: safe
        { "note", "string", length = 100, required = true },  -- NULL -> NOT NULL: unsafe
        { "added", "date" },                                  -- new column: safe
      },                                                      -- code dropped: unsafe
      indexes = { by_qty = { "qty", "name" }, by_kind = { "kind" } }, -- changed and new: safe
    }

    local function setup_table()
      local engine = engine_for(before)
      drop(engine, "sch_change")
      engine:sync_schema()
      assert(engine:sql_exec("INSERT INTO sch_change (id, name, qty, code, kind) VALUES (1, 'x', 70000, 'c', 'b')"))
      return engine_for(after)
    end

    it("lists exactly the expected alters with the right safe flags", function()
      local engine = setup_table()
      local alters = assert(engine:schema_alters())
      local got = {}
      for i, a in ipairs(alters) do got[i] = { a.sql, a.safe } end
      assert.same({
        { "ALTER TABLE `sch_change` DROP INDEX `by_qty`", true },
        { "ALTER TABLE `sch_change` ADD COLUMN `added` date DEFAULT NULL AFTER `note`", true },
        { "ALTER TABLE `sch_change` MODIFY COLUMN `name` varchar(100) CHARACTER SET utf8mb4 NOT NULL", true },
        { "ALTER TABLE `sch_change` MODIFY COLUMN `qty` smallint DEFAULT NULL", false },
        { "ALTER TABLE `sch_change` MODIFY COLUMN `kind` enum('a','b','c') CHARACTER SET utf8mb4 DEFAULT NULL", true },
        { "ALTER TABLE `sch_change` MODIFY COLUMN `note` varchar(100) CHARACTER SET utf8mb4 NOT NULL", false },
        { "ALTER TABLE `sch_change` DROP COLUMN `code`", false },
        { "ALTER TABLE `sch_change` ADD INDEX `by_kind` (`kind`)", true },
        { "ALTER TABLE `sch_change` ADD INDEX `by_qty` (`qty`,`name`)", true },
      }, got)
    end)

    it("applies only the safe ones by default, and the rest with unsafe = true", function()
      local engine = setup_table()
      assert.equal(6, engine:sync_schema())
      local left = assert(engine:schema_alters())
      assert.equal(3, #left)
      for _, a in ipairs(left) do assert.is_false(a.safe) end
      -- the data survived the safe changes
      assert.equal("70000", engine:sql_query("SELECT qty FROM sch_change WHERE id = 1")[1].qty)
      local applied, err = engine:sync_schema({ unsafe = true })
      -- narrowing 70000 into smallint fails in strict mode: nothing is silently truncated
      assert.is_nil(applied)
      assert.equal(1264, err.code)
      assert.is_false(err.temporary)
      assert(engine:sql_exec("UPDATE sch_change SET qty = 7, note = 'n' WHERE id = 1"))
      assert.equal(3, engine:sync_schema({ unsafe = true }))
      assert.same({}, engine:schema_alters())
    end)

    it("treats every change to an empty table as safe", function()
      local engine = setup_table()
      assert(engine:sql_exec("DELETE FROM sch_change"))
      for _, a in ipairs(assert(engine:schema_alters())) do
        if not a.sql:find("DROP COLUMN", 1, true) then assert.is_true(a.safe, a.sql) end
      end
    end)
  end)

  it("leaves tables that no entity defines alone", function()
    local engine = engine_for({ name = "sch_lonely" })
    assert(engine:sql_exec("CREATE TABLE IF NOT EXISTS not_ours (x int)"))
    drop(engine, "sch_lonely")
    local alters = assert(engine:schema_alters())
    assert.equal(1, #alters)
    assert.equal("sch_lonely", alters[1].table)
  end)

  it("reports an unreachable pool as a temporary error", function()
    local r = beeorm.registry()
    assert(r:register_mysql(servers.mysql))
    assert(r:register_entity({ name = "sch_down" }))
    local engine = assert(r:validate())
    local p = servers.mysql_parts()
    assert.is_truthy(engine)
    -- a second engine whose pool points at a closed port cannot even validate
    local r2 = beeorm.registry()
    assert(r2:register_mysql(("%s:%s@tcp(127.0.0.1:1)/%s"):format(p.user, p.password, p.database)))
    local e2, err = r2:validate()
    assert.is_nil(e2)
    assert.is_true(err.temporary)
  end)
end)

describe("plain SQL", function()
  setup(servers.need)

  local engine
  before_each(function()
    engine = engine_for()
    drop(engine, "sql_plain")
    assert(engine:sql_exec("CREATE TABLE sql_plain (id int, s varchar(50), b blob)"))
  end)

  it("binds arguments through the client library's escaping", function()
    local evil = "x'); DROP TABLE sql_plain; -- \\"
    assert.equal(2, engine:sql_exec("INSERT INTO sql_plain VALUES (?, ?, ?), (?, '?', NULL)",
      { 1, evil, "\0\255", 2 }))
    local rows = assert(engine:sql_query("SELECT * FROM sql_plain ORDER BY id"))
    assert.equal(evil, rows[1].s)
    assert.equal("\0\255", rows[1].b)
    assert.equal("?", rows[2].s)
    assert.is_nil(rows[2].b) -- SQL NULL is absent from the row
  end)

  it("takes nil arguments with an explicit n", function()
    assert.equal(1, engine:sql_exec("INSERT INTO sql_plain VALUES (?, ?, ?)", { 3, nil, nil, n = 3 }))
    assert.is_nil(engine:sql_query("SELECT s FROM sql_plain")[1].s)
  end)

  it("raises when placeholders and arguments differ in number", function()
    assert.has_error(function() engine:sql_exec("SELECT ?, ?", { 1 }) end,
      "the statement has 2 placeholders but 1 argument were given")
  end)

  it("raises on an unknown pool", function()
    assert.has_error(function() engine:sql_query("SELECT 1", nil, "nope") end, "unknown MySQL pool 'nope'")
  end)

  it("returns a MySQL error as nil, err", function()
    local rows, err = engine:sql_query("SELECT * FROM no_such_table")
    assert.is_nil(rows)
    assert.equal(1146, err.code)
    assert.is_false(err.temporary)
  end)
end)
