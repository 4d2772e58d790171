local beeorm = require("beeorm")

-- A registry with the pools the definitions below refer to (no connection is made
-- until validate, and these specs fail before connecting).
local function registry()
  local r = beeorm.registry()
  assert(r:register_mysql("app:pw@tcp(127.0.0.1:1)/app"))
  assert(r:register_redis("127.0.0.1:1", 0))
  return r
end

local function entity(over)
  local def = { name = "item", fields = { { "title", "string" } } }
  for k, v in pairs(over) do def[k] = v end
  return def
end

local function fields(...)
  return entity({ fields = { ... } })
end

-- { description, definition, field (or false), exact message }
local cases = {
  { "a name that is not a string", { name = 5, fields = {} }, false,
    "option 'name' must be a string, got number" },
  { "a missing name", { fields = {} }, false,
    "an entity needs a name (option 'name')" },
  { "a name with a space", { name = "my item" }, false,
    "bad entity name 'my item' (use letters, digits and '_', not starting with a digit, at most 64)" },
  { "a name starting with a digit", { name = "1item" }, false,
    "bad entity name '1item' (use letters, digits and '_', not starting with a digit, at most 64)" },
  { "a name longer than 64", { name = string.rep("x", 65) }, false,
    "bad entity name '" .. string.rep("x", 64) .. "...' (use letters, digits and '_', not starting with a digit, at most 64)" },
  { "an unknown entity option", entity({ cache = true }), false,
    "unknown option 'cache' (allowed: table, mysql, redis_cache, local_cache, cache_all)" },
  { "a table name with a quote", entity({ table = "it`em" }), false,
    "bad table name 'it`em' (use letters, digits and '_', not starting with a digit, at most 64)" },
  { "a reserved table name", entity({ table = "_beeorm_applied" }), false,
    "table names starting with '_beeorm' are reserved" },
  { "local_cache of 0", entity({ local_cache = 0 }), false,
    "option 'local_cache' must be true, false or a capacity from 1 to 1000000000, got 0" },
  { "local_cache as a string", entity({ local_cache = "big" }), false,
    "option 'local_cache' must be true, false or a capacity from 1 to 1000000000, got string" },
  { "cache_all as a number", entity({ cache_all = 1 }), false,
    "option 'cache_all' must be a boolean, got integer" },
  { "redis_cache as a number", entity({ redis_cache = 3 }), false,
    "option 'redis_cache' must be true, false or a Redis pool name, got integer" },
  { "fields that is not a table", entity({ fields = "title" }), false,
    "option 'fields' must be a table of field specs, got string" },
  { "a field spec that is not a table", fields("title"), false,
    "fields[1] must be a table like { \"name\", \"type\", ... }, got string" },
  { "a field without a type", fields({ "title" }), "title",
    "fields[1] needs a name and a type as its first two values" },
  { "an unknown type", fields({ "title", "strng" }), "title",
    "unknown type 'strng' (use int, bool, float, decimal, string, text, bytes, date, datetime, enum, set, ref)" },
  { "id redefined", fields({ "id", "int" }), "id",
    "field 'id' is implicit (an unsigned 64-bit primary key); do not define it" },
  { "a field name with a dash", fields({ "first-name", "string" }), "first-name",
    "bad field name 'first-name' (use letters, digits and '_', not starting with a digit, at most 64)" },
  { "a duplicate field", fields({ "a", "int" }, { "a", "string" }), "a",
    "field 'a' is defined twice" },
  { "an unknown field option", fields({ "title", "string", lenght = 10 }), "title",
    "unknown option 'lenght' for a string field (allowed: required, unique, length)" },
  { "bits on a string", fields({ "title", "string", bits = 8 }), "title",
    "unknown option 'bits' for a string field (allowed: required, unique, length)" },
  { "bad bits", fields({ "n", "int", bits = 12 }), "n",
    "bits must be 8, 16, 24, 32 or 64, got 12" },
  { "bits as a string", fields({ "n", "int", bits = "32" }), "n",
    "option 'bits' must be an integer, got string" },
  { "unsigned as a string", fields({ "n", "int", unsigned = "yes" }), "n",
    "option 'unsigned' must be a boolean, got string" },
  { "required as a number", fields({ "n", "int", required = 1 }), "n",
    "option 'required' must be a boolean, got integer" },
  { "string length 0", fields({ "s", "string", length = 0 }), "s",
    "length must be 1 to 16383 characters, got 0" },
  { "string length too large", fields({ "s", "string", length = 20000 }), "s",
    "length must be 1 to 16383 characters, got 20000" },
  { "decimal precision 0", fields({ "p", "decimal", precision = 0 }), "p",
    "precision must be 1 to 65, got 0" },
  { "decimal precision 66", fields({ "p", "decimal", precision = 66 }), "p",
    "precision must be 1 to 65, got 66" },
  { "decimal scale 31", fields({ "p", "decimal", precision = 40, scale = 31 }), "p",
    "scale must be 0 to 30, got 31" },
  { "decimal scale above precision", fields({ "p", "decimal", precision = 4, scale = 5 }), "p",
    "scale 5 is larger than precision 4" },
  { "an enum without values", fields({ "e", "enum" }), "e",
    "an enum field needs values" },
  { "a set with empty values", fields({ "s", "set", values = {} }), "s",
    "values must not be empty strings" },
  { "an enum with a duplicate value", fields({ "e", "enum", values = { "a", "b", "a" } }), "e",
    "value 'a' is listed twice" },
  { "a set value with a comma", fields({ "s", "set", values = { "a,b" } }), "s",
    "set value 'a,b' must not contain ','" },
  { "an enum value that is not a string", fields({ "e", "enum", values = { "a", 2 } }), "e",
    "values[2] must be a string, got number" },
  { "values on a string field", fields({ "s", "string", values = { "a" } }), "s",
    "unknown option 'values' for a string field (allowed: required, unique, length)" },
  { "a set with 65 values", (function()
      local v = {}
      for i = 1, 65 do v[i] = "v" .. i end
      return fields({ "s", "set", values = v })
    end)(), "s", "a set field has at most 64 values" },
  { "a ref without entity", fields({ "parent", "ref" }), "parent",
    "a ref field needs option 'entity'" },
  { "a unique text field", fields({ "t", "text", unique = true }), "t",
    "a text field cannot be unique or indexed" },
  { "unique as a number", fields({ "t", "string", unique = 1 }), "t",
    "option 'unique' must be true or an index name, got integer" },
  { "a unique index on an unknown field", entity({ unique = { u = { "title", "nope" } } }), false,
    "index 'u' names unknown field 'nope'" },
  { "an index on an unknown field", entity({ indexes = { by_x = { "x" } } }), false,
    "index 'by_x' names unknown field 'x'" },
  { "an index without fields", entity({ indexes = { empty = {} } }), false,
    "index 'empty' has no fields" },
  { "an index listing a field twice", entity({ indexes = { twice = { "title", "title" } } }), false,
    "index 'twice' lists field 'title' twice" },
  { "an index with an unknown option", entity({ indexes = { ix = { "title", cahced = true } } }), false,
    "unknown option 'cahced' for index 'ix' (allowed: cached)" },
  { "cached on a unique index", entity({ unique = { u = { "title", cached = true } } }), false,
    "unique index 'u' is always cached; option 'cached' is for non-unique indexes" },
  { "an index name used twice", entity({ fields = { { "title", "string", unique = "dup" } }, indexes = { dup = { "title" } } }), false,
    "index 'dup' is defined twice" },
  { "an index over a text field", entity({ fields = { { "body", "text" } }, indexes = { ix = { "body" } } }), "body",
    "index 'ix' cannot include text field 'body'" },
  { "an index name with a space", entity({ indexes = { ["by x"] = { "title" } } }), false,
    "bad index name 'by x' (use letters, digits and '_', not starting with a digit, at most 64)" },
  { "an option given a function", entity({ table = print }), false,
    "option 'table' must not be a function" },
}

describe("entity definitions", function()
  it("accept every field type and option of README, Lua API", function()
    local r = registry()
    assert.is_true(r:register_entity {
      name = "category", local_cache = 10000, redis_cache = true, cache_all = true,
      fields = {
        { "name", "string", length = 100, required = true, unique = "name" },
        { "parent", "ref", entity = "category" },
        { "price", "decimal", precision = 10, scale = 2 },
        { "status", "enum", values = { "active", "blocked" }, required = true },
        { "tags", "set", values = { "a", "b", "c" } },
        { "stock", "int", bits = 32, unsigned = true },
        { "weight", "float" }, { "ok", "bool" }, { "bio", "text" }, { "raw", "bytes" },
        { "born", "date" }, { "seen", "datetime" },
      },
      unique = { name_parent = { "name", "parent" } },
      indexes = { by_status = { "status", cached = true } },
    })
  end)

  it("have at least 30 bad cases below", function()
    assert.is_true(#cases >= 30)
  end)

  for _, case in ipairs(cases) do
    it("reject " .. case[1] .. " with an error naming it", function()
      local r = registry()
      local ok, err = r:register_entity(case[2])
      assert.is_nil(ok)
      assert.equal("definition", err.code)
      assert.equal(case[4], err.message)
      assert.equal(case[3] or nil, err.field)
      assert.is_false(err.temporary)
      -- and validate reports the same error, so ignoring the return loses nothing
      local engine, verr = r:validate()
      assert.is_nil(engine)
      assert.equal(case[4], verr.message)
    end)
  end

  describe("checked at validate", function()
    local function validate_error(defs, extra)
      local r = registry()
      if extra then extra(r) end
      for _, d in ipairs(defs) do assert(r:register_entity(d)) end
      local engine, err = r:validate()
      assert.is_nil(engine)
      assert.equal("definition", err.code)
      return err
    end

    it("reject a ref to an unknown entity, naming entity and field", function()
      local err = validate_error({ fields({ "owner", "ref", entity = "user" }) })
      assert.equal("item", err.entity)
      assert.equal("owner", err.field)
      assert.equal("ref to unknown entity 'user'", err.message)
      assert.equal("beeorm error [definition] item.owner: ref to unknown entity 'user'", tostring(err))
    end)

    it("reject an unknown MySQL pool", function()
      local err = validate_error({ entity({ mysql = "logs" }) })
      assert.equal("unknown MySQL pool 'logs' (option 'mysql')", err.message)
    end)

    it("reject an unknown Redis pool", function()
      local err = validate_error({ entity({ redis_cache = "cache" }) })
      assert.equal("unknown Redis pool 'cache' (option 'redis_cache')", err.message)
    end)

    it("reject two entities on one table", function()
      local err = validate_error({ { name = "a", table = "things" }, { name = "b", table = "things" } })
      assert.equal("table 'things' of pool 'default' is used by entities 'a' and 'b'", err.message)
    end)

    it("reject an entity registered twice at registration", function()
      local r = registry()
      assert(r:register_entity({ name = "a" }))
      local ok, err = r:register_entity({ name = "a" })
      assert.is_nil(ok)
      assert.equal("entity 'a' is registered twice", err.message)
    end)
  end)

  it("raise when the definition is not a table", function()
    assert.has_error(function() registry():register_entity("item") end,
      "bad argument #1 to 'register_entity' (table expected, got string)")
  end)
end)
