-- Caches that tell the truth under concurrency (issue 11, docs/guarantees.md G8): column-exact cache
-- writes, one tracked table per row (identity map), atomic increments, unique lookups
-- that obey the column's collation, two definitions of one table, clear_cache, and a
-- Redis that runs out of memory. Most of these are written against the contract before
-- the engine implements it: they fail until it does.
--
-- Child processes run spec/support/truth_child.lua (plain lua5.4) under `timeout`, so
-- none can outlive the run; each `it` stops the ones it started, also when it fails.
-- BEEORM_TRUTH_N (default 500): updates per writer process and round in the column
-- tests; BEEORM_TRUTH_INC (default 500): increments per process in the increment test.
-- The defaults are the issue's numbers: one round of 2 x 500 updates takes about 1 s on
-- the 2-core test machine and 8 x 500 increments about 7 s, so the whole file stays well
-- under a minute when everything passes (a failing round stops its test early).
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")
local defs = require("support.truth_defs")

local REDIS_DB = 9
local N = tonumber(os.getenv("BEEORM_TRUTH_N") or "500")
local INC = tonumber(os.getenv("BEEORM_TRUTH_INC") or "500")
local ROUNDS = 5
local ALTERNATIONS = 200 -- writes in the two-definitions test (half by each process)

local R, P, PERSON, C, TWO, OOM = "truth_row", "truth_product", "truth_person", "truth_cached", "truth_two",
  "truth_oom"
local TABLES = { R, P, PERSON, C, TWO }

local q = util.shell_quote

-- Closes every inherited descriptor above 2, then runs the rest of the command line (a
-- child must not keep this process's Redis subscriber socket open; see async_util.spawn).
local CLOSE_FDS = [[bash -c 'for fd in /proc/$$/fd/*; do n=${fd##*/}; ]]
  .. [[if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null; fi; done; exec "$@"' close-fds ]]

--- The command line of a truth_child.lua process, killed after `limit` seconds at most.
local function child_cmd(limit, mode, which, db, addr, ...)
  local args = {}
  for i = 1, select("#", ...) do args[#args + 1] = q(tostring(select(i, ...))) end
  return string.format("timeout -k 5 %d %s lua5.4 %s %s %s %d %s %s", limit, util.child_env(),
    q(servers.root .. "/spec/support/truth_child.lua"), mode, which, db, q(addr or "-"), table.concat(args, " "))
end

--- Starts cmd in the background with the given stdin and stdout (stderr to stderr_path,
--- or with stdout); returns its pid (that of `timeout`, which passes SIGTERM on).
local function spawn(cmd, stdin, stdout, stderr_path)
  local f = assert(io.popen(string.format("%s%s < %s > %s %s & echo $!", CLOSE_FDS, cmd, q(stdin), q(stdout),
    stderr_path and ("2> " .. q(stderr_path)) or "2>&1")))
  local pid = f:read("l")
  f:close()
  return assert(math.tointeger(tonumber(pid)), "no pid for: " .. cmd)
end

--- Stops a child started by spawn: SIGTERM (timeout passes it on), then SIGKILL.
local stop = au.stop

local tmp -- this file's scratch folder (FIFOs, child output)
local serial = 0
local function tmpfile(name)
  serial = serial + 1
  return string.format("%s/%s-%d", tmp, name, serial)
end

--- What a fresh process's first get_by_id says: "row <show>", "nil" or "error ...".
-- (db, addr: another Redis server, whose entity is defined by truth_defs.oom.)
local function fresh_get(entity, id, db, addr)
  local code, out = servers.run(child_cmd(60, "get", addr and "oom" or "main", db or REDIS_DB, addr, entity, id))
  local line = out:match("^[^\n]*")
  if code ~= 0 then return "exit " .. tostring(code) .. ": " .. out end
  return line
end

--- A peer process (truth_child.lua peer) driven by lines: commands go to its stdin through
--- one FIFO, answers come back on its stdout through another. This process holds the
--- command FIFO open for reading and writing, so a write never blocks or raises SIGPIPE
--- when the peer died; a read of a dead peer's answer gives EOF (and `timeout` bounds a
--- hung one).
local function start_peer(which, db, addr)
  local base = tmpfile("peer")
  local cmd_path, ans_path, log = base .. ".in", base .. ".out", base .. ".log"
  assert(servers.run("mkfifo " .. q(cmd_path) .. " " .. q(ans_path)) == 0, "mkfifo failed")
  local peer = { pid = spawn(child_cmd(300, "peer", which, db or REDIS_DB, addr), cmd_path, ans_path, log) }
  peer.w = assert(io.open(cmd_path, "r+"))
  peer.r = assert(io.open(ans_path, "r")) -- returns once the peer's shell opened its stdout
  local function dead(what)
    return "the peer process " .. what .. ": " .. au.read(log)
  end
  local first = peer.r:read("l")
  assert(first == "ready", dead("did not start (said " .. tostring(first) .. ")"))
  --- Sends one command line, returns the answer line.
  function peer:send(line)
    assert(not self.closed, "peer closed")
    self.w:write(line, "\n")
    self.w:flush()
    local answer = self.r:read("l")
    assert(answer, dead("died after: " .. line))
    return answer
  end
  function peer:close()
    if self.closed then return end
    self.closed = true
    if au.alive(self.pid) then
      self.w:write("quit\n")
      self.w:flush()
    end
    self.w:close()
    if au.wait_exit(self.pid, 5) then self.r:read("a") end
    stop(self.pid)
    self.r:close()
    os.remove(cmd_path)
    os.remove(ans_path)
    os.remove(log)
  end
  return peer
end

--- Starts a blocking consumer process (the beeorm host; no entity definitions).
local function start_consumer()
  local out, log = tmpfile("consumer.out"), tmpfile("consumer.log")
  local pid = au.spawn(au.consumer_cmd(REDIS_DB, "block", out, { defs = "none" }), log)
  return { pid = pid, out = out, log = log }
end

--- Stops it with SIGTERM (it finishes the batch in hand) and checks it ended well.
local function stop_consumer(c)
  if not c or c.stopped then return end
  c.stopped = true
  au.kill(c.pid, "TERM")
  local ok = au.wait_exit(c.pid, 15)
  if not ok then au.kill(c.pid, "KILL") end
  assert(ok, "the blocking consumer did not stop on SIGTERM: " .. au.read(c.log))
  assert.matches("^ok ", au.read(c.out), "the blocking consumer said: " .. au.read(c.out) .. au.read(c.log))
end

--- Waits until every queue of engine is empty and nothing is being applied.
local function wait_drained(engine, limit)
  local ok = util.eventually(function()
    return au.total(engine, "len") == 0 and au.total(engine, "pending") == 0
  end, limit or 30)
  assert(ok, "the queues were not drained within " .. (limit or 30) .. " s")
end

--- Polls until every file in paths exists.
local function wait_files(paths, limit)
  local ok = util.eventually(function()
    for _, p in ipairs(paths) do
      local f = io.open(p)
      if not f then return false end
      f:close()
    end
    return true
  end, limit or 30)
  assert(ok, "child processes did not get ready within " .. (limit or 30) .. " s")
end

local function touch(path)
  assert(io.open(path, "w")):close()
end

local function flush(c, how)
  if how == "sync" then return c:flush() end
  return c:flush_async()
end

local function int(v)
  return math.tointeger(tonumber(v))
end

describe("caches that tell the truth (G8)", function()
  local engine

  --- The MySQL row of entity `tbl` (text values) or nil.
  local function sql_row(tbl, id)
    return assert(engine:sql_query("SELECT * FROM `" .. tbl .. "` WHERE `id` = ?", { id }))[1]
  end

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, defs.main())
    au.reset(engine, REDIS_DB, TABLES)
    assert.equal(#TABLES, engine:sync_schema())
    -- the wider definition of truth_two is the newer deploy: it migrates the table
    local wide = util.engine(REDIS_DB, defs.wide())
    assert.equal(2, wide:sync_schema()) -- add `extra`, widen `n`
    wide:close()
    local f = assert(io.popen("mktemp -d " .. q(servers.build_dir .. "/truth.XXXXXX")))
    tmp = f:read("l")
    f:close()
    assert(tmp and tmp ~= "", "mktemp failed")
  end)

  teardown(function()
    if engine then
      au.finish(engine, REDIS_DB)
      engine = nil
    end
    collectgarbage()
    if tmp then os.execute("rm -rf " .. q(tmp)) end
  end)

  after_each(function()
    -- every test leaves its queues empty
    au.skip_all_errors(engine)
    au.consume(engine:context())
  end)

  -- ----------------------------------------------------------------------------------
  describe("column-exact cache writes", function()
    -- how each writer flushes: both flush_async, both flush, or one of each (the sync
    -- writer's cache update must not put back the column MySQL has not got yet)
    local variants = {
      { how = "async", n = "async", m = "async", says = "two processes flush_async different columns of one row" },
      { how = "sync", n = "sync", m = "sync", says = "two processes flush different columns of one row" },
      { how = "mixed", n = "async", m = "sync",
        says = "one process flush_asyncs a column of a row and another process flushes another column" },
    }
    for _, v in ipairs(variants) do
      local how = v.how
      it(string.format("keep both columns when %s, %d times each (%d rounds%s): every read-back matched, and a "
        .. "fresh process, this process and MySQL agree", v.says, N, ROUNDS,
        how ~= "sync" and ", a blocking consumer running" or ""), function()
        local pids, consumer = {}, nil
        finally(function()
          for _, pid in ipairs(pids) do stop(pid) end
          if consumer and not consumer.stopped then
            au.kill(consumer.pid, "KILL")
            au.wait_exit(consumer.pid, 5)
          end
        end)
        if how ~= "sync" then consumer = start_consumer() end
        for round = 1, ROUNDS do
          local c = engine:context()
          local name = how .. "-round-" .. round
          local row = c:new_entity(R, { n = 0, m = 0, name = name })
          assert.is_true(c:flush())
          assert.equal(0, engine:context():get_by_id(R, row.id).n) -- in this process's local cache
          local go = tmpfile("go")
          local kids = {}
          for _, field in ipairs({ "n", "m" }) do
            local kid = { field = field, out = tmpfile("columns-" .. field), ready = tmpfile("ready") }
            kid.pid = spawn(child_cmd(300, "columns", "main", REDIS_DB, "-", R, row.id, field, N, v[field], kid.ready,
              go), "/dev/null", kid.out)
            pids[#pids + 1] = kid.pid
            kids[#kids + 1] = kid
          end
          wait_files({ kids[1].ready, kids[2].ready })
          touch(go) -- both start together
          local problems = {}
          for _, kid in ipairs(kids) do
            assert(au.wait_exit(kid.pid, 240), "writer of " .. kid.field .. " did not finish within 240 s")
            local said = au.read(kid.out):gsub("\n$", "")
            if said ~= "done 0 -" then
              problems[#problems + 1] = "writer of " .. kid.field .. " (done <mismatches> <first i:read back>): " .. said
            end
          end
          if how ~= "sync" then wait_drained(engine) end
          local sql = sql_row(R, row.id)
          local want = string.format("m=%d n=%d name=%s", N, N, name)
          local got_sql = string.format("m=%s n=%s name=%s", sql.m, sql.n, sql.name)
          if got_sql ~= want then problems[#problems + 1] = "MySQL: " .. got_sql end
          local fresh = fresh_get(R, row.id)
          if fresh ~= "row " .. want then problems[#problems + 1] = "a fresh process: " .. fresh end
          local here = defs.show(engine:context():get_by_id(R, row.id))
          if here ~= want then problems[#problems + 1] = "this process: " .. here end
          assert(#problems == 0, string.format("round %d of %d (want %s):\n%s", round, ROUNDS, want,
            table.concat(problems, "\n")))
        end
        if consumer then stop_consumer(consumer) end
      end)
    end

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("keep both columns when two contexts of one process " .. verb .. " different columns of one row", function()
        local c0 = engine:context()
        local row = c0:new_entity(R, { n = 1, m = 1, name = "two-contexts-" .. how })
        assert.is_true(c0:flush())
        local a, b = engine:context(), engine:context()
        local ta = a:edit_entity(a:get_by_id(R, row.id))
        local tb = b:edit_entity(b:get_by_id(R, row.id))
        ta.n = 2
        tb.m = 3
        assert.is_true(flush(a, how))
        assert.is_true(flush(b, how))
        local want = "m=3 n=2 name=two-contexts-" .. how
        for label, c in pairs({ first = a, second = b, another = engine:context() }) do
          assert.equal(want, defs.show(c:get_by_id(R, row.id)), label .. " context, at once")
        end
        assert.equal("row " .. want, fresh_get(R, row.id))
        if how == "async" then au.consume(engine:context()) end
        local sql = sql_row(R, row.id)
        assert.same({ "2", "3" }, { sql.n, sql.m })
        assert.equal(want, defs.show(engine:context():get_by_id(R, row.id)))
      end)
    end
  end)

  -- ----------------------------------------------------------------------------------
  describe("one context tracks one table per row (identity map)", function()
    local function product(values)
      local c = engine:context()
      local t = c:new_entity(P, values)
      assert.is_true(c:flush())
      return t
    end

    it("edit_entity of one row twice, from two get_by_id results, returns the same table", function()
      local x = product({ name = "twice", stock = 10 })
      local ctx = engine:context()
      local a = ctx:edit_entity(ctx:get_by_id(P, x.id))
      local b = ctx:edit_entity(ctx:get_by_id(P, x.id))
      assert.is_true(rawequal(a, b), "two tables for one row: " .. tostring(a) .. " and " .. tostring(b))
    end)

    it("edit_entity of a row loaded by get_by_ids returns the table already tracked for that row", function()
      local x = product({ name = "by-ids", stock = 10 })
      local y = product({ name = "by-ids-2", stock = 10 })
      local ctx = engine:context()
      local a = ctx:edit_entity(ctx:get_by_id(P, x.id))
      local rows = ctx:get_by_ids(P, { y.id, x.id })
      assert.is_true(rawequal(a, ctx:edit_entity(rows[2])), "another table for the row get_by_id gave")
      assert.is_false(rawequal(a, ctx:edit_entity(rows[1])), "one table for two rows")
    end)

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("takes 2 off the stock for two lines of one product decremented through their tables and flushed once ("
        .. verb .. ")", function()
        local x = product({ name = "order-lines-" .. how, stock = 10 })
        local ctx = engine:context()
        local lines = { { product = x.id, qty = 1 }, { product = x.id, qty = 1 } }
        for _, line in ipairs(lines) do
          local t = ctx:edit_entity(ctx:get_by_id(P, line.product))
          t.stock = t.stock - line.qty
        end
        assert.is_true(flush(ctx, how))
        assert.equal(8, ctx:get_by_id(P, x.id).stock)
        assert.equal(8, engine:context():get_by_id(P, x.id).stock)
        if how == "async" then au.consume(ctx) end
        assert.equal("8", sql_row(P, x.id).stock)
        assert.equal(8, engine:context():get_by_id(P, x.id).stock)
      end)
    end

    it("edit_entity of a table new_entity returned gives that same table", function()
      local ctx = engine:context()
      local t = ctx:new_entity(P, { name = "new-then-edit", stock = 1 })
      local e = ctx:edit_entity(t)
      assert.is_true(rawequal(t, e), "edit_entity of a new table gave another table")
      e.stock = 2
      assert.is_true(ctx:flush())
      assert.equal("2", sql_row(P, t.id).stock)
    end)

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("writes a change made to a new_entity table after its " .. verb .. " with the next " .. verb, function()
        local ctx = engine:context()
        local t = ctx:new_entity(P, { name = "created-" .. how, stock = 1 })
        assert.is_true(flush(ctx, how))
        t.name = "x-" .. how
        assert.is_true(flush(ctx, how))
        assert.equal("x-" .. how, engine:context():get_by_id(P, t.id).name)
        if how == "async" then au.consume(ctx) end
        assert.equal("x-" .. how, sql_row(P, t.id).name)
        assert.equal("x-" .. how, engine:context():get_by_id(P, t.id).name)
      end)
    end

    it("writes only the columns changed since the last flush when an edit_entity table is flushed twice", function()
      local x = product({ name = "edited", stock = 10, label = "l0" })
      local ctx = engine:context()
      local t = ctx:edit_entity(ctx:get_by_id(P, x.id))
      t.label = "l1"
      assert.is_true(ctx:flush())
      -- another writer changes stock meanwhile; t still says 10 and must not write it back
      assert.equal(1, engine:sql_exec("UPDATE `" .. P .. "` SET `stock` = 77 WHERE `id` = ?", { x.id }))
      t.name = "edited-again"
      assert.is_true(ctx:flush())
      local sql = sql_row(P, x.id)
      assert.same({ name = "edited-again", label = "l1", stock = "77" },
        { name = sql.name, label = sql.label, stock = sql.stock })
      assert.equal("edited-again", engine:context():get_by_id(P, x.id).name)
    end)

    it("edit_entity after a flush returns the table tracked before it", function()
      local x = product({ name = "kept-tracked", stock = 1 })
      local ctx = engine:context()
      local t = ctx:edit_entity(ctx:get_by_id(P, x.id))
      t.stock = 2
      assert.is_true(ctx:flush())
      assert.is_true(rawequal(t, ctx:edit_entity(ctx:get_by_id(P, x.id))))
    end)

    it("forgets tracked tables on clear_flush: a change made after it is not written by the next flush", function()
      local x = product({ name = "forgotten", stock = 1, label = "kept" })
      local ctx = engine:context()
      local t = ctx:edit_entity(ctx:get_by_id(P, x.id))
      local n = ctx:new_entity(P, { name = "forgotten-new", stock = 1 })
      t.stock = 2
      assert.is_true(ctx:flush())
      ctx:clear_flush()
      t.label = "dropped"
      n.name = "dropped"
      assert.is_true(ctx:flush())
      assert.equal("kept", sql_row(P, x.id).label)
      assert.equal("forgotten-new", sql_row(P, n.id).name)
      -- and the next edit_entity starts from the row as it is
      local again = ctx:edit_entity(ctx:get_by_id(P, x.id))
      assert.is_false(rawequal(t, again))
      assert.equal("kept", again.label)
    end)

    it("deletes a row edited then deleted in one context, in MySQL and in every cache", function()
      local x = product({ name = "edit-delete", stock = 1 })
      local ctx = engine:context()
      local t = ctx:edit_entity(ctx:get_by_id(P, x.id))
      t.stock = 5
      ctx:delete_entity(t)
      assert.is_true(ctx:flush())
      assert.is_nil(sql_row(P, x.id))
      assert.is_nil(ctx:get_by_id(P, x.id))
      assert.is_nil(engine:context():get_by_id(P, x.id))
      assert.equal("nil", fresh_get(P, x.id))
    end)

    it("stays consistent when a row is deleted then edited in one context: the caches say what MySQL holds",
      function()
        local x = product({ name = "delete-edit", stock = 1 })
        local ctx = engine:context()
        local row = ctx:get_by_id(P, x.id)
        ctx:delete_entity(row)
        local edited, t = pcall(ctx.edit_entity, ctx, row)
        if edited then t.stock = 9 end
        local ok, err = ctx:flush()
        assert(ok or beeorm.is_error(err), "flush neither succeeded nor returned an error: " .. tostring(err))
        local sql = sql_row(P, x.id)
        local want = sql and string.format("name=%s stock=%s", sql.name, sql.stock) or "nil"
        for label, got in pairs({ same = ctx:get_by_id(P, x.id), another = engine:context():get_by_id(P, x.id) }) do
          assert.equal(want, got and string.format("name=%s stock=%s", got.name, got.stock) or "nil", label)
        end
      end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("ctx:increment", function()
    local function product(values)
      local c = engine:context()
      local t = c:new_entity(P, values)
      assert.is_true(c:flush())
      return t
    end

    local function need_increment(ctx)
      assert(type(ctx.increment) == "function", "ctx:increment does not exist")
    end

    it(string.format("adds exactly %d when 4 processes increment one row %d times through flush_async "
      .. "(a consumer running) and 4 through flush; a reader meanwhile never sees it go back", 8 * INC, INC), function()
      local x = product({ name = "counter", stock = 1000 })
      assert.equal(1000, engine:context():get_by_id(P, x.id).stock) -- warm in this process
      local pids, consumer = {}, nil
      finally(function()
        for _, pid in ipairs(pids) do stop(pid) end
        if consumer and not consumer.stopped then
          au.kill(consumer.pid, "KILL")
          au.wait_exit(consumer.pid, 5)
        end
      end)
      consumer = start_consumer()
      local go, kids, ready = tmpfile("go"), {}, {}
      for i = 1, 8 do
        local how = i <= 4 and "async" or "sync"
        local kid = { how = how, out = tmpfile("inc"), ready = tmpfile("ready") }
        kid.pid = spawn(child_cmd(300, "increments", "main", REDIS_DB, "-", P, x.id, "stock", INC, how, kid.ready, go),
          "/dev/null", kid.out)
        pids[#pids + 1] = kid.pid
        kids[i], ready[i] = kid, kid.ready
      end
      wait_files(ready)
      touch(go)
      local want = 1000 + 8 * INC
      -- while they run, this process reads the counter: it never goes back nor past the end
      local last, wrong, deadline = 1000, {}, util.now() + 240
      while true do
        local row, err = engine:context():get_by_id(P, x.id)
        local v = row and row.stock
        if math.type(v) ~= "integer" or v < last or v > want then
          if #wrong < 5 then wrong[#wrong + 1] = string.format("read %s after %d", tostring(v or err), last) end
        else
          last = v
        end
        local running = false
        for _, kid in ipairs(kids) do
          if au.alive(kid.pid) then
            running = true
            break
          end
        end
        if not running then break end
        assert(util.now() < deadline, "the incrementers did not finish within 240 s")
      end
      local problems = {}
      if #wrong > 0 then problems[#problems + 1] = "reads while they ran: " .. table.concat(wrong, "; ") end
      for i, kid in ipairs(kids) do
        local said = au.read(kid.out):gsub("\n$", "")
        if said ~= "done " .. INC then problems[#problems + 1] = "process " .. i .. " (" .. kid.how .. "): " .. said end
      end
      assert(#problems == 0, table.concat(problems, "\n"))
      wait_drained(engine)
      stop_consumer(consumer)
      assert.equal(tostring(want), sql_row(P, x.id).stock)
      assert.equal("row name=counter stock=" .. want, fresh_get(P, x.id))
      assert.equal(want, engine:context():get_by_id(P, x.id).stock)
    end)

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("shows an increment another process flushed (" .. verb .. ") at once in this process, and the other way round",
        function()
          local x = product({ name = "seen-" .. how, stock = 0 })
          local ctx = engine:context()
          need_increment(ctx)
          local peer = start_peer("main")
          finally(function() peer:close() end)
          local function peer_stock()
            local answer = peer:send("get " .. P .. " " .. x.id)
            return int(answer:match("stock=(%-?%d+)")) or answer
          end
          assert.equal(0, ctx:get_by_id(P, x.id).stock) -- cached in both processes
          assert.equal(0, peer_stock())
          local total, stale = 0, {}
          for k = 1, 10 do
            assert.equal("ok", peer:send(string.format("inc %s %d stock %d %s", P, x.id, k, how)))
            total = total + k
            local here = ctx:get_by_id(P, x.id).stock
            if here ~= total then stale[#stale + 1] = string.format("here after +%d: %s, want %d", k, here, total) end
            ctx:increment(P, x.id, "stock", -k * 2)
            assert.is_true(flush(ctx, how))
            total = total - k * 2
            local there = peer_stock()
            if there ~= total then
              stale[#stale + 1] = string.format("in the other process after -%d: %s, want %d", 2 * k, tostring(there), total)
            end
          end
          assert(#stale == 0, table.concat(stale, "\n"))
          if how == "async" then au.consume(ctx) end
          assert.equal(tostring(total), sql_row(P, x.id).stock)
        end)
    end

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("applies an increment and a plain set of another column of the same row in one " .. verb, function()
        local x = product({ name = "mixed-" .. how, stock = 5, label = "a" })
        local ctx = engine:context()
        need_increment(ctx)
        ctx:increment(P, x.id, "stock", 3)
        local t = ctx:edit_entity(ctx:get_by_id(P, x.id))
        t.label = "b"
        assert.is_true(flush(ctx, how))
        for label, c in pairs({ same = ctx, another = engine:context() }) do
          local row = c:get_by_id(P, x.id)
          assert.same({ 8, "b" }, { row.stock, row.label }, label)
        end
        if how == "async" then au.consume(ctx) end
        local sql = sql_row(P, x.id)
        assert.same({ "8", "b" }, { sql.stock, sql.label })
        local row = engine:context():get_by_id(P, x.id)
        assert.same({ 8, "b" }, { row.stock, row.label })
      end)
    end

    it("adds up two increments of one field tracked before one flush", function()
      local x = product({ name = "two-increments", stock = 20 })
      local ctx = engine:context()
      need_increment(ctx)
      ctx:increment(P, x.id, "stock", 2)
      ctx:increment(P, x.id, "stock", -7)
      assert.is_true(ctx:flush())
      assert.equal("15", sql_row(P, x.id).stock)
      assert.equal(15, engine:context():get_by_id(P, x.id).stock)
    end)

    it('adds exactly 1.00 to a decimal field incremented by "0.25" four times', function()
      local x = product({ name = "decimal", price = "10.50" })
      local ctx = engine:context()
      need_increment(ctx)
      for _ = 1, 4 do
        ctx:increment(P, x.id, "price", "0.25")
        assert.is_true(ctx:flush())
      end
      assert.equal("11.50", sql_row(P, x.id).price)
      assert.equal("11.50", ctx:get_by_id(P, x.id).price)
      assert.equal("11.50", engine:context():get_by_id(P, x.id).price)
      assert.equal("row name=decimal price=11.50", fresh_get(P, x.id))
    end)

    it('adds exactly 1.00 to a decimal field incremented by "0.10" ten times through flush_async, '
      .. "in the caches at once and in MySQL once consumed", function()
      local x = product({ name = "decimal-async", price = "11.50" })
      local ctx = engine:context()
      need_increment(ctx)
      for i = 1, 10 do
        ctx:increment(P, x.id, "price", "0.10")
        if i % 2 == 0 then assert.is_true(ctx:flush_async()) end -- two increments per flush
      end
      assert.equal("12.50", engine:context():get_by_id(P, x.id).price)
      assert.equal("row name=decimal-async price=12.50", fresh_get(P, x.id))
      au.consume(ctx)
      assert.equal("12.50", sql_row(P, x.id).price)
      assert.equal("12.50", engine:context():get_by_id(P, x.id).price)
    end)

    it("raises for an increment of an int field by a non-integer, and tracks nothing", function()
      local x = product({ name = "by-fraction", stock = 3 })
      local ctx = engine:context()
      need_increment(ctx)
      for _, delta in ipairs({ 1.5, "1.5", "x" }) do
        local ok = pcall(ctx.increment, ctx, P, x.id, "stock", delta)
        assert.is_false(ok, "increment by " .. tostring(delta) .. " did not raise")
      end
      assert.is_true(ctx:flush())
      assert.equal("3", sql_row(P, x.id).stock)
      assert.equal(3, engine:context():get_by_id(P, x.id).stock)
    end)

    it("raises for an increment of a string field, an unknown field or an unknown entity, and tracks nothing",
      function()
        local x = product({ name = "by-string", stock = 3, label = "5" })
        local ctx = engine:context()
        need_increment(ctx)
        local ok, err = pcall(ctx.increment, ctx, P, x.id, "label", 1)
        assert.is_false(ok, "increment of a string field did not raise")
        assert.matches("label", tostring(err))
        ok, err = pcall(ctx.increment, ctx, P, x.id, "nope", 1)
        assert.is_false(ok, "increment of an unknown field did not raise")
        assert.matches("nope", tostring(err))
        ok, err = pcall(ctx.increment, ctx, "truth_nope", x.id, "stock", 1)
        assert.is_false(ok, "increment of an unknown entity did not raise")
        assert.matches("truth_nope", tostring(err))
        assert.is_true(ctx:flush())
        assert.same({ "5", "3" }, { sql_row(P, x.id).label, sql_row(P, x.id).stock })
      end)

    it("fails a flush whose increment overflows the column with the MySQL errno, changing nothing and keeping it "
      .. "tracked", function()
      local x = product({ name = "overflow", tiny = 255 })
      local ctx = engine:context()
      need_increment(ctx)
      assert.equal(255, ctx:get_by_id(P, x.id).tiny)
      ctx:increment(P, x.id, "tiny", 1)
      local ok, err = ctx:flush()
      assert.is_nil(ok)
      assert.is_true(beeorm.is_error(err), tostring(err))
      assert.is_number(err.code, tostring(err))
      assert(err.code == 1264 or err.code == 1690, "errno " .. tostring(err.code) .. ": " .. tostring(err))
      assert.equal("255", sql_row(P, x.id).tiny)
      assert.equal(255, ctx:get_by_id(P, x.id).tiny)
      assert.equal(255, engine:context():get_by_id(P, x.id).tiny)
      assert.equal("row name=overflow tiny=255", fresh_get(P, x.id))
      -- still tracked (G6): the same flush fails the same way; forgotten, nothing is left to write
      local ok2, err2 = ctx:flush()
      assert.is_nil(ok2)
      assert.equal(err.code, err2 and err2.code)
      ctx:clear_flush()
      assert.is_true(ctx:flush())
      assert.equal("255", sql_row(P, x.id).tiny)
    end)

    it("parks a flush_async increment that overflows the column in the error list; get_by_id then returns what "
      .. "MySQL holds", function()
      local x = product({ name = "overflow-async", tiny = 255 })
      local ctx = engine:context()
      need_increment(ctx)
      assert.equal(255, ctx:get_by_id(P, x.id).tiny)
      ctx:increment(P, x.id, "tiny", 1)
      local ok, err = ctx:flush_async()
      assert.is_nil(err)
      assert.is_true(ok)
      local st = au.consume(engine:context())
      assert.equal(1, st.failed)
      local mine = {}
      for _, ev in ipairs(au.errors(engine)) do
        if ev.entity == P and ev.id == x.id then mine[#mine + 1] = ev end
      end
      assert.equal(1, #mine, au.describe_errors(au.errors(engine)))
      assert.is_number(mine[1].error.code)
      assert(mine[1].error.code == 1264 or mine[1].error.code == 1690, "errno " .. tostring(mine[1].error.code))
      assert.same({ tiny = true }, mine[1].increments) -- the parked event says its column is an increment
      assert.equal(1, mine[1].values.tiny)
      assert.matches("`tiny`=`tiny`%+%(1%)", mine[1].sql)
      assert.equal("255", sql_row(P, x.id).tiny)
      assert.equal(255, ctx:get_by_id(P, x.id).tiny)
      assert.equal(255, engine:context():get_by_id(P, x.id).tiny)
      assert.equal("row name=overflow-async tiny=255", fresh_get(P, x.id))
    end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("unique lookups obey the column's collation", function()
    local ALICE = { "alice", "ALICE", "Alice ", "Alice" }
    local BOB = { "bob", "Bob", "BOB", "Bob " }

    before_each(function()
      assert(engine:sql_exec("DELETE FROM `" .. PERSON .. "`"))
      for _, k in ipairs(util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. PERSON .. "}:*")) do
        util.redis_cli(REDIS_DB, "DEL", k)
      end
    end)

    --- Every spelling (read twice: the second read is served by the cache) finds want_id
    --- (false: nothing), through every context given.
    local function expect(contexts, spellings, want_id, when)
      local bad = {}
      for label, c in pairs(contexts) do
        for _, v in ipairs(spellings) do
          for read = 1, 2 do
            local row, err = c:get_by_unique_index(PERSON, "name", v)
            assert(err == nil, tostring(err))
            local got = row and row.id or false
            if got ~= want_id then
              bad[#bad + 1] = string.format("%s context, %q (read %d) -> %s", label, v, read, tostring(got))
            end
          end
        end
      end
      assert(#bad == 0, when .. ", want " .. tostring(want_id) .. ":\n" .. table.concat(bad, "\n"))
    end

    it("find a row by every spelling its collation equates (case, trailing spaces)", function()
      local ctx = engine:context()
      local t = ctx:new_entity(PERSON, { name = "Alice" })
      assert.is_true(ctx:flush())
      expect({ same = ctx, another = engine:context() }, ALICE, t.id, "after the insert")
    end)

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("follow a rename through " .. verb .. ": no spelling of the old value finds the row, every spelling of the "
        .. "new one does", function()
        local ctx = engine:context()
        local t = ctx:new_entity(PERSON, { name = "Alice" })
        assert.is_true(ctx:flush())
        local reader = engine:context()
        expect({ reader = reader }, ALICE, t.id, "before the rename")
        expect({ reader = reader }, BOB, false, "before the rename") -- cached as not found
        local e = ctx:edit_entity(ctx:get_by_id(PERSON, t.id))
        e.name = "Bob"
        assert.is_true(flush(ctx, how))
        if how == "async" then
          expect({ same = ctx, reader = reader, another = engine:context() }, { "Bob" }, t.id,
            "after the flush_async, before any consumer ran")
          expect({ same = ctx, reader = reader, another = engine:context() }, ALICE, false,
            "after the flush_async, before any consumer ran")
          au.consume(engine:context())
        end
        expect({ same = ctx, reader = reader, another = engine:context() }, ALICE, false, "after the rename")
        expect({ same = ctx, reader = reader, another = engine:context() }, BOB, t.id, "after the rename")
      end)
    end

    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it("do not let a cached not-found of one spelling hide a row inserted under another (" .. verb .. ")", function()
        local reader = engine:context()
        expect({ reader = reader }, { "carol" }, false, "before the insert") -- cached as not found
        local ctx = engine:context()
        local t = ctx:new_entity(PERSON, { name = "Carol" })
        assert.is_true(flush(ctx, how))
        if how == "async" then
          expect({ reader = reader, another = engine:context() }, { "Carol" }, t.id, "after the flush_async, at once")
          au.consume(engine:context())
        end
        expect({ reader = reader, another = engine:context() }, { "carol", "Carol", "CAROL", "carol " }, t.id,
          "after the insert")
      end)
    end
  end)

  -- ----------------------------------------------------------------------------------
  describe("two definitions of one table (a rolling deploy)", function()
    for _, how in ipairs({ "sync", "async" }) do
      local verb = how == "async" and "flush_async" or "flush"
      it(string.format("show a write under one definition at once under the other, in another process: %d "
        .. "alternating writes (%s%s)", ALTERNATIONS, verb, how == "async" and ", a blocking consumer running" or ""),
        function()
          local ctx = engine:context()
          local row = ctx:new_entity(TWO, { name = "two-" .. how, n = 0 })
          assert.is_true(ctx:flush())
          local peer, consumer
          finally(function()
            if peer then peer:close() end
            if consumer and not consumer.stopped then
              au.kill(consumer.pid, "KILL")
              au.wait_exit(consumer.pid, 5)
            end
          end)
          peer = start_peer("wide")
          if how == "async" then consumer = start_consumer() end
          local get = "get " .. TWO .. " " .. row.id
          local name = "two-" .. how
          assert.equal("row n=0 name=" .. name, peer:send(get))
          assert.equal(0, ctx:get_by_id(TWO, row.id).n)
          -- B sets the column only it knows; A's writes must not drop it from B's view
          assert.equal("ok", peer:send(string.format("set %s %d extra keep %s", TWO, row.id, how)))
          local stale, count = {}, 0
          for i = 1, ALTERNATIONS, 2 do
            local t = ctx:edit_entity(ctx:get_by_id(TWO, row.id))
            t.n = i
            assert.is_true(flush(ctx, how))
            local there = peer:send(get)
            if there ~= string.format("row extra=keep n=%d name=%s", i, name) then
              count = count + 1
              if #stale < 5 then stale[#stale + 1] = "B after A wrote n=" .. i .. ": " .. there end
            end
            assert.equal("ok", peer:send(string.format("set %s %d n %d %s", TWO, row.id, i + 1, how)))
            local here = ctx:get_by_id(TWO, row.id)
            if not here or here.n ~= i + 1 then
              count = count + 1
              if #stale < 5 then stale[#stale + 1] = "A after B wrote n=" .. (i + 1) .. ": " .. defs.show(here) end
            end
          end
          assert(count == 0, count .. " stale reads of " .. ALTERNATIONS .. ", the first ones:\n" .. table.concat(stale, "\n"))
          if how == "async" then
            wait_drained(engine)
            stop_consumer(consumer)
          end
          local sql = sql_row(TWO, row.id)
          assert.same({ n = tostring(ALTERNATIONS), extra = "keep" }, { n = sql.n, extra = sql.extra })
          assert.equal(string.format("row extra=keep n=%d name=%s", ALTERNATIONS, name), peer:send(get))
          assert.equal(ALTERNATIONS, engine:context():get_by_id(TWO, row.id).n)
        end)
    end
  end)

  -- ----------------------------------------------------------------------------------
  describe("engine:clear_cache", function()
    local function need_clear_cache()
      assert(type(engine.clear_cache) == "function", "engine:clear_cache does not exist")
    end

    -- each test starts from an empty table and no Redis key of it (rows a failed test
    -- changed behind the caches must not spoil the next one)
    before_each(function()
      assert(engine:sql_exec("DELETE FROM `" .. C .. "`"))
      for _, k in ipairs(util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. C .. "}:*")) do
        util.redis_cli(REDIS_DB, "DEL", k)
      end
    end)

    --- "id:name,..." of every row of truth_cached in MySQL, by id.
    local function sql_all()
      local parts = {}
      for _, r in ipairs(assert(engine:sql_query("SELECT `id`, `name` FROM `" .. C .. "` ORDER BY `id`"))) do
        parts[#parts + 1] = r.id .. ":" .. tostring(r.name)
      end
      return "ids " .. table.concat(parts, ",")
    end

    --- The same through get_all of context c.
    local function cached_all(c)
      local rows = assert(c:get_all(C))
      table.sort(rows, function(a, b) return a.id < b.id end)
      local parts = {}
      for _, r in ipairs(rows) do parts[#parts + 1] = r.id .. ":" .. tostring(r.name) end
      return "ids " .. table.concat(parts, ",")
    end

    local function unique_id(c, v)
      local row = c:get_by_unique_index(C, "name", v)
      return row and row.id or false
    end

    local function peer_unique(peer, v)
      local answer = peer:send("unique " .. C .. " name " .. v)
      if answer == "nil" then return false end
      return int(answer:match("^row (%d+) ")) or answer
    end

    it("leaves get_by_id showing the old value after a plain SQL update (the documented bypass)", function()
      local ctx = engine:context()
      local t = ctx:new_entity(C, { name = "cc-bypass", note = "old" })
      assert.is_true(ctx:flush())
      assert.equal("old", ctx:get_by_id(C, t.id).note)
      assert.equal(1, engine:sql_exec("UPDATE `" .. C .. "` SET `note` = ? WHERE `id` = ?", { "new", t.id }))
      assert.equal("old", ctx:get_by_id(C, t.id).note)
      assert.equal("old", engine:context():get_by_id(C, t.id).note)
    end)

    it("with ids makes get_by_id, get_by_unique_index and get_all say what MySQL holds, here and in a process "
      .. "that had the row in its local cache", function()
      local ctx = engine:context()
      local r1 = ctx:new_entity(C, { name = "cc-1", note = "a" })
      local r2 = ctx:new_entity(C, { name = "cc-2", note = "b" })
      assert.is_true(ctx:flush())
      local peer = start_peer("main")
      finally(function() peer:close() end)
      local get1 = "get " .. C .. " " .. r1.id
      for _ = 1, 2 do -- the second round is served by the caches
        assert.equal("row name=cc-1 note=a", peer:send(get1))
        assert.equal(r1.id, peer_unique(peer, "cc-1"))
        assert.is_false(peer_unique(peer, "cc-1x"))
        assert.equal(sql_all(), peer:send("all " .. C))
        assert.equal("name=cc-1 note=a", defs.show(ctx:get_by_id(C, r1.id)))
        assert.equal(r1.id, unique_id(ctx, "cc-1"))
        assert.is_false(unique_id(ctx, "cc-1x"))
        assert.equal(sql_all(), cached_all(ctx))
      end
      local before_all = sql_all()
      assert.equal(1, engine:sql_exec("UPDATE `" .. C .. "` SET `name` = ?, `note` = ? WHERE `id` = ?",
        { "cc-1x", "a2", r1.id }))
      assert.equal("name=cc-1 note=a", defs.show(ctx:get_by_id(C, r1.id))) -- the bypass
      need_clear_cache()
      assert(engine:clear_cache(C, { r1.id }))
      for label, c in pairs({ same = ctx, another = engine:context() }) do
        assert.equal("name=cc-1x note=a2", defs.show(c:get_by_id(C, r1.id)), label)
        assert.equal(r1.id, unique_id(c, "cc-1x"), label)
        assert.is_false(unique_id(c, "cc-1"), label)
        assert.equal(sql_all(), cached_all(c), label)
        assert.equal("name=cc-2 note=b", defs.show(c:get_by_id(C, r2.id)), label)
      end
      assert.are_not.equal(before_all, sql_all())
      assert.equal("row name=cc-1x note=a2", peer:send(get1))
      assert.equal(r1.id, peer_unique(peer, "cc-1x"))
      assert.is_false(peer_unique(peer, "cc-1"))
      assert.equal(sql_all(), peer:send("all " .. C))
    end)

    it("without ids clears every row, unique key and list of the entity, here and in another process", function()
      local ctx = engine:context()
      local r3 = ctx:new_entity(C, { name = "cc-3", note = "c" })
      local r4 = ctx:new_entity(C, { name = "cc-4", note = "d" })
      assert.is_true(ctx:flush())
      local inserted = 990000001
      local peer = start_peer("main")
      finally(function() peer:close() end)
      for _ = 1, 2 do
        assert.equal("row name=cc-3 note=c", peer:send("get " .. C .. " " .. r3.id))
        assert.equal("row name=cc-4 note=d", peer:send("get " .. C .. " " .. r4.id))
        assert.equal("nil", peer:send("get " .. C .. " " .. inserted))
        assert.equal(r3.id, peer_unique(peer, "cc-3"))
        assert.is_false(peer_unique(peer, "cc-sql"))
        assert.equal(sql_all(), peer:send("all " .. C))
        assert.equal("name=cc-3 note=c", defs.show(ctx:get_by_id(C, r3.id)))
        assert.is_nil(ctx:get_by_id(C, inserted))
        assert.equal(r3.id, unique_id(ctx, "cc-3"))
        assert.is_false(unique_id(ctx, "cc-sql"))
        assert.equal(sql_all(), cached_all(ctx))
      end
      assert.equal(1, engine:sql_exec("UPDATE `" .. C .. "` SET `name` = ? WHERE `id` = ?", { "cc-3x", r3.id }))
      assert.equal(1, engine:sql_exec("UPDATE `" .. C .. "` SET `note` = ? WHERE `id` = ?", { "z", r4.id }))
      assert.equal(1, engine:sql_exec("INSERT INTO `" .. C .. "` (`id`, `name`, `note`) VALUES (?, ?, ?)",
        { inserted, "cc-sql", "s" }))
      assert.are_not.equal(sql_all(), cached_all(ctx)) -- the bypass: the list is stale
      need_clear_cache()
      assert(engine:clear_cache(C))
      for label, c in pairs({ same = ctx, another = engine:context() }) do
        assert.equal("name=cc-3x note=c", defs.show(c:get_by_id(C, r3.id)), label)
        assert.equal("name=cc-4 note=z", defs.show(c:get_by_id(C, r4.id)), label)
        assert.equal("name=cc-sql note=s", defs.show(c:get_by_id(C, inserted)), label)
        assert.equal(r3.id, unique_id(c, "cc-3x"), label)
        assert.is_false(unique_id(c, "cc-3"), label)
        assert.equal(inserted, unique_id(c, "cc-sql"), label)
        assert.equal(sql_all(), cached_all(c), label)
      end
      assert.equal("row name=cc-3x note=c", peer:send("get " .. C .. " " .. r3.id))
      assert.equal("row name=cc-4 note=z", peer:send("get " .. C .. " " .. r4.id))
      assert.equal("row name=cc-sql note=s", peer:send("get " .. C .. " " .. inserted))
      assert.equal(r3.id, peer_unique(peer, "cc-3x"))
      assert.is_false(peer_unique(peer, "cc-3"))
      assert.equal(inserted, peer_unique(peer, "cc-sql"))
      assert.equal(sql_all(), peer:send("all " .. C))
    end)

    it("raises for an unknown entity", function()
      need_clear_cache()
      local ok, err = pcall(engine.clear_cache, engine, "truth_nope")
      assert.is_false(ok)
      assert.matches("truth_nope", tostring(err))
      ok, err = pcall(engine.clear_cache, engine, "truth_nope", { 1 })
      assert.is_false(ok)
      assert.matches("truth_nope", tostring(err))
    end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("flush_async with the cache on another Redis pool than the queue", function()
    local FAR, CACHE_DB = "truth_far", 14
    local far

    local function far_engine()
      local r = beeorm.registry()
      assert(r:register_mysql(servers.mysql))
      assert(r:register_redis(servers.redis, REDIS_DB)) -- "default": the queue
      assert(r:register_redis(servers.redis, CACHE_DB, "cache"))
      assert(r:register_entity { name = FAR, redis_cache = "cache", cache_all = true, local_cache = true,
        fields = { { "name", "string", length = 50, unique = "name" }, { "status", "string", length = 10 },
                   { "n", "int" } },
        indexes = { by_status = { "status", cached = true } } })
      return assert(r:validate())
    end

    setup(function()
      far = far_engine()
      assert(far:sql_exec("DROP TABLE IF EXISTS `" .. FAR .. "`"))
      util.flushdb(CACHE_DB)
      assert.equal(1, far:sync_schema())
    end)

    teardown(function()
      if far then
        au.consume(far:context())
        far:close()
        far = nil
      end
    end)

    local function far_keys(pattern)
      return util.redis_keys(CACHE_DB, "bee:{" .. util.database() .. "." .. FAR .. "}:" .. pattern)
    end

    it("shows the change at once on that pool, and the consumer clears its pending marks there", function()
      local ctx = far:context()
      local t = ctx:new_entity(FAR, { name = "far-1", status = "new", n = 1 })
      assert.is_true(ctx:flush_async())
      local reader = far:context()
      assert.same({ t.id }, util.ids(reader:get_all(FAR)))
      assert.equal(t.id, reader:get_by_unique_index(FAR, "name", "far-1").id)
      assert.same({ t.id }, util.ids(reader:get_by_index(FAR, "by_status", "new")))
      assert.is_true(#far_keys("p:*") >= 1, "no pending mark on the cache pool")
      t.status, t.n = "done", 2
      assert.is_true(ctx:flush_async())
      assert.equal("done", far:context():get_by_id(FAR, t.id).status)
      assert.same({}, util.ids(far:context():get_by_index(FAR, "by_status", "new")))
      local fresh = far_engine() -- an empty local cache: what Redis holds
      assert.equal("n=2 name=far-1 status=done", defs.show(fresh:context():get_by_id(FAR, t.id)))
      fresh:close()
      au.consume(far:context())
      assert.same({}, far_keys("p:*"), "pending marks left on the cache pool")
      local row = assert(far:sql_query("SELECT `status`, `n` FROM `" .. FAR .. "` WHERE `id` = ?", { t.id }))[1]
      assert.same({ status = "done", n = "2" }, row)
      assert.same({ t.id }, util.ids(far:context():get_by_index(FAR, "by_status", "done")))
    end)
  end)

  -- ----------------------------------------------------------------------------------
  describe("on a Redis server out of memory", function()
    local pid, port, dir, oom_engine
    local FILLER = "truth:filler"

    local function cli(...)
      local args = {}
      for i = 1, select("#", ...) do args[#args + 1] = q(select(i, ...)) end
      local code, out = servers.run(string.format("redis-cli -h 127.0.0.1 -p %d %s", port, table.concat(args, " ")))
      assert(code == 0, "redis-cli failed: " .. out)
      return out
    end

    --- Fills the server until it refuses writes: an 8 MB key, then maxmemory 2 MB below
    --- what it uses (noeviction).
    local function fill()
      cli("SETRANGE", FILLER, "8000000", "x")
      local used = assert(tonumber(cli("INFO", "memory"):match("used_memory:(%d+)")))
      cli("CONFIG", "SET", "maxmemory", tostring(used - 2 * 1024 * 1024))
      assert.matches("OOM", cli("SET", "truth:probe", "1"))
    end

    --- Frees the memory the filler took (maxmemory stays set).
    local function free()
      cli("DEL", FILLER)
      assert.matches("OK", cli("SET", "truth:probe", "1"))
    end

    --- Entries waiting in the queues of the server (XLEN of every shard stream).
    local function queued()
      local n = 0
      for s = 0, au.SHARDS - 1 do n = n + assert(tonumber(cli("XLEN", au.stream_key("default:" .. s)):match("%d+"))) end
      return n
    end

    setup(function()
      local f = assert(io.popen("mktemp -d " .. q(servers.build_dir .. "/truth-oom.XXXXXX")))
      dir = f:read("l")
      f:close()
      assert(dir and dir ~= "", "mktemp failed")
      pid, port = au.start_redis_anywhere(dir)
      cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
      local r = beeorm.registry()
      assert(r:register_mysql(servers.mysql))
      assert(r:register_redis("127.0.0.1:" .. port, 0))
      for _, def in ipairs(defs.oom()) do assert(r:register_entity(def)) end
      oom_engine = assert(r:validate())
      util.drop(oom_engine, { OOM })
      assert.equal(1, oom_engine:sync_schema())
    end)

    teardown(function()
      if oom_engine then
        pcall(function()
          cli("CONFIG", "SET", "maxmemory", "0")
          au.drain(oom_engine)
        end)
        oom_engine:close()
        oom_engine = nil
      end
      collectgarbage()
      if pid then au.stop(pid) end
      if dir then os.execute("rm -rf " .. q(dir)) end
    end)

    after_each(function()
      pcall(cli, "DEL", FILLER)
      pcall(cli, "CONFIG", "SET", "maxmemory", "0")
    end)

    it("a sync flush of an edit returns true or a temporary out-of-memory error, and a fresh process reads what "
      .. "MySQL holds", function()
      local ctx = oom_engine:context()
      local t = ctx:new_entity(OOM, { name = "before", n = 1 })
      assert.is_true(ctx:flush())
      assert.equal("before", oom_engine:context():get_by_id(OOM, t.id).name) -- cached
      assert.equal("row n=1 name=before", fresh_get(OOM, t.id, 0, "127.0.0.1:" .. port))
      fill()
      local e = ctx:edit_entity(ctx:get_by_id(OOM, t.id))
      e.name = "after"
      local ok, err = ctx:flush()
      local problems = {}
      if not ok then
        if not (beeorm.is_error(err) and err.temporary == true and tostring(err.message):lower():find("out of memory")) then
          problems[#problems + 1] = "the flush failed, but not with a temporary out-of-memory error: " .. tostring(err)
            .. " (temporary: " .. tostring(err and err.temporary) .. ")"
        end
      end
      local sql = assert(oom_engine:sql_query("SELECT `name`, `n` FROM `" .. OOM .. "` WHERE `id` = ?", { t.id }))[1]
      local want = string.format("n=%s name=%s", sql.n, sql.name)
      local function check(label, got)
        got = got:gsub("^row ", "") -- a child prints "row ..."
        if got ~= want then problems[#problems + 1] = label .. ": " .. got .. " (MySQL: " .. want .. ")" end
      end
      check("a fresh process under OOM", fresh_get(OOM, t.id, 0, "127.0.0.1:" .. port))
      check("this process under OOM", defs.show(oom_engine:context():get_by_id(OOM, t.id)))
      free()
      check("a fresh process once memory is free", fresh_get(OOM, t.id, 0, "127.0.0.1:" .. port))
      assert(#problems == 0, table.concat(problems, "\n"))
    end)

    it("flush_async returns a temporary out-of-memory error, queues nothing, changes no cache and keeps the "
      .. "change tracked until memory is freed", function()
      local ctx = oom_engine:context()
      local t = ctx:new_entity(OOM, { name = "a0", n = 1 })
      assert.is_true(ctx:flush())
      assert.equal("a0", oom_engine:context():get_by_id(OOM, t.id).name)
      local before = queued()
      fill()
      local e = ctx:edit_entity(ctx:get_by_id(OOM, t.id))
      e.name = "a1"
      local ok, err = ctx:flush_async()
      local problems = {}
      local function check(label, want, got)
        if want ~= got then
          problems[#problems + 1] = string.format("%s: %s, want %s", label, tostring(got), tostring(want))
        end
      end
      if ok or not (beeorm.is_error(err) and err.temporary == true
        and tostring(err.message):lower():find("out of memory")) then
        problems[#problems + 1] = "flush_async under OOM returned " .. tostring(ok) .. ", " .. tostring(err)
          .. " (temporary: " .. tostring(err and err.temporary) .. "), want nil and a temporary out-of-memory error"
      end
      check("entries queued under OOM", before, queued())
      check("this process under OOM", "a0", oom_engine:context():get_by_id(OOM, t.id).name)
      check("a fresh process under OOM", "row n=1 name=a0", fresh_get(OOM, t.id, 0, "127.0.0.1:" .. port))
      free()
      local ok2, err2 = ctx:flush_async() -- the change is still tracked
      check("the same flush_async once memory is free", "true nil", tostring(ok2) .. " " .. tostring(err2))
      check("entries queued once memory is free", before + 1, queued())
      check("this process once memory is free", "a1", oom_engine:context():get_by_id(OOM, t.id).name)
      au.consume(oom_engine:context())
      check("MySQL once consumed", "a1", assert(oom_engine:sql_query("SELECT `name` FROM `" .. OOM
        .. "` WHERE `id` = ?", { t.id }))[1].name)
      assert(#problems == 0, table.concat(problems, "\n"))
    end)
  end)
end)
