-- The README's "Your first app", followed as a newcomer would (issue 14): development
-- servers that stay up (scripts/dev_servers.sh, what `make servers` runs), the config it
-- writes, `beeorm schema --apply` with examples/first_app/model.lua, the app run with
-- `beeorm run`, the queue seen with `beeorm stats` and on the dashboard of `beeorm
-- serve`, drained with `beeorm consume`, then `make servers-stop`. The servers are this spec's own, stopped by pid in a
-- `finally` also when a step fails.
local beeorm = require("beeorm")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")
local hu = require("support.host_util")

local q = util.shell_quote

describe("the first app of the README", function()
  it("goes from servers to a drained queue with the commands the README gives", function()
    servers.need()
    local code, dir = servers.run("mktemp -d " .. q(servers.build_dir .. "/servers") .. "/first-app.XXXXXX")
    assert.equal(0, code, dir)
    dir = dir:gsub("%s+$", "") .. "/dev"
    local script = q(servers.root .. "/scripts/dev_servers.sh")
    local engine
    finally(function()
      if engine then engine:close() end
      servers.run(script .. " stop " .. q(dir))
    end)
    -- make servers
    local out
    code, out = servers.run(script .. " start " .. q(dir))
    assert.equal(0, code, out)
    assert.matches("^development servers started %(make servers%-stop stops them%):\n  MySQL  [^\n]+\n  Redis  "
      .. "127%.0%.0%.1:%d+\n  config [^\n]+/beeorm%.yaml\n$", out)
    local config = dir .. "/beeorm.yaml"
    -- a second `make servers` says they run, and changes nothing
    local out2
    code, out2 = servers.run(script .. " start " .. q(dir))
    assert.equal(0, code, out2)
    assert.matches("^development servers already running", out2)
    assert.equal(out:match("MySQL  ([^\n]+)"), out2:match("MySQL  ([^\n]+)"))
    local model = q(servers.root .. "/examples/first_app/model.lua")
    -- beeorm schema: what is missing (exit 3), then --apply
    local err
    code, out, err = hu.host("schema --config " .. q(config) .. " --model " .. model)
    assert.equal(3, code, out .. err)
    assert.matches("CREATE TABLE `customer`", out, 1, true)
    assert.matches("CREATE TABLE `orders`", out, 1, true)
    code, out, err = hu.host("schema --apply --config " .. q(config) .. " --model " .. model)
    assert.equal(0, code, out .. err)
    assert.matches("applied 2 statements\nnothing pending", out, 1, true)
    -- the app: one customer now, 20 orders through the queue
    code, out, err = hu.host("run " .. q(servers.root .. "/examples/first_app/app.lua") .. " " .. q(config) .. " 20")
    assert.equal(0, code, out .. err)
    assert.equal("", err)
    local customer = tonumber(out:match("^customer (%d+): Ada <ada%-%d+@example%.com>\n"))
    assert.is_truthy(customer, out)
    assert.matches("\n20 orders queued; a consumer writes them to MySQL\n", out, 1, true)
    assert.matches("\nread back 20 orders through the caches, total 2110%.00\n$", out)
    -- beeorm stats and the dashboard (beeorm serve): the queue holds them
    code, out = hu.host("stats --json --config " .. q(config))
    assert.equal(0, code, out)
    local doc = assert(require("dkjson").decode(out))
    local waiting = 0
    for _, qs in ipairs(doc.queues) do waiting = waiting + qs.len end
    assert.is_true(waiting >= 1, out)
    local serve_log = os.tmpname()
    local serve_pid, url = hu.start_serve(config, serve_log)
    finally(function()
      if au.alive(serve_pid) then au.kill(serve_pid, "KILL") end
      os.remove(serve_log)
    end)
    local function page_waiting()
      local c, page = servers.run("curl -s -m 5 " .. q(url .. "/"))
      assert.equal(0, c, page)
      return tonumber(page:match('<b id="len">(%d+)</b>'))
    end
    assert.equal(waiting, page_waiting())
    -- beeorm consume drains it, and the dashboard shows it drained
    code, out, err = hu.host("consume --once --config " .. q(config))
    assert.equal(0, code, out .. err)
    assert.equal(20, au.consume_summary(out, true).events)
    assert.equal(0, page_waiting())
    au.kill(serve_pid, "TERM")
    assert.is_true(au.wait_exit(serve_pid, 10))
    -- MySQL has the orders of that customer
    local reg = beeorm.registry()
    assert(reg:load_yaml(config))
    engine = assert(reg:validate())
    local rows = assert(engine:sql_query("SELECT COUNT(*) AS n, SUM(total) AS s FROM orders WHERE customer = ?",
      { customer }))
    assert.same({ "20", "2110.00" }, { rows[1].n, rows[1].s })
    engine:close()
    engine = nil
    -- make servers-stop: every process gone
    local pids = {}
    for line in io.lines(dir .. "/pids") do
      local pid = tonumber(line:match(" (%d+)$"))
      if pid then pids[#pids + 1] = pid end
    end
    code, out = servers.run(script .. " stop " .. q(dir))
    assert.equal(0, code, out)
    assert.equal("development servers stopped\n", out)
    for _, pid in ipairs(pids) do assert.is_false(au.alive(pid), "pid " .. pid .. " still runs") end
    code, out = servers.run(script .. " stop " .. q(dir))
    assert.equal("no development servers running\n", out)
  end)
end)
