-- `beeorm serve` (issue 14): /metrics in the Prometheus text format (checked by a strict
-- parser of the format here), /api/stats as JSON, a page at /, and the HTTP refusals;
-- counters that only grow across two consumer processes and a restart of serve (they
-- live in Redis); bad usage (2), an unreachable server or a taken port (1), SIGTERM (0).
-- Servers: the shared MariaDB and Redis db 0; serve and the consumers are child
-- processes, stopped by pid.
local json = require("dkjson")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")
local hu = require("support.host_util")

local REDIS_DB = 0
local T = "sv_item"
local q = util.shell_quote
local item_def = { name = T, redis_cache = true, fields = { { "name", "string", length = 40 } } }

-- A strict reader of the Prometheus text exposition format (0.0.4): every line is a
-- HELP, a TYPE or a sample; a family's TYPE comes before its samples; names and labels
-- follow the format's grammar; counters end in _total; no series twice. Returns
-- { [family] = { type =, help =, samples = { [labels text] = value } } } or raises.
local function parse_prometheus(text)
  local families, seen = {}, {}
  local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
  assert(text:sub(-1) == "\n", "the exposition must end with a line feed")
  for line in text:gmatch("([^\n]*)\n") do
    local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
    if kind then
      assert(kind == "HELP" or kind == "TYPE", "unknown comment: " .. line)
      assert(name:match(NAME), "bad metric name: " .. name)
      families[name] = families[name] or { samples = {} }
      if kind == "TYPE" then
        assert(rest == "counter" or rest == "gauge", "bad type: " .. line)
        assert(not families[name].type, "TYPE twice: " .. name)
        assert(next(families[name].samples) == nil, "TYPE after samples: " .. name)
        families[name].type = rest
      else
        assert(#rest > 0, "empty HELP: " .. line)
        families[name].help = rest
      end
    else
      local sname, labels, value = line:match("^([a-zA-Z_:][a-zA-Z0-9_:]*)(%b{}) (%S+)$")
      if not sname then
        sname, value = line:match("^([a-zA-Z_:][a-zA-Z0-9_:]*) (%S+)$")
        labels = ""
      end
      assert(sname, "not a sample: " .. line)
      assert(families[sname] and families[sname].type, "a sample before its TYPE: " .. line)
      if labels ~= "" then
        local inner = labels:sub(2, -2)
        local pos = 1
        while pos <= #inner do -- name="value" with \\, \" and \n the only escapes, comma-separated
          local k, after = inner:match('^([a-zA-Z_][a-zA-Z0-9_]*)="()', pos)
          assert(k, "bad label name in: " .. line)
          pos = after
          while true do
            local c = inner:sub(pos, pos)
            assert(c ~= "", "unterminated label value in: " .. line)
            if c == "\\" then
              assert(("\\\"n"):find(inner:sub(pos + 1, pos + 1), 1, true), "bad escape in: " .. line)
              pos = pos + 2
            elseif c == '"' then
              pos = pos + 1
              break
            else
              pos = pos + 1
            end
          end
          if pos <= #inner then
            assert(inner:sub(pos, pos) == ",", "expected ',' between labels in: " .. line)
            pos = pos + 1
          end
        end
      end
      local v = tonumber(value)
      assert(v and v == v, "bad value: " .. line)
      assert(not seen[sname .. labels], "a series twice: " .. line)
      seen[sname .. labels] = true
      families[sname].samples[labels] = v
    end
  end
  for name, f in pairs(families) do
    assert(f.type and f.help, "family without TYPE or HELP: " .. name)
    if f.type == "counter" then assert(name:match("_total$"), "a counter not ending in _total: " .. name) end
  end
  return families
end

-- The sum of a family's samples.
local function total(families, name)
  local sum = 0
  for _, v in pairs(assert(families[name], "no " .. name).samples) do sum = sum + v end
  return sum
end

local function curl(url, extra)
  local code, out = servers.run("curl -s -S -m 5 -w '\\n%{http_code}' " .. (extra or "") .. " " .. q(url))
  assert.equal(0, code, out)
  local body, status = out:match("^(.*)\n(%d+)%s*$")
  return tonumber(status), body
end

describe("beeorm serve", function()
  local fx = hu.fixture(REDIS_DB, { item_def }, { T })
  local engine, config, log
  local tmpfile, pids = fx.tmpfile, fx.pids

  -- Starts serve; returns its pid and base URL.
  local function start_serve(extra)
    log = tmpfile()
    local pid, url = hu.start_serve(config, log, extra)
    pids[#pids + 1] = pid
    return pid, url
  end

  local function stop(pid)
    au.kill(pid, "TERM")
    assert.is_true(au.wait_exit(pid, 10), "serve did not stop")
  end

  local function queue_rows(n, tag)
    local ctx = engine:context()
    for i = 1, n do ctx:new_entity(T, { name = tag .. i }) end
    assert.is_true(ctx:flush_async())
  end

  setup(function()
    fx.setup()
    engine, config = fx.engine, fx.config
  end)

  teardown(fx.teardown)

  it("serves /metrics in the Prometheus format, /api/stats and a page, and counters only grow across two "
    .. "consumer processes and a restart of serve", function()
    local pid, url = start_serve()
    local status, body = curl(url .. "/metrics")
    assert.equal(200, status)
    local m0 = parse_prometheus(body)
    for _, name in ipairs({ "beeorm_queue_length", "beeorm_queue_pending", "beeorm_queue_oldest_event_age_seconds",
      "beeorm_queue_errors", "beeorm_consumer_workers", "beeorm_events_applied_total", "beeorm_events_failed_total" }) do
      assert.is_truthy(m0[name], name)
    end
    assert.equal("counter", m0.beeorm_events_applied_total.type)
    assert.equal("gauge", m0.beeorm_queue_length.type)
    assert.equal(8, (function() local n = 0 for _ in pairs(m0.beeorm_queue_length.samples) do n = n + 1 end return n end)())
    assert.is_truthy(m0.beeorm_queue_length.samples['{pool="default",shard="3"}'])
    -- queued rows show as length, and agree with beeorm stats
    queue_rows(5, "sv-a")
    local m1 = parse_prometheus(select(2, curl(url .. "/metrics")))
    local _, stats_out = hu.host("stats --json --config " .. q(config))
    local waiting = 0
    for _, qs in ipairs(assert(json.decode(stats_out)).queues) do waiting = waiting + qs.len end
    assert.equal(waiting, total(m1, "beeorm_queue_length"))
    assert.is_true(waiting >= 1)
    -- consumer process 1 applies them
    local code, out = hu.host("consume --once --config " .. q(config))
    assert.equal(0, code, out)
    local m2 = parse_prometheus(select(2, curl(url .. "/metrics")))
    assert.equal(0, total(m2, "beeorm_queue_length"))
    assert.equal(total(m0, "beeorm_events_applied_total") + 5, total(m2, "beeorm_events_applied_total"))
    -- a restart of serve keeps the counters (they are in Redis); consumer process 2 adds to them
    stop(pid)
    assert.matches("beeorm serve: stopped %(SIGTERM%)", au.read(log))
    pid, url = start_serve()
    local m3 = parse_prometheus(select(2, curl(url .. "/metrics")))
    assert.equal(total(m2, "beeorm_events_applied_total"), total(m3, "beeorm_events_applied_total"))
    queue_rows(3, "sv-b")
    code, out = hu.host("consume --once --config " .. q(config))
    assert.equal(0, code, out)
    local m4 = parse_prometheus(select(2, curl(url .. "/metrics")))
    assert.equal(total(m3, "beeorm_events_applied_total") + 3, total(m4, "beeorm_events_applied_total"))
    for labels, v in pairs(m4.beeorm_events_applied_total.samples) do
      assert.is_true(v >= (m0.beeorm_events_applied_total.samples[labels] or 0), labels .. " went down")
    end
    -- /api/stats: the same figures as JSON
    local status2, api = curl(url .. "/api/stats")
    assert.equal(200, status2)
    local doc = assert(json.decode(api))
    assert.equal(8, #doc.queues)
    assert.equal(total(m4, "beeorm_events_applied_total"), doc.consumers.applied_total)
    assert.same({ "default:0", "default", 0 }, { doc.queues[1].name, doc.queues[1].pool, doc.queues[1].shard })
    -- per second over the last 5 minutes (whole seconds only: the last batch's may still run)
    assert.equal(300, doc.rates.seconds)
    assert.same({ 300, 300 }, { #doc.rates.applied, #doc.rates.failed })
    assert.is_true(util.eventually(function()
      local d = assert(json.decode(select(2, curl(url .. "/api/stats"))))
      local sum = 0
      for _, v in ipairs(d.rates.applied) do sum = sum + v end
      return sum >= 8
    end, 5), "the 8 applied events are not in the per-second counts")
    -- the page
    local status3, page = curl(url .. "/")
    assert.equal(200, status3)
    assert.matches('<meta http-equiv="refresh" content="5">', page, 1, true)
    assert.matches('<b id="applied_total">' .. doc.consumers.applied_total .. "</b>", page, 1, true)
    assert.matches('<tr data-queue="default:7">', page, 1, true)
    assert.matches('<svg id="chart"', page, 1, true)
    assert.matches('<polyline id="applied_line"[^>]+points="[%d., ]+"', page)
    assert.matches('<a id="errors_link" href="/errors">', page, 1, true)
    stop(pid)
  end)

  it("refuses what it does not serve, and exits 2, 1 or 0 as its usage says", function()
    local pid, url = start_serve()
    local status, body = curl(url .. "/nope")
    assert.same({ 404, "404 not found (try /, /metrics, /api/stats or /errors)\n" }, { status, body })
    status, body = curl(url .. "/metrics", "-X POST -d x=1")
    assert.equal(405, status)
    assert.matches("405 method not allowed", body, 1, true)
    status = curl(url .. "/metrics", "-I")
    assert.equal(200, status)
    -- the port is taken: exit 1
    local port = url:match(":(%d+)$")
    local code, out, err = hu.host("serve --config " .. q(config) .. " --listen 127.0.0.1:" .. port)
    assert.equal(1, code, out .. err)
    assert.matches("^beeorm serve: cannot listen on 127%.0%.0%.1:" .. port, err)
    stop(pid)
    local cases = {
      { "serve", 2, "beeorm serve: missing --config FILE (try 'beeorm serve --help')\n" },
      { "serve --config " .. q(config) .. " --frob", 2, "beeorm serve: unknown option '--frob' (try 'beeorm serve --help')\n" },
      { "serve --config", 2, "beeorm serve: missing value for --config (try 'beeorm serve --help')\n" },
      { "serve --config " .. q(config) .. " --listen nowhere", 2, "beeorm serve: bad --listen 'nowhere': expected HOST:PORT\n" },
      { "serve --config " .. q(config) .. " --listen example.com:80", 2,
        "beeorm serve: bad --listen 'example.com:80': 'example.com' is not an IP address (use 127.0.0.1, 0.0.0.0, [::1] ...)\n" },
      { "serve --config " .. q(config) .. " --listen 127.0.0.1:70000", 2,
        "beeorm serve: bad --listen '127.0.0.1:70000': bad port '70000' (expected 0-65535)\n" },
      { "serve --config " .. q(config) .. " --token short", 2,
        "beeorm serve: --token must be at least 8 characters (try 'beeorm serve --help')\n" },
      { "serve --config /nonexistent/x.yaml", 1, nil },
    }
    for _, c in ipairs(cases) do
      code, out, err = hu.host(c[1])
      assert.equal(c[2], code, c[1] .. "\n" .. out .. err)
      assert.equal("", out, c[1])
      if c[3] then assert.equal(c[3], err, c[1]) else assert.matches("^beeorm serve: [^\n]+\n$", err) end
    end
    -- an unreachable server: 1, and no password
    local unreachable = tmpfile(string.format("default:\n  mysql: bee:Zq9secret@tcp(127.0.0.1:%d)/x?timeout=1s\n"
      .. "  redis: %s:%d\n", au.free_port(), servers.redis, REDIS_DB))
    code, out, err = hu.host("serve --config " .. q(unreachable))
    assert.equal(1, code)
    assert.matches("^beeorm serve: beeorm error %[mysql 200%d", err)
    assert.is_nil(err:find("Zq9secret", 1, true))
    -- usage
    code, out = hu.host("serve --help")
    assert.equal(0, code)
    assert.matches("^usage: beeorm serve %-%-config FILE %[%-%-listen HOST:PORT%] %[%-%-token TOKEN%]", out)
    local code2, out2 = hu.host("help serve")
    assert.same({ 0, out }, { code2, out2 })
  end)
end)
