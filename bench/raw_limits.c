/*
 * raw_limits: what the client libraries reach directly on this machine, measured in
 * the same run as beeorm's benchmarks so ratios compare like with like.
 *
 *   raw_limits <redis host:port> <mysql dsn> <seconds per scenario> [redis_get_once]
 *
 * Prints one line per scenario: "<name> <rate per second>" (median of 3 runs).
 * With "redis_get_once": one run each of redis_get and redis_xadd_set only (benchmarks
 * interleave them with their own runs, so a busy moment weighs on both sides alike).
 */
#include <hiredis.h>
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "beeorm.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median3(double r[3]) {
  qsort(r, 3, sizeof r[0], cmp);
  return r[1];
}

static redisContext *redis_open(const char *addr) {
  char host[256];
  int port = 6379;
  const char *colon = strrchr(addr, ':');
  snprintf(host, sizeof host, "%.*s", (int)(colon ? colon - addr : (long)strlen(addr)), addr);
  if (colon) port = atoi(colon + 1);
  redisContext *c = redisConnect(host, port);
  if (!c || c->err) {
    fprintf(stderr, "raw_limits: cannot connect to Redis %s\n", addr);
    exit(1);
  }
  return c;
}

/*
 * What flush_async of one new entity must do at least: add a stream entry and set the
 * row's key, atomically (MULTI, XADD, SET, EXEC in one round trip).
 */
static double redis_xadd_set(redisContext *c, double secs) {
  char value[80];
  memset(value, 'x', sizeof value);
  long n = 0;
  double t0 = now(), t;
  do {
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "XADD raw:bench:stream * e %b", value, sizeof value);
    redisAppendCommand(c, "SET raw:bench:row:%ld %b", n, value, sizeof value);
    redisAppendCommand(c, "EXEC");
    for (int i = 0; i < 4; i++) {
      void *reply = NULL;
      if (redisGetReply(c, &reply) != REDIS_OK) exit(1);
      freeReplyObject(reply);
    }
    n++;
  } while ((t = now()) - t0 < secs);
  freeReplyObject(redisCommand(c, "DEL raw:bench:stream"));
  return n / (t - t0);
}

/* GET of a 100-byte value, one round trip each. */
static double redis_get(redisContext *c, double secs) {
  char value[100];
  memset(value, 'x', sizeof value);
  freeReplyObject(redisCommand(c, "SET raw:bench:key %b", value, sizeof value));
  long n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 100; i++) freeReplyObject(redisCommand(c, "GET raw:bench:key"));
    n += 100;
  } while ((t = now()) - t0 < secs);
  return n / (t - t0);
}

/* 100 GETs pipelined: values per second. */
static double redis_get_pipelined(redisContext *c, double secs) {
  long n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < 100; i++) redisAppendCommand(c, "GET raw:bench:key");
    for (int i = 0; i < 100; i++) {
      void *r;
      redisGetReply(c, &r);
      freeReplyObject(r);
    }
    n += 100;
  } while ((t = now()) - t0 < secs);
  return n / (t - t0);
}

static MYSQL *mysql_open(const char *dsn) {
  bee_mysql_settings_t s;
  bee_error_t err;
  if (bee_mysql_dsn_parse(dsn, &s, &err)) {
    fprintf(stderr, "raw_limits: %s\n", err.message);
    exit(1);
  }
  MYSQL *m = mysql_init(NULL);
  unsigned proto = MYSQL_PROTOCOL_TCP;
  mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
  if (!mysql_real_connect(m, s.host, s.user, s.password, s.database, s.port, NULL, 0)) {
    fprintf(stderr, "raw_limits: %s\n", mysql_error(m));
    exit(1);
  }
  return m;
}

/* One transaction with one multi-row INSERT of 100 rows: rows per second. */
static double mysql_insert100(MYSQL *m, double secs, long *next_id) {
  char *sql = malloc(100 * 128 + 256);
  long n = 0;
  double t0 = now(), t;
  do {
    size_t at = (size_t)sprintf(sql, "INSERT INTO raw_bench (id, name, status, price) VALUES ");
    for (int i = 0; i < 100; i++)
      at += (size_t)sprintf(sql + at, "%s(%ld,'name %ld','active','12.50')", i ? "," : "", *next_id, *next_id),
          (*next_id)++;
    mysql_query(m, "START TRANSACTION");
    if (mysql_real_query(m, sql, (unsigned long)at)) fprintf(stderr, "raw_limits: %s\n", mysql_error(m));
    mysql_query(m, "COMMIT");
    n += 100;
  } while ((t = now()) - t0 < secs);
  free(sql);
  return n / (t - t0);
}

/* Multi-row INSERT of 1000 rows per statement, autocommit: rows per second. */
static double mysql_insert1000(MYSQL *m, double secs, long *next_id) {
  char *sql = malloc(1000 * 128 + 256);
  long n = 0;
  double t0 = now(), t;
  do {
    size_t at = (size_t)sprintf(sql, "INSERT INTO raw_bench (id, name, status, price) VALUES ");
    for (int i = 0; i < 1000; i++)
      at += (size_t)sprintf(sql + at, "%s(%ld,'name %ld','active','12.50')", i ? "," : "", *next_id, *next_id),
          (*next_id)++;
    if (mysql_real_query(m, sql, (unsigned long)at)) fprintf(stderr, "raw_limits: %s\n", mysql_error(m));
    n += 1000;
  } while ((t = now()) - t0 < secs);
  free(sql);
  return n / (t - t0);
}

/*
 * Bulk binding (MariaDB array binding, one COM_STMT_BULK_EXECUTE per 1000 rows,
 * autocommit): rows per second.
 */
static double mysql_bulk1000(MYSQL *m, double secs, long *next_id) {
  MYSQL_STMT *st = mysql_stmt_init(m);
  const char *sql = "INSERT INTO raw_bench (id, name, status, price) VALUES (?, ?, ?, ?)";
  if (!st || mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql))) {
    fprintf(stderr, "raw_limits: bulk prepare: %s\n", st ? mysql_stmt_error(st) : "no memory");
    return 0;
  }
  enum { N = 1000 };
  static unsigned long long ids[N];
  static char names[N][24];
  static char *name_p[N], *status_p[N], *price_p[N];
  static unsigned long name_len[N], status_len[N], price_len[N];
  unsigned int size = N;
  mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size);
  MYSQL_BIND b[4];
  memset(b, 0, sizeof b);
  b[0].buffer_type = MYSQL_TYPE_LONGLONG, b[0].buffer = ids, b[0].is_unsigned = 1;
  /* column-wise: strings as arrays of pointers and lengths */
  b[1].buffer_type = MYSQL_TYPE_STRING, b[1].buffer = name_p, b[1].length = name_len;
  b[2].buffer_type = MYSQL_TYPE_STRING, b[2].buffer = status_p, b[2].length = status_len;
  b[3].buffer_type = MYSQL_TYPE_STRING, b[3].buffer = price_p, b[3].length = price_len;
  long n = 0;
  double t0 = now(), t;
  do {
    for (int i = 0; i < N; i++) {
      ids[i] = (unsigned long long)(*next_id)++;
      name_len[i] = (unsigned long)sprintf(names[i], "name %llu", ids[i]);
      name_p[i] = names[i];
      status_p[i] = "active", status_len[i] = 6;
      price_p[i] = "12.50", price_len[i] = 5;
    }
    if (mysql_stmt_bind_param(st, b) || mysql_stmt_execute(st)) {
      fprintf(stderr, "raw_limits: bulk: %s\n", mysql_stmt_error(st));
      break;
    }
    n += N;
  } while ((t = now()) - t0 < secs);
  t = now();
  mysql_stmt_close(st);
  return n / (t - t0);
}

/* One UPDATE by primary key per statement, 1000 per transaction: rows per second. */
static double mysql_update_tx1000(MYSQL *m, double secs, long max_id) {
  char sql[256];
  long n = 0, id = 1;
  double t0 = now(), t;
  do {
    mysql_query(m, "START TRANSACTION");
    for (int i = 0; i < 1000; i++) {
      int len = sprintf(sql, "UPDATE raw_bench SET name = 'upd %ld', price = '3.25' WHERE id = %ld", n + i, id);
      if (mysql_real_query(m, sql, (unsigned long)len)) fprintf(stderr, "raw_limits: %s\n", mysql_error(m));
      id = id % max_id + 1;
    }
    mysql_query(m, "COMMIT");
    n += 1000;
  } while ((t = now()) - t0 < secs);
  return n / (t - t0);
}

int main(int argc, char **argv) {
  if (argc != 4 && !(argc == 5 && strcmp(argv[4], "redis_get_once") == 0)) {
    fprintf(stderr, "usage: raw_limits <redis host:port> <mysql dsn> <seconds> [redis_get_once]\n");
    return 2;
  }
  double secs = atof(argv[3]);
  redisContext *c = redis_open(argv[1]);
  if (argc == 5) {
    printf("redis_get %.0f\n", redis_get(c, secs));
    printf("redis_xadd_set %.0f\n", redis_xadd_set(c, secs));
    redisFree(c);
    return 0;
  }
  MYSQL *m = mysql_open(argv[2]);
  mysql_query(m, "DROP TABLE IF EXISTS raw_bench");
  mysql_query(m, "CREATE TABLE raw_bench (id bigint unsigned NOT NULL PRIMARY KEY, name varchar(100) NOT NULL, "
                 "status enum('active','blocked') NOT NULL, price decimal(10,2)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
  double r[3];
  long next_id = 1;
  for (int i = 0; i < 3; i++) r[i] = redis_get(c, secs);
  printf("redis_get %.0f\n", median3(r));
  for (int i = 0; i < 3; i++) r[i] = redis_get_pipelined(c, secs);
  printf("redis_get_pipelined100 %.0f\n", median3(r));
  for (int i = 0; i < 3; i++) r[i] = mysql_insert100(m, secs, &next_id);
  printf("mysql_insert100 %.0f\n", median3(r));
  for (int i = 0; i < 3; i++) r[i] = mysql_insert1000(m, secs, &next_id);
  printf("mysql_insert1000 %.0f\n", median3(r));
  for (int i = 0; i < 3; i++) r[i] = mysql_bulk1000(m, secs, &next_id);
  printf("mysql_bulk1000 %.0f\n", median3(r));
  for (int i = 0; i < 3; i++) r[i] = mysql_update_tx1000(m, secs, next_id - 1);
  printf("mysql_update_tx1000 %.0f\n", median3(r));
  mysql_query(m, "DROP TABLE IF EXISTS raw_bench");
  redisFree(c);
  mysql_close(m);
  mysql_library_end();
  return 0;
}
