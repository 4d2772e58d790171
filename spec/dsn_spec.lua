local beeorm = require("beeorm")

describe("connection strings", function()
  describe("MySQL", function()
    it("parses the Go form and the URI form into the same settings", function()
      local go = assert(beeorm.parse_mysql_dsn("app:pw@tcp(127.0.0.1:3306)/shop?timeout=2s"))
      local uri = assert(beeorm.parse_mysql_dsn("mysql://app:pw@127.0.0.1:3306/shop?timeout=2s"))
      assert.same(go, uri)
      assert.same({
        user = "app", password_set = true, host = "127.0.0.1", port = 3306, database = "shop",
        charset = "utf8mb4", connect_timeout_ms = 2000, read_timeout_ms = 30000,
        write_timeout_ms = 30000, address = "mysql://app@127.0.0.1:3306/shop",
      }, go)
    end)

    it("parses unix sockets in both forms the same way", function()
      local go = assert(beeorm.parse_mysql_dsn("app:pw@unix(/run/m.sock)/shop"))
      local uri = assert(beeorm.parse_mysql_dsn("mysql://app:pw@/shop?socket=/run/m.sock"))
      assert.same(go, uri)
      assert.equal("/run/m.sock", go.socket)
      assert.is_nil(go.host)
    end)

    it("never returns the password itself", function()
      local s = assert(beeorm.parse_mysql_dsn("app:Zq9secret@tcp(h)/shop"))
      for k, v in pairs(s) do
        assert.is_falsy(tostring(v):find("Zq9secret", 1, true), k)
      end
    end)
  end)

  describe("Redis", function()
    it("parses host:port with db, host:port:db and redis:// the same way", function()
      local a = assert(beeorm.parse_redis_address("127.0.0.1:6380", 2))
      local b = assert(beeorm.parse_redis_address("127.0.0.1:6380:2"))
      local c = assert(beeorm.parse_redis_address("redis://127.0.0.1:6380/2"))
      assert.same(a, b)
      assert.same(a, c)
      assert.same({ host = "127.0.0.1", port = 6380, db = 2, password_set = false,
                    connect_timeout_ms = 5000, timeout_ms = 30000, replicas = 0, wait_timeout_ms = 1000,
                    address = "redis://127.0.0.1:6380/2" }, a)
    end)

    it("reads timeouts from the query of a redis:// address", function()
      local s = assert(beeorm.parse_redis_address("redis://127.0.0.1:6380/2?timeout_ms=300&connect_timeout_ms=800"))
      assert.same({ 300, 800, 2 }, { s.timeout_ms, s.connect_timeout_ms, s.db })
      local _, err = beeorm.parse_redis_address("redis://127.0.0.1:6380/2?timeout_ms=0")
      assert.equal("dsn", err.code)
      assert.matches("bad timeout_ms '0' %(expected milliseconds, 1 to 60000%)", err.message)
    end)

    it("reads replicas and wait_timeout_ms from the query, the wait below the reply timeout", function()
      local s = assert(beeorm.parse_redis_address("redis://127.0.0.1:6380/2?replicas=2&wait_timeout_ms=250"))
      assert.same({ 2, 250 }, { s.replicas, s.wait_timeout_ms })
      local _, err = beeorm.parse_redis_address("redis://127.0.0.1:6380/2?replicas=1&timeout_ms=900")
      assert.equal("dsn", err.code)
      assert.matches("wait_timeout_ms %(1000%) must be below timeout_ms %(900%)", err.message)
    end)

    it("reads a password and an ACL user from redis://", function()
      local s = assert(beeorm.parse_redis_address("redis://bee:pw@h:1/3"))
      assert.equal("bee", s.user)
      assert.is_true(s.password_set)
      assert.equal(3, s.db)
    end)

    it("takes a unix socket path", function()
      local s = assert(beeorm.parse_redis_address("/tmp/r.sock", 5))
      assert.same({ socket = "/tmp/r.sock", db = 5, password_set = false, connect_timeout_ms = 5000,
                    timeout_ms = 30000, replicas = 0, wait_timeout_ms = 1000, address = "unix:///tmp/r.sock?db=5" }, s)
    end)
  end)

  describe("bad shapes", function()
    local mysql_cases = {
      { "", "empty connection string" },
      { "mysql://root:pw@:3306/app", "missing host" },
      { "root:pw@tcp()/app", "missing host in tcp()" },
      { "root:pw@tcp(h:99999)/app", "bad port '99999' (expected 1-65535)" },
      { "root:pw@tcp(h:x1)/app", "bad port 'x1' (expected 1-65535)" },
      { "postgres://root:pw@h/app", "unknown scheme 'postgres://' for MySQL (use mysql:// or user:password@tcp(host:port)/database)" },
      { "root:pw@tcp(h:3306)/", "missing database name after '/'" },
      { "root:pw@udp(h:3306)/app", "unknown network 'udp' (use tcp or unix)" },
      { "root:pw@tcp(h:3306/app", "unclosed '(' after 'tcp'" },
      { "root:pw@tcp(h)/app?colour=blue", "unknown parameter 'colour' (supported: timeout, readTimeout, writeTimeout, charset)" },
      { "root:pw@tcp(h)/app?timeout=forever", "bad duration 'forever' for parameter 'timeout' (expected e.g. 500ms, 5s, 1m, up to 24h)" },
      { "root pw@tcp(h)/app", "connection string contains whitespace or a control character at byte 5" },
    }
    for _, case in ipairs(mysql_cases) do
      it("rejects MySQL DSN '" .. case[1] .. "' with its own message", function()
        local s, err = beeorm.parse_mysql_dsn(case[1])
        assert.is_nil(s)
        assert.equal("dsn", err.code)
        assert.equal(case[2], err.message)
        assert.is_false(err.temporary)
        assert.is_true(beeorm.is_error(err))
      end)
    end

    local redis_cases = {
      { "", nil, "empty connection string" },
      { "localhost", nil, "missing port (expected host:port, host:port:db or redis://host:port/db)" },
      { ":6379", nil, "missing host" },
      { "h:0", nil, "bad port '0' (expected 1-65535)" },
      { "h:6379:abc", nil, "bad db index 'abc' (expected a number 0 or more)" },
      { "redis://h/-2", nil, "bad db index '-2' (expected a number 0 or more)" },
      { "h:6379:1", 2, "db index given twice and different (1 in the address, 2 as argument)" },
      { "http://h:6379", nil, "unknown scheme 'http://' for Redis (use redis://, unix://, host:port or a socket path)" },
      { "rediss://h:6379", nil, "rediss:// (TLS) is not supported; use redis://" },
    }
    for _, case in ipairs(redis_cases) do
      it("rejects Redis address '" .. case[1] .. "' with its own message", function()
        local s, err = beeorm.parse_redis_address(case[1], case[2])
        assert.is_nil(s)
        assert.equal("dsn", err.code)
        assert.equal(case[3], err.message)
      end)
    end

    it("gives one readable line from tostring(err)", function()
      local _, err = beeorm.parse_mysql_dsn("root:pw@tcp(h:0)/app")
      assert.equal("beeorm error [dsn] bad port '0' (expected 1-65535)", tostring(err))
    end)

    it("raises on a DSN that is not a string", function()
      assert.has_error(function() beeorm.parse_mysql_dsn({}) end,
        "bad argument #1 to 'parse_mysql_dsn' (string expected, got table)")
    end)
  end)
end)
