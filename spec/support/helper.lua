-- Loaded by busted before the specs (see .busted). Under the sanitizer build the Lua
-- interpreter runs with LD_PRELOAD=libasan (lua5.4 itself is not instrumented); the
-- programs the specs start (ps, redis-server, mariadbd, the beeorm host, which is
-- instrumented itself) must not inherit it: some of them hang with it.
if os.getenv("LD_PRELOAD") then
  local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local popen, execute = io.popen, os.execute
  io.popen = function(cmd, mode) return popen("env -u LD_PRELOAD sh -c " .. quote(cmd), mode) end
  os.execute = function(cmd)
    if cmd == nil then return execute() end
    return execute("env -u LD_PRELOAD sh -c " .. quote(cmd))
  end
end
