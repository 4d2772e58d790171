local beeorm = require("beeorm")
local servers = require("support.servers")

-- Value validation through the Lua API (docs/guarantees.md G7): engine:check_values(entity, values)
-- returns the canonical values, or nil, err naming the entity and the field.

local ITEM = {
  name = "item",
  fields = {
    { "i8", "int", bits = 8 }, { "u8", "int", bits = 8, unsigned = true },
    { "i16", "int", bits = 16 }, { "u16", "int", bits = 16, unsigned = true },
    { "i24", "int", bits = 24 }, { "u24", "int", bits = 24, unsigned = true },
    { "i32", "int", bits = 32 }, { "u32", "int", bits = 32, unsigned = true },
    { "i64", "int", bits = 64 }, { "u64", "int", bits = 64, unsigned = true },
    { "flag", "bool" },
    { "ratio", "float" },
    { "price", "decimal", precision = 10, scale = 2 },
    { "whole", "decimal", precision = 5, scale = 0 },
    { "code", "string", length = 5 },
    { "body", "text" },
    { "raw", "bytes" },
    { "born", "date" },
    { "seen", "datetime" },
    { "status", "enum", values = { "active", "blocked" } },
    { "tags", "set", values = { "a", "b", "c" } },
    { "parent", "ref", entity = "item" },
    { "name", "string", required = true },
  },
}

local engine

-- The values table for check_values: the required field filled in, plus `over`.
local function values(over)
  local t = { name = "x" }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

local function bad(over)
  local result, err = engine:check_values("item", values(over))
  assert.is_nil(result)
  assert.is_true(beeorm.is_error(err))
  return err
end

local function good(over)
  local result, err = engine:check_values("item", values(over))
  assert.is_nil(err)
  assert.is_table(result)
  return result
end

local MULTI5 = "ąęółż"   -- 5 characters, 10 bytes
local MULTI6 = "ąęółżź"  -- 6 characters
local EMOJI5 = "😀😀😀😀😀" -- 5 characters, 20 bytes

local function oor(value, kind, bits, lo, hi)
  return ("%s is out of range for %s %d-bit int (%s to %s)"):format(value, kind, bits, lo, hi)
end

local NOT_DATE = "'%s' is not a valid date (expected YYYY-MM-DD)"
local NOT_DATETIME = "'%s' is not a valid datetime (expected YYYY-MM-DD hh:mm:ss)"

-- { field, bad value, exact message }
local cases = {
  -- int, every width and signedness, one past each end
  { "i8", 128, oor(128, "signed", 8, -128, 127) },
  { "i8", -129, oor(-129, "signed", 8, -128, 127) },
  { "u8", 256, oor(256, "unsigned", 8, 0, 255) },
  { "u8", -1, oor(-1, "unsigned", 8, 0, 255) },
  { "i16", 32768, oor(32768, "signed", 16, -32768, 32767) },
  { "i16", -32769, oor(-32769, "signed", 16, -32768, 32767) },
  { "u16", 65536, oor(65536, "unsigned", 16, 0, 65535) },
  { "u16", -1, oor(-1, "unsigned", 16, 0, 65535) },
  { "i24", 8388608, oor(8388608, "signed", 24, -8388608, 8388607) },
  { "i24", -8388609, oor(-8388609, "signed", 24, -8388608, 8388607) },
  { "u24", 16777216, oor(16777216, "unsigned", 24, 0, 16777215) },
  { "i32", 2147483648, oor(2147483648, "signed", 32, -2147483648, 2147483647) },
  { "i32", -2147483649, oor(-2147483649, "signed", 32, -2147483648, 2147483647) },
  { "u32", 4294967296, oor(4294967296, "unsigned", 32, 0, 4294967295) },
  { "u32", -1, oor(-1, "unsigned", 32, 0, 4294967295) },
  { "u64", -1, oor(-1, "unsigned", 64, 0, "18446744073709551615") },
  { "u64", "18446744073709551616", oor("18446744073709551616", "unsigned", 64, 0, "18446744073709551615") },
  { "u64", "99999999999999999999999", oor("99999999999999999999999", "unsigned", 64, 0, "18446744073709551615") },
  { "u64", 2.0 ^ 64, oor("1.8446744073709552e+19", "unsigned", 64, 0, "18446744073709551615") },
  { "i64", 2.0 ^ 63, oor("9.2233720368547758e+18", "signed", 64, "-9223372036854775808", "9223372036854775807") },
  -- Lua-specific: floats, strings and other types into int
  { "i32", 1.5, "1.5 is not an integer" },
  { "i8", -0.25, "-0.25 is not an integer" },
  { "i32", math.huge, "is not a finite number" },
  { "i32", 0 / 0, "is not a finite number" },
  { "i64", "5", "expected an integer, got string" },
  { "u64", "0123", "expected an integer, got string" },
  { "u64", "-5", "expected an integer, got string" },
  { "u64", " 5", "expected an integer, got string" },
  { "i32", true, "expected an integer, got boolean" },
  -- ref
  { "parent", 0, "0 is not a valid id (ids are 1 or more)" },
  { "parent", -5, "-5 is not a valid id (ids are 1 or more)" },
  { "parent", -1e19, "-1e+19 is not a valid id (ids are 1 or more)" },
  { "parent", 2.5, "2.5 is not an integer" },
  { "parent", "abc", "expected a positive integer id, got string" },
  { "parent", { id = 0 }, "0 is not a valid id (ids are 1 or more)" },
  { "parent", { id = "x" }, "expected a positive integer id, got string" },
  { "parent", false, "expected a positive integer id, got boolean" },
  -- bool
  { "flag", 1, "expected a boolean, got integer" },
  { "flag", 0.0, "expected a boolean, got float" },
  { "flag", "true", "expected a boolean, got string" },
  { "flag", {}, "expected a bool value, got table" },
  -- float
  { "ratio", math.huge, "is not a finite number" },
  { "ratio", -math.huge, "is not a finite number" },
  { "ratio", 0 / 0, "is not a finite number" },
  { "ratio", "1.5", "expected a number, got string" },
  { "ratio", false, "expected a number, got boolean" },
  { "ratio", print, "expected a float value, got function" },
  -- decimal(10,2) and decimal(5,0)
  { "price", "123456789.1", "'123456789.1' has too many digits before the point (at most 8)" },
  { "price", 1000000000, "'1000000000' has too many digits before the point (at most 8)" },
  { "price", "1.234", "'1.234' has too many digits after the point (at most 2)" },
  { "price", 1.5, "expected a decimal string or an integer, got float (floats are inexact)" },
  { "price", true, "expected a decimal string or an integer, got boolean" },
  { "price", "abc", "'abc' is not a decimal number" },
  { "price", "1.", "'1.' is not a decimal number" },
  { "price", ".5", "'.5' is not a decimal number" },
  { "price", "+1", "'+1' is not a decimal number" },
  { "price", "1e3", "'1e3' is not a decimal number" },
  { "price", " 1", "' 1' is not a decimal number" },
  { "price", "-", "'-' is not a decimal number" },
  { "price", "", "'' is not a decimal number" },
  { "whole", "1.5", "'1.5' has too many digits after the point (at most 0)" },
  { "whole", 100000, "'100000' has too many digits before the point (at most 5)" },
  { "whole", "-100000", "'-100000' has too many digits before the point (at most 5)" },
  -- string(5)
  { "code", "abcdef", "is too long: 6 characters, at most 5" },
  { "code", MULTI6, "is too long: 6 characters, at most 5" },
  { "code", EMOJI5 .. "!", "is too long: 6 characters, at most 5" },
  { "code", "ab\xff", "is not valid UTF-8 (bad byte at offset 2)" },
  { "code", "\xc0\x80", "is not valid UTF-8 (bad byte at offset 0)" },
  { "code", "\xed\xa0\x80", "is not valid UTF-8 (bad byte at offset 0)" },
  { "code", "a\xe2\x82", "is not valid UTF-8 (bad byte at offset 1)" },
  { "code", "\xf4\x90\x80\x80", "is not valid UTF-8 (bad byte at offset 0)" },
  { "code", 5, "expected a string, got integer" },
  { "code", {}, "expected a string value, got table" },
  -- text and bytes
  { "body", string.rep("x", 65536), "is too long: 65536 bytes, at most 65535" },
  { "body", "ok\x80", "is not valid UTF-8 (bad byte at offset 2)" },
  { "body", 1, "expected a string, got integer" },
  { "raw", string.rep("\0", 65536), "is too long: 65536 bytes, at most 65535" },
  { "raw", true, "expected a string, got boolean" },
  -- date
  { "born", "2023-02-29", NOT_DATE:format("2023-02-29") },
  { "born", "1900-02-29", NOT_DATE:format("1900-02-29") },
  { "born", "0999-12-31", NOT_DATE:format("0999-12-31") },
  { "born", "0000-00-00", NOT_DATE:format("0000-00-00") },
  { "born", "2024-13-01", NOT_DATE:format("2024-13-01") },
  { "born", "2024-04-31", NOT_DATE:format("2024-04-31") },
  { "born", "2024-01-00", NOT_DATE:format("2024-01-00") },
  { "born", "2024-1-01", NOT_DATE:format("2024-1-01") },
  { "born", "2024-01-01 00:00:00", NOT_DATE:format("2024-01-01 00:00:00") },
  { "born", "2024/01/01", NOT_DATE:format("2024/01/01") },
  { "born", 20240101, "expected a date string YYYY-MM-DD, got integer" },
  -- datetime
  { "seen", "2024-01-01 24:00:00", NOT_DATETIME:format("2024-01-01 24:00:00") },
  { "seen", "2024-01-01 23:60:00", NOT_DATETIME:format("2024-01-01 23:60:00") },
  { "seen", "2024-01-01 23:59:60", NOT_DATETIME:format("2024-01-01 23:59:60") },
  { "seen", "2024-01-01T00:00:00", NOT_DATETIME:format("2024-01-01T00:00:00") },
  { "seen", "2023-02-29 00:00:00", NOT_DATETIME:format("2023-02-29 00:00:00") },
  { "seen", "2024-01-01 00:00", NOT_DATETIME:format("2024-01-01 00:00") },
  { "seen", "2024-01-01 00:00:00.5", NOT_DATETIME:format("2024-01-01 00:00:00.5") },
  { "seen", "2024-02-30", NOT_DATETIME:format("2024-02-30") },
  { "seen", "bad\nvalue", NOT_DATETIME:format("bad?value") },
  { "seen", 0, "expected a datetime string YYYY-MM-DD hh:mm:ss, got integer" },
  -- enum
  { "status", "Active", "'Active' is not one of: active, blocked" },
  { "status", "", "'' is not one of: active, blocked" },
  { "status", string.rep("x", 50), "'" .. string.rep("x", 40) .. "' is not one of: active, blocked" },
  { "status", 1, "expected a string, got integer" },
  -- set
  { "tags", "a,d", "'d' is not one of: a, b, c" },
  { "tags", "A", "'A' is not one of: a, b, c" },
  { "tags", "a,,b", "has an empty member" },
  { "tags", "a,", "has an empty member" },
  { "tags", "a,b,a", "'a' is given twice" },
  { "tags", { "a", "a" }, "'a' is given twice" },
  { "tags", { "a", 2 }, "set members must be strings (item 2 is not)" },
  { "tags", { "x" }, "'x' is not one of: a, b, c" },
  { "tags", 5, "expected a string, got integer" },
  -- required
  { "name", false, "expected a string, got boolean" },
}

describe("value validation", function()
  setup(function()
    servers.need()
    local r = beeorm.registry()
    assert(r:register_mysql(servers.mysql))
    assert(r:register_redis(servers.redis, 0))
    assert(r:register_entity(ITEM))
    engine = assert(r:validate())
  end)

  teardown(function()
    if engine then engine:close() end
  end)

  it("has at least 60 bad cases below", function()
    assert.is_true(#cases >= 60)
  end)

  for _, case in ipairs(cases) do
    local field, value, message = case[1], case[2], case[3]
    local shown = type(value) == "string" and ("%q"):format(#value > 30 and value:sub(1, 30) .. "..." or value)
      or tostring(value)
    it("rejects " .. shown .. " (" .. type(value) .. ") for " .. field, function()
      local err = bad({ [field] = value })
      assert.equal("validation", err.code)
      assert.equal("item", err.entity)
      assert.equal(field, err.field)
      assert.equal(message, err.message)
      assert.is_false(err.temporary)
      assert.equal("beeorm error [validation] item." .. field .. ": " .. message, tostring(err))
    end)
  end

  it("rejects a missing required field", function()
    local result, err = engine:check_values("item", { code = "abc" })
    assert.is_nil(result)
    assert.equal("validation", err.code)
    assert.equal("item", err.entity)
    assert.equal("name", err.field)
    assert.equal("is required", err.message)
    assert.is_false(err.temporary)
    assert.equal("beeorm error [validation] item.name: is required", tostring(err))
  end)

  it("names the type with the right article for a table into an int or enum field", function()
    assert.equal("expected an int value, got table", bad({ i32 = {} }).message)
    assert.equal("expected an enum value, got table", bad({ status = {} }).message)
  end)

  it("fails the whole table when one field is invalid", function()
    local result, err = engine:check_values("item", values({
      i8 = 1, price = "2.50", code = "ok", born = "2024-01-01", seen = 1.5 --[[ bad ]], tags = "a",
    }))
    assert.is_nil(result)
    assert.equal("seen", err.field)
    assert.equal("expected a datetime string YYYY-MM-DD hh:mm:ss, got float", err.message)
  end)

  it("rejects a set given as a table that is not a list", function()
    assert.equal("set members must be given as a list of strings", bad({ tags = { a = true } }).message)
  end)

  it("rejects a ref given as a table without an id", function()
    local err = bad({ parent = { name = "unsaved" } })
    assert.equal("parent", err.field)
    assert.equal("the referenced entity table has no id", err.message)
  end)

  it("checks the id when one is given", function()
    local err = bad({ id = {} })
    assert.equal("id", err.field)
    assert.equal("id must be a positive integer (or a decimal string up to 18446744073709551615)", err.message)
    assert.equal("id", bad({ id = 0 }).field)
    assert.equal("id", bad({ id = "18446744073709551616" }).field)
    assert.equal(7, good(values({ id = 7 })).id)
    assert.equal("18446744073709551615", good(values({ id = "18446744073709551615" })).id)
  end)

  it("leaves the input table unchanged", function()
    local input = values({ price = "7.5", tags = { "c", "a" } })
    good(input)
    assert.equal("7.5", input.price)
    assert.same({ "c", "a" }, input.tags)
  end)

  describe("accepts good values and returns them canonical", function()
    local function canon(field, value, expected)
      local result = good({ [field] = value })
      assert.equal(expected, result[field])
      assert.equal(math.type(expected), math.type(result[field]))
      return result
    end

    it("at both ends of every int width", function()
      local bounds = {
        i8 = { -128, 127 }, u8 = { 0, 255 },
        i16 = { -32768, 32767 }, u16 = { 0, 65535 },
        i24 = { -8388608, 8388607 }, u24 = { 0, 16777215 },
        i32 = { -2147483648, 2147483647 }, u32 = { 0, 4294967295 },
        i64 = { math.mininteger, math.maxinteger }, u64 = { 0, math.maxinteger },
      }
      for field, b in pairs(bounds) do
        canon(field, b[1], b[1])
        canon(field, b[2], b[2])
      end
    end)

    it("an integral float into int as an integer", function()
      canon("i32", 5.0, 5)
      canon("i8", -128.0, -128)
      canon("i64", -2.0 ^ 63, math.mininteger)
      canon("parent", 7.0, 7)
    end)

    it("unsigned 64-bit values above 2^63-1 as digit strings", function()
      canon("u64", "18446744073709551615", "18446744073709551615")
      canon("u64", "9223372036854775808", "9223372036854775808")
      canon("u64", 2.0 ^ 63, "9223372036854775808")
      canon("parent", "18446744073709551615", "18446744073709551615")
    end)

    it("unsigned 64-bit digit strings that fit an integer as integers", function()
      canon("u64", "9223372036854775807", math.maxinteger)
      canon("u64", "42", 42)
      canon("u64", "0", 0)
    end)

    it("booleans", function()
      canon("flag", true, true)
      canon("flag", false, false)
    end)

    it("floats, and integers as floats", function()
      canon("ratio", 1.5, 1.5)
      canon("ratio", 1, 1.0)
      canon("ratio", -1e308, -1e308)
    end)

    it("decimals with exactly the scale's digits", function()
      canon("price", "7.5", "7.50")
      canon("price", 7, "7.00")
      canon("price", "007.1", "7.10")
      canon("price", "-0", "0.00")
      canon("price", "-0.00", "0.00")
      canon("price", "99999999.99", "99999999.99")
      canon("price", "-99999999.99", "-99999999.99")
      canon("price", "00000000099999999.99", "99999999.99")
      canon("whole", "99999", "99999")
      canon("whole", -99999, "-99999")
      canon("whole", "0", "0")
    end)

    it("strings at exactly their length in characters", function()
      canon("code", "abcde", "abcde")
      canon("code", MULTI5, MULTI5)
      canon("code", EMOJI5, EMOJI5)
      canon("code", "", "")
    end)

    it("text and bytes up to 65535 bytes", function()
      local long = string.rep("y", 65535)
      canon("body", long, long)
      canon("raw", string.rep("\0", 65535), string.rep("\0", 65535))
      canon("raw", "\xff\0\xc0", "\xff\0\xc0")
    end)

    it("dates at the ends of MySQL's range and on leap days", function()
      canon("born", "1000-01-01", "1000-01-01")
      canon("born", "9999-12-31", "9999-12-31")
      canon("born", "2024-02-29", "2024-02-29")
      canon("born", "2000-02-29", "2000-02-29")
    end)

    it("datetimes, a date alone meaning midnight", function()
      canon("seen", "2024-02-29", "2024-02-29 00:00:00")
      canon("seen", "9999-12-31 23:59:59", "9999-12-31 23:59:59")
      canon("seen", "1000-01-01 00:00:00", "1000-01-01 00:00:00")
    end)

    it("enum members", function()
      canon("status", "blocked", "blocked")
    end)

    it("sets in definition order, given as text or as a list", function()
      canon("tags", "c,a", "a,c")
      canon("tags", { "c", "a" }, "a,c")
      canon("tags", "a,b,c", "a,b,c")
      canon("tags", { "b" }, "b")
      canon("tags", "", "")
      canon("tags", {}, "")
    end)

    it("refs given as ids or as entity tables", function()
      canon("parent", 7, 7)
      canon("parent", { id = 7 }, 7)
      canon("parent", math.maxinteger, math.maxinteger)
    end)

    it("nil for optional fields", function()
      local result = good()
      assert.equal("x", result.name)
      for _, f in ipairs(ITEM.fields) do
        if f[1] ~= "name" then assert.is_nil(result[f[1]]) end
      end
    end)

    it("every field at once", function()
      local result = good({
        i8 = -1, u8 = 1, i16 = 2, u16 = 3, i24 = 4, u24 = 5, i32 = 6.0, u32 = 7, i64 = 8,
        u64 = "18446744073709551615", flag = true, ratio = 2, price = "1.5", whole = 3,
        code = MULTI5, body = "text", raw = "\0", born = "2020-01-01", seen = "2020-01-01",
        status = "active", tags = { "b", "a" }, parent = { id = 9 }, name = "n",
      })
      assert.same({
        i8 = -1, u8 = 1, i16 = 2, u16 = 3, i24 = 4, u24 = 5, i32 = 6, u32 = 7, i64 = 8,
        u64 = "18446744073709551615", flag = true, ratio = 2.0, price = "1.50", whole = "3",
        code = MULTI5, body = "text", raw = "\0", born = "2020-01-01", seen = "2020-01-01 00:00:00",
        status = "active", tags = "a,b", parent = 9, name = "n",
      }, result)
      assert.equal("integer", math.type(result.i32))
      assert.equal("float", math.type(result.ratio))
    end)
  end)

  describe("raises", function()
    it("for an unknown field", function()
      assert.has_error(function() engine:check_values("item", values({ nope = 1 })) end,
        "entity 'item' has no field 'nope'")
    end)

    it("for an unknown entity", function()
      assert.has_error(function() engine:check_values("x", values()) end, "unknown entity 'x'")
    end)

    it("for a key that is not a string", function()
      assert.has_error(function() engine:check_values("item", { "x", name = "x" }) end,
        "entity 'item' values must have string keys")
    end)

    it("when values is not a table", function()
      assert.has_error(function() engine:check_values("item", "x") end,
        "bad argument #2 to 'check_values' (table expected, got string)")
    end)
  end)
end)
