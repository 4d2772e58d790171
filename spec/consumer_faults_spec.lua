-- Failing events (docs/guarantees.md G4, G5): a permanent MySQL error parks only the failing entry
-- in its queue's error list, with its metadata, while everything else applies, and the
-- entity's caches converge on MySQL; resolvers and q:retry / q:skip decide what
-- happens to it. Temporary errors (a lock wait timeout, MariaDB restarting) are
-- retried until they go away, and nothing is parked or skipped.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local REDIS_DB = 12
local F = "cf_item"
local item_def = require("support.async_defs").faults()[1]


describe("consumer faults", function()
  local engine
  local behind = 900000000 -- ids of rows written behind beeorm's back

  local function sql_row(id)
    return assert(engine:sql_query("SELECT `id`, `name`, `note`, `n` FROM `" .. F .. "` WHERE `id` = ?", { id }))[1]
  end

  -- "name|note|n" of a loaded row (or "nil").
  local function show(row)
    if not row then return "nil" end
    return string.format("%s|%s|%s", row.name, tostring(row.note), tostring(row.n))
  end

  -- Inserts a row behind beeorm's back (no cache, no event); returns its id.
  local function insert_behind(name, n)
    behind = behind + 1
    assert(engine:sql_exec("INSERT INTO `" .. F .. "` (`id`, `name`, `n`) VALUES (?, ?, ?)", { behind, name, n or 0 }))
    return behind
  end

  local function sync_row(name, n)
    local c = engine:context()
    local t = c:new_entity(F, { name = name, note = "sync", n = n or 1 })
    assert.is_true(c:flush())
    return t
  end

  -- The error records of the queues, by entity id.
  local function errors_by_id()
    local out = {}
    for _, ev in ipairs(au.errors(engine)) do out[ev.id] = ev end
    return out
  end

  local function queue_of(id)
    return au.queues(engine)[au.queue_of(id)]
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, { item_def })
    au.reset(engine, REDIS_DB, { F })
    assert.equal(1, engine:sync_schema())
  end)

  teardown(function()
    if engine then
      au.finish(engine, REDIS_DB)
      engine = nil
    end
    collectgarbage()
  end)

  after_each(function()
    for _, code in ipairs({ 1062, 1054, 1205 }) do beeorm.set_error_class(code, nil) end
    au.skip_all_errors(engine)
    au.consume(engine:context())
  end)

  describe("a permanent error", function()
    it("parks only the failing entries (duplicate key 1062), with their metadata; everything else applies", function()
      local upd = sync_row("p-upd", 1)
      local other = sync_row("p-other", 1)
      local gone = sync_row("p-gone", 1)
      local ctx = engine:context()
      local ins = ctx:new_entity(F, { name = "p-dup-insert", note = "new", n = 7 })
      assert.is_true(ctx:flush_async())
      local fine = ctx:new_entity(F, { name = "p-fine", n = 8 })
      assert.is_true(ctx:flush_async())
      local c2 = engine:context()
      local e = c2:edit_entity(c2:get_by_id(F, upd.id))
      e.name = "p-dup-update"
      e.n = 2
      assert.is_true(c2:flush_async())
      local c3 = engine:context()
      local o = c3:edit_entity(c3:get_by_id(F, other.id))
      o.n = 3
      c3:delete_entity(c3:get_by_id(F, gone.id))
      assert.is_true(c3:flush_async())
      -- the caches show the queued state
      assert.equal("p-dup-insert|new|7", show(ctx:get_by_id(F, ins.id)))
      assert.equal("p-dup-update|sync|2", show(ctx:get_by_id(F, upd.id)))
      local function listed(rows, id)
        for _, r in ipairs(assert(rows)) do if r.id == id then return true end end
        return false
      end
      assert.is_true(listed(ctx:get_all(F), ins.id))
      assert.is_true(listed(ctx:get_by_index(F, "by_note", "new"), ins.id))
      assert.is_false(listed(ctx:get_all(F), gone.id))
      -- behind beeorm's back, the new names are taken
      local taken_i = insert_behind("p-dup-insert", 100)
      local taken_u = insert_behind("p-dup-update", 101)
      local t0 = os.time()
      local st = au.consume(ctx)
      assert.equal(2, st.failed)
      -- the counters say what was applied, not what was attempted
      assert.equal(3, st.events) -- fine, other and gone; not the two parked ones
      local c3_entries = au.queue_of(other.id) == au.queue_of(gone.id) and 1 or 2
      assert.equal(1 + c3_entries, st.entries)
      -- everything else applied
      assert.equal("p-fine", (sql_row(fine.id) or {}).name)
      assert.equal("3", sql_row(other.id).n)
      assert.is_nil(sql_row(gone.id))
      -- the failing writes did not
      assert.is_nil(sql_row(ins.id))
      assert.same({ id = tostring(upd.id), name = "p-upd", note = "sync", n = "1" }, sql_row(upd.id))

      local errs = errors_by_id()
      assert.equal(2, #au.errors(engine), au.describe_errors(au.errors(engine)))
      for _, case in ipairs({ { ins, "insert" }, { upd, "update" } }) do
        local row, kind = case[1], case[2]
        local ev = errs[row.id]
        assert(ev, "no error record for the failed " .. kind .. " of row " .. row.id)
        assert.equal(au.queue_of(row.id), ev.queue)
        assert.matches("^%d+%-%d+$", ev.stream_id)
        assert.equal(kind, ev.kind)
        assert.equal(F, ev.entity)
        assert.equal(F, ev.table)
        assert.equal(row.id, ev.id)
        assert.equal(1062, ev.error.code)
        assert.matches("Duplicate", ev.error.message)
        assert.matches(F, ev.sql, 1, true)
        assert.matches(kind == "insert" and "^INSERT" or "^UPDATE", ev.sql)
        assert.is_true(ev.attempts >= 1)
        assert.is_true(math.abs(ev.failed_at - t0) < 60, "failed_at " .. ev.failed_at .. ", now " .. t0)
        assert.equal(1, ev.events)
        local parked_here = 0 -- both failed rows may share a queue
        for _, r in ipairs({ ins, upd }) do
          if au.queue_of(r.id) == au.queue_of(row.id) then parked_here = parked_here + 1 end
        end
        assert.equal(parked_here, queue_of(row.id):stats().errors)
      end
      assert.equal("p-dup-insert", errs[ins.id].values.name)
      assert.equal("new", errs[ins.id].values.note)
      assert.equal(7, errs[ins.id].values.n)
      assert.same({ name = "p-dup-update", n = 2 }, errs[upd.id].values) -- the changed columns
      assert.equal(2, errs[upd.id].args.n)

      -- the caches converge on MySQL: the failed insert is not found, the failed update
      -- shows MySQL's row, and the unique names lead to the rows that hold them
      for label, c in pairs({ context = engine:context(), engine = util.engine(REDIS_DB, { item_def }):context() }) do
        assert.is_true(util.eventually(function() return c:get_by_id(F, ins.id) == nil end, 1), label)
        assert.is_true(util.eventually(function() return show(c:get_by_id(F, upd.id)) == "p-upd|sync|1" end, 1),
          label .. ": " .. show(c:get_by_id(F, upd.id)))
        assert.equal(taken_i, (c:get_by_unique_index(F, "name", "p-dup-insert") or {}).id, label)
        assert.equal(taken_u, (c:get_by_unique_index(F, "name", "p-dup-update") or {}).id, label)
        assert.equal(upd.id, (c:get_by_unique_index(F, "name", "p-upd") or {}).id, label)
        -- and the cached lists no longer hold the failed insert
        assert.is_false(listed(c:get_all(F), ins.id), label)
        assert.is_false(listed(c:get_by_index(F, "by_note", "new"), ins.id), label)
        assert.is_true(listed(c:get_all(F), fine.id), label)
        assert.is_false(listed(c:get_all(F), gone.id), label)
      end
      assert.same({}, util.redis_keys(REDIS_DB, "*:p:*"), "pending marks left")

      -- q:retry after fixing the cause applies the entry on the next consume
      assert(engine:sql_exec("DELETE FROM `" .. F .. "` WHERE `id` IN (?, ?)", { taken_i, taken_u }))
      assert.is_true(queue_of(ins.id):retry(errs[ins.id]))
      local shared = au.queue_of(ins.id) == au.queue_of(upd.id) -- then upd's record is still there
      assert.equal(shared and 1 or 0, queue_of(ins.id):stats().errors)
      assert.equal(1, queue_of(ins.id):stats().len)
      assert.is_nil(sql_row(ins.id)) -- not before a consumer ran
      local st2 = au.consume(ctx)
      assert.equal(1, st2.events)
      assert.same({ id = tostring(ins.id), name = "p-dup-insert", note = "new", n = "7" }, sql_row(ins.id))
      -- (what the caches show after the retry: see "after q:retry applied ..." below)
      -- q:skip drops the other one: not applied, not listed, not queued
      assert.is_true(queue_of(upd.id):skip(errs[upd.id]))
      assert.equal(0, queue_of(upd.id):stats().errors)
      assert.equal(0, au.consume(ctx).events)
      assert.equal("p-upd", sql_row(upd.id).name)
      assert.same({}, au.errors(engine))
      -- an entry that is no longer listed cannot be resolved again
      local ok, err = queue_of(upd.id):skip(errs[upd.id])
      assert.is_nil(ok)
      assert.equal("not_found", err.code)
    end)

    it("after q:retry applied a parked entry, reads show what MySQL holds", function()
      local upd = sync_row("q-upd", 1)
      local ctx = engine:context()
      local ins = ctx:new_entity(F, { name = "q-ins", n = 1 })
      local e = ctx:edit_entity(ctx:get_by_id(F, upd.id))
      e.name = "q-upd2"
      assert.is_true(ctx:flush_async())
      local taken_i, taken_u = insert_behind("q-ins"), insert_behind("q-upd2")
      -- two parked entries, or one when both rows share a shard
      assert.equal(au.queue_of(ins.id) == au.queue_of(upd.id) and 1 or 2, au.consume(ctx).failed)
      -- readers look while the entries are parked: they see MySQL (and cache it)
      assert.is_true(util.eventually(function() return ctx:get_by_id(F, ins.id) == nil end, 1))
      assert.equal(taken_i, (ctx:get_by_unique_index(F, "name", "q-ins") or {}).id)
      assert.is_true(util.eventually(function() return show(ctx:get_by_id(F, upd.id)) == "q-upd|sync|1" end, 1))
      -- fix the cause, retry, consume
      assert(engine:sql_exec("DELETE FROM `" .. F .. "` WHERE `id` IN (?, ?)", { taken_i, taken_u }))
      for _, ev in ipairs(au.errors(engine)) do assert.is_true(au.queues(engine)[ev.queue]:retry(ev)) end
      au.consume(ctx)
      assert.equal("q-ins", (sql_row(ins.id) or {}).name)
      assert.equal("q-upd2", sql_row(upd.id).name)
      for label, c in pairs({ context = engine:context(), engine = util.engine(REDIS_DB, { item_def }):context() }) do
        assert.is_true(util.eventually(function() return show(c:get_by_id(F, ins.id)) == "q-ins|nil|1" end, 1),
          label .. ": get_by_id of the retried insert gives " .. show(c:get_by_id(F, ins.id)))
        assert.equal(ins.id, (c:get_by_unique_index(F, "name", "q-ins") or {}).id, label)
        assert.is_true(util.eventually(function() return show(c:get_by_id(F, upd.id)) == "q-upd2|sync|1" end, 1),
          label .. ": get_by_id of the retried update gives " .. show(c:get_by_id(F, upd.id)))
        assert.equal(upd.id, (c:get_by_unique_index(F, "name", "q-upd2") or {}).id, label)
      end
    end)

    it("parks an event whose column was dropped behind beeorm's back (1054); q:retry applies it once it is back", function()
      local row = sync_row("col-row", 1)
      local keep = sync_row("col-keep", 1)
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(F, row.id))
      e.note = "needs the column"
      assert.is_true(ctx:flush_async())
      local k = ctx:edit_entity(ctx:get_by_id(F, keep.id))
      k.n = 5 -- does not touch the column
      assert.is_true(ctx:flush_async())
      assert(engine:sql_exec("ALTER TABLE `" .. F .. "` DROP COLUMN `note`"))
      local ok_all, st = pcall(au.consume, ctx)
      -- put the column back before anything can fail
      assert(engine:sql_exec("ALTER TABLE `" .. F .. "` ADD COLUMN `note` varchar(50) NULL AFTER `name`"))
      assert(ok_all, st)
      assert.equal(1, st.failed)
      assert.equal("5", sql_row(keep.id).n)
      local errs = errors_by_id()
      local ev = errs[row.id]
      assert(ev, "no error record: " .. au.describe_errors(au.errors(engine)))
      assert.equal(1054, ev.error.code)
      assert.equal("update", ev.kind)
      assert.equal(F, ev.entity)
      assert.equal(row.id, ev.id)
      assert.equal(au.queue_of(row.id), ev.queue)
      assert.same({ note = "needs the column" }, ev.values)
      assert.matches("`" .. F .. "`", ev.sql, 1, true)
      assert.matches("note", ev.error.message)
      assert.is_true(ev.attempts >= 1)
      assert.is_true(math.abs(ev.failed_at - os.time()) < 60)
      assert.is_nil(sql_row(row.id).note) -- the column is back, empty
      -- the caches converge on MySQL's row
      assert.is_true(util.eventually(function() return show(ctx:get_by_id(F, row.id)) == "col-row|nil|1" end, 1),
        show(ctx:get_by_id(F, row.id)))
      assert.is_true(queue_of(row.id):retry(ev))
      assert.equal(1, au.consume(ctx).events)
      assert.equal("needs the column", sql_row(row.id).note)
      assert.same({}, au.errors(engine))
    end)
  end)

  describe("a Lua resolver", function()
    local function failing_insert(tag)
      local ctx = engine:context()
      local t = ctx:new_entity(F, { name = tag, note = "r", n = 1 })
      assert.is_true(ctx:flush_async())
      local fine = ctx:new_entity(F, { name = tag .. "-fine", n = 2 }) -- another entry: applies whatever happens
      assert.is_true(ctx:flush_async())
      local taken = insert_behind(tag, 50)
      return ctx, t, fine, taken
    end

    it("that edits the event makes the insert succeed with the new values", function()
      local ctx, t, fine, taken = failing_insert("r-edit")
      local seen = {}
      local consumer = engine:consumer { workers = 1, resolver = function(ev)
        seen[#seen + 1] = ev
        return { values = { name = "renamed" } }
      end }
      local st = assert(consumer:run { block = false })
      assert.equal(1, #seen)
      local ev = seen[1]
      assert.equal("insert", ev.kind)
      assert.equal(F, ev.entity)
      assert.equal(t.id, ev.id)
      assert.equal(1062, ev.error.code)
      assert.equal("r-edit", ev.values.name)
      assert.is_true(ev.attempts >= 1)
      assert.equal(0, st.failed)
      assert.is_true(st.retried >= 1)
      assert.equal(2, st.events) -- the edited insert (applied after its retry) and the fine one
      assert.same({ id = tostring(t.id), name = "renamed", note = "r", n = "1" }, sql_row(t.id))
      assert.equal("r-edit-fine", (sql_row(fine.id) or {}).name)
      assert.equal("r-edit", sql_row(taken).name)
      assert.same({}, au.errors(engine))
      assert.equal(0, au.total(engine, "len"))
      ctx:clear_flush()
    end)

    it("that edits the event leaves caches that agree with MySQL", function()
      local ctx, t, _, taken = failing_insert("r-cache")
      local consumer = engine:consumer { workers = 1, resolver = function() return { values = { name = "renamed-c" } } end }
      assert(consumer:run { block = false })
      assert.equal("renamed-c", sql_row(t.id).name)
      for label, c in pairs({ context = engine:context(), engine = util.engine(REDIS_DB, { item_def }):context() }) do
        assert.is_true(util.eventually(function() return show(c:get_by_id(F, t.id)) == "renamed-c|r|1" end, 1),
          label .. ": get_by_id gives " .. show(c:get_by_id(F, t.id)))
        assert.equal(t.id, (c:get_by_unique_index(F, "name", "renamed-c") or {}).id, label)
        assert.equal("renamed-c", (c:get_by_unique_index(F, "name", "renamed-c") or {}).name, label)
        assert.equal(taken, (c:get_by_unique_index(F, "name", "r-cache") or {}).id, label)
      end
      ctx:clear_flush()
    end)

    it("that says \"skip\" drops the entry: not listed, not in MySQL, not cached", function()
      local ctx, t, fine = failing_insert("r-skip")
      local calls = 0
      local st = assert(engine:consumer { resolver = function() calls = calls + 1; return "skip" end }:run { block = false })
      assert.equal(1, calls)
      assert.equal(1, st.skipped)
      assert.equal(0, st.failed)
      assert.is_nil(sql_row(t.id))
      assert.equal("r-skip-fine", (sql_row(fine.id) or {}).name)
      assert.same({}, au.errors(engine))
      assert.equal(0, au.total(engine, "len"))
      assert.is_true(util.eventually(function() return ctx:get_by_id(F, t.id) == nil end, 1))
    end)

    it("that says \"keep\" leaves the entry in the error list", function()
      local _, t, fine = failing_insert("r-keep")
      local st = assert(engine:consumer { resolver = function() return "keep" end }:run { block = false })
      assert.equal(1, st.failed)
      assert.is_nil(sql_row(t.id))
      assert.equal("r-keep-fine", (sql_row(fine.id) or {}).name)
      local errs = au.errors(engine)
      assert.equal(1, #errs)
      assert.equal(t.id, errs[1].id)
      assert.equal(1062, errs[1].error.code)
    end)

    it("that says \"retry\" without a fix is asked again, a bounded number of times, then the entry is kept", function()
      local _, t = failing_insert("r-retry")
      local calls = 0
      local st = assert(engine:consumer { resolver = function() calls = calls + 1; return "retry" end }:run { block = false })
      assert.is_true(calls >= 2 and calls <= 10, calls .. " resolver calls")
      assert.equal(1, st.failed)
      local errs = au.errors(engine)
      assert.equal(1, #errs)
      assert.equal(t.id, errs[1].id)
      assert.is_true(errs[1].attempts >= 2, "attempts " .. errs[1].attempts)
    end)
  end)

  describe("an error class override", function()
    it("makes a duplicate temporary: non-blocking consume returns it after its retries, nothing parked", function()
      local ctx = engine:context()
      local t = ctx:new_entity(F, { name = "class-dup", n = 1 })
      assert.is_true(ctx:flush_async())
      local taken = insert_behind("class-dup", 9)
      beeorm.set_error_class(1062, true)
      local st, err = beeorm.consume_async_flush_events(ctx, false, { max_retries = 2 })
      assert.is_nil(st)
      assert.is_true(beeorm.is_error(err))
      assert.equal(1062, err.code)
      assert.is_true(err.temporary)
      assert.same({}, au.errors(engine))
      assert.equal(1, queue_of(t.id):stats().len) -- still queued
      assert.is_nil(sql_row(t.id))
      -- back to permanent: the next consume parks it
      beeorm.set_error_class(1062, nil)
      assert(engine:sql_exec("DELETE FROM `" .. F .. "` WHERE `id` = ?", { taken }))
      assert.equal(1, au.consume(ctx).events)
      assert.equal("class-dup", sql_row(t.id).name)
    end)

    it("rejects what is not a MySQL errno", function()
      assert.has_error(function() beeorm.set_error_class(0, true) end)
      assert.has_error(function() beeorm.set_error_class("x", true) end)
    end)
  end)

  describe("a temporary error", function()
    -- Another session locks the row, holds the lock for `seconds`, then commits. Returns
    -- the session's pipe once it holds the lock (read it to wait for its end).
    local function hold_row_lock(id, seconds)
      local sleep = "SELECT SLEEP(" .. seconds .. ")"
      local locker = util.mysql_cli("START TRANSACTION; SELECT `id` FROM `" .. F .. "` WHERE `id` = " .. id
        .. " FOR UPDATE; " .. sleep .. "; COMMIT;")
      assert(util.eventually(function()
        for _, r in ipairs(assert(engine:sql_query("SELECT `INFO` AS info FROM information_schema.PROCESSLIST"))) do
          if r.info == sleep then return true end
        end
        return false
      end, 10), "the locking session did not start")
      return locker
    end

    local old_timeout

    -- A row whose update to n = 2 is queued, and the context of a new engine to consume
    -- it: its connections start after innodb_lock_wait_timeout was lowered to 1 s
    -- (restored after the test).
    local function queued_update_with_short_lock_wait(name)
      local row = sync_row(name, 1)
      old_timeout = assert(engine:sql_query("SELECT @@GLOBAL.innodb_lock_wait_timeout AS t"))[1].t
      assert(engine:sql_exec("SET GLOBAL innodb_lock_wait_timeout = 1"))
      local ctx = util.engine(REDIS_DB, { item_def }):context()
      local e = ctx:edit_entity(ctx:get_by_id(F, row.id))
      e.n = 2
      assert.is_true(ctx:flush_async())
      return row, ctx
    end

    after_each(function()
      if old_timeout then
        assert(engine:sql_exec("SET GLOBAL innodb_lock_wait_timeout = " .. old_timeout))
        old_timeout = nil
      end
    end)

    it("(lock wait timeout 1205) is retried until the lock is released, then applied, not parked", function()
      if servers.run("command -v mariadb") ~= 0 then pending("needs the mariadb command-line client") end
      local row, ctx = queued_update_with_short_lock_wait("lock-row")
      local locker = hold_row_lock(row.id, 3)
      local t0 = util.now()
      local st, err = beeorm.consume_async_flush_events(ctx, false, { max_retries = 10 })
      local took = util.now() - t0
      locker:read("a")
      locker:close()
      assert(st, "consume gave up: " .. tostring(err))
      assert.is_true(took >= 1, "applied after " .. took .. " s: the lock was not waited for")
      assert.equal(0, st.failed)
      assert.equal("2", sql_row(row.id).n)
      assert.same({}, au.errors(engine))
    end)

    it("shows as pending in q:stats() while a consumer (another process) waits on it", function()
      if servers.run("command -v mariadb") ~= 0 then pending("needs the mariadb command-line client") end
      local row = sync_row("lock-row-pending", 1)
      local ctx = engine:context()
      local e = ctx:edit_entity(ctx:get_by_id(F, row.id))
      e.n = 5
      assert.is_true(ctx:flush_async())
      local locker = hold_row_lock(row.id, 2)
      local out = os.tmpname()
      local pid = au.spawn(au.consumer_cmd(REDIS_DB, "once", out, { defs = "faults" }))
      finally(function() au.kill(pid, "KILL") end)
      local q = queue_of(row.id)
      local seen = util.eventually(function() return q:stats().pending == 1 end, 2)
      locker:read("a")
      locker:close()
      assert(au.wait_exit(pid, 20), "the consumer did not finish")
      local result = au.read(out)
      os.remove(out)
      assert.is_true(seen, "stats().pending never showed the entry in hand")
      assert.matches("^ok ", result)
      assert.equal(0, q:stats().pending)
      assert.equal("5", sql_row(row.id).n)
    end)

    it("(lock wait timeout 1205) in non-blocking mode is returned after max_retries, nothing parked or skipped", function()
      if servers.run("command -v mariadb") ~= 0 then pending("needs the mariadb command-line client") end
      local row, ctx = queued_update_with_short_lock_wait("lock-row2")
      local locker = hold_row_lock(row.id, 4)
      local st, err = beeorm.consume_async_flush_events(ctx, false, { max_retries = 2 })
      local lock_was_held = #assert(engine:sql_query("SELECT 1 FROM information_schema.PROCESSLIST WHERE `INFO` = "
        .. "'SELECT SLEEP(4)'")) > 0
      locker:read("a")
      locker:close()
      assert(lock_was_held, "the lock was released before the consumer gave up: the test proves nothing")
      assert.is_nil(st)
      assert.equal(1205, err.code)
      assert.is_true(err.temporary)
      assert.same({}, au.errors(engine))
      assert.equal("1", sql_row(row.id).n)
      assert.equal(1, queue_of(row.id):stats().len)
      assert.equal(1, au.consume(ctx).events) -- the lock is gone now
      assert.equal("2", sql_row(row.id).n)
    end)
  end)

  describe("MariaDB restarted while a blocking consumer runs", function()
    local dir = os.getenv("BEEORM_TEST_SERVER_DIR")
    local consumer_pid, tmp = nil, {}

    -- The running mariadbd of the throwaway servers: pid and its exact command line.
    local function mariadbd()
      if not dir then return nil, "BEEORM_TEST_SERVER_DIR is not set (servers not started by scripts/servers.sh)" end
      local pid = tonumber((au.read(dir .. "/mysql/mysqld.pid"):match("%d+")))
      if not pid then return nil, "no " .. dir .. "/mysql/mysqld.pid" end
      local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
      if not f then return nil, "cannot read /proc/" .. pid .. "/cmdline" end
      local raw = f:read("a")
      f:close()
      local argv = {}
      for a in raw:gmatch("([^%z]*)%z") do argv[#argv + 1] = a end
      local line = table.concat(argv, " ")
      if not (argv[1] or ""):match("mariadbd$") and not (argv[1] or ""):match("mysqld$") then
        return nil, "pid " .. pid .. " is not mariadbd: " .. line
      end
      if not line:find("--datadir=" .. dir, 1, true) then
        return nil, "mariadbd " .. pid .. " does not serve " .. dir .. ": " .. line
      end
      return pid, argv
    end

    local function ping()
      return servers.run(string.format("mariadb-admin --no-defaults -S %s -uroot ping",
        util.shell_quote(dir .. "/mysql/mysqld.sock"))) == 0
    end

    teardown(function()
      if consumer_pid then
        au.kill(consumer_pid, "KILL")
        au.wait_exit(consumer_pid, 5)
      end
      for _, p in ipairs(tmp) do os.remove(p) end
    end)

    it("resumes once MariaDB is back, and applies everything exactly once", function()
      local pid, argv = mariadbd()
      if not pid then pending("cannot restart MariaDB safely: " .. tostring(argv)) end
      local out, log = os.tmpname(), os.tmpname()
      tmp = { out, log }
      for s = 0, au.SHARDS - 1 do util.redis_cli(REDIS_DB, "DEL", au.lease_key("default:" .. s)) end
      consumer_pid = au.spawn(au.consumer_cmd(REDIS_DB, "block", out, { max_batch = 5 }), log)
      local ctx = engine:context()
      local rows, expected = {}, {}
      for i = 1, 40 do
        rows[i] = ctx:new_entity(F, { name = "restart-" .. i, n = 0 })
        expected[i] = 0
      end
      assert.is_true(ctx:flush_async())
      local function applied() return au.all_applied(engine, REDIS_DB) end
      assert(util.eventually(applied, 20), "the first events were not applied: " .. au.read(log))

      -- stop MariaDB (SIGTERM, as a service manager would) and queue more while it is down
      au.kill(pid, "TERM")
      assert(au.wait_exit(pid, 60), "mariadbd " .. pid .. " did not stop within 60 s")
      local down_ok, down_err = pcall(function()
        for round = 1, 3 do
          for i = 1, 40, round do
            local e = ctx:edit_entity(assert(ctx:get_by_id(F, rows[i].id)))
            expected[i] = expected[i] + 1
            e.n = expected[i]
          end
          local ok, err = ctx:flush_async()
          assert(ok, "flush_async with MariaDB down failed: " .. tostring(err))
          util.sleep(0.3)
        end
        assert(au.alive(consumer_pid), "the consumer died while MariaDB was down: " .. au.read(out) .. au.read(log))
      end)

      -- start it again whatever happened, exactly as it ran: same binary, port and data
      local cmd = {}
      for i, a in ipairs(argv) do cmd[i] = util.shell_quote(a) end
      local new_pid = au.spawn(table.concat(cmd, " "), "/dev/null")
      -- scripts/servers.sh stop stops the pids it recorded: record the new one instead
      local recorded = au.read(dir .. "/pids")
      if recorded ~= "" then
        local f = assert(io.open(dir .. "/pids", "w"))
        f:write((recorded:gsub("mariadb " .. pid .. "\n", "mariadb " .. new_pid .. "\n")))
        f:close()
      end
      assert(util.eventually(ping, 60), "MariaDB did not come back")
      assert(down_ok, down_err)
      for i = 1, 40, 2 do
        local e = ctx:edit_entity(assert(ctx:get_by_id(F, rows[i].id)))
        expected[i] = expected[i] + 1
        e.n = expected[i]
      end
      assert.is_true(ctx:flush_async())
      assert(util.eventually(applied, 30), "the consumer did not resume within 30 s: " .. au.read(log))
      au.kill(consumer_pid, "TERM")
      assert(au.wait_exit(consumer_pid, 10), "the consumer did not stop on SIGTERM")
      consumer_pid = nil
      assert.matches("^ok ", au.read(out))
      for i, r in ipairs(rows) do
        assert.same({ id = tostring(r.id), name = "restart-" .. i, n = tostring(expected[i]) },
          assert(engine:sql_query("SELECT `id`, `name`, `n` FROM `" .. F .. "` WHERE `id` = ?", { r.id }))[1])
      end
      assert.same({}, au.errors(engine))
    end)
  end)
end)
