-- Helpers shared by the ORM specs (orm_spec, cache_spec, processes_spec,
-- flush_failure_spec) and their child-process scripts: engines on a given Redis db,
-- clean tables, redis-cli, wall-clock time and short sleeps.
local beeorm = require("beeorm")
local servers = require("support.servers")

local M = {}

--- host, port of the test Redis (servers.redis is "host:port").
function M.redis_host_port()
  servers.need()
  local host, port = servers.redis:match("^(.-):(%d+)$")
  assert(host, "BEEORM_TEST_REDIS must be host:port, got " .. tostring(servers.redis))
  return host, tonumber(port)
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

--- Runs redis-cli on db with the given arguments (each shell-quoted); returns its output
-- (raw: redis-cli prints values byte for byte when stdout is not a terminal).
function M.redis_cli(db, ...)
  local host, port = M.redis_host_port()
  local args = {}
  for i = 1, select("#", ...) do args[#args + 1] = shell_quote(select(i, ...)) end
  local code, out = servers.run(string.format("redis-cli -h %s -p %d -n %d %s", host, port, db,
    table.concat(args, " ")))
  assert(code == 0, "redis-cli failed: " .. out)
  return out
end

--- true when the Redis key exists.
function M.redis_exists(db, key)
  local host, port = M.redis_host_port()
  local f = assert(io.popen(string.format("redis-cli -h %s -p %d -n %d --no-raw EXISTS %s", host, port, db,
    shell_quote(key))))
  local exists = f:read("a")
  f:close()
  return exists:match("1") ~= nil
end

--- The value of a Redis key as raw bytes (without redis-cli's trailing newline), or nil.
function M.redis_get(db, key)
  if not M.redis_exists(db, key) then return nil end
  local host, port = M.redis_host_port()
  local f = assert(io.popen(string.format("redis-cli -h %s -p %d -n %d GET %s", host, port, db, shell_quote(key))))
  local v = f:read("a")
  f:close()
  return (v:gsub("\n$", ""))
end

--- The fields of a Redis hash (a cached row) as a table field -> raw value, or nil when
-- the key does not exist.
function M.redis_hash(db, key)
  if not M.redis_exists(db, key) then return nil end
  -- one field or value per line (cached values here hold no newline)
  local out = M.redis_cli(db, "HGETALL", key)
  local lines = {}
  for line in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local h = {}
  for i = 1, #lines - 1, 2 do h[lines[i]] = lines[i + 1] end
  return h
end

--- Runs sql in another MySQL session (the mariadb command-line client) in the
--- background; returns its pipe (read it to wait for the session's end).
function M.mysql_cli(sql)
  local p = servers.mysql_parts()
  return assert(io.popen(string.format(
    "MYSQL_PWD=%s mariadb --no-defaults --protocol=tcp -h %s -P %d -u %s %s -e %s 2>&1",
    shell_quote(p.password), p.host, p.port, shell_quote(p.user), shell_quote(p.database), shell_quote(sql))))
end

--- Keys of db matching pattern, sorted.
function M.redis_keys(db, pattern)
  local out = M.redis_cli(db, "--scan", "--pattern", pattern)
  local keys = {}
  for line in out:gmatch("[^\n]+") do keys[#keys + 1] = line end
  table.sort(keys)
  return keys
end

function M.flushdb(db)
  local out = M.redis_cli(db, "FLUSHDB")
  assert(out:match("OK"), "FLUSHDB failed: " .. out)
end

--- A validated engine: MySQL pool "default" (plus extra { name = dsn } pools), Redis
-- pool "default" on db, and the given entity definitions.
function M.engine(db, defs, mysql_pools)
  servers.need()
  local r = beeorm.registry()
  assert(r:register_mysql(servers.mysql))
  for name, dsn in pairs(mysql_pools or {}) do assert(r:register_mysql(dsn, name)) end
  assert(r:register_redis(servers.redis, db))
  for _, def in ipairs(defs) do assert(r:register_entity(def)) end
  return assert(r:validate())
end

--- Drops the tables (of pool, default "default") if they exist.
function M.drop(engine, tables, pool)
  for _, t in ipairs(tables) do
    assert(engine:sql_exec("DROP TABLE IF EXISTS `" .. t .. "`", nil, pool or "default"))
  end
end

--- The MySQL database of the default pool.
function M.database()
  return servers.mysql_parts().database
end

--- Seconds since boot with 10 ms resolution (cheap: one small file read).
function M.now()
  local f = assert(io.open("/proc/uptime"))
  local s = f:read("n")
  f:close()
  return s
end

function M.sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end

--- Calls fn() until it returns true or `limit` seconds passed; returns ok, retries.
-- (limit 0: one try.)
function M.eventually(fn, limit)
  local deadline = M.now() + (limit or 0.2)
  local retries = 0
  while true do
    if fn() then return true, retries end
    if limit == 0 or M.now() > deadline then return false, retries end
    retries = retries + 1
    M.sleep(0.005)
  end
end

--- The environment prefix for a child lua5.4 process (LUA_PATH, LUA_CPATH and the
-- BEEORM_* variables of this process, passed explicitly).
function M.child_env()
  local parts = {}
  -- LD_PRELOAD: under the sanitizer build a child lua5.4 loads the instrumented module
  -- and needs libasan preloaded (spec/support/helper.lua strips it for other programs).
  for _, name in ipairs({ "LUA_PATH", "LUA_CPATH", "BEEORM_TEST_MYSQL", "BEEORM_TEST_REDIS",
    "BEEORM_BUILD_DIR", "BEEORM_ROOT", "LD_PRELOAD" }) do
    local v = os.getenv(name)
    if v then parts[#parts + 1] = name .. "=" .. shell_quote(v) end
  end
  return "env " .. table.concat(parts, " ")
end

--- Ids of a list of entity tables (false/nil kept as false).
function M.ids(rows)
  local out = {}
  for i, row in ipairs(rows) do out[i] = row and row.id or false end
  return out
end

--- Waits until file holds a line "<n> ..." and returns the rest of that line.
local function wait_line(path, n, limit)
  local deadline = M.now() + (limit or 10)
  local pattern = "\n" .. n .. " ([^\n]*)\n"
  while true do
    local f = io.open(path)
    local text = f and f:read("a") or ""
    if f then f:close() end
    local got = ("\n" .. text):match(pattern)
    if got then return got end
    if M.now() > deadline then
      error("no answer " .. n .. " in " .. path .. " after " .. (limit or 10) .. " s:\n" .. text)
    end
    M.sleep(0.005)
  end
end

--- Starts spec/support/orm_reader.lua (definitions support.orm_defs[which], Redis db)
-- as a child process; returns an object with :send(line) -> answer and :close().
function M.start_reader(which, db)
  local out = os.tmpname()
  local script = servers.root .. "/spec/support/orm_reader.lua"
  local pipe = assert(io.popen(string.format("%s lua5.4 %s %s %d %s", M.child_env(), shell_quote(script),
    which, db, shell_quote(out)), "w"))
  local reader = { n = 0 }
  wait_line(out, 0)
  --- Sends one command; returns the answer line (without its number).
  function reader:send(line, limit)
    self.n = self.n + 1
    pipe:write(line, "\n")
    pipe:flush()
    return wait_line(out, self.n, limit)
  end
  --- Sends a command without waiting; reader:answer() collects the answer later.
  function reader:post(line)
    self.n = self.n + 1
    pipe:write(line, "\n")
    pipe:flush()
    return self.n
  end
  function reader:answer(n, limit) return wait_line(out, n, limit) end
  function reader:close()
    if self.closed then return end
    self.closed = true
    pcall(function() self:send("quit", 5) end)
    pipe:close()
    os.remove(out)
  end
  return reader
end

return M
