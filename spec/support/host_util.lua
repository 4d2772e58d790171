-- What the specs of the `beeorm` host's commands share: running the host as a child
-- process, and temporary files removed at the end of a describe.
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local M = {}

function M.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

--- Runs `beeorm ARGS` (a shell fragment); returns exit code, stdout, stderr.
function M.host(args)
  local errf = os.tmpname()
  local code, out = servers.run(string.format("(%s %s 2>%s)", util.shell_quote(servers.build_dir .. "/beeorm"), args,
    util.shell_quote(errf)))
  local err = au.read(errf)
  os.remove(errf)
  return code, out, err
end

--- A set of temporary files: files(text) makes one (with text, when given) and returns
-- its path; files:remove() removes them all.
function M.tmpfiles()
  local paths = {}
  return setmetatable({}, {
    __call = function(_, text)
      local path = os.tmpname()
      paths[#paths + 1] = path
      if text then M.write_file(path, text) end
      return path
    end,
    __index = { remove = function() for _, p in ipairs(paths) do os.remove(p) end end },
  })
end

--- What a spec of the host against a table of its own needs: setup() connects an engine
-- of defs to the test servers with Redis on db, empties tables and the queues, creates
-- the tables, and writes a config (fx.engine, fx.config); teardown() kills the child
-- pids recorded in fx.pids, drains and drops all that, and removes fx.tmpfile's files.
function M.fixture(db, defs, tables)
  local fx = { tmpfile = M.tmpfiles(), pids = {} }
  function fx.setup()
    servers.need()
    fx.engine = util.engine(db, defs)
    au.reset(fx.engine, db, tables)
    fx.engine:sync_schema()
    fx.config = fx.tmpfile(M.config_text(db))
  end
  function fx.teardown()
    for _, pid in ipairs(fx.pids) do if au.alive(pid) then au.kill(pid, "KILL") end end
    if fx.engine then
      au.finish(fx.engine, db)
      util.drop(fx.engine, tables)
      fx.engine:close()
      fx.engine = nil
    end
    fx.tmpfile:remove()
  end
  return fx
end

--- The YAML of a config with the test MySQL and the test Redis on db.
function M.config_text(db)
  return string.format("default:\n  mysql: %s\n  redis: %s:%d\n", servers.mysql, servers.redis, db)
end

--- Starts `beeorm serve --config CONFIG --listen 127.0.0.1:0 EXTRA` with its output in
-- log; returns its pid and base URL ("http://127.0.0.1:PORT"), or raises with the log.
function M.start_serve(config, log, extra)
  local pid = au.spawn(string.format("%s %s serve --config %s --listen 127.0.0.1:0 %s", util.child_env(),
    util.shell_quote(servers.build_dir .. "/beeorm"), util.shell_quote(config), extra or ""), log)
  local url
  util.eventually(function()
    url = au.read(log):match("listening on (http://127%.0%.0%.1:%d+)\n")
    return url ~= nil or not au.alive(pid)
  end, 10)
  if not url then
    au.kill(pid, "KILL")
    error("serve did not start: " .. au.read(log))
  end
  return pid, url
end

return M
