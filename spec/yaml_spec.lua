local beeorm = require("beeorm")
local servers = require("support.servers")

-- registry:load_yaml(path): pools from a YAML file in BeeORM's layout.

-- Writes text to a new temporary file and returns its path.
local function write_temp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  assert(f:close())
  return path
end

-- A single-quoted YAML scalar (no escapes but '' for ').
local function q(s)
  return "'" .. s:gsub("'", "''") .. "'"
end

-- Loads text into a fresh registry; returns the registry, the path and load_yaml's results.
-- The file is removed when the test ends.
local function load(text)
  local path = write_temp(text)
  finally(function() os.remove(path) end)
  local r = beeorm.registry()
  local ok, err = r:load_yaml(path)
  return r, path, ok, err
end

local function assert_no_secret(err, secret)
  assert.is_true(beeorm.is_error(err))
  for _, v in pairs(err) do
    assert.is_falsy(tostring(v):find(secret, 1, true))
  end
  assert.is_falsy(tostring(err):find(secret, 1, true))
  assert.is_falsy(tostring(err):find("\n", 1, true), "tostring(err) is one line")
end

local POOL_KEYS = "(allowed: mysql, redis, sentinel, local_cache, streams, timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms)"

-- { description, YAML text, code, pool (or false), message after "<path>:" }
local cases = {
  { "a YAML syntax error (a tab for indentation)", "a:\n\tredis: h:1:0\n", "config", false,
    "2: YAML syntax error: found character that cannot start any token (while scanning for the next token)" },
  { "an unclosed quote", "a:\n  redis: 'h:1:0\n", "config", false,
    "3: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar)" },
  { "an unknown pool key", "default:\n  redis: h:1:0\n  mysqll: x\n", "config", "default",
    "3: default: unknown key 'mysqll' " .. POOL_KEYS },
  { "a duplicate pool key", "a:\n  redis: h:1:0\n  redis: h:2:0\n", "config", "a",
    "3: a: duplicate key 'redis'" },
  { "mysql as a list", "default:\n  mysql:\n    - app:pw@tcp(h:1)/app\n", "config", "default",
    "3: default.mysql: expected a DSN string or a mapping with 'uri', got a sequence" },
  { "mysql left empty", "default:\n  mysql:\n", "config", "default",
    "2: default.mysql: expected a DSN string or a mapping with 'uri', got an empty value" },
  { "a mysql mapping with an unknown key", "a:\n  mysql:\n    url: x\n", "config", "a",
    "3: a.mysql: unknown key 'url' (allowed: uri)" },
  { "a mysql mapping without uri", "a:\n  mysql: {}\n", "config", "a",
    "2: a.mysql: missing key 'uri'" },
  { "redis as a mapping", "a:\n  redis:\n    host: h\n", "config", "a",
    "3: a.redis: expected an address string (host:port:db, redis:// URI or socket path), got a mapping" },
  { "a redis timeout out of range", "a:\n  redis: h:1:0\n  timeout_ms: 90000\n", "config", "a",
    "3: a.timeout_ms: expected milliseconds, an integer 1-60000, got '90000'" },
  { "redis as a block scalar", "a:\n  redis: |\n    h:1:0\n", "config", "a",
    "2: a.redis: expected an address string (host:port:db, redis:// URI or socket path), got a block scalar (use a plain or quoted string)" },
  { "local_cache not a number", "a:\n  mysql: app:pw@tcp(h:1)/app\n  local_cache: lots\n", "config", "a",
    "3: a.local_cache: expected an integer 1-1000000000, got 'lots'" },
  { "local_cache quoted", "a:\n  mysql: app:pw@tcp(h:1)/app\n  local_cache: '100'\n", "config", "a",
    "3: a.local_cache: expected an integer 1-1000000000, got a quoted string" },
  { "local_cache with a leading zero", "a:\n  mysql: app:pw@tcp(h:1)/app\n  local_cache: 0100\n", "config", "a",
    "3: a.local_cache: expected an integer 1-1000000000, got '0100'" },
  { "local_cache of 0", "a:\n  mysql: app:pw@tcp(h:1)/app\n  local_cache: 0\n", "invalid", "a",
    "3: a.local_cache: local_cache of pool 'a' must be 1 to 1000000000, got 0" },
  { "a bad DSN port", "default:\n  mysql: app:pw@tcp(h:70000)/app\n", "dsn", "default",
    "2: default.mysql: bad MySQL DSN: bad port '70000' (expected 1-65535)" },
  { "a bad Redis db", "a:\n  redis: h:6379:x\n", "dsn", "a",
    "2: a.redis: bad Redis address: bad db index 'x' (expected a number 0 or more)" },
  { "streams not a mapping", "a:\n  redis: h:1:0\n  streams: orm-lazy-channel\n", "config", "a",
    "3: a.streams: expected a mapping of stream names to lists of consumer groups, got a scalar" },
  { "a stream without a list", "a:\n  redis: h:1:0\n  streams:\n    s1: g1\n", "config", "a",
    "4: a.streams.s1: expected a list of consumer group names, got a scalar" },
  { "a stream listed twice", "a:\n  redis: h:1:0\n  streams:\n    s1: [g1]\n    s1: [g2]\n", "config", "a",
    "5: a.streams: duplicate stream 's1'" },
  { "a duplicate pool", "a:\n  redis: h:1:0\na:\n  redis: h:2:0\n", "config", false,
    "3: duplicate pool 'a'" },
  { "a bad pool name", "my pool:\n  redis: h:1:0\n", "pool", false,
    "1: bad pool name 'my pool' (allowed: letters, digits, '_', '-')" },
  { "a pool name longer than 63", string.rep("p", 64) .. ":\n  redis: h:1:0\n", "pool", false,
    "1: bad pool name (expected 1-63 characters of letters, digits, '_', '-')" },
  { "an alias", "a:\n  redis: *addr\n", "config", "a",
    "2: a.redis: YAML aliases are not supported" },
  { "an anchor", "a: &base\n  redis: h:1:0\n", "config", "a",
    "1: a: YAML anchors are not supported" },
  { "an empty pool", "a:\nb:\n  redis: h:1:0\n", "config", "a",
    "1: pool 'a' defines nothing" },
  { "a pool given as an empty mapping", "b:\n  redis: h:1:0\na: {}\n", "config", "a",
    "3: pool 'a' defines nothing" },
  { "a pool given a DSN", "default: app:pw@tcp(h:1)/app\n", "config", "default",
    "1: default: expected a mapping (keys: mysql, redis, sentinel, local_cache, streams, timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms), got a scalar" },
  { "an empty file", "", "config", false,
    "1: expected a mapping of pool names, got an empty document" },
  { "a file with only a comment", "# nothing here\n", "config", false,
    "1: expected a mapping of pool names, got an empty document" },
  { "a list at the top level", "- a\n- b\n", "config", false,
    "1: expected a mapping of pool names, got a sequence" },
  { "two documents", "a:\n  redis: h:1:0\n---\nb:\n  redis: h:2:0\n", "config", false,
    "3: expected a single YAML document, found a second one" },
}

describe("registry:load_yaml", function()
  setup(servers.need)

  it("loads two MySQL pools, two Redis pools, local_cache and streams, and validate connects", function()
    local p = servers.mysql_parts()
    local uri = ("mysql://%s:%s@%s:%d/%s"):format(p.user, p.password, p.host, p.port, p.database)
    local r, _, ok, err = load(table.concat({
      "# BeeORM layout",
      "default:",
      "  mysql: " .. q(servers.mysql),
      "  redis: " .. q(servers.redis .. ":0"),
      "  local_cache: 1000",
      "  streams:",
      "    orm-lazy-channel:",
      "      - orm-async-consumer",
      "    orm-log-channel:",
      "      - orm-async-consumer",
      "      - audit",
      "logs:",
      "  mysql:",
      "    uri: " .. q(uri),
      "cache:",
      "  redis: " .. q(servers.redis .. ":1"),
      "  timeout_ms: 300",
      "  connect_timeout_ms: 1000",
      "",
    }, "\n"))
    assert.is_nil(err)
    assert.is_true(ok)
    assert.equal("beeorm.Registry (2 MySQL pools, 2 Redis pools)", tostring(r))
    local engine, verr = r:validate()
    assert.is_nil(verr)
    local pools = engine:pools()
    assert.equal(4, #pools)
    local got = {}
    for i, pool in ipairs(pools) do got[i] = pool.kind .. " " .. pool.name end
    assert.same({ "mysql default", "mysql logs", "redis default", "redis cache" }, got)
    assert.matches("/0$", pools[3].address)
    assert.matches("/1$", pools[4].address)
    assert.is_falsy(tostring(engine):find(p.password, 1, true))
    engine:close()
  end)

  it("loads the same file into a registry that has other pools", function()
    local path = write_temp("logs:\n  redis: " .. q(servers.redis .. ":2") .. "\n")
    finally(function() os.remove(path) end)
    local r = beeorm.registry()
    assert(r:register_mysql(servers.mysql))
    assert(r:register_redis(servers.redis, 0))
    assert.is_true(r:load_yaml(path))
    local engine = assert(r:validate())
    assert.equal(3, #engine:pools())
    assert.equal("logs", engine:pools()[3].name)
  end)

  it("has at least 8 malformed files below", function()
    assert.is_true(#cases >= 8)
  end)

  for _, case in ipairs(cases) do
    local what, text, code, pool, message = case[1], case[2], case[3], case[4], case[5]
    it("rejects " .. what .. ", naming file, line and key", function()
      local r, path, ok, err = load(text)
      assert.is_nil(ok)
      assert.is_true(beeorm.is_error(err))
      assert.equal(code, err.code)
      assert.equal(path .. ":" .. message, err.message)
      assert.equal(pool or nil, err.pool)
      assert.is_false(err.temporary)
      assert.is_falsy(tostring(err):find("\n", 1, true), "tostring(err) is one line")
      -- nothing was registered
      assert.equal("beeorm.Registry (0 MySQL pools, 0 Redis pools)", tostring(r))
    end)
  end

  it("registers nothing from a file with a bad value after good pools", function()
    local r, _, ok = load("a:\n  redis: h:1:0\nb:\n  mysql: app:pw@tcp(h:1)/app\nc:\n  redis: h:1:x\n")
    assert.is_nil(ok)
    assert.equal("beeorm.Registry (0 MySQL pools, 0 Redis pools)", tostring(r))
  end)

  it("makes validate fail with the same error after a bad value", function()
    local r, path, ok, err = load("default:\n  mysql: app:pw@tcp(h:70000)/app\n")
    assert.is_nil(ok)
    local engine, verr = r:validate()
    assert.is_nil(engine)
    assert.equal("dsn", verr.code)
    assert.equal("bad MySQL DSN: bad port '70000' (expected 1-65535)", verr.message)
    assert.equal(path .. ":2: default.mysql: " .. verr.message, err.message)
  end)

  it("makes validate fail with the same error after a layout error", function()
    local r, _, ok, err = load("default:\n  mysqll: x\n")
    assert.is_nil(ok)
    local engine, verr = r:validate()
    assert.is_nil(engine)
    assert.equal("config", verr.code)
    assert.equal(err.message, verr.message)
  end)

  it("reports a missing file", function()
    local path = os.tmpname()
    os.remove(path)
    local r = beeorm.registry()
    local ok, err = r:load_yaml(path)
    assert.is_nil(ok)
    assert.equal("config", err.code)
    assert.equal("cannot read " .. path .. ": No such file or directory", err.message)
    assert.matches("^cannot read ", err.message)
    assert.is_false(err.temporary)
  end)

  it("reports a directory", function()
    local r = beeorm.registry()
    local ok, err = r:load_yaml("/")
    assert.is_nil(ok)
    assert.equal("config", err.code)
    assert.matches("^cannot read /: ", err.message)
  end)

  describe("never shows a password", function()
    local secret = "Zq9secret"
    local texts = {
      { "in a DSN with a bad port", "default:\n  mysql: app:" .. secret .. "@tcp(h:70000)/app\n", "dsn" },
      { "in a mysql:// uri with a bad port", "default:\n  mysql:\n    uri: mysql://app:" .. secret .. "@h:70000/app\n", "dsn" },
      { "in a redis:// address with a bad port", "default:\n  redis: redis://:" .. secret .. "@h:99999/0\n", "dsn" },
      { "in a DSN given as the pool", "default: app:" .. secret .. "@tcp(h:70000)/app\n", "config" },
      { "in a DSN given as a list", "default:\n  mysql:\n    - app:" .. secret .. "@tcp(h:70000)/app\n", "config" },
      { "in an unclosed quoted DSN", "default:\n  mysql: 'app:" .. secret .. "@tcp(h:70000)/app\n", "config" },
      { "in a DSN as a block scalar", "default:\n  mysql: >\n    app:" .. secret .. "@tcp(h:70000)/app\n", "config" },
    }
    for _, t in ipairs(texts) do
      it(t[1], function()
        local r, _, ok, err = load(t[2])
        assert.is_nil(ok)
        assert.equal(t[3], err.code)
        assert_no_secret(err, secret)
        local _, verr = r:validate()
        if verr then assert_no_secret(verr, secret) end
      end)
    end
  end)

  it("raises for a path that is not a string", function()
    local r = beeorm.registry()
    assert.has_error(function() r:load_yaml(5) end,
      "bad argument #1 to 'load_yaml' (string expected, got number)")
    assert.has_error(function() r:load_yaml() end,
      "bad argument #1 to 'load_yaml' (string expected, got no value)")
  end)

  it("raises on a closed registry", function()
    local r = beeorm.registry()
    r:close()
    assert.has_error(function() r:load_yaml("/nonexistent.yml") end,
      "attempt to use a closed beeorm registry")
  end)
end)
