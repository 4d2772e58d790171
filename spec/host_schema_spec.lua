-- `beeorm schema` (issue 14): compares the tables of a model file's entities with MySQL,
-- prints the statements with their safe/unsafe flags, exits 3 while any is pending (so
-- a CI step can gate on it), and applies the safe ones (all with --unsafe). Run as a
-- child process of the host against the test MariaDB, on a table of its own.
local json = require("dkjson")
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")

local T = "hs_item"
local q = util.shell_quote

local hu = require("support.host_util")
local write_file, host = hu.write_file, hu.host

describe("beeorm schema", function()
  local engine
  local tmpfile = hu.tmpfiles()
  local config, model

  local function model_with(fields)
    write_file(model, string.format("return { { name = %q, table = %q, fields = { %s } } }\n", T, T, fields))
  end

  local function columns()
    local rows = assert(engine:sql_query("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
      .. "DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", { T }))
    local names = {}
    for i, r in ipairs(rows) do names[i] = r.COLUMN_NAME end
    return table.concat(names, ",")
  end

  setup(function()
    servers.need()
    local reg = beeorm.registry()
    assert(reg:register_mysql(servers.mysql))
    engine = assert(reg:validate())
    engine:sql_exec("DROP TABLE IF EXISTS `" .. T .. "`")
    config = tmpfile("default:\n  mysql: " .. servers.mysql .. "\n")
    model = tmpfile()
    model_with('{ "name", "string", length = 40 }, { "n", "int" }')
  end)

  teardown(function()
    if engine then
      engine:sql_exec("DROP TABLE IF EXISTS `" .. T .. "`")
      engine:close()
    end
    tmpfile:remove()
  end)

  it("lists the CREATE TABLE of a fresh database and exits 3, then --apply leaves nothing pending", function()
    local code, out, err = host("schema --config " .. q(config) .. " --model " .. q(model))
    assert.equal(3, code, out .. err)
    assert.equal("", err)
    assert.matches("^%-%- safe: default%.hs_item\nCREATE TABLE `hs_item` %([^\n]+%) ENGINE=InnoDB[^\n]*;\n", out)
    assert.matches("1 statement pending %(1 safe, 0 unsafe%); run with %-%-apply to run the safe ones\n$", out)
    code, out = host("schema --json --config " .. q(config) .. " --model " .. q(model))
    assert.equal(3, code)
    local doc = assert(json.decode(out))
    assert.equal(1, doc.pending)
    assert.equal(0, doc.applied)
    assert.same({ "default", T, true }, { doc.alters[1].pool, doc.alters[1].table, doc.alters[1].safe })
    assert.matches("^CREATE TABLE `hs_item`", doc.alters[1].sql)
    assert.equal("", columns()) -- nothing ran
    code, out, err = host("schema --apply --config " .. q(config) .. " --model " .. q(model))
    assert.equal(0, code, out .. err)
    assert.equal("applied 1 statement\nnothing pending: the tables match the model\n", out)
    assert.equal("id,name,n", columns())
    code, out = host("schema --config " .. q(config) .. " --model " .. q(model))
    assert.equal(0, code)
    assert.equal("nothing pending: the tables match the model\n", out)
  end)

  it("runs only the safe statements unless --unsafe, and exits 3 while an unsafe one is left", function()
    assert(engine:sql_exec("INSERT INTO `" .. T .. "` (`id`, `name`, `n`) VALUES (1, 'kept', 5)"))
    model_with('{ "name", "string", length = 40 }, { "note", "string", length = 20 }') -- n dropped, note added
    local code, out = host("schema --config " .. q(config) .. " --model " .. q(model))
    assert.equal(3, code)
    assert.matches("%-%- safe: default%.hs_item\nALTER TABLE `hs_item` ADD COLUMN `note`", out)
    assert.matches("%-%- UNSAFE: default%.hs_item\nALTER TABLE `hs_item` DROP COLUMN `n`", out)
    assert.matches("2 statements pending %(1 safe, 1 unsafe%)", out)
    code, out = host("schema --apply --config " .. q(config) .. " --model " .. q(model))
    assert.equal(3, code, out)
    assert.matches("^applied 1 statement\n%-%- UNSAFE: default%.hs_item\n", out)
    assert.matches("1 statement pending %(0 safe, 1 unsafe%); run with %-%-apply %-%-unsafe", out)
    assert.equal("id,name,note,n", columns()) -- added after name, as the model says
    code, out = host("schema --apply --unsafe --json --config " .. q(config) .. " --model " .. q(model))
    assert.equal(0, code, out)
    local doc = assert(json.decode(out))
    assert.same({ 1, 0 }, { doc.applied, doc.pending })
    assert.equal("id,name,note", columns())
    assert.equal("kept", engine:sql_query("SELECT name FROM `" .. T .. "` WHERE id = 1")[1].name)
  end)

  it("prints its usage, and refuses bad usage (2) and what it cannot load or reach (1) in one line", function()
    local code, out = host("schema --help")
    assert.equal(0, code)
    assert.matches("^usage: beeorm schema %-%-config FILE %-%-model MODEL%.lua", out)
    assert.matches("3  statements are pending", out, 1, true)
    code, out = host("help schema")
    assert.equal(0, code)
    assert.matches("^usage: beeorm schema", out)
    local function refused(args, want_code, pattern)
      local c, o, e = host(args)
      assert.equal(want_code, c, args .. "\n" .. o .. e)
      assert.equal("", o, args)
      assert.matches("^beeorm schema: [^\n]+\n$", e, nil, args)
      assert.matches(pattern, e, nil, args)
      return e
    end
    refused("schema --frob --config " .. q(config), 2, "unknown option")
    refused("schema --model " .. q(model), 2, "missing %-%-config FILE")
    refused("schema --config " .. q(config), 2, "missing %-%-model FILE")
    refused("schema --unsafe --config " .. q(config) .. " --model " .. q(model), 2, "%-%-unsafe applies to %-%-apply only")
    refused("schema extra --config " .. q(config) .. " --model " .. q(model), 2, "unexpected argument 'extra'")
    refused("schema --config /nonexistent/b.yaml --model " .. q(model), 1, "cannot read config")
    refused("schema --config " .. q(config) .. " --model /nonexistent/m.lua", 1, "cannot load model")
    local bad = tmpfile("return 42\n")
    refused("schema --config " .. q(config) .. " --model " .. q(bad), 1, "must return a list of entity definitions, got number")
    write_file(bad, "error('model broke')\n")
    refused("schema --config " .. q(config) .. " --model " .. q(bad), 1, "raised: .*model broke")
    write_file(bad, "return { { name = 'X', fields = { { 'a', 'nosuchtype' } } } }\n")
    refused("schema --config " .. q(config) .. " --model " .. q(bad), 1, "entity 1: .*nosuchtype")
    -- an unreachable server, with a password that must not show
    local port = au.free_port()
    local unreachable = tmpfile("default:\n  mysql: bee:Zq9secret@tcp(127.0.0.1:" .. port .. ")/x?timeout=1s\n")
    local e = refused("schema --config " .. q(unreachable) .. " --model " .. q(model), 1, "cannot connect")
    assert.is_nil(e:find("Zq9secret", 1, true))
  end)
end)
