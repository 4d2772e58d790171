-- A sync flush that fails in MySQL (docs/guarantees.md G6): nothing written in any pool, no cache
-- changed, and the changes stay tracked for a retry.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")

local REDIS_DB = 5
local I = "orm_ff_item"
local MAIN, LOG = "orm_ff_main", "orm_ff_log"
local LOGS_DB = "beeorm_test_logs"

local item_def = {
  name = I,
  local_cache = 100,
  redis_cache = true,
  fields = { { "name", "string", length = 50, required = true, unique = true }, { "note", "string", length = 50 } },
}

describe("a sync flush that fails on a duplicate unique key", function()
  local engine

  local function key_prefix()
    return "bee:{" .. util.database() .. "." .. I .. "}:"
  end

  local function one_key(pattern)
    local keys = util.redis_keys(REDIS_DB, key_prefix() .. pattern)
    assert.equal(1, #keys, "keys matching " .. pattern .. ": " .. table.concat(keys, ", "))
    return keys[1]
  end

  local function sql_names(ids)
    local out = {}
    for _, id in ipairs(ids) do
      local row = assert(engine:sql_query("SELECT `name` FROM `" .. I .. "` WHERE `id` = ?", { id }))[1]
      out[#out + 1] = row and row.name or false
    end
    return out
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { item_def })
    util.drop(engine, { I })
    util.flushdb(REDIS_DB)
    assert.equal(1, engine:sync_schema())
  end)

  teardown(function()
    engine = nil
    collectgarbage()
  end)

  -- Rows "taken-<tag>" and R ("old-<tag>"), R warm in the local cache and in Redis, and
  -- a context whose flush fails: R renamed "fresh-<tag>" and a new row named
  -- "taken-<tag>". Returns everything plus the state of the caches before the flush.
  local function failed_flush(tag)
    local setup_ctx = engine:context()
    local taken = setup_ctx:new_entity(I, { name = "taken-" .. tag })
    local r = setup_ctx:new_entity(I, { name = "old-" .. tag, note = "n" })
    assert.is_true(setup_ctx:flush())
    util.sleep(0.05) -- this engine's own invalidation of those ids arrives before warming
    local reader = engine:context()
    assert.equal("old-" .. tag, reader:get_by_id(I, r.id).name)
    assert.equal("old-" .. tag, reader:get_by_id(I, r.id).name)
    assert.is_nil(reader:get_by_unique_index(I, "name", "fresh-" .. tag)) -- cached as not found
    local s = { tag = tag, taken = taken, r = r, reader = reader }
    s.row_key = one_key("r:" .. r.id)
    s.row_hash = assert(util.redis_hash(REDIS_DB, s.row_key))
    s.fresh_key = one_key("u:name:fresh-" .. tag)
    s.taken_key = one_key("u:name:taken-" .. tag)
    s.stats = engine:cache_stats(I)

    s.ctx = engine:context()
    s.edit = s.ctx:edit_entity(s.ctx:get_by_id(I, r.id))
    s.edit.name = "fresh-" .. tag
    s.dup = s.ctx:new_entity(I, { name = "taken-" .. tag })
    s.ok, s.err = s.ctx:flush()
    return s
  end

  it("returns the MySQL error, permanent", function()
    local s = failed_flush("err")
    assert.is_nil(s.ok)
    assert.is_true(beeorm.is_error(s.err))
    assert.equal(1062, s.err.code)
    assert.is_false(s.err.temporary)
    assert.equal("default", s.err.pool)
    assert.matches("Duplicate entry 'taken%-err'", s.err.message)
  end)

  it("leaves MySQL as it was: the update in the same flush is rolled back, no row inserted", function()
    local s = failed_flush("sql")
    assert.is_nil(s.ok)
    assert.same({ "old-sql", "taken-sql", false }, sql_names({ s.r.id, s.taken.id, s.dup.id }))
    assert.same({ { n = "0" } },
      engine:sql_query("SELECT COUNT(*) AS n FROM `" .. I .. "` WHERE `name` = 'fresh-sql'"))
  end)

  it("leaves Redis as it was: row bytes and unique keys unchanged, nothing for the new row", function()
    local s = failed_flush("redis")
    assert.is_nil(s.ok)
    assert.same(s.row_hash, util.redis_hash(REDIS_DB, s.row_key))
    assert.equal("old-redis", s.row_hash.name:sub(2)) -- "=" and the value
    assert.equal("N" .. util.redis_get(REDIS_DB, key_prefix() .. "g:name"), util.redis_get(REDIS_DB, s.fresh_key))
    assert.equal(s.taken.id .. ":taken-redis", util.redis_get(REDIS_DB, s.taken_key))
    assert.same({}, util.redis_keys(REDIS_DB, key_prefix() .. "r:" .. s.dup.id))
  end)

  it("leaves the local cache as it was: the old row is served from it", function()
    local s = failed_flush("local")
    assert.is_nil(s.ok)
    local after = engine:cache_stats(I)
    assert.equal(s.stats.entries, after.entries)
    assert.equal(s.stats.inserts, after.inserts) -- nothing was put (the edit loaded R from the cache)
    assert.equal(s.stats.stale_skips, after.stale_skips)
    local before_hits = after.hits
    assert.equal("old-local", s.reader:get_by_id(I, s.r.id).name)
    assert.equal(before_hits + 1, engine:cache_stats(I).hits) -- a local hit, not a reload
    assert.is_nil(s.reader:get_by_unique_index(I, "name", "fresh-local"))
    assert.equal(s.taken.id, s.reader:get_by_unique_index(I, "name", "taken-local").id)
  end)

  it("keeps the changes tracked: after fixing the duplicate the same context flushes them all", function()
    local s = failed_flush("retry")
    assert.is_nil(s.ok)
    s.dup.name = "other-retry" -- the same tracked table
    assert.is_true(s.ctx:flush())
    assert.same({ "fresh-retry", "taken-retry", "other-retry" }, sql_names({ s.r.id, s.taken.id, s.dup.id }))
    local c = engine:context()
    assert.equal("fresh-retry", c:get_by_id(I, s.r.id).name)
    assert.equal("other-retry", c:get_by_id(I, s.dup.id).name)
    assert.equal(s.r.id, c:get_by_unique_index(I, "name", "fresh-retry").id)
    assert.is_nil(c:get_by_unique_index(I, "name", "old-retry"))
    assert.equal(s.dup.id, c:get_by_unique_index(I, "name", "other-retry").id)
    assert.equal("=fresh-retry", util.redis_hash(REDIS_DB, s.row_key).name)
    assert.is_true(s.ctx:flush()) -- nothing left to write
  end)
end)

describe("a sync flush over two MySQL pools", function()
  local engine

  setup(function()
    servers.need()
    local plain = util.engine(REDIS_DB, {})
    assert(plain:sql_exec("CREATE DATABASE IF NOT EXISTS `" .. LOGS_DB .. "`"))
    local p = servers.mysql_parts()
    local dsn = string.format("%s:%s@tcp(%s:%d)/%s", p.user, p.password, p.host, p.port, LOGS_DB)
    engine = util.engine(REDIS_DB, {
      { name = MAIN, redis_cache = true, local_cache = 100,
        fields = { { "name", "string", length = 50, unique = true } } },
      { name = LOG, mysql = "logs", redis_cache = true,
        fields = { { "code", "string", length = 50, unique = true } } },
    }, { logs = dsn })
    util.drop(engine, { MAIN })
    util.drop(engine, { LOG }, "logs")
    assert.equal(2, engine:sync_schema())
  end)

  teardown(function()
    engine = nil
    collectgarbage()
  end)

  local function count(pool, tbl, id)
    return assert(engine:sql_query("SELECT COUNT(*) AS n FROM `" .. tbl .. "` WHERE `id` = ?", { id }, pool))[1].n
  end

  local function redis_rows(tbl, database, id)
    return util.redis_keys(REDIS_DB, "bee:{" .. database .. "." .. tbl .. "}:r:" .. id)
  end

  it("rolls back the first pool when a statement of the second pool fails", function()
    local c = engine:context()
    c:new_entity(LOG, { code = "dup-1" })
    assert.is_true(c:flush())
    local a = c:new_entity(MAIN, { name = "main-1" })
    local b = c:new_entity(LOG, { code = "dup-1" })
    local ok, err = c:flush()
    assert.is_nil(ok)
    assert.equal(1062, err.code)
    assert.equal("logs", err.pool)
    assert.equal("0", count("default", MAIN, a.id))
    assert.equal("0", count("logs", LOG, b.id))
    assert.same({}, redis_rows(MAIN, util.database(), a.id))
    assert.same({}, redis_rows(LOG, LOGS_DB, b.id))
    assert.is_nil(engine:context():get_by_id(MAIN, a.id))
    -- still tracked in both pools
    b.code = "log-1"
    assert.is_true(c:flush())
    assert.equal("1", count("default", MAIN, a.id))
    assert.equal("1", count("logs", LOG, b.id))
    assert.equal("main-1", engine:context():get_by_id(MAIN, a.id).name)
    assert.equal("log-1", engine:context():get_by_id(LOG, b.id).code)
  end)

  it("writes nothing to the second pool when a statement of the first pool fails", function()
    local c = engine:context()
    c:new_entity(MAIN, { name = "dup-2" })
    assert.is_true(c:flush())
    local b = c:new_entity(LOG, { code = "log-2" })
    local a = c:new_entity(MAIN, { name = "dup-2" })
    local ok, err = c:flush()
    assert.is_nil(ok)
    assert.equal(1062, err.code)
    assert.equal("default", err.pool)
    assert.equal("0", count("default", MAIN, a.id))
    assert.equal("0", count("logs", LOG, b.id))
    assert.same({}, redis_rows(LOG, LOGS_DB, b.id))
    assert.is_nil(engine:context():get_by_unique_index(LOG, "code", "log-2"))
  end)
end)
