-- Where the specs find their servers: the environment written by scripts/servers.sh
-- (or set by hand to point at existing servers; see README "Testing").
local M = {}

local function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

M.mysql = env("BEEORM_TEST_MYSQL")
M.mysql_socket = env("BEEORM_TEST_MYSQL_SOCKET")
M.redis = env("BEEORM_TEST_REDIS")
M.redis_socket = env("BEEORM_TEST_REDIS_SOCKET")
M.redis_auth = env("BEEORM_TEST_REDIS_AUTH")
M.build_dir = env("BEEORM_BUILD_DIR") or "build"
M.root = env("BEEORM_ROOT") or "."

--- Raises unless the servers every integration spec needs are configured.
function M.need()
  assert(M.mysql and M.redis,
    "BEEORM_TEST_MYSQL and BEEORM_TEST_REDIS are not set: run specs through `make test`")
end

--- The parts of the MySQL DSN: user, password, host, port, database (Go or URI form).
function M.mysql_parts()
  M.need()
  local user, password, host, port, db = M.mysql:match("^([^:@]+):(.*)@tcp%(([^:]+):(%d+)%)/([%w_]+)$")
  if not user then
    user, password, host, port, db = M.mysql:match("^mysql://([^:@]+):(.*)@([^:/]+):(%d+)/([%w_]+)$")
  end
  assert(user, "BEEORM_TEST_MYSQL must be user:password@tcp(host:port)/db or mysql://user:password@host:port/db")
  return { user = user, password = password, host = host, port = tonumber(port), database = db }
end

--- Runs a shell command; returns its exit code and everything it printed.
function M.run(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"::exit=$?\""))
  local out = f:read("a")
  f:close()
  local code = tonumber(out:match("::exit=(%d+)%s*$"))
  return code, (out:gsub("::exit=%d+%s*$", ""))
end

--- Starts a throwaway Sentinel set (scripts/servers.sh sentinel: a Redis primary
-- redis-a, replicas redis-b and redis-c, three sentinels watching "mymaster") in a
-- fresh folder, stopped when this process exits if not before. Returns a handle:
--   set.sentinels { "127.0.0.1:p", ... }, set.master_name, set.nodes { name = port }
--   set:master()          the port the first answering sentinel names as master
--   set:pid(name)         the pid of a node or sentinel (the last one started)
--   set:restart(name)     starts a killed node again, as a replica of the master
--   set:stop()            stops every process of the set by pid and removes the folder
function M.sentinel_set()
  local stat = assert(io.open("/proc/self/stat"))
  local owner = stat:read("n")
  stat:close()
  local code, dir = M.run("mkdir -p " .. M.build_dir .. "/servers && mktemp -d " .. M.build_dir
    .. "/servers/sentinel.XXXXXX")
  assert(code == 0, dir)
  dir = dir:gsub("%s+$", "")
  local script = M.root .. "/scripts/servers.sh"
  local out
  code, out = M.run(script .. " sentinel " .. dir .. " " .. owner)
  assert(code == 0, "the sentinel set did not start: " .. out)
  local f = assert(io.open(dir .. "/env"))
  local env_text = f:read("a")
  f:close()
  local set = { dir = dir, sentinels = {}, nodes = {},
    master_name = env_text:match("BEEORM_TEST_SENTINEL_MASTER='([^']+)'") }
  for addr in env_text:match("BEEORM_TEST_SENTINELS='([^']+)'"):gmatch("[^,]+") do set.sentinels[#set.sentinels + 1] = addr end
  for name, port in env_text:match("BEEORM_TEST_SENTINEL_NODES='([^']+)'"):gmatch("([%w-]+)=(%d+)") do
    set.nodes[name] = tonumber(port)
  end
  function set:master()
    for _, addr in ipairs(self.sentinels) do
      local c, o = M.run("redis-cli -p " .. addr:match(":(%d+)$") .. " sentinel get-master-addr-by-name "
        .. self.master_name)
      local port = c == 0 and o:match("\n(%d+)%s*$")
      if port then return tonumber(port) end
    end
  end
  function set:pid(name)
    local pf = io.open(self.dir .. "/pids")
    if not pf then return nil end
    local found
    for line in pf:lines() do
      local n, pid = line:match("^(%S+) (%d+)$")
      if n == name then found = tonumber(pid) end
    end
    pf:close()
    return found
  end
  function set:restart(name)
    local c, o = M.run(script .. " restart-redis " .. self.dir .. " " .. name)
    assert(c == 0, o)
  end
  function set:stop()
    M.run(script .. " stop " .. self.dir)
  end
  return set
end

return M
