-- Cache invalidation (docs/guarantees.md G6, G8): every loader through one engine's local cache and
-- the shared Redis cache tells what MySQL holds after writes made elsewhere.
local servers = require("support.servers")
local util = require("support.orm_util")
local defs = require("support.orm_defs")

local REDIS_DB = 3

local P, I = "orm_cache_parent", "orm_cache_item"

-- "id name status parent note" of each row, sorted by id, one string.
local function show(rows)
  local out = {}
  for _, row in ipairs(rows) do
    out[#out + 1] = string.format("%s %s %s %s %s", row.id, row.name, row.status, row.parent or "-", row.note or "-")
  end
  table.sort(out)
  return "[" .. table.concat(out, "; ") .. "]"
end

-- A loader result as a list: a row or nil becomes { row } or {} (errors raise).
local function one(row, err)
  assert(err == nil, tostring(err))
  return { row }
end

local function list(rows, err)
  assert(rows, tostring(err))
  return rows
end

describe("caches", function()
  local engine -- engine A, the reader
  local second -- another engine on the same servers: its own local cache and subscriber
  local measured = { checks = 0, retried = 0, max_retries = 0 }

  local function sql_rows(where, args)
    local rows = assert(engine:sql_query("SELECT `id`, `name`, `status`, `parent`, `note` FROM `" .. I .. "`"
      .. (where and (" WHERE " .. where) or ""), args))
    for _, row in ipairs(rows) do
      row.id = math.tointeger(tonumber(row.id))
      row.parent = row.parent and math.tointeger(tonumber(row.parent))
    end
    return rows
  end

  -- What the loaders of context c return and MySQL does not hold, for the ids, unique
  -- names and parents in keys (plus both statuses, and get_all when keys.all); {} when
  -- they agree. Rows of lists are compared as sets (their order is orm_spec's concern).
  local function differences(c, keys)
    local diffs = {}
    local function compare(what, got, want)
      local g, w = show(got), show(want)
      if g ~= w then diffs[#diffs + 1] = what .. ": got " .. g .. ", MySQL has " .. w end
    end
    for _, id in ipairs(keys.ids) do
      compare("get_by_id(" .. id .. ")", one(c:get_by_id(I, id)), sql_rows("`id` = ?", { id }))
    end
    for _, name in ipairs(keys.names) do
      compare("get_by_unique_index(name, " .. name .. ")", one(c:get_by_unique_index(I, "name", name)),
        sql_rows("`name` = ?", { name }))
    end
    for _, status in ipairs({ "active", "blocked" }) do
      compare("get_by_index(by_status, " .. status .. ")", list(c:get_by_index(I, "by_status", status)),
        sql_rows("`status` = ?", { status }))
    end
    for _, pid in ipairs(keys.parents) do
      compare("get_by_reference(parent, " .. pid .. ")", list(c:get_by_reference(I, "parent", pid)),
        sql_rows("`parent` = ?", { pid }))
    end
    if keys.all then compare("get_all", list(c:get_all(I)), sql_rows()) end
    return diffs
  end

  -- Asserts that every loader of c agrees with MySQL: at the first try (strict) or
  -- within 200 ms (another engine's local cache is invalidated through Redis pub/sub).
  local function assert_truth(c, keys, strict, when)
    local diffs
    local ok, retries = util.eventually(function()
      diffs = differences(c, keys)
      return #diffs == 0
    end, strict and 0 or 0.2)
    if not strict then
      measured.checks = measured.checks + 1
      if retries > 0 then measured.retried = measured.retried + 1 end
      if retries > measured.max_retries then measured.max_retries = retries end
    end
    assert(ok, when .. (strict and ", at the first read" or (", still after " .. retries .. " retries in 200 ms"))
      .. ":\n" .. table.concat(diffs, "\n"))
    return retries
  end

  local function key_prefix()
    return "bee:{" .. util.database() .. "." .. I .. "}:"
  end

  -- The Redis key of a cached row, or nil.
  local function row_key(id)
    local keys = util.redis_keys(REDIS_DB, key_prefix() .. "r:" .. id)
    assert(#keys <= 1, "several row keys for id " .. id)
    return keys[1]
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, defs.cache())
    util.drop(engine, { I, P })
    util.flushdb(REDIS_DB)
    assert.equal(2, engine:sync_schema())
    second = util.engine(REDIS_DB, defs.cache())
  end)

  teardown(function()
    if os.getenv("BEEORM_SPEC_VERBOSE") then
      io.stderr:write(string.format("\ncache_spec: %d checks through another engine, %d needed retries (max %d)\n",
        measured.checks, measured.retried, measured.max_retries))
    end
    engine, second = nil, nil
    collectgarbage()
  end)

  local writers = {
    { label = "another context of the same engine", strict = true, context = function() return engine:context() end },
    { label = "a second engine", strict = false, context = function() return second:context() end },
  }

  for _, w in ipairs(writers) do
    describe("after a write through " .. w.label .. ", every loader of a warm engine", function()
      local tags = 0

      -- Parents p1, p2; rows r1 (active, p1) and r2 (blocked, p1), written by the writer.
      -- Returns the rows and the lookup keys to check.
      local function fresh()
        tags = tags + 1
        local tag = (w.strict and "s" or "e") .. tags
        local c = w.context()
        local s = { c = c, tag = tag }
        s.p1 = c:new_entity(P, { name = tag .. "-p1" })
        s.p2 = c:new_entity(P, { name = tag .. "-p2" })
        s.r1 = c:new_entity(I, { name = tag .. "-r1", status = "active", parent = s.p1, note = "one" })
        s.r2 = c:new_entity(I, { name = tag .. "-r2", status = "blocked", parent = s.p1, note = "two" })
        assert.is_true(c:flush())
        s.keys = { ids = { s.r1.id, s.r2.id }, names = { s.r1.name, s.r2.name }, parents = { s.p1.id, s.p2.id } }
        return s
      end

      -- Reads everything through a context of engine A twice, so every cache holds it.
      local function warm(s)
        local a = engine:context()
        assert_truth(a, s.keys, w.strict, "warming")
        assert_truth(a, s.keys, true, "warming again")
        return a
      end

      local function edit(s, id)
        return s.c:edit_entity(s.c:get_by_id(I, id))
      end

      it("see an inserted row that matches the index, the reference, get_all and a cached miss", function()
        local s = fresh()
        local r3 = s.c:new_entity(I, { name = s.tag .. "-r3", status = "active", parent = s.p1.id })
        -- its id and name are looked up (and found missing) before the flush
        table.insert(s.keys.ids, r3.id)
        table.insert(s.keys.names, r3.name)
        local a = warm(s)
        assert.is_nil(a:get_by_id(I, r3.id))
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the insert")
        assert.equal(r3.id, a:get_by_unique_index(I, "name", r3.name).id)
      end)

      it("see an update of the indexed column", function()
        local s = fresh()
        local a = warm(s)
        edit(s, s.r1.id).status = "blocked"
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the update of status")
        assert.equal("blocked", a:get_by_id(I, s.r1.id).status)
      end)

      it("see a reference moved to another parent", function()
        local s = fresh()
        local a = warm(s)
        edit(s, s.r2.id).parent = s.p2
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the update of parent")
        assert.same({ s.r2.id }, util.ids(a:get_by_reference(I, "parent", s.p2.id)))
      end)

      it("see an update of the unique column", function()
        local s = fresh()
        local old_name, renamed = s.r1.name, s.tag .. "-r1-renamed"
        table.insert(s.keys.names, renamed)
        local a = warm(s)
        assert.is_nil(a:get_by_unique_index(I, "name", renamed))
        edit(s, s.r1.id).name = renamed -- edits s.r1 itself: s.c tracks it since new_entity
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the update of name")
        assert.is_nil(a:get_by_unique_index(I, "name", old_name))
        assert.equal(s.r1.id, a:get_by_unique_index(I, "name", renamed).id)
      end)

      it("see a delete", function() -- (get_all: below)
        local s = fresh()
        local a = warm(s)
        s.c:delete_entity(s.r2)
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the delete")
        assert.is_nil(a:get_by_id(I, s.r2.id))
        assert.is_nil(a:get_by_unique_index(I, "name", s.r2.name))
      end)

      it("see get_all follow an insert and a delete", function()
        local s = fresh()
        s.keys.all = true
        local a = warm(s)
        local r3 = s.c:new_entity(I, { name = s.tag .. "-all", status = "active" })
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the insert")
        s.c:delete_entity(r3)
        s.c:delete_entity(s.r1)
        assert.is_true(s.c:flush())
        assert_truth(a, s.keys, w.strict, "after the deletes")
      end)
    end)
  end

  it("serves repeated get_by_id from the local cache, also when Redis lost the row", function()
    local c = engine:context()
    local t = c:new_entity(I, { name = "local-hit", status = "active" })
    assert.is_true(c:flush())
    util.sleep(0.05) -- let this engine's own invalidation message arrive first
    assert.equal(t.id, c:get_by_id(I, t.id).id)
    local before = engine:cache_stats(I)
    for i = 1, 3 do
      assert.equal("local-hit", c:get_by_id(I, t.id).name)
      local now = engine:cache_stats(I)
      assert.equal(before.hits + i, now.hits)
      assert.equal(before.misses, now.misses)
    end
    assert.equal(1000, before.capacity)
    assert.is_true(before.entries >= 1)
    assert.is_true(before.bytes > 0)
    -- only the local cache has it now
    local key = assert(row_key(t.id), "no Redis row key for " .. t.id)
    util.redis_cli(REDIS_DB, "DEL", key)
    assert.equal("local-hit", engine:context():get_by_id(I, t.id).name)
    assert.is_nil(row_key(t.id))
    -- an engine with an empty local cache reads MySQL and fills Redis again
    assert.equal("local-hit", second:context():get_by_id(I, t.id).name)
    assert.equal(key, row_key(t.id))
  end)

  it("keeps rows, unique keys and id lists of every loader in Redis", function()
    local c = engine:context()
    local p = c:new_entity(P, { name = "keys-p" })
    local t = c:new_entity(I, { name = "keys-row", status = "active", parent = p })
    assert.is_true(c:flush())
    local a = engine:context()
    assert.equal(t.id, a:get_by_id(I, t.id).id)
    assert.equal(t.id, a:get_by_unique_index(I, "name", "keys-row").id)
    assert.is_true(#a:get_by_index(I, "by_status", "active") >= 1)
    assert.same({ t.id }, util.ids(a:get_by_reference(I, "parent", p.id)))
    assert.is_true(#a:get_all(I) >= 1)
    local keys = util.redis_keys(REDIS_DB, key_prefix() .. "*")
    local function has(pattern)
      for _, k in ipairs(keys) do if k:find(pattern) then return true end end
      return false
    end
    for _, pattern in ipairs({ ":r:" .. t.id .. "$", ":u:name:keys%-row$", ":l:c:status:active$",
      ":l:c:parent:" .. p.id .. "$", ":l:a$", ":v$" }) do
      assert.is_true(has(pattern), "no key matching " .. pattern .. " in:\n" .. table.concat(keys, "\n"))
    end
  end)

  it("caches a unique lookup that found nothing and drops it when a row takes the value", function()
    local a = engine:context()
    assert.is_nil(a:get_by_unique_index(I, "name", "ghost"))
    assert.is_nil(a:get_by_unique_index(I, "name", "ghost")) -- (the first may only start the index's generation)
    local keys = util.redis_keys(REDIS_DB, key_prefix() .. "u:name:ghost")
    assert.equal(1, #keys)
    local gen = util.redis_get(REDIS_DB, key_prefix() .. "g:name")
    assert.equal("N" .. gen, util.redis_get(REDIS_DB, keys[1])) -- not found, while the index's generation holds
    assert.is_nil(a:get_by_unique_index(I, "name", "ghost"))
    local c = second:context()
    local t = c:new_entity(I, { name = "ghost", status = "active" })
    assert.is_true(c:flush())
    assert.equal(t.id, a:get_by_unique_index(I, "name", "ghost").id)
    assert.equal(t.id .. ":ghost", util.redis_get(REDIS_DB, keys[1])) -- the row, with the values it had
  end)

  it("caches a get_by_id that found nothing, in both caches, and drops it when the row is inserted", function()
    util.sleep(0.05) -- let invalidations of earlier flushes arrive before counting entries
    local c = second:context()
    local t = c:new_entity(I, { name = "late-row", status = "active" }) -- id known, not flushed
    local a = engine:context()
    local before = engine:cache_stats(I)
    assert.is_nil(a:get_by_id(I, t.id))
    assert.equal(before.entries + 1, engine:cache_stats(I).entries) -- the miss is cached locally
    assert.is_nil(a:get_by_id(I, t.id))
    assert.equal(before.hits + 1, engine:cache_stats(I).hits)
    assert.is_string(row_key(t.id)) -- and in Redis
    assert.is_true(c:flush())
    local ok, retries = util.eventually(function() return a:get_by_id(I, t.id) ~= nil end, 0.2)
    assert(ok, "the inserted row is still cached as missing after " .. retries .. " retries in 200 ms")
    assert.equal("late-row", a:get_by_id(I, t.id).name)
  end)

  describe("a reader held between its Redis read and its MySQL read", function()
    local locker, reader

    -- The processlist row whose INFO matches pattern (a Lua pattern) and, when given,
    -- whose STATE matches state, waiting up to 10 s.
    local function wait_for_query(pattern, state)
      local found
      local ok = util.eventually(function()
        for _, row in ipairs(assert(engine:sql_query("SELECT `ID` AS id, `STATE` AS state, `INFO` AS info "
          .. "FROM information_schema.PROCESSLIST"))) do
          if row.info and row.info:match(pattern) and (not state or (row.state or ""):match(state)) then
            found = row
            return true
          end
        end
        return false
      end, 10)
      assert(ok, "no query matching " .. pattern .. " in the processlist")
      return found
    end

    after_each(function()
      if locker then
        pcall(function() engine:sql_exec("KILL QUERY " .. locker.id) end)
        locker.pipe:close()
        locker = nil
      end
      if reader then
        reader:close()
        reader = nil
      end
    end)

    -- Runs a reader process's get_by_id of a row missing in Redis while the table is
    -- locked; between its Redis read and its MySQL read, `meanwhile` runs. Returns the
    -- reader's answer.
    local function held_read(name, meanwhile)
      if servers.run("command -v mariadb") ~= 0 then pending("needs the mariadb command-line client") end
      local c = engine:context()
      local t = c:new_entity(I, { name = name, status = "active", note = "old" })
      assert.is_true(c:flush())
      util.redis_cli(REDIS_DB, "DEL", assert(row_key(t.id)))
      reader = util.start_reader("cache", REDIS_DB)
      locker = { pipe = util.mysql_cli("LOCK TABLES `" .. I .. "` WRITE; SELECT SLEEP(30); UNLOCK TABLES;") }
      locker.id = wait_for_query("^SELECT SLEEP%(30%)$").id
      local n = reader:post("get " .. I .. " " .. t.id)
      local waiting = wait_for_query("^SELECT `id`.* FROM `" .. I .. "` WHERE `id` IN %(" .. t.id .. "%)$", "lock")
      assert.matches("lock", waiting.state)
      meanwhile(t)
      assert(engine:sql_exec("KILL QUERY " .. locker.id))
      locker.pipe:close()
      locker = nil
      return t, reader:answer(n)
    end

    it("fills Redis with the row it read when no write happened meanwhile", function()
      local t, answer = held_read("held-quiet", function() end)
      assert.equal("row held-quiet|old", answer)
      assert.is_string(row_key(t.id))
    end)

    it("does not fill Redis with the row it read when a write moved the entity's version meanwhile", function()
      -- A write's cache step (after its commit) is simulated by bumping the entity's
      -- version key, as every flush does; the reader read the version before it.
      local t, answer = held_read("held-raced", function()
        local vkeys = util.redis_keys(REDIS_DB, key_prefix() .. "v")
        assert.equal(1, #vkeys)
        util.redis_cli(REDIS_DB, "INCR", vkeys[1])
      end)
      assert.equal("row held-raced|old", answer)
      assert.is_nil(row_key(t.id))
    end)
  end)
end)
