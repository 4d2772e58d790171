-- `beeorm serve` in a real browser (issue 14): Debian's headless Chromium, driven through
-- chromedriver's WebDriver protocol, loads the dashboard against real servers and reads
-- the queue figures off the page, opens the errors page, types the token, skips a parked
-- event with its button and sees it gone; a POST without the token is refused. The
-- screenshots it takes go to BEEORM_SCREENSHOTS (a folder) when set, as
-- docs/dashboard.png and docs/errors.png were made. Pending when chromium or
-- chromedriver is not installed (`make deps` installs them).
-- Servers: the shared MariaDB and Redis db 0 (with spec/serve_spec.lua); serve and
-- chromedriver are child processes, stopped by pid.
local json = require("dkjson")
local servers = require("support.servers")
local util = require("support.orm_util")
local au = require("support.async_util")
local hu = require("support.host_util")

local REDIS_DB = 0
local T = "sb_item"
local TOKEN = "s3cret-token-for-spec"
local q = util.shell_quote
local item_def = {
  name = T,
  redis_cache = true,
  fields = { { "name", "string", length = 40, unique = "name" }, { "n", "int" } },
}

local EMPTY = setmetatable({}, { __jsontype = "object" }) -- "{}", not "[]"

local function installed(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- One WebDriver call: method, path, body (a table or nil) -> the decoded "value".
local function webdriver(base, method, path, body)
  local data = body and json.encode(body) or nil
  local tmp = os.tmpname()
  if data then hu.write_file(tmp, data) end
  local code, out = servers.run(string.format("curl -s -S -m 30 -X %s -H 'Content-Type: application/json' %s %s",
    method, data and ("--data-binary @" .. q(tmp)) or "", q(base .. path)))
  os.remove(tmp)
  assert(code == 0, out)
  local doc = assert(json.decode(out), out)
  if type(doc.value) == "table" and doc.value.error then
    error(string.format("WebDriver %s %s: %s: %s", method, path, doc.value.error, tostring(doc.value.message)))
  end
  return doc.value
end

local function b64decode(s)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local map = {}
  for i = 1, #chars do map[chars:sub(i, i)] = i - 1 end
  local out, bits, n = {}, 0, 0
  for c in s:gmatch("[%w+/]") do
    bits = bits * 64 + map[c]
    n = n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char((bits >> n) & 0xff)
    end
  end
  return table.concat(out)
end

describe("beeorm serve in a headless browser", function()
  if not (installed("/usr/bin/chromium") and installed("/usr/bin/chromedriver")) then
    pending("chromium or chromedriver not installed (make deps installs them)")
    return
  end
  local fx = hu.fixture(REDIS_DB, { item_def }, { T })
  local engine, config
  local tmpfile, pids = fx.tmpfile, fx.pids
  local driver, session

  local function spawn(cmd, log)
    local pid = au.spawn(cmd, log)
    pids[#pids + 1] = pid
    return pid
  end

  local function find(css)
    local el = webdriver(driver, "POST", "/session/" .. session .. "/element", { using = "css selector", value = css })
    for _, v in pairs(el) do return v end
  end

  local function text_of(css)
    return webdriver(driver, "GET", "/session/" .. session .. "/element/" .. find(css) .. "/text")
  end

  local function go(url)
    webdriver(driver, "POST", "/session/" .. session .. "/url", { url = url })
  end

  local function screenshot(name)
    local dir = os.getenv("BEEORM_SCREENSHOTS")
    if not dir or dir == "" then return end
    local png = b64decode(webdriver(driver, "GET", "/session/" .. session .. "/screenshot"))
    hu.write_file(dir .. "/" .. name, png)
  end

  setup(function()
    fx.setup()
    engine, config = fx.engine, fx.config
  end)

  teardown(function()
    if session then pcall(webdriver, driver, "DELETE", "/session/" .. session) end
    fx.teardown()
  end)

  it("shows the queues, and skips a parked event with its button once the token is typed", function()
    -- a queue with waiting entries, and one parked entry of two rows (the second a duplicate)
    local ctx = engine:context()
    local a = ctx:new_entity(T, { name = "sb-dup", n = 1 })
    assert(ctx:flush())
    local rows = {}
    repeat
      local r = ctx:new_entity(T, { name = "sb-" .. (#rows + 1), n = 2 })
      if #rows == 0 or au.queue_of(r.id) == au.queue_of(rows[1].id) then rows[#rows + 1] = r else ctx:delete_entity(r) end
    until #rows == 2
    rows[2].name = "sb-dup" -- collides with a
    assert.is_true(ctx:flush_async())
    local code, out = hu.host("consume --once --config " .. q(config))
    assert.equal(0, code, out)
    local parked_queue = au.queue_of(rows[1].id)
    assert.equal(1, au.stats(engine)[parked_queue].errors)
    local c2 = engine:context()
    for i = 1, 3 do c2:new_entity(T, { name = "sb-wait-" .. i, n = 3 }) end
    assert.is_true(c2:flush_async())
    local waiting = au.total(engine, "len")
    assert.is_true(waiting >= 1)

    -- serve with a token, chromedriver
    local serve_pid, url = hu.start_serve(config, tmpfile(), "--token " .. TOKEN)
    pids[#pids + 1] = serve_pid
    local port = au.free_port()
    spawn(string.format("/usr/bin/chromedriver --port=%d", port), tmpfile())
    driver = "http://127.0.0.1:" .. port
    assert(util.eventually(function()
      local c = servers.run("curl -s -m 2 " .. q(driver .. "/status"))
      return c == 0
    end, 15), "chromedriver did not start")
    local s = webdriver(driver, "POST", "/session", { capabilities = { alwaysMatch = {
      browserName = "chrome",
      ["goog:chromeOptions"] = { binary = "/usr/bin/chromium",
        args = { "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900" } },
    } } })
    session = s.sessionId
    assert.is_truthy(session)

    -- the dashboard: the figures on the page are the queues'
    go(url .. "/")
    assert.equal(tostring(waiting), text_of("#len"))
    assert.equal("1", text_of("#errors"))
    local row = text_of('tr[data-queue="' .. parked_queue .. '"]')
    assert.matches("^" .. parked_queue .. " ", row)
    assert.is_truthy(find("#chart polyline#failed_line"))
    screenshot("dashboard.png")

    -- the errors page: both events of the parked entry
    go(url .. "/errors")
    assert.equal("1", text_of("#entries"))
    local failing = text_of('tr.failed')
    assert.matches("1062", failing, 1, true)
    assert.matches("sb%-dup", failing)
    screenshot("errors.png")
    -- a button pressed without the token: refused
    webdriver(driver, "POST", "/session/" .. session .. "/element/" .. find("#skip-all") .. "/click", EMPTY)
    assert.equal("Refused: wrong or missing token", text_of("#title"))
    assert.equal(1, au.stats(engine)[parked_queue].errors)
    -- with the token typed in: the failing event is skipped, the entry's other row goes back
    go(url .. "/errors")
    webdriver(driver, "POST", "/session/" .. session .. "/element/" .. find("#token") .. "/value", { text = TOKEN })
    local button = find('tr.failed button[value^="skip|"]')
    webdriver(driver, "POST", "/session/" .. session .. "/element/" .. button .. "/click", EMPTY)
    assert.equal("Done", text_of("#title"))
    assert.matches("^Skipped event 2 of entry ", text_of("#text"))
    go(url .. "/errors")
    assert.equal("0", text_of("#entries"))
    assert.equal(0, au.stats(engine)[parked_queue].errors)
    code, out = hu.host("consume --once --config " .. q(config))
    assert.equal(0, code, out)
    assert.equal("sb-1", engine:sql_query("SELECT name FROM `" .. T .. "` WHERE id = ?", { rows[1].id })[1].name)
    assert.is_nil(engine:sql_query("SELECT name FROM `" .. T .. "` WHERE id = ?", { rows[2].id })[1])
    assert.is_truthy(a)

    -- a POST without the token, from outside the browser: refused with a page saying so
    local c, o = servers.run("curl -s -m 5 -w '\\n%{http_code}' -d 'act=skip-all' " .. q(url .. "/errors"))
    assert.equal(0, c)
    assert.matches("Refused: wrong or missing token.*\n403%s*$", o)
  end)
end)
