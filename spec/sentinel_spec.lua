-- Redis behind Sentinel (issue 13; docs/guarantees.md G1, G8, G9, G11): registering a pool through
-- the sentinels (Lua and YAML), the errors a bad setup gives (naming the pool, never a
-- password), flush, flush_async, loaders and local caches through a failover,
-- flush_async durable on replicas (WAIT), and ids that stay unique across failovers.
--
-- Servers: the shared throwaway MariaDB, and a Sentinel set of this file's own (a
-- primary, two replicas, three sentinels; scripts/servers.sh sentinel), stopped by pid
-- in teardown. Child processes (the id allocators) are stopped by pid as well.
-- Scale: BEEORM_SN_FAILOVERS (default 2) failovers in the id test.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local FAILOVERS = tonumber(os.getenv("BEEORM_SN_FAILOVERS") or "") or 2
local T = "sn_item"

local item_def = {
  name = T,
  redis_cache = true,
  local_cache = true,
  fields = {
    { "name", "string", length = 60 },
    { "n", "int" },
  },
}

local function cli(port, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = util.shell_quote(tostring(a)) end
  local code, out = servers.run("redis-cli -p " .. port .. " " .. table.concat(args, " "))
  return (out:gsub("%s+$", "")), code
end

local function role(port)
  return (cli(port, "role"):match("^(%w+)"))
end

local function engine_for(set, opts, defs, master)
  local reg = beeorm.registry()
  assert(reg:register_mysql(servers.mysql))
  assert(reg:register_redis_sentinel(master or set.master_name, 0, set.sentinels, "default", opts))
  for _, d in ipairs(defs or { item_def }) do assert(reg:register_entity(d)) end
  return reg:validate()
end

local function name_of(set, port)
  for name, p in pairs(set.nodes) do if p == port then return name end end
end

-- SIGKILLs the master, waits for a promotion, brings the old one back as a replica.
-- lossy: every id counter on the replicas is first set 2000 behind the master's, so the
-- replica promoted has missed the last counter writes, as when a failover loses the
-- writes the master acknowledged but had not yet sent (ids do not wait for replicas).
local function fail_over(set, lossy)
  local old = set:master()
  local old_name = assert(name_of(set, old))
  if lossy then
    local keys = cli(old, "--scan", "--pattern", "*}:ids")
    for name, port in pairs(set.nodes) do
      if port ~= old then
        cli(port, "config", "set", "replica-read-only", "no")
        for key in keys:gmatch("[^\n]+") do
          local v = tonumber((cli(old, "get", key)))
          if v and v > 2000 then cli(port, "set", key, v - 2000) end
        end
        cli(port, "config", "set", "replica-read-only", "yes")
      end
    end
  end
  au.kill(set:pid(old_name), "KILL")
  local new
  assert(util.eventually(function()
    new = set:master()
    return new ~= nil and new ~= old and role(new) == "master"
  end, 30), "no failover within 30 s")
  set:restart(old_name)
  assert(util.eventually(function()
    return cli(old, "info", "replication"):match("master_link_status:up") ~= nil
  end, 30), "the old master did not come back as a replica")
  return new, old
end

-- Exactly n replicas connected to port and every one of them online (in sync).
local function replicas_online(port, n)
  local info = cli(port, "info", "replication")
  local online = select(2, info:gsub("state=online", ""))
  return info:match("connected_slaves:" .. n .. "%s") ~= nil and online == n
end

-- Calls fn until it returns a true first value; every failure must be temporary.
local function until_ok(fn, limit)
  local t0 = util.now()
  local errors = {}
  while true do
    local ok, err = fn()
    if ok then return ok, util.now() - t0, errors end
    assert(err and err.temporary, "a permanent error: " .. tostring(err))
    errors[#errors + 1] = tostring(err)
    assert(util.now() - t0 < (limit or 30), "no success within " .. (limit or 30) .. " s; last: " .. tostring(err))
    util.sleep(0.1)
  end
end

describe("Redis behind Sentinel", function()
  local set

  setup(function()
    servers.need()
    set = servers.sentinel_set()
    local e = assert(engine_for(set, nil))
    e:sql_exec("DROP TABLE IF EXISTS `" .. T .. "`")
    assert(e:sync_schema())
    e:close()
  end)

  teardown(function()
    if set then set:stop() end
  end)

  it("registers from Lua: engine:pools() shows the master the sentinels name, and every path works", function()
    local engine = assert(engine_for(set, { timeout_ms = 2000, connect_timeout_ms = 500 }))
    local pools = engine:pools()
    local redis
    for _, p in ipairs(pools) do if p.kind == "redis" then redis = p end end
    assert.equal("127.0.0.1:" .. set:master(), redis.master)
    assert.matches("^sentinel://mymaster@", redis.address)
    local ctx = engine:context()
    local row = ctx:new_entity(T, { name = "lua", n = 1 })
    assert(ctx:flush())
    local again = engine:context():get_by_id(T, row.id)
    assert.equal("lua", again.name)
    local e = ctx:edit_entity(again)
    e.name = "async"
    assert(ctx:flush_async())
    assert.equal("async", engine:context():get_by_id(T, row.id).name)
    au.consume(engine:context())
    local rows = engine:sql_query("SELECT name FROM `" .. T .. "` WHERE id = ?", { row.id })
    assert.equal("async", rows[1].name)
    engine:close()
  end)

  it("loads BeeORM's sentinel: key from YAML with replicas and wait_timeout_ms", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("default:\n  mysql: ", servers.mysql, "\n  sentinel:\n    \"", set.master_name, ":0\":\n")
    for _, s in ipairs(set.sentinels) do f:write("      - ", s, "\n") end
    f:write("  replicas: 1\n  wait_timeout_ms: 800\n")
    f:close()
    -- the operator's view: beeorm stats names the master
    local code, out = servers.run(util.child_env() .. " " .. util.shell_quote(servers.build_dir .. "/beeorm")
      .. " stats --config " .. util.shell_quote(path))
    assert.equal(0, code, out)
    assert.matches("redis pool 'default': master 127%.0%.0%.1:" .. set:master() .. " %(sentinel://mymaster@", out)
    code, out = servers.run(util.child_env() .. " " .. util.shell_quote(servers.build_dir .. "/beeorm")
      .. " stats --json --config " .. util.shell_quote(path))
    assert.equal(0, code, out)
    assert.matches('"redis":%[{"name":"default","address":"sentinel://[^"]*","master":"127%.0%.0%.1:'
      .. set:master() .. '"}%]', out)
    local reg = beeorm.registry()
    local ok, err = reg:load_yaml(path)
    os.remove(path)
    assert(ok, tostring(err))
    assert(reg:register_entity(item_def))
    local engine = assert(reg:validate())
    local master
    for _, p in ipairs(engine:pools()) do if p.kind == "redis" then master = p.master end end
    assert.equal("127.0.0.1:" .. set:master(), master)
    local ctx = engine:context()
    ctx:new_entity(T, { name = "yaml", n = 2 })
    assert(ctx:flush_async()) -- two replicas are up: WAIT 1 is met
    au.consume(engine:context())
    engine:close()
  end)

  it("names the pool and keeps passwords out of every error of a bad setup", function()
    -- a master name no sentinel knows: permanent
    local engine, err = engine_for(set, nil, nil, "nosuch")
    assert.is_nil(engine)
    assert.equal("redis", err.code)
    assert.is_false(err.temporary)
    assert.equal("default", err.pool)
    assert.matches("no sentinel knows a master named 'nosuch'", err.message)
    assert.matches("pool 'default'", tostring(err))
    -- no sentinel answers: temporary, and it says which it asked
    local reg = beeorm.registry()
    assert(reg:register_mysql(servers.mysql))
    assert(reg:register_redis_sentinel("mymaster", 0, { "127.0.0.1:1" }, "default",
      { password = "Zq9secret", sentinel_password = "Zq9secret" }))
    engine, err = reg:validate()
    assert.is_nil(engine)
    assert.is_true(err.temporary)
    assert.matches("127.0.0.1:1", err.message)
    assert.is_nil(tostring(err):find("Zq9secret", 1, true))
    -- a password the master does not want: refused, not quoted
    engine, err = engine_for(set, { password = "Zq9secret" })
    assert.is_nil(engine)
    assert.matches("AUTH failed on master 'mymaster' at 127.0.0.1:%d+", err.message)
    assert.is_nil(tostring(err):find("Zq9secret", 1, true))
    -- bad lists: raised for wrong types, nil, err for bad addresses
    reg = beeorm.registry()
    assert.has_error(function() reg:register_redis_sentinel("mymaster", 0, {}) end)
    assert.has_error(function() reg:register_redis_sentinel("mymaster", 0, { 26379 }) end)
    assert.has_error(function() reg:register_redis_sentinel("mymaster", 0, { "h:1" }, "p", { passwd = "x" }) end)
    local ok
    ok, err = reg:register_redis_sentinel("mymaster", 0, { "h:1", "h:99999" }, "p2")
    assert.is_nil(ok)
    assert.equal("dsn", err.code)
    assert.equal("p2", err.pool)
    assert.equal("bad Sentinel settings: sentinel 2: bad port '99999' (expected 1-65535) (expected host:port)",
      err.message)
    ok, err = reg:register_redis_sentinel("mymaster?password=Zq9secret", 0, { "h:1", "h:1" }, "p3")
    assert.is_nil(ok)
    assert.is_nil(tostring(err):find("Zq9secret", 1, true))
  end)

  it("refuses an address a sentinel gives that is not a master", function()
    -- A sentinel told to watch a replica as master "fake" answers with the replica's address.
    local replica
    for _, port in pairs(set.nodes) do if role(port) == "slave" then replica = port end end
    local sport = set.sentinels[1]:match(":(%d+)$")
    assert.equal("OK", cli(sport, "sentinel", "monitor", "fake", "127.0.0.1", replica, 2))
    local ok, perr = pcall(function()
      local reg = beeorm.registry()
      assert(reg:register_mysql(servers.mysql))
      assert(reg:register_redis_sentinel("fake", 0, { set.sentinels[1] }, "ha"))
      local engine, err = reg:validate()
      assert.is_nil(engine)
      assert.equal("ha", err.pool)
      assert.is_true(err.temporary)
      assert.equal("the sentinels gave master 'fake' at 127.0.0.1:" .. replica .. " as master 'fake', but its role "
        .. "is 'slave' (a failover may be under way)", err.message)
    end)
    cli(sport, "sentinel", "remove", "fake")
    assert(ok, perr)
  end)

  it("rides through a failover: flush, flush_async and loaders recover with temporary errors only, local "
    .. "caches of other processes are invalidated on the new master", function()
    local opts = { timeout_ms = 2000, connect_timeout_ms = 500 }
    local a = assert(engine_for(set, opts))
    local b = assert(engine_for(set, opts))
    local ctx = a:context()
    local row = ctx:new_entity(T, { name = "before", n = 0 })
    assert(ctx:flush())
    assert.equal("before", a:context():get_by_id(T, row.id).name) -- now in a's local cache
    assert.equal("before", b:context():get_by_id(T, row.id).name)
    local new = fail_over(set)
    -- b writes through the new master (after temporary errors while it moves)
    local bctx = b:context()
    local _, took = until_ok(function()
      local e = bctx:edit_entity(assert(bctx:get_by_id(T, row.id)))
      e.name = "after"
      return bctx:flush()
    end)
    assert.is_true(took < 30)
    -- a's subscriber moved to the new master: the invalidation reached it
    assert.is_true(util.eventually(function()
      local got = a:context():get_by_id(T, row.id)
      return got and got.name == "after"
    end, 10), "engine a still serves the row from before the failover")
    -- the master b's pool shows is the one the sentinels name now
    local master, named
    assert.is_true(util.eventually(function()
      for _, p in ipairs(b:pools()) do if p.kind == "redis" then master = p.master end end
      named = set:master()
      return master == "127.0.0.1:" .. tostring(named)
    end, 10), string.format("b shows %s, the sentinels name %s (failover promoted %s)", tostring(master),
      tostring(named), tostring(new)))
    -- flush_async and the consumer on the new master
    local actx = a:context()
    until_ok(function()
      local e = actx:edit_entity(assert(actx:get_by_id(T, row.id)))
      e.n = 5
      return actx:flush_async()
    end)
    au.consume(a:context())
    local rows = a:sql_query("SELECT name, n FROM `" .. T .. "` WHERE id = ?", { row.id })
    assert.same({ "after", 5 }, { rows[1].name, tonumber(rows[1].n) })
    a:close()
    b:close()
  end)

  it("follows an operator's SENTINEL FAILOVER: the old master stays up as a replica, and writes and "
    .. "subscribers move to the new one", function()
    local opts = { timeout_ms = 2000, connect_timeout_ms = 500 }
    local a = assert(engine_for(set, opts))
    local b = assert(engine_for(set, opts))
    local plain = assert(engine_for(set, opts, {})) -- no local cache: no subscriber, only the watcher
    local function master_of(engine)
      for _, p in ipairs(engine:pools()) do if p.kind == "redis" then return p.master end end
    end
    local ctx = a:context()
    local row = ctx:new_entity(T, { name = "manual", n = 0 })
    assert(ctx:flush())
    assert.equal("manual", a:context():get_by_id(T, row.id).name) -- in a's local cache
    local old = set:master()
    local function subscribers(port) -- beeorm's, not the sentinels' own (name=sentinel-...)
      local n = 0
      for line in cli(port, "client", "list", "type", "pubsub"):gmatch("[^\n]+") do
        if not line:find("name=sentinel", 1, true) then n = n + 1 end
      end
      return n
    end
    local before = subscribers(old) -- a's and b's cache subscribers, and any other engine's
    assert.is_true(before >= 2)
    local sport = set.sentinels[1]:match(":(%d+)$")
    -- (refused with INPROG for a while after an earlier failover: asked until accepted)
    local answer
    assert.is_true(util.eventually(function()
      answer = cli(sport, "sentinel", "failover", set.master_name)
      return answer == "OK"
    end, 30), "SENTINEL FAILOVER: " .. tostring(answer))
    local new
    assert(util.eventually(function()
      new = set:master()
      return new ~= old and role(new) == "master" and role(old) == "slave"
    end, 30), "no failover within 30 s")
    -- the subscribers move without any error on their connections (+switch-master)
    -- (at least those: a subscriber that was between two attempts when counted joins too)
    assert.is_true(util.eventually(function() return subscribers(new) >= before and subscribers(old) == 0 end, 10),
      string.format("subscribers: %d on the new master, %d on the old", subscribers(new), subscribers(old)))
    -- an engine that does nothing learns the new master from +switch-master
    assert.is_true(util.eventually(function() return master_of(plain) == "127.0.0.1:" .. new end, 10),
      "an idle engine still names " .. tostring(master_of(plain)))
    plain:close()
    -- b's context still holds a connection to the old master: READONLY, then the new one
    local bctx = b:context()
    until_ok(function()
      local e = bctx:edit_entity(assert(bctx:get_by_id(T, row.id)))
      e.name = "moved"
      return bctx:flush()
    end)
    assert.is_true(util.eventually(function() return a:context():get_by_id(T, row.id).name == "moved" end, 5))
    until_ok(function()
      local e = bctx:edit_entity(assert(bctx:get_by_id(T, row.id)))
      e.n = 7
      return bctx:flush_async()
    end)
    au.consume(b:context())
    local rows = b:sql_query("SELECT name, n FROM `" .. T .. "` WHERE id = ?", { row.id })
    assert.same({ "moved", 7 }, { rows[1].name, tonumber(rows[1].n) })
    a:close()
    b:close()
  end)

  it("replicas = 2 with a replica down: flush_async says durability within wait_timeout_ms + 100 ms, and the "
    .. "retry once it is back applies the changes once", function()
    local WAIT_MS = 300
    local engine = assert(engine_for(set, { replicas = 2, wait_timeout_ms = WAIT_MS, timeout_ms = 2000 }))
    local master = set:master()
    assert(util.eventually(function() return replicas_online(master, 2) end, 20))
    local ctx = engine:context()
    local row = ctx:new_entity(T, { name = "durable", n = 10 })
    assert(ctx:flush())
    -- with both replicas up, WAIT 2 is met
    local both = ctx:edit_entity(ctx:get_by_id(T, row.id))
    both.name = "both-up"
    until_ok(function() return ctx:flush_async() end, 10)
    au.consume(engine:context())
    local down
    for name, port in pairs(set.nodes) do if port ~= master and not down then down = name end end
    au.kill(set:pid(down), "KILL")
    assert(util.eventually(function() return replicas_online(master, 1) end, 10))
    ctx:increment(T, row.id, "n", 1)
    local e = ctx:edit_entity(ctx:get_by_id(T, row.id))
    e.name = "waited"
    local t0 = util.now()
    local ok, err = ctx:flush_async()
    local took = util.now() - t0
    assert.is_nil(ok)
    assert.equal("durability", err.code)
    assert.is_true(err.temporary)
    -- (the replica left may not have acknowledged in time on a loaded machine: 0 or 1)
    assert.matches("[01] of 2 replicas acknowledged", err.message)
    assert.is_true(took < (WAIT_MS + 100) / 1000, string.format("took %.0f ms", took * 1000))
    assert.is_true(took >= WAIT_MS / 1000 * 0.9)
    set:restart(down)
    assert(util.eventually(function() return replicas_online(master, 2) end, 20))
    until_ok(function() return ctx:flush_async() end, 10)
    au.consume(engine:context())
    local rows = engine:sql_query("SELECT name, n FROM `" .. T .. "` WHERE id = ?", { row.id })
    assert.same({ "waited", 11 }, { rows[1].name, tonumber(rows[1].n) }) -- incremented once
    assert.equal(11, engine:context():get_by_id(T, row.id).n)
    assert.equal(0, au.total(engine, "errors"))
    engine:close()
  end)

  it("never hands out an id twice: 2 processes allocating through " .. FAILOVERS .. " failovers that lose the "
    .. "last writes", function()
    local dir = servers.build_dir .. "/servers"
    local script = servers.root .. "/spec/support/sentinel_ids.lua"
    local files, pids = {}, {}
    -- ids taken before: none may come back
    local engine = assert(engine_for(set, { timeout_ms = 2000, connect_timeout_ms = 500 }))
    local before = {}
    local ctx = engine:context()
    for _ = 1, 50 do before[#before + 1] = assert(ctx:new_entity(T)).id end
    ctx:clear_flush()
    engine:close()
    local ok, perr = pcall(function()
      for i = 1, 2 do
        files[i] = os.tmpname()
        pids[i] = au.spawn(string.format("%s %s run %s %s %s %s", util.child_env(),
          util.shell_quote(servers.build_dir .. "/beeorm"), util.shell_quote(script), util.shell_quote(files[i]),
          util.shell_quote(set.master_name), util.shell_quote(table.concat(set.sentinels, ","))),
          dir .. "/sentinel_ids_" .. i .. ".log")
      end
      util.sleep(1)
      for _ = 1, FAILOVERS do
        fail_over(set, true) -- the promoted replica misses the last counter writes
        util.sleep(1)
      end
      for i = 1, 2 do
        au.kill(pids[i], "TERM")
        assert.is_true(au.wait_exit(pids[i], 10), "allocator " .. i .. " did not stop")
        pids[i] = nil
      end
    end)
    for i = 1, 2 do if pids[i] then au.kill(pids[i], "KILL") end end
    assert(ok, perr)
    local seen, total = {}, 0
    for _, id in ipairs(before) do seen[id] = "before" end
    for i = 1, 2 do
      local n = 0
      for line in io.lines(files[i]) do
        local id = tonumber(line)
        if id then
          assert.is_nil(seen[id], "id " .. id .. " handed out twice (" .. tostring(seen[id]) .. ", process " .. i .. ")")
          seen[id] = "process " .. i
          n = n + 1
        end
      end
      os.remove(files[i])
      assert.is_true(n > 100, "process " .. i .. " allocated only " .. n .. " ids")
      total = total + n
    end
    print(string.format("\nids through %d failovers: %d allocated by 2 processes, all distinct", FAILOVERS, total))
  end)
end)
