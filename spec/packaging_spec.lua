-- Packaging: what `cmake --install` and `luarocks make` give a user, used the way a user
-- would: C programs compiled against the installed headers and libraries through
-- pkg-config alone (no path into the source tree), and lua5.4 with a luarocks tree's
-- paths alone. Redis dbs 8 and 15, MySQL tables pk_*.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")

local q = util.shell_quote
local DB_C, DB_LUA = 8, 15

--- Runs a shell command; asserts exit code 0 and returns its output.
local function sh(cmd, what)
  local code, out = servers.run(cmd)
  assert(code == 0, string.format("%s failed (exit %s):\n%s\n%s", what or "command", tostring(code), cmd, out))
  return out
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function abspath(p)
  return (sh("cd " .. q(p) .. " && pwd -P", "resolving " .. p):gsub("\n$", ""))
end

describe("packaging", function()
  local root, build, tmp, prefix, pcdir, cache

  --- "-fsanitize=..." when the build under test is instrumented (make test-asan), else nil.
  local function sanitizer()
    local san = {}
    if cache:match("\nBEEORM_ASAN:BOOL=ON") then san[#san + 1] = "address" end
    if cache:match("\nBEEORM_UBSAN:BOOL=ON") then san[#san + 1] = "undefined" end
    if #san == 0 and os.getenv("BEEORM_SANITIZE") then san = { "address", "undefined" } end
    return #san > 0 and ("-fsanitize=" .. table.concat(san, ",")) or nil
  end

  --- pkg-config flags of package (static or not) from the installed tree only.
  local function pkg_flags(package, static)
    local flags = sh(string.format("PKG_CONFIG_PATH=%s pkg-config --cflags --libs %s %s", q(pcdir),
      static and "--static" or "", package), "pkg-config " .. package):gsub("\n", " ")
    -- Only installed paths: nothing from the checkout or the build folder.
    for dir in flags:gmatch("%-[IL](%S+)") do
      if dir:sub(1, #prefix + 1) ~= prefix .. "/" then
        assert.is_nil(dir:find(root .. "/", 1, true), "flags point into the source tree: " .. flags)
        assert.is_nil(dir:find(build .. "/", 1, true), "flags point into the build folder: " .. flags)
      end
    end
    local san = sanitizer()
    if san then
      -- The libraries of a sanitizer build need its runtime: the .pc files must say so.
      assert.truthy(flags:find(san, 1, true), "instrumented build, but pkg-config does not give " .. san .. ": " .. flags)
    end
    return flags
  end

  --- Compiles spec/c_api/<name>.c into tmp with flags; returns the program's path.
  local function compile(name, flags)
    local exe = tmp .. "/" .. name
    sh(string.format("cc -std=c11 -Wall -Wextra -Werror -o %s %s %s", q(exe),
      q(root .. "/spec/c_api/" .. name .. ".c"), flags), "compiling " .. name .. ".c")
    return exe
  end

  setup(function()
    servers.need()
    root = abspath(servers.root)
    build = abspath(servers.build_dir)
    cache = read(build .. "/CMakeCache.txt")
    tmp = (sh(string.format("mktemp -d %s/packaging.XXXXXX", q(build)), "mktemp"):gsub("\n$", ""))
    prefix = tmp .. "/prefix"
    local libdir = cache:match("\nCMAKE_INSTALL_LIBDIR:PATH=([^\n]*)") or "lib"
    pcdir = (libdir:sub(1, 1) == "/" and libdir or prefix .. "/" .. libdir) .. "/pkgconfig"
    sh(string.format("cmake --install %s --prefix %s", q(build), q(prefix)), "cmake --install")
  end)

  teardown(function()
    if tmp then servers.run("rm -rf " .. q(tmp)) end
  end)

  it("cmake --install lays out the libraries, headers, pkg-config files, the host and the Lua module", function()
    for _, f in ipairs({ "lib/libbeeorm.a", "lib/libbeeorm_lua.a", "include/beeorm.h", "include/beeorm_lua.h",
      "lib/pkgconfig/beeorm.pc", "lib/pkgconfig/beeorm-lua.pc", "bin/beeorm", "lib/lua/5.4/beeorm/core.so",
      "share/lua/5.4/beeorm/init.lua", "share/lua/5.4/beeorm/cli.lua" }) do
      assert.is_true(exists(prefix .. "/" .. f), "not installed: " .. f)
    end
    for _, pc in ipairs({ "beeorm.pc", "beeorm-lua.pc" }) do
      local text = read(pcdir .. "/" .. pc)
      assert.matches("\nprefix=${pcfiledir}/", text, 1, true)
      assert.matches("\nVersion: " .. beeorm._VERSION .. "\n", text, 1, true)
    end
    local version = sh(string.format("PKG_CONFIG_PATH=%s pkg-config --modversion beeorm beeorm-lua", q(pcdir)))
    assert.equal(beeorm._VERSION .. "\n" .. beeorm._VERSION .. "\n", version)
    local code, out = servers.run(q(prefix .. "/bin/beeorm") .. " version")
    assert.equal(0, code, out)
    assert.matches("^beeorm " .. beeorm._VERSION:gsub("%.", "%%."), out)
  end)

  it("a C program built against the installed beeorm.pc alone does a CRUD round trip", function()
    local flags = pkg_flags("beeorm", true)
    local crud = compile("crud", flags)
    -- Plain --libs links too (the library is static: its dependencies are public).
    compile("crud", pkg_flags("beeorm", false))
    util.flushdb(DB_C)
    local code, out = servers.run(string.format("%s %s %s %d", q(crud), q(servers.mysql), q(servers.redis), DB_C))
    assert.equal(0, code, out)
    assert.matches("^ok c_api crud: entity pk_crud, ids %d+ and %d+, flush, flush_async, consume", out)
    -- A failure is reported with the error line and exit code 1.
    code, out = servers.run(string.format("%s %s 127.0.0.1:1 %d", q(crud), q(servers.mysql), DB_C))
    assert.equal(1, code, out)
    assert.matches("FAIL bee_registry_validate", out, 1, true)
    assert.matches("pool 'default': cannot connect to redis://127.0.0.1:1/", out, 1, true)
  end)

  it("an embedding program built against the installed beeorm-lua.pc runs require 'beeorm'", function()
    local embed = compile("embed", pkg_flags("beeorm-lua", true))
    -- No Lua search path can find beeorm: the modules must come from the library.
    local chunk = [[
      local mysql, redis, db = ...
      local beeorm = require("beeorm")
      assert(package.preload["beeorm.core"] and package.preload["beeorm"], "not preloaded")
      local r = beeorm.registry()
      assert(r:register_mysql(mysql))
      assert(r:register_redis(redis, tonumber(db)))
      local engine = assert(r:validate())
      local rows = assert(engine:sql_query("SELECT 1 AS one"))
      assert(beeorm.monotonic() > 0)
      print("ok embed", beeorm._VERSION, rows[1].one)
      engine:close()
      r:close()
    ]]
    local code, out = servers.run(string.format("env LUA_PATH=/nonexistent/?.lua LUA_CPATH=/nonexistent/?.so %s %s %s %s %d",
      q(embed), q(chunk), q(servers.mysql), q(servers.redis), DB_LUA))
    assert.equal(0, code, out)
    assert.equal("ok embed\t" .. beeorm._VERSION .. "\t1\n", out)
  end)

  it("luarocks make installs beeorm into a tree that lua5.4 loads it from", function()
    local has = servers.run("command -v luarocks")
    assert(has == 0, "luarocks is not installed: run scripts/deps.sh (it installs the Debian package luarocks)")
    -- luarocks builds in ./build.luarocks of the folder it runs in: run it in a copy of the
    -- sources, so the checkout stays clean and two runs at once do not collide.
    local src, tree = tmp .. "/src", tmp .. "/tree"
    local excludes = { "--exclude=./.git", "--exclude=./build", "--exclude=./build-*", "--exclude=./build.luarocks" }
    if build:sub(1, #root + 1) == root .. "/" then excludes[#excludes + 1] = q("--exclude=./" .. build:sub(#root + 2)) end
    sh(string.format("mkdir -p %s && tar -C %s %s --warning=no-file-ignored -cf - . | tar -C %s -xf -", q(src), q(root),
      table.concat(excludes, " "), q(src)), "copying the sources")
    local out = sh(string.format("cd %s && env -u LUA_PATH -u LUA_CPATH -u LUA_INIT CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "
      .. "luarocks --lua-version=5.4 --tree=%s make rockspec/beeorm-scm-1.rockspec", q(src), q(tree)), "luarocks make")
    assert.matches("beeorm scm%-1 is now installed", out)
    -- Every facade file, the module and the host program are in the tree.
    local lua_files = sh("cd " .. q(root .. "/lua/beeorm") .. " && ls *.lua")
    for f in lua_files:gmatch("[^\n]+") do
      assert.is_true(exists(tree .. "/share/lua/5.4/beeorm/" .. f), "not installed by luarocks: beeorm/" .. f)
    end
    assert.is_true(exists(tree .. "/lib/lua/5.4/beeorm/core.so"))
    local code, hout = servers.run(q(tree .. "/bin/beeorm") .. " version")
    assert.equal(0, code, hout)

    local lpath = sh(string.format("luarocks --lua-version=5.4 --tree=%s path --lr-path", q(tree))):gsub("\n", "")
    local cpath = sh(string.format("luarocks --lua-version=5.4 --tree=%s path --lr-cpath", q(tree))):gsub("\n", "")
    util.flushdb(DB_LUA)
    local script = tmp .. "/rock_check.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
local tree, mysql, redis, db = ...
local beeorm = require("beeorm")
for name, where in pairs({ beeorm = package.path, ["beeorm.core"] = package.cpath }) do
  local file = assert(package.searchpath(name, where))
  assert(file:sub(1, #tree + 1) == tree .. "/", name .. " found outside the tree: " .. file)
end
local parsed = assert(beeorm.parse_mysql_dsn(mysql))
local r = beeorm.registry()
assert(r:register_mysql(mysql))
assert(r:register_redis(redis, tonumber(db)))
assert(r:register_entity { name = "pk_rock", redis_cache = true,
  fields = { { "name", "string", length = 40, required = true, unique = true }, { "n", "int" } } })
local engine = assert(r:validate())
local rows = assert(engine:sql_query("SELECT 1 AS one"))
assert(rows[1].one == "1", "SELECT 1")
assert(engine:sql_exec("DROP TABLE IF EXISTS pk_rock"))
assert(engine:sync_schema())
local ctx = engine:context()
local e = ctx:new_entity("pk_rock", { name = "rock", n = 7 })
assert(ctx:flush())
local back = assert(engine:context():get_by_id("pk_rock", e.id))
assert(back.name == "rock" and back.n == 7, "read back differs")
print("ok rock", beeorm._VERSION, parsed.database, e.id)
]])
    f:close()
    code, out = servers.run(string.format("cd %s && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT LUA_PATH=%s "
      .. "LUA_CPATH=%s lua5.4 %s %s %s %s %d", q(tmp), q(lpath), q(cpath), q(script), q(tree), q(servers.mysql),
      q(servers.redis), DB_LUA))
    assert.equal(0, code, out)
    assert.matches("^ok rock\t" .. beeorm._VERSION:gsub("%.", "%%.") .. "\t" .. servers.mysql_parts().database
      .. "\t%d+\n$", out)
  end)
end)
