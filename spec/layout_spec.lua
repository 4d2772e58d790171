-- Rules of the code's layout that a reviewer would otherwise have to remember.
local servers = require("support.servers")

local function core_files()
  local p = assert(io.popen("ls " .. servers.root .. "/core/src/*.c " .. servers.root .. "/core/src/*.h"))
  local files = {}
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  return files
end

describe("the core's layout", function()
  it("reaches Redis only through the Redis layer: no file but redis.c includes the client library's header",
    function()
      local files = core_files()
      assert.is_true(#files > 20, "core/src not found under " .. servers.root)
      local offenders = {}
      for _, path in ipairs(files) do
        local f = assert(io.open(path))
        local text = f:read("a")
        f:close()
        local name = path:match("([^/]+)$")
        if name ~= "redis.c" and (text:find("#%s*include%s*[<\"]hiredis") or text:find("#%s*include%s*[<\"]async%.h")) then
          offenders[#offenders + 1] = name
        end
      end
      assert.same({}, offenders)
    end)
end)
