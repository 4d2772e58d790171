/* Loading pools from YAML in BeeORM's layout (config.c). No server needed. */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "task.h"

/* Writes text to a new file under /tmp; the caller removes it. 0 on success. */
static int write_temp(char *path, size_t size, const char *text, size_t len) {
  snprintf(path, size, "/tmp/beeorm-yaml-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, text + done, len - done);
    if (n <= 0) break;
    done += (size_t)n;
  }
  close(fd);
  return done == len ? 0 : -1;
}

static int load(bee_registry_t *reg, const char *text, bee_error_t *err) {
  return bee_registry_load_yaml_string(reg, "beeorm.yaml", text, strlen(text), err);
}

static const char every_form[] =
    "# BeeORM's layout, every form of each key\n"
    "default:\n"
    "  mysql: root:root@tcp(localhost:3306)/app?timeout=5s\n"
    "  redis: localhost:6379:0\n"
    "  local_cache: 1000\n"
    "  streams:\n"
    "    orm-lazy-channel:\n"
    "      - orm-async-consumer\n"
    "    stream-2: [group-a, group-b]\n"
    "logs:\n"
    "  mysql:\n"
    "    uri: \"mysql://app:s3cret@db.example:3307/logs\"\n"
    "  redis: 'redis://:pw@cache.example:6380/2'\n"
    "  local_cache: 50\n"
    "lazy:\n"
    "  streams: {}\n"
    "queue:\n"
    "  redis: localhost:6379:3\n"
    "  timeout_ms: 300\n"
    "  connect_timeout_ms: 1000\n"
    "ha:\n"
    "  sentinel:\n"
    "    \"mymaster:2?password=pw\":\n"
    "      - 10.0.0.1:26379\n"
    "      - 10.0.0.2\n"
    "  replicas: 1\n"
    "  wait_timeout_ms: 250\n";

TEST_IMPL(yaml_file_with_every_pool_form_loads) {
  char path[64];
  ASSERT_EQ(write_temp(path, sizeof path, every_form, strlen(every_form)), 0);
  bee_registry_t *reg = bee_registry_new();
  bee_error_t err;
  int rc = bee_registry_load_yaml(reg, path, &err);
  unlink(path);
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(bee_registry_mysql_count(reg), 2);
  ASSERT_EQ(bee_registry_redis_count(reg), 4);
  ASSERT_EQ(bee_registry_add_redis(reg, "queue", "h:1", -1, &err), BEE_EPOOL);
  ASSERT_EQ(bee_registry_add_redis(reg, "ha", "h:1", -1, &err), BEE_EPOOL);
  /* The pools exist under their YAML names. */
  ASSERT_EQ(bee_registry_add_mysql(reg, "logs", "root@tcp(h)/app", &err), BEE_EPOOL);
  ASSERT_STR_EQ(err.message, "MySQL pool 'logs' is already registered");
  ASSERT_EQ(bee_registry_add_mysql(reg, "default", "root@tcp(h)/app", &err), BEE_EPOOL);
  ASSERT_EQ(bee_registry_add_redis(reg, "logs", "h:1", -1, &err), BEE_EPOOL);
  ASSERT_EQ(bee_registry_add_redis(reg, "default", "h:1", -1, &err), BEE_EPOOL);
  ASSERT_STR_EQ(err.message, "Redis pool 'default' is already registered");
  ASSERT_EQ(bee_registry_add_redis(reg, "lazy", "h:1", -1, &err), 0);
  bee_registry_free(reg);
  return 0;
}

TEST_IMPL(yaml_malformed_documents_give_exact_messages) {
  static const struct {
    const char *text;
    int code;
    const char *message;
  } cases[] = {
      {"default:\n  mysql: \"root@tcp(h)/app\n", BEE_ECONFIG,
       "beeorm.yaml:3: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar)"},
      {"default:\n  mysql: root@tcp(h)/app\n redis: h:1\n", BEE_ECONFIG,
       "beeorm.yaml:3: YAML syntax error: did not find expected key (while parsing a block mapping)"},
      {"", BEE_ECONFIG, "beeorm.yaml:1: expected a mapping of pool names, got an empty document"},
      {"# nothing\n---\n", BEE_ECONFIG, "beeorm.yaml:1: expected a mapping of pool names, got an empty document"},
      {"- default\n- logs\n", BEE_ECONFIG, "beeorm.yaml:1: expected a mapping of pool names, got a sequence"},
      {"default\n", BEE_ECONFIG, "beeorm.yaml:1: expected a mapping of pool names, got a scalar"},
      {"default: root:pw@tcp(h)/app\n", BEE_ECONFIG,
       "beeorm.yaml:1: default: expected a mapping (keys: mysql, redis, sentinel, local_cache, streams, timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms), got a scalar"},
      {"default:\n  redis: h:1\nlogs:\n  redsi: h:1\n", BEE_ECONFIG,
       "beeorm.yaml:4: logs: unknown key 'redsi' (allowed: mysql, redis, sentinel, local_cache, streams, timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms)"},
      {"default:\n  mysql:\n    - root@tcp(h)/app\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.mysql: expected a DSN string or a mapping with 'uri', got a sequence"},
      {"default:\n  mysql:\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.mysql: expected a DSN string or a mapping with 'uri', got an empty value"},
      {"default:\n  mysql: |\n    root@tcp(h)/app\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.mysql: expected a DSN string or a mapping with 'uri', got a block scalar "
       "(use a plain or quoted string)"},
      {"default:\n  mysql: {}\n", BEE_ECONFIG, "beeorm.yaml:2: default.mysql: missing key 'uri'"},
      {"default:\n  mysql:\n    uri: root@tcp(h)/app\n    user: root\n", BEE_ECONFIG,
       "beeorm.yaml:4: default.mysql: unknown key 'user' (allowed: uri)"},
      {"default:\n  mysql:\n    uri: [root@tcp(h)/app]\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.mysql.uri: expected a DSN string, got a sequence"},
      {"default:\n  mysql: root:pw@tcp(h:99999)/app\n", BEE_EDSN,
       "beeorm.yaml:2: default.mysql: bad MySQL DSN: bad port '99999' (expected 1-65535)"},
      {"default:\n  mysql:\n    uri: mysql://root:pw@h:0/app\n", BEE_EDSN,
       "beeorm.yaml:3: default.mysql.uri: bad MySQL DSN: bad port '0' (expected 1-65535)"},
      {"default:\n  redis: localhost:6379:zz\n", BEE_EDSN,
       "beeorm.yaml:2: default.redis: bad Redis address: bad db index 'zz' (expected a number 0 or more)"},
      {"default:\n  redis: {host: h}\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.redis: expected an address string (host:port:db, redis:// URI or socket path), "
       "got a mapping"},
      {"default:\n  redis: h:1\n  timeout_ms: 0\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.timeout_ms: expected milliseconds, an integer 1-60000, got '0'"},
      {"default:\n  redis: h:1\n  connect_timeout_ms: 60001\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.connect_timeout_ms: expected milliseconds, an integer 1-60000, got '60001'"},
      {"default:\n  redis: h:1\n  timeout_ms: \"300\"\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.timeout_ms: expected milliseconds, an integer 1-60000, got '300'"},
      {"default:\n  redis: h:1\n  timeout_ms: 300\n  timeout_ms: 400\n", BEE_ECONFIG,
       "beeorm.yaml:4: default: duplicate key 'timeout_ms'"},
      {"default:\n  mysql: root@tcp(h)/app\n  timeout_ms: 300\n", BEE_ECONFIG,
       "beeorm.yaml:3: default: timeout_ms, connect_timeout_ms, replicas and wait_timeout_ms are settings of the pool's redis or sentinel, and it has neither"},
      {"default:\n  redis: h:1\n  sentinel:\n    m: [h:26379]\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.sentinel: a pool has either redis or sentinel, not both"},
      {"default:\n  sentinel: [h:26379]\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.sentinel: expected a mapping of one master (name:db?params) to a list of sentinels "
       "(host:port), got a sequence"},
      {"default:\n  sentinel: {}\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.sentinel: expected a mapping of one master (name:db?params) to a list of sentinels "
       "(host:port), got an empty mapping"},
      {"default:\n  sentinel:\n    m: []\n", BEE_ECONFIG, "beeorm.yaml:3: default.sentinel: the list of sentinels is empty"},
      {"default:\n  sentinel:\n    m: h:26379\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.sentinel: expected a list of sentinels (host:port), got a scalar"},
      {"default:\n  sentinel:\n    a: [h:1]\n    b: [h:2]\n", BEE_ECONFIG,
       "beeorm.yaml:4: default.sentinel: more than one master (a pool has one)"},
      {"default:\n  sentinel:\n    m: [h:1, [h:2]]\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.sentinel: expected a sentinel address (host:port), got a sequence"},
      {"default:\n  sentinel:\n    \"m:0?password=pw\": [h:1, h:1]\n", BEE_EDSN,
       "beeorm.yaml:3: default.sentinel: bad Sentinel settings: sentinel 2: h:1 is listed twice"},
      {"default:\n  sentinel:\n    m:zz: [h:1]\n", BEE_EDSN,
       "beeorm.yaml:3: default.sentinel: bad Sentinel settings: bad db index 'zz' (expected a number 0 or more)"},
      {"default:\n  redis: h:1\n  replicas: 101\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.replicas: expected a number of replicas, 0-100, got '101'"},
      {"default:\n  redis: h:1\n  replicas: 1\n  timeout_ms: 800\n", BEE_EDSN,
       "beeorm.yaml:2: default.redis: bad Redis address: wait_timeout_ms (1000) must be below timeout_ms (800): the "
       "wait for replicas is one command's reply"},
      {"default:\n  local_cache: many\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.local_cache: expected an integer 1-1000000000, got 'many'"},
      {"default:\n  local_cache: 010\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.local_cache: expected an integer 1-1000000000, got '010'"},
      {"default:\n  local_cache: \"5\"\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.local_cache: expected an integer 1-1000000000, got a quoted string"},
      {"default:\n  local_cache: 0\n", BEE_EINVAL,
       "beeorm.yaml:2: default.local_cache: local_cache of pool 'default' must be 1 to 1000000000, got 0"},
      {"default:\n  local_cache: 1000000001\n", BEE_EINVAL,
       "beeorm.yaml:2: default.local_cache: local_cache of pool 'default' must be 1 to 1000000000, got "
       "1000000001"},
      {"default:\n  redis: h:1\n  streams: orm-lazy-channel\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.streams: expected a mapping of stream names to lists of consumer groups, got a "
       "scalar"},
      {"default:\n  streams:\n    orm-lazy-channel: orm-async-consumer\n", BEE_ECONFIG,
       "beeorm.yaml:3: default.streams.orm-lazy-channel: expected a list of consumer group names, got a scalar"},
      {"default:\n  streams:\n    s1:\n      - {name: g}\n", BEE_ECONFIG,
       "beeorm.yaml:4: default.streams.s1: expected a consumer group name, got a mapping"},
      {"default:\n  streams:\n    s1: [g]\n    s1: [h]\n", BEE_ECONFIG,
       "beeorm.yaml:4: default.streams: duplicate stream 's1'"},
      {"default:\n  redis: h:1\ndefault:\n  mysql: root@tcp(h)/app\n", BEE_ECONFIG,
       "beeorm.yaml:3: duplicate pool 'default'"},
      {"default:\n  redis: h:1\n  redis: h:2\n", BEE_ECONFIG, "beeorm.yaml:3: default: duplicate key 'redis'"},
      {"default:\n  redis: h:1\nother: *base\n", BEE_ECONFIG, "beeorm.yaml:3: other: YAML aliases are not supported"},
      {"base: &base\n  redis: h:1\n", BEE_ECONFIG, "beeorm.yaml:1: base: YAML anchors are not supported"},
      {"default: {}\n", BEE_ECONFIG, "beeorm.yaml:1: pool 'default' defines nothing"},
      {"default:\nlogs:\n  redis: h:1\n", BEE_ECONFIG, "beeorm.yaml:1: pool 'default' defines nothing"},
      {"bad name:\n  redis: h:1\n", BEE_EPOOL,
       "beeorm.yaml:1: bad pool name 'bad name' (allowed: letters, digits, '_', '-')"},
      {"p0123456789012345678901234567890123456789012345678901234567890123: {redis: h:1}\n", BEE_EPOOL,
       "beeorm.yaml:1: bad pool name (expected 1-63 characters of letters, digits, '_', '-')"},
      {"default:\n  redis: \"h:1\\0\"\n", BEE_ECONFIG,
       "beeorm.yaml:2: default.redis: expected an address string (host:port:db, redis:// URI or socket path), "
       "got a string with a NUL byte"},
      {"default:\n  redis: h:1\n\t\n", BEE_ECONFIG,
       "beeorm.yaml:3: YAML syntax error: found a tab character that violates indentation (while scanning a "
       "plain scalar)"},
      {"? [a]\n: {redis: h:1}\n", BEE_ECONFIG, "beeorm.yaml:1: expected a pool name, got a sequence"},
      {"a:\n  redis: h:1\n---\nb:\n  redis: h:2\n", BEE_ECONFIG,
       "beeorm.yaml:3: expected a single YAML document, found a second one"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bee_registry_t *reg = bee_registry_new();
    bee_error_t err;
    ASSERT(reg);
    int rc = load(reg, cases[i].text, &err);
    if (rc != cases[i].code) fprintf(stderr, "  case %zu: %s\n", i, err.message);
    ASSERT_EQ(rc, cases[i].code);
    ASSERT_EQ(err.code, cases[i].code);
    ASSERT_EQ(err.temporary, 0);
    ASSERT_STR_EQ(err.message, cases[i].message);
    if (rc == BEE_EDSN || rc == BEE_EINVAL) ASSERT_STR_EQ(err.pool, "default");
    ASSERT_EQ(bee_registry_mysql_count(reg), 0);
    ASSERT_EQ(bee_registry_redis_count(reg), 0);
    bee_registry_free(reg);
  }
  return 0;
}

/*
 * A layout error is found before the registry is touched: nothing is registered, and
 * the error is remembered so validate reports it too.
 */
TEST_IMPL(yaml_layout_error_registers_nothing_and_is_remembered) {
  bee_registry_t *reg = bee_registry_new();
  bee_engine_t *engine = NULL;
  bee_error_t err;
  ASSERT_EQ(load(reg, "default:\n  mysql: root@tcp(h)/app\n  redis: h:1\nlogs:\n  msql: x\n", &err),
            BEE_ECONFIG);
  ASSERT_EQ(bee_registry_mysql_count(reg), 0);
  ASSERT_EQ(bee_registry_redis_count(reg), 0);
  char first[BEE_ERROR_MESSAGE_MAX];
  snprintf(first, sizeof first, "%s", err.message);
  ASSERT_EQ(bee_registry_validate(reg, &engine, &err), BEE_ECONFIG);
  ASSERT(engine == NULL);
  ASSERT_STR_EQ(err.message, first);
  bee_registry_free(reg);
  return 0;
}

/*
 * A value the registry rejects (here the second pool's DSN) is found by a dry run
 * before anything is registered, then handed to the registry once, which remembers
 * it for validate (with the registry's own message, without file and line).
 */
TEST_IMPL(yaml_rejected_value_registers_nothing_and_is_remembered) {
  bee_registry_t *reg = bee_registry_new();
  bee_engine_t *engine = NULL;
  bee_error_t err;
  ASSERT_EQ(load(reg, "default:\n  mysql: root@tcp(h)/app\n  redis: h:1\nlogs:\n  redis: h:1:zz\n", &err),
            BEE_EDSN);
  ASSERT_STR_EQ(err.pool, "logs");
  ASSERT_STR_EQ(err.message,
                "beeorm.yaml:5: logs.redis: bad Redis address: bad db index 'zz' (expected a number 0 or more)");
  ASSERT_EQ(bee_registry_mysql_count(reg), 0);
  ASSERT_EQ(bee_registry_redis_count(reg), 0);
  ASSERT_EQ(bee_registry_validate(reg, &engine, &err), BEE_EDSN);
  ASSERT(engine == NULL);
  ASSERT_STR_EQ(err.message, "bad Redis address: bad db index 'zz' (expected a number 0 or more)");
  bee_registry_free(reg);
  return 0;
}

/* A pool registered before the load is a registry error: code kept, location added. */
TEST_IMPL(yaml_pool_registered_before_keeps_registry_code) {
  bee_registry_t *reg = bee_registry_new();
  bee_error_t err;
  ASSERT_EQ(bee_registry_add_redis(reg, "cache", "h:1", -1, &err), 0);
  ASSERT_EQ(load(reg, "default:\n  mysql: root@tcp(h)/app\ncache:\n  redis: h:2\n", &err), BEE_EPOOL);
  ASSERT_STR_EQ(err.message, "beeorm.yaml:4: cache.redis: Redis pool 'cache' is already registered");
  /* Not foreseeable by the dry run: the pool before it stays registered. */
  ASSERT_EQ(bee_registry_mysql_count(reg), 1);
  ASSERT_EQ(bee_registry_redis_count(reg), 1);
  bee_registry_free(reg);
  return 0;
}

TEST_IMPL(yaml_missing_file_cannot_be_read) {
  bee_registry_t *reg = bee_registry_new();
  bee_error_t err;
  ASSERT_EQ(bee_registry_load_yaml(reg, "/tmp/beeorm-yaml-does-not-exist.yaml", &err), BEE_ECONFIG);
  ASSERT_EQ(err.code, BEE_ECONFIG);
  ASSERT_STR_EQ(err.message, "cannot read /tmp/beeorm-yaml-does-not-exist.yaml: No such file or directory");
  ASSERT_EQ(bee_registry_load_yaml(reg, "/tmp", &err), BEE_ECONFIG);
  ASSERT_CONTAINS(err.message, "cannot read /tmp: ");
  ASSERT_EQ(bee_registry_load_yaml(NULL, "x", &err), BEE_EINVAL);
  ASSERT_EQ(bee_registry_load_yaml(reg, NULL, &err), BEE_EINVAL);
  bee_registry_free(reg);
  return 0;
}

TEST_IMPL(yaml_larger_than_one_mib_is_refused) {
  size_t len = 1024 * 1024 + 1;
  char *text = malloc(len);
  ASSERT(text);
  memset(text, '#', len);
  text[len - 1] = '\n';
  char path[64];
  int written = write_temp(path, sizeof path, text, len);
  bee_registry_t *reg = bee_registry_new();
  bee_error_t err;
  int rc_string = bee_registry_load_yaml_string(reg, "big.yaml", text, len, &err);
  free(text);
  ASSERT_EQ(rc_string, BEE_ECONFIG);
  ASSERT_STR_EQ(err.message, "cannot load big.yaml: larger than 1 MiB (1048576 bytes)");
  ASSERT_EQ(written, 0);
  int rc = bee_registry_load_yaml(reg, path, &err);
  unlink(path);
  ASSERT_EQ(rc, BEE_ECONFIG);
  ASSERT_CONTAINS(err.message, ": larger than 1 MiB (1048576 bytes)");
  ASSERT_CONTAINS(err.message, "cannot read /tmp/beeorm-yaml-");
  bee_registry_free(reg);
  return 0;
}

TEST_IMPL(yaml_messages_never_contain_password) {
  static const char *const docs[] = {
      "default:\n  mysql: root:Zq9secret@tcp(h:99999)/app\n",
      "default:\n  mysql:\n    uri: mysql://root:Zq9secret@h:99999/app\n",
      "default:\n  mysql: mysql://root:Zq9secret@h:3306/app?timeout=Zq9secret\n",
      "default:\n  redis: redis://:Zq9secret@h:6379/zz\n",
      "default: root:Zq9secret@tcp(h)/app\n",
      "default:\n  mysql: |\n    root:Zq9secret@tcp(h)/app\n",
      "default:\n  mysql:\n    uri: [root:Zq9secret@tcp(h)/app]\n",
      "default:\n  mysql: \"root:Zq9secret@tcp(h)/app\n",
      "default:\n  sentinel:\n    \"m:zz?password=Zq9secret\": [h:1]\n",
      "default:\n  sentinel:\n    \"m:0?password=Zq9secret&sentinel_password=Zq9secret\": [h:1, h:1]\n",
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    bee_registry_t *reg = bee_registry_new();
    bee_engine_t *engine = NULL;
    bee_error_t err;
    ASSERT(load(reg, docs[i], &err) != 0);
    ASSERT(!strstr(err.message, "Zq9secret"));
    if (bee_registry_validate(reg, &engine, &err) != 0) ASSERT(!strstr(err.message, "Zq9secret"));
    bee_engine_free(engine);
    bee_registry_free(reg);
  }
  /* Loads, but no sentinel answers: neither says the password. */
  bee_registry_t *reg = bee_registry_new();
  bee_engine_t *engine = NULL;
  bee_error_t err;
  ASSERT_EQ(load(reg, "default:\n  sentinel:\n    \"m:0?password=Zq9secret&sentinel_password=Zq9secret\": "
                      "[127.0.0.1:1]\n", &err), 0);
  ASSERT(bee_registry_validate(reg, &engine, &err) != 0);
  ASSERT(err.temporary && !strstr(err.message, "Zq9secret"));
  ASSERT_STR_EQ(err.pool, "default");
  bee_registry_free(reg);
  return 0;
}

TEST_IMPL(yaml_survives_every_allocation_failure) {
  /* Fail the 1st, 2nd, ... allocation until loading succeeds whole. */
  for (long n = 1; n < 1000; n++) {
    bee_test_fail_alloc_at(n);
    bee_error_t err;
    bee_registry_t *reg = bee_registry_new();
    int ok = reg != NULL;
    if (ok) {
      int rc = bee_registry_load_yaml_string(reg, "beeorm.yaml", every_form, strlen(every_form), &err);
      if (rc) {
        ASSERT_EQ(rc, BEE_ENOMEM);
        ASSERT_EQ(err.code, BEE_ENOMEM);
        ASSERT(bee_registry_mysql_count(reg) <= 2);
        ASSERT(bee_registry_redis_count(reg) <= 3);
        ok = 0;
      }
    }
    if (ok) {
      ASSERT_EQ(bee_registry_mysql_count(reg), 2);
      ASSERT_EQ(bee_registry_redis_count(reg), 4);
    }
    bee_registry_free(reg);
    if (ok) {
      bee_test_fail_alloc_at(0);
      ASSERT(n > 10);
      return 0;
    }
  }
  return 1;
}
