-- Redis restarted while a blocking consumer runs (issue 5 acceptance): a throwaway
-- redis-server of its own with appendonly yes / appendfsync always, so nothing it
-- acknowledged is lost; flush_async fails cleanly while Redis is down, and the consumer
-- reconnects and applies everything exactly once when it is back.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local E = "rr_item"

describe("Redis restarted (appendfsync always) while a blocking consumer runs", function()
  local dir, port, redis_pid, consumer_pid, engine
  local tmp = {}

  local function start_redis()
    redis_pid = au.spawn(string.format("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly yes "
      .. "--appendfsync always --daemonize no --dir %s", port, util.shell_quote(dir)), dir .. "/redis.log")
    assert(util.eventually(function()
      local _, out = servers.run(string.format("redis-cli -h 127.0.0.1 -p %d PING", port))
      return out:match("PONG") ~= nil
    end, 10), "redis-server did not start: " .. au.read(dir .. "/redis.log"))
  end

  setup(function()
    servers.need()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. util.shell_quote(dir))
    port = au.free_port()
    start_redis()
    local r = beeorm.registry()
    assert(r:register_mysql(servers.mysql))
    assert(r:register_redis("127.0.0.1:" .. port, 0))
    assert(r:register_entity { name = E, redis_cache = true,
      fields = { { "name", "string", length = 50, required = true }, { "n", "int" } } })
    engine = assert(r:validate())
    util.drop(engine, { E })
    assert(engine:sync_schema())
  end)

  teardown(function()
    if consumer_pid then
      au.kill(consumer_pid, "KILL")
      au.wait_exit(consumer_pid, 5)
    end
    if engine then engine:close() end
    if redis_pid then
      au.kill(redis_pid, "KILL")
      au.wait_exit(redis_pid, 5)
    end
    for _, p in ipairs(tmp) do os.remove(p) end
    if dir then os.execute("rm -rf " .. util.shell_quote(dir)) end
  end)

  it("fails flush_async cleanly while Redis is down, then resumes and applies everything once", function()
    local out, log = os.tmpname(), os.tmpname()
    tmp = { out, log }
    local cmd = au.consumer_cmd(0, "block", out, { max_batch = 5 })
    cmd = cmd:gsub("BEEORM_TEST_REDIS=%S+", "BEEORM_TEST_REDIS=127.0.0.1:" .. port)
    consumer_pid = au.spawn(cmd, log)
    local ctx = engine:context()
    local rows, expected = {}, {}
    for i = 1, 30 do
      rows[i] = ctx:new_entity(E, { name = "r" .. i, n = 0 })
      expected[i] = 0
    end
    assert.is_true(ctx:flush_async())
    local function state_is_expected()
      local got = engine:sql_query("SELECT `id`, `n` FROM `" .. E .. "` ORDER BY `id`")
      if not got or #got ~= #rows then return false end
      for i, r in ipairs(rows) do
        if got[i].id ~= tostring(r.id) or got[i].n ~= tostring(expected[i]) then return false end
      end
      return true
    end
    assert(util.eventually(state_is_expected, 20), "the first events were not applied: " .. au.read(log))

    -- Redis goes away (SIGTERM: it fsyncs and exits)
    au.kill(redis_pid, "TERM")
    assert(au.wait_exit(redis_pid, 20), "redis-server did not stop")
    local e = ctx:edit_entity(rows[1]) -- the new_entity table: no Redis needed to edit it
    e.n = 100
    local ok, err = ctx:flush_async()
    assert.is_nil(ok)
    assert.is_true(err.temporary, tostring(err))
    assert.is_true(err.code == "redis" or err.code == "timeout", tostring(err))
    assert(au.alive(consumer_pid), "the consumer died while Redis was down: " .. au.read(out) .. au.read(log))

    -- back with its append-only file: the same flush (still tracked) now goes through
    start_redis()
    ok, err = nil, nil
    assert(util.eventually(function()
      ok, err = ctx:flush_async()
      return ok == true
    end, 10), "flush_async did not succeed after Redis came back: " .. tostring(err))
    expected[1] = 100
    for i = 2, 30, 3 do
      local x = ctx:edit_entity(assert(ctx:get_by_id(E, rows[i].id)))
      x.n = i
      expected[i] = i
    end
    assert.is_true(ctx:flush_async())
    assert(util.eventually(state_is_expected, 30), "the consumer did not resume within 30 s: " .. au.read(log))
    au.kill(consumer_pid, "TERM")
    assert(au.wait_exit(consumer_pid, 10), "the consumer did not stop on SIGTERM")
    consumer_pid = nil
    assert.matches("^ok ", au.read(out))
    assert.is_true(state_is_expected())
  end)
end)
