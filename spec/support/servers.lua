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

return M
