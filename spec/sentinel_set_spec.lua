-- The throwaway Sentinel set the high-availability specs run on (scripts/servers.sh
-- sentinel): it must really fail over, take a killed primary back as a replica, and
-- leave no process behind, or those specs would prove nothing.
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local function cli(port, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = util.shell_quote(a) end
  local code, out = servers.run("redis-cli -p " .. port .. " " .. table.concat(args, " "))
  assert(code == 0, out)
  return (out:gsub("%s+$", ""))
end

local function role(port)
  return cli(port, "role"):match("^(%w+)")
end

describe("the throwaway Sentinel set", function()
  local set

  setup(function()
    servers.need()
    set = servers.sentinel_set()
  end)

  teardown(function()
    if set then set:stop() end
  end)

  it("starts with redis-a as the primary of two replicas, watched by three sentinels that agree", function()
    assert.equal(3, #set.sentinels)
    assert.equal("master", role(set.nodes["redis-a"]))
    assert.equal("slave", role(set.nodes["redis-b"]))
    assert.equal("slave", role(set.nodes["redis-c"]))
    for _, addr in ipairs(set.sentinels) do
      local port = addr:match(":(%d+)$")
      assert.equal("127.0.0.1\n" .. set.nodes["redis-a"], cli(port, "sentinel", "get-master-addr-by-name",
        set.master_name))
    end
    -- writes on the primary reach the replicas
    cli(set.nodes["redis-a"], "set", "sentinel-spec", "one")
    assert.is_true(util.eventually(function()
      return cli(set.nodes["redis-b"], "get", "sentinel-spec") == "one"
        and cli(set.nodes["redis-c"], "get", "sentinel-spec") == "one"
    end, 5))
  end)

  it("promotes a replica within seconds when the primary is SIGKILLed, and takes the old primary back as its "
    .. "replica", function()
    local old = set:master()
    local old_name
    for name, port in pairs(set.nodes) do if port == old then old_name = name end end
    assert.is_not_nil(old_name)
    local t0 = util.now()
    au.kill(set:pid(old_name), "KILL")
    local new
    assert.is_true(util.eventually(function()
      new = set:master()
      return new ~= nil and new ~= old and role(new) == "master"
    end, 20), "no failover within 20 s")
    assert.is_true(util.now() - t0 < 20)
    set:restart(old_name)
    assert.is_true(util.eventually(function()
      local info = cli(old, "info", "replication")
      return info:match("role:slave") and info:match("master_port:" .. new .. "%s")
        and info:match("master_link_status:up")
    end, 40), "the old primary did not come back as a replica: " .. cli(old, "info", "replication"))
    cli(new, "set", "sentinel-spec", "two")
    assert.is_true(util.eventually(function() return cli(old, "get", "sentinel-spec") == "two" end, 5))
  end)

  it("stops every process by pid and removes its folder", function()
    local pids = {}
    for _, name in ipairs({ "redis-a", "redis-b", "redis-c", "sentinel-1", "sentinel-2", "sentinel-3" }) do
      pids[#pids + 1] = assert(set:pid(name), name)
    end
    set:stop()
    for _, pid in ipairs(pids) do assert.is_false(au.alive(pid), "pid " .. pid .. " still runs") end
    local f = io.open(set.dir .. "/pids")
    assert.is_nil(f)
    set = nil
  end)
end)
