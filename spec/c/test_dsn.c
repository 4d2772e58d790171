#include "internal.h"
#include "task.h"

static int same_mysql(const bee_mysql_settings_t *a, const bee_mysql_settings_t *b) {
  ASSERT_STR_EQ(a->user, b->user);
  ASSERT_STR_EQ(a->password, b->password);
  ASSERT_STR_EQ(a->host, b->host);
  ASSERT_STR_EQ(a->socket, b->socket);
  ASSERT_STR_EQ(a->database, b->database);
  ASSERT_STR_EQ(a->charset, b->charset);
  ASSERT_EQ(a->port, b->port);
  ASSERT_EQ(a->connect_timeout_ms, b->connect_timeout_ms);
  ASSERT_EQ(a->read_timeout_ms, b->read_timeout_ms);
  ASSERT_EQ(a->write_timeout_ms, b->write_timeout_ms);
  return 0;
}

TEST_IMPL(dsn_go_form_parses_every_part) {
  bee_mysql_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("app:s3cret@tcp(db.example:3307)/shop", &s, &err), 0);
  ASSERT_STR_EQ(s.user, "app");
  ASSERT_STR_EQ(s.password, "s3cret");
  ASSERT_STR_EQ(s.host, "db.example");
  ASSERT_STR_EQ(s.socket, "");
  ASSERT_EQ(s.port, 3307);
  ASSERT_STR_EQ(s.database, "shop");
  ASSERT_STR_EQ(s.charset, "utf8mb4");
  ASSERT_EQ(s.connect_timeout_ms, 5000);
  return 0;
}

TEST_IMPL(dsn_uri_form_matches_go_form) {
  bee_mysql_settings_t a, b;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("app:s3cret@tcp(127.0.0.1:3306)/app?timeout=2s", &a, &err), 0);
  ASSERT_EQ(bee_mysql_dsn_parse("mysql://app:s3cret@127.0.0.1:3306/app?timeout=2s", &b, &err), 0);
  if (same_mysql(&a, &b)) return 1;
  ASSERT_EQ(bee_mysql_dsn_parse("mariadb://app:s3cret@127.0.0.1/app?timeout=2000ms", &b, &err), 0);
  if (same_mysql(&a, &b)) return 1;
  return 0;
}

TEST_IMPL(dsn_unix_socket_forms) {
  bee_mysql_settings_t a, b;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("root:pw@unix(/run/mysqld/mysqld.sock)/app", &a, &err), 0);
  ASSERT_STR_EQ(a.socket, "/run/mysqld/mysqld.sock");
  ASSERT_STR_EQ(a.host, "");
  ASSERT_EQ(a.port, 0);
  ASSERT_EQ(bee_mysql_dsn_parse("mysql://root:pw@/app?socket=/run/mysqld/mysqld.sock", &b, &err), 0);
  if (same_mysql(&a, &b)) return 1;
  return 0;
}

TEST_IMPL(dsn_default_address_and_port) {
  bee_mysql_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("root@/app", &s, &err), 0);
  ASSERT_STR_EQ(s.host, "127.0.0.1");
  ASSERT_EQ(s.port, 3306);
  ASSERT_STR_EQ(s.password, "");
  ASSERT_EQ(bee_mysql_dsn_parse("root@tcp(localhost)/app", &s, &err), 0);
  ASSERT_STR_EQ(s.host, "localhost");
  ASSERT_EQ(s.port, 3306);
  return 0;
}

TEST_IMPL(dsn_ipv6_host) {
  bee_mysql_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("root:x@tcp([::1]:3310)/app", &s, &err), 0);
  ASSERT_STR_EQ(s.host, "::1");
  ASSERT_EQ(s.port, 3310);
  char buf[256];
  bee_mysql_settings_describe(&s, buf, sizeof buf);
  ASSERT_STR_EQ(buf, "mysql://root@[::1]:3310/app");
  return 0;
}

TEST_IMPL(dsn_uri_percent_decodes_user_and_password) {
  bee_mysql_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("mysql://us%40er:p%2Fw%3Ad@h:1/app", &s, &err), 0);
  ASSERT_STR_EQ(s.user, "us@er");
  ASSERT_STR_EQ(s.password, "p/w:d");
  /* Go form takes the password raw, up to the last '@'. */
  ASSERT_EQ(bee_mysql_dsn_parse("u:p@ss@tcp(h:1)/app", &s, &err), 0);
  ASSERT_STR_EQ(s.password, "p@ss");
  return 0;
}

TEST_IMPL(dsn_parameters) {
  bee_mysql_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_mysql_dsn_parse("u@tcp(h)/d?timeout=500ms&readTimeout=1m&writeTimeout=2h&charset=utf8", &s, &err), 0);
  ASSERT_EQ(s.connect_timeout_ms, 500);
  ASSERT_EQ(s.read_timeout_ms, 60000);
  ASSERT_EQ(s.write_timeout_ms, 7200000);
  ASSERT_STR_EQ(s.charset, "utf8");
  return 0;
}

static const struct {
  const char *dsn, *message;
} bad_mysql[] = {
    {"", "empty connection string"},
    {"   ", "connection string contains whitespace or a control character at byte 1"},
    {"mysql://root:pw@:3306/app", "missing host"},
    {"root:pw@tcp()/app", "missing host in tcp()"},
    {"root:pw@tcp(:3306)/app", "missing host"},
    {"root:pw@tcp(h:99999)/app", "bad port '99999' (expected 1-65535)"},
    {"root:pw@tcp(h:abc)/app", "bad port 'abc' (expected 1-65535)"},
    {"root:pw@tcp(h:0)/app", "bad port '0' (expected 1-65535)"},
    {"mysql://root:pw@h:/app", "missing port after ':'"},
    {"postgres://root:pw@h/app", "unknown scheme 'postgres://' for MySQL (use mysql:// or user:password@tcp(host:port)/database)"},
    {"root:pw@tcp(h:3306)/", "missing database name after '/'"},
    {"mysql://root:pw@h:3306", "missing database name (expected mysql://user:password@host:port/database)"},
    {"root:pw@tcp(h:3306)", "missing '/database' (expected user:password@tcp(host:port)/database)"},
    {"root:pw@udp(h:3306)/app", "unknown network 'udp' (use tcp or unix)"},
    {"root:pw@tcp(h:3306/app", "unclosed '(' after 'tcp'"},
    {"root:pw@h:3306/app", "expected tcp(host:port) or unix(/path) after '@'"},
    {"root:pw@unix(relative.sock)/app", "unix() needs an absolute socket path"},
    {"root:pw@tcp(h)/app?foo=1", "unknown parameter 'foo' (supported: timeout, readTimeout, writeTimeout, charset)"},
    {"root:pw@tcp(h)/app?timeout=5", "bad duration '5' for parameter 'timeout' (expected e.g. 500ms, 5s, 1m, up to 24h)"},
    {"root:pw@tcp(h)/app?timeout", "parameter 'timeout' has no value (expected name=value)"},
    {"root:pw@tcp(h)/my;db", "bad character in database name (allowed: letters, digits, '_', '$', '-')"},
    {"root:pw@tcp(h!x)/app", "bad character in host name (allowed: letters, digits, '.', '-', '_')"},
    {":pw@tcp(h)/app", "missing user name (expected user:password@...)"},
    {"mysql://root:p%zzw@h/app", "bad percent-encoding in password (expected %XX)"},
    {"mysql://root@/app", "missing host (expected mysql://user:password@host:port/database)"},
    {"mysql://root@h/app?socket=/x.sock", "give either a host or a socket, not both"},
};

TEST_IMPL(dsn_bad_shapes_have_clear_errors) {
  for (size_t i = 0; i < sizeof bad_mysql / sizeof *bad_mysql; i++) {
    bee_mysql_settings_t s;
    bee_error_t err;
    int rc = bee_mysql_dsn_parse(bad_mysql[i].dsn, &s, &err);
    if (rc != BEE_EDSN) fprintf(stderr, "  dsn \"%s\" gave %d\n", bad_mysql[i].dsn, rc);
    ASSERT_EQ(rc, BEE_EDSN);
    ASSERT_EQ(err.code, BEE_EDSN);
    ASSERT_EQ(err.temporary, 0);
    ASSERT_STR_EQ(err.message, bad_mysql[i].message);
  }
  return 0;
}

TEST_IMPL(dsn_errors_never_contain_the_password) {
  static const char *dsns[] = {
      "u:Zq9secret@tcp(h:99999)/app",   "u:Zq9secret@tcp(h)/app?foo=Zq9secret",
      "u:Zq9secret@udp(h)/app",        "mysql://u:Zq9secret@/app",
      "u:Zq9secret@tcp(h)/",           "u:Zq9secret@tcp(h)/app?timeout=Zq9secret",
      "mysql://u:Zq9secret%@h/app",    "redis://:Zq9secret@h:notaport/0",
      "redis://:Zq9secret@h:1/x",      "redis://u:Zq9secret@:1/0",
  };
  for (size_t i = 0; i < sizeof dsns / sizeof *dsns; i++) {
    bee_error_t err;
    bee_mysql_settings_t m;
    bee_redis_settings_t r;
    int rc = strncmp(dsns[i], "redis", 5) == 0 ? bee_redis_address_parse(dsns[i], -1, &r, &err)
                                                : bee_mysql_dsn_parse(dsns[i], &m, &err);
    ASSERT_EQ(rc, BEE_EDSN);
    char line[1024];
    bee_error_format(&err, line, sizeof line);
    if (strstr(line, "Zq9secret")) fprintf(stderr, "  leaked: %s\n", line);
    ASSERT(strstr(line, "Zq9secret") == NULL);
  }
  return 0;
}

TEST_IMPL(dsn_failure_leaves_output_untouched) {
  bee_mysql_settings_t s;
  bee_error_t err;
  memset(&s, 0x5a, sizeof s);
  ASSERT_EQ(bee_mysql_dsn_parse("root:pw@tcp(h:1)/", &s, &err), BEE_EDSN);
  for (size_t i = 0; i < sizeof s; i++) ASSERT_EQ(((unsigned char *)&s)[i], 0x5a);
  return 0;
}

TEST_IMPL(redis_forms_parse_to_same_settings) {
  bee_redis_settings_t a, b, c;
  bee_error_t err;
  ASSERT_EQ(bee_redis_address_parse("127.0.0.1:6380", 3, &a, &err), 0);
  ASSERT_EQ(bee_redis_address_parse("127.0.0.1:6380:3", -1, &b, &err), 0);
  ASSERT_EQ(bee_redis_address_parse("redis://127.0.0.1:6380/3", -1, &c, &err), 0);
  ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
  ASSERT_EQ(memcmp(&a, &c, sizeof a), 0);
  ASSERT_STR_EQ(a.host, "127.0.0.1");
  ASSERT_EQ(a.port, 6380);
  ASSERT_EQ(a.db, 3);
  ASSERT_EQ(bee_redis_address_parse("localhost:6379", -1, &a, &err), 0);
  ASSERT_EQ(a.db, 0);
  ASSERT_EQ(bee_redis_address_parse("redis://h", -1, &a, &err), 0);
  ASSERT_EQ(a.port, 6379);
  ASSERT_EQ(a.db, 0);
  return 0;
}

TEST_IMPL(redis_uri_with_password_and_user) {
  bee_redis_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_redis_address_parse("redis://:sec%2Fret@h:6380/1", -1, &s, &err), 0);
  ASSERT_STR_EQ(s.user, "");
  ASSERT_STR_EQ(s.password, "sec/ret");
  ASSERT_EQ(s.db, 1);
  ASSERT_EQ(bee_redis_address_parse("redis://bee:pw@h/2", -1, &s, &err), 0);
  ASSERT_STR_EQ(s.user, "bee");
  ASSERT_STR_EQ(s.password, "pw");
  ASSERT_EQ(s.db, 2);
  return 0;
}

TEST_IMPL(redis_unix_socket) {
  bee_redis_settings_t a, b;
  bee_error_t err;
  ASSERT_EQ(bee_redis_address_parse("/tmp/redis.sock", 4, &a, &err), 0);
  ASSERT_STR_EQ(a.socket, "/tmp/redis.sock");
  ASSERT_EQ(a.db, 4);
  ASSERT_EQ(bee_redis_address_parse("unix:///tmp/redis.sock?db=4", -1, &b, &err), 0);
  ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
  return 0;
}

static const struct {
  const char *address;
  int db;
  const char *message;
} bad_redis[] = {
    {"", -1, "empty connection string"},
    {"localhost", -1, "missing port (expected host:port, host:port:db or redis://host:port/db)"},
    {":6379", -1, "missing host"},
    {"h:70000", -1, "bad port '70000' (expected 1-65535)"},
    {"h:6379:x", -1, "bad db index 'x' (expected a number 0 or more)"},
    {"redis://h:6379/abc", -1, "bad db index 'abc' (expected a number 0 or more)"},
    {"redis://h:6379/-1", -1, "bad db index '-1' (expected a number 0 or more)"},
    {"h:6379:1", 2, "db index given twice and different (1 in the address, 2 as argument)"},
    {"memcached://h:11211", -1, "unknown scheme 'memcached://' for Redis (use redis://, unix://, host:port or a socket path)"},
    {"rediss://h:6379", -1, "rediss:// (TLS) is not supported; use redis://"},
    {"redis://:6379/0", -1, "missing host"},
    {"redis:///0", -1, "missing host (expected redis://[:password@]host:port/db)"},
    {"redis://h:6379/0?timeout=1", -1, "unknown parameter 'timeout' (supported: timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms)"},
    {"redis://h:6379/0?timeout_ms=0", -1, "bad timeout_ms '0' (expected milliseconds, 1 to 60000)"},
    {"redis://h:6379/0?timeout_ms=60001", -1, "bad timeout_ms '60001' (expected milliseconds, 1 to 60000)"},
    {"redis://h:6379/0?connect_timeout_ms=1s", -1, "bad connect_timeout_ms '1s' (expected milliseconds, 1 to 60000)"},
    {"redis://h:6379/0?timeout_ms", -1, "parameter 'timeout_ms' has no value (expected name=value)"},
    {"redis://user@h:6379/0", -1, "user name without password (expected redis://user:password@host)"},
    {"unix://relative.sock", -1, "unix:// needs an absolute socket path"},
    {"unix:///x.sock?dbx=1", -1, "unknown parameter 'dbx' (supported: db, timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms)"},
    {"redis://h:6379/0?replicas=101", -1, "bad replicas '101' (expected 0 to 100)"},
    {"redis://h:6379/0?replicas=-1", -1, "bad replicas '-1' (expected 0 to 100)"},
    {"redis://h:6379/0?replicas=01", -1, "bad replicas '01' (expected 0 to 100)"},
    {"redis://h:6379/0?wait_timeout_ms=0", -1, "bad wait_timeout_ms '0' (expected milliseconds, 1 to 60000)"},
    {"redis://h:6379/0?replicas=1&timeout_ms=500", -1,
     "wait_timeout_ms (1000) must be below timeout_ms (500): the wait for replicas is one command's reply"},
    {"redis://h:6379/0?password=x", -1, "unknown parameter 'password' (supported: timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms)"},
};

TEST_IMPL(redis_replicas_and_wait) {
  bee_redis_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_redis_address_parse("redis://h:6379/0?replicas=2&wait_timeout_ms=250", -1, &s, &err), 0);
  ASSERT(s.replicas == 2 && s.wait_timeout_ms == 250);
  ASSERT_EQ(bee_redis_address_parse("h:6379", -1, &s, &err), 0);
  ASSERT(s.replicas == 0 && s.wait_timeout_ms == 0);
  bee_redis_options_t o = {0};
  o.replicas = 1;
  o.wait_timeout_ms = 40000;
  ASSERT_EQ(bee_redis_options_apply(&s, &o, &err), BEE_EDSN); /* the reply timeout is 30000 */
  o.timeout_ms = 50000;
  ASSERT_EQ(bee_redis_options_apply(&s, &o, &err), 0);
  ASSERT(s.replicas == 1 && s.wait_timeout_ms == 40000 && s.timeout_ms == 50000);
  bee_redis_options_t bad = {0};
  bad.replicas = 101;
  ASSERT_EQ(bee_redis_options_apply(&s, &bad, &err), BEE_EDSN);
  ASSERT_STR_EQ(err.message, "bad replicas 101 (expected 0 to 100)");
  bee_redis_options_t sp = {0};
  sp.sentinel_password = "x";
  ASSERT_EQ(bee_redis_options_apply(&s, &sp, &err), BEE_EDSN);
  ASSERT_STR_EQ(err.message, "sentinel_password is for pools behind Sentinel");
  return 0;
}

TEST_IMPL(redis_sentinel_settings) {
  bee_redis_settings_t s;
  bee_error_t err;
  const char *two[] = {"10.0.0.1:26379", "sentinel-b"};
  ASSERT_EQ(bee_redis_sentinel_parse("mymaster:3?password=s%3Fcret&sentinel_password=sp&replicas=1", -1, two, 2, &s,
                                     &err), 0);
  ASSERT_STR_EQ(s.master_name, "mymaster");
  ASSERT(s.db == 3 && s.replicas == 1 && s.sentinel_count == 2 && s.host[0] == '\0');
  ASSERT_STR_EQ(s.password, "s?cret");
  ASSERT_STR_EQ(s.sentinel_password, "sp");
  ASSERT_STR_EQ(s.sentinels[0].host, "10.0.0.1");
  ASSERT(s.sentinels[0].port == 26379 && s.sentinels[1].port == 26379);
  ASSERT_STR_EQ(s.sentinels[1].host, "sentinel-b");
  char buf[600];
  bee_redis_settings_describe(&s, buf, sizeof buf);
  ASSERT_STR_EQ(buf, "sentinel://mymaster@10.0.0.1:26379,sentinel-b:26379/3");
  ASSERT_EQ(bee_redis_sentinel_parse("mymaster", 2, two, 1, &s, &err), 0);
  ASSERT(s.db == 2 && s.sentinel_count == 1);
  static const struct {
    const char *master;
    int db;
    const char *list[3];
    size_t n;
    const char *message;
  } bad[] = {
      {"", -1, {"h:1"}, 1, "empty connection string"},
      {"?password=x", -1, {"h:1"}, 1, "missing master name (expected name[:db][?password=...])"},
      {"my!master", -1, {"h:1"}, 1, "bad character in master name (allowed: letters, digits, '.', '-', '_')"},
      {"m:x", -1, {"h:1"}, 1, "bad db index 'x' (expected a number 0 or more)"},
      {"m:1", 2, {"h:1"}, 1, "db index given twice and different (1 in the master name, 2 as argument)"},
      {"m", -1, {"h:1"}, 0, "no sentinels (expected a list of host:port)"},
      {"m", -1, {"h:1", ""}, 2, "sentinel 2: empty (expected host:port)"},
      {"m", -1, {"h:99999"}, 1, "sentinel 1: bad port '99999' (expected 1-65535) (expected host:port)"},
      {"m", -1, {"h:1", "h:1"}, 2, "sentinel 2: h:1 is listed twice"},
      {"m?pass=x", -1, {"h:1"}, 1,
       "unknown parameter 'pass' (supported: password, user, sentinel_password, timeout_ms, connect_timeout_ms, "
       "replicas, wait_timeout_ms)"},
      {"m?user=u", -1, {"h:1"}, 1, "user name without password"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = bee_redis_sentinel_parse(bad[i].master, bad[i].db, bad[i].list, bad[i].n, &s, &err);
    if (rc != BEE_EDSN) fprintf(stderr, "  master \"%s\" gave %d\n", bad[i].master, rc);
    ASSERT_EQ(rc, BEE_EDSN);
    ASSERT_STR_EQ(err.message, bad[i].message);
  }
  const char *many[BEE_REDIS_SENTINELS_MAX + 1];
  for (size_t i = 0; i <= BEE_REDIS_SENTINELS_MAX; i++) many[i] = "h:1";
  ASSERT_EQ(bee_redis_sentinel_parse("m", -1, many, BEE_REDIS_SENTINELS_MAX + 1, &s, &err), BEE_EDSN);
  ASSERT_STR_EQ(err.message, "17 sentinels (at most 16)");
  /* A password never shows in a message, whatever the failure. */
  ASSERT_EQ(bee_redis_sentinel_parse("m?password=hunter2&replicas=1&timeout_ms=10", -1, two, 2, &s, &err), BEE_EDSN);
  ASSERT(strstr(err.message, "hunter2") == NULL);
  return 0;
}

TEST_IMPL(redis_uri_timeouts) {
  bee_redis_settings_t s;
  bee_error_t err;
  ASSERT_EQ(bee_redis_address_parse("redis://:p%3Fw@h:6380/2?timeout_ms=300&connect_timeout_ms=60000", -1, &s, &err), 0);
  ASSERT(s.timeout_ms == 300 && s.connect_timeout_ms == 60000 && s.db == 2 && s.port == 6380);
  ASSERT_STR_EQ(s.password, "p?w");
  ASSERT_EQ(bee_redis_address_parse("unix:///tmp/r.sock?timeout_ms=1&db=3", -1, &s, &err), 0);
  ASSERT(s.timeout_ms == 1 && s.connect_timeout_ms == 0 && s.db == 3);
  ASSERT_EQ(bee_redis_address_parse("h:6379", -1, &s, &err), 0); /* 0: the defaults */
  ASSERT(s.timeout_ms == 0 && s.connect_timeout_ms == 0);
  return 0;
}

TEST_IMPL(redis_bad_shapes_have_clear_errors) {
  for (size_t i = 0; i < sizeof bad_redis / sizeof *bad_redis; i++) {
    bee_redis_settings_t s;
    bee_error_t err;
    int rc = bee_redis_address_parse(bad_redis[i].address, bad_redis[i].db, &s, &err);
    if (rc != BEE_EDSN) fprintf(stderr, "  address \"%s\" gave %d\n", bad_redis[i].address, rc);
    ASSERT_EQ(rc, BEE_EDSN);
    ASSERT_STR_EQ(err.message, bad_redis[i].message);
  }
  return 0;
}

TEST_IMPL(describe_never_shows_password) {
  bee_mysql_settings_t m;
  bee_redis_settings_t r;
  bee_error_t err;
  char buf[512];
  ASSERT_EQ(bee_mysql_dsn_parse("app:Zq9secret@tcp(127.0.0.1:3306)/app", &m, &err), 0);
  bee_mysql_settings_describe(&m, buf, sizeof buf);
  ASSERT_STR_EQ(buf, "mysql://app@127.0.0.1:3306/app");
  ASSERT_EQ(bee_redis_address_parse("redis://bee:Zq9secret@h:6380/1", -1, &r, &err), 0);
  bee_redis_settings_describe(&r, buf, sizeof buf);
  ASSERT_STR_EQ(buf, "redis://bee@h:6380/1");
  return 0;
}
