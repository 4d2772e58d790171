/*
 * ids.c: ids for new entities (docs/guarantees.md G9).
 *
 * MySQL holds, per table, how far ids are reserved (_beeorm_ids.reserved, extended in
 * chunks of BEE__ID_CHUNK). Redis hands ids out of the reserved span with a counter
 * (one INCRBY per range of a process) and never past the limit. If Redis loses the
 * counter, it is re-seeded at the start of the next chunk: everything below it may have
 * been handed out, nothing above it was. So no id is ever reused, Redis may restart or
 * be flushed at any time, and MySQL is asked once per chunk, not per entity. A counter
 * found on another server than the one that wrote it (failover, restart) is re-seeded
 * the same way (see take_script). Entities
 * without any Redis pool take their ranges straight from MySQL.
 */
#include <stdio.h>
#include <string.h>

#include "orm.h"

#define BEE__ID_CHUNK 1000000ULL
#define BEE__ID_BATCH_MAX 10000

/*
 * The counter belongs to the server that wrote it last (KEYS[3] holds its run_id, which
 * every start of a server changes). On any other server (a replica promoted by a
 * failover, a restart from an older snapshot) the counter may lag behind ids already
 * handed out, so it is not trusted: the script asks for a seed, and the seed starts the
 * counter at a chunk MySQL reserved just now, above everything handed out before.
 */
#define BEE__RUN_ID "local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or '' "

/* Takes ids from the counter; -1 when it must be seeded, -2 when the limit is reached. */
static const char *const take_script =
    "local limit = redis.call('GET', KEYS[2]) "
    "if not limit then return -1 end "
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end "
    BEE__RUN_ID
    "if redis.call('GET', KEYS[3]) ~= run then return -1 end "
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "if v > tonumber(limit) then redis.call('DECRBY', KEYS[1], ARGV[1]) return -2 end "
    "return v";

/* After MySQL reserved (ARGV[1], ARGV[2]]: start a lost or untrusted counter at ARGV[1],
   raise the limit. */
static const char *const seed_script =
    BEE__RUN_ID
    "if redis.call('GET', KEYS[3]) ~= run then "
    "  redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[2]) redis.call('SET', KEYS[3], run) "
    "  return 1 "
    "end "
    "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end "
    "local cur = tonumber(redis.call('GET', KEYS[2]) or '0') "
    "if tonumber(ARGV[2]) > cur then redis.call('SET', KEYS[2], ARGV[2]) end "
    "return 1";

/*
 * Reserves `count` more ids of the entity's table in MySQL. On success the span
 * (*from, *to] is reserved for the caller: nothing in it was handed out before.
 */
static int reserve_in_mysql(bee_context_t *ctx, size_t entity, uint64_t count, uint64_t *from, uint64_t *to,
                            bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  const bee__entity_t *e = &engine->entities[entity];
  const bee__mysql_pool_t *pool = &engine->mysql[engine->rt[entity].mysql];
  MYSQL *conn;
  int rc = bee__engine_mysql_acquire(engine, pool, &conn, err);
  if (rc) return rc;
  char sql[512];
  if (mysql_query(conn,
                  "CREATE TABLE IF NOT EXISTS `_beeorm_ids` (`name` varchar(64) NOT NULL PRIMARY KEY, "
                  "`reserved` bigint unsigned NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4") != 0)
    goto fail;
  /* The first reservation starts above whatever the table already holds. */
  uint64_t max_id = 0;
  snprintf(sql, sizeof sql, "SELECT IFNULL(MAX(`id`), 0) FROM `%s`", e->table);
  if (mysql_query(conn, sql) == 0) {
    MYSQL_RES *res = mysql_store_result(conn);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    if (row && row[0]) bee__id_parse(row[0], strlen(row[0]), &max_id);
    if (res) mysql_free_result(res);
  } else if (mysql_errno(conn) != 1146) { /* no table yet: start at 0 */
    goto fail;
  }
  snprintf(sql, sizeof sql,
           "INSERT INTO `_beeorm_ids` (`name`, `reserved`) VALUES ('%s', LAST_INSERT_ID(%llu + %llu)) "
           "ON DUPLICATE KEY UPDATE `reserved` = LAST_INSERT_ID(`reserved` + %llu)",
           e->table, (unsigned long long)max_id, (unsigned long long)count, (unsigned long long)count);
  if (mysql_query(conn, sql) != 0) goto fail;
  uint64_t reserved = mysql_insert_id(conn);
  if (reserved < count) {
    bee__engine_mysql_release(engine, pool, conn, 0);
    return bee__error(err, BEE_EMYSQL, 0, "id reservation for table '%s' returned %llu", e->table,
                      (unsigned long long)reserved);
  }
  *to = reserved;
  *from = reserved - count;
  bee__engine_mysql_release(engine, pool, conn, 0);
  return 0;
fail:
  rc = bee__mysql_error(err, conn, pool, "reserving ids failed on");
  bee__engine_mysql_release(engine, pool, conn, 1);
  return rc;
}

static int eval(bee_context_t *ctx, size_t pool, const char *script, const char *const keys[3], const char *a1,
                const char *a2, long long *out, bee_error_t *err) {
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, pool, &c, err);
  if (rc) return rc;
  const char *argv[8] = {"EVAL", script, "3", keys[0], keys[1], keys[2], a1, a2};
  bee__reply_t *r = bee__redis_command_argv(c, a2 ? 8 : 7, argv, NULL);
  if (!r || r->type != BEE__REPLY_INTEGER) {
    rc = bee__redis_error(err, &ctx->engine->redis[pool], c, r, "allocating ids failed");
    if (!r) bee__ctx_redis_broken(ctx, pool);
    if (r) bee__reply_free(r);
    return rc;
  }
  *out = r->integer;
  bee__reply_free(r);
  return 0;
}

/* Gets a fresh range [*start, *end) of about `want` ids. */
static int fetch_range(bee_context_t *ctx, size_t entity, uint32_t want, uint64_t *start, uint64_t *end,
                       bee_error_t *err) {
  bee__entity_rt_t *rt = &ctx->engine->rt[entity];
  uint64_t from, to;
  int rc;
  if (rt->id_redis < 0) {
    if ((rc = reserve_in_mysql(ctx, entity, want, &from, &to, err))) return rc;
    *start = from + 1;
    *end = to + 1;
    return 0;
  }
  char counter[sizeof rt->prefix + 8], limit[sizeof rt->prefix + 8], owner[sizeof rt->prefix + 8], n[24];
  snprintf(counter, sizeof counter, "%sids", rt->prefix);
  snprintf(limit, sizeof limit, "%sidmax", rt->prefix);
  snprintf(owner, sizeof owner, "%sidrun", rt->prefix);
  const char *const keys[3] = {counter, limit, owner};
  snprintf(n, sizeof n, "%u", want);
  for (int attempt = 0; attempt < 4; attempt++) {
    long long v;
    if ((rc = eval(ctx, (size_t)rt->id_redis, take_script, keys, n, NULL, &v, err))) return rc;
    if (v > 0) {
      *end = (uint64_t)v + 1;
      *start = (uint64_t)v + 1 - want;
      return 0;
    }
    /* Seed a lost counter, or extend a used-up reservation, then try again. */
    if ((rc = reserve_in_mysql(ctx, entity, BEE__ID_CHUNK, &from, &to, err))) return rc;
    char a1[24], a2[24];
    snprintf(a1, sizeof a1, "%llu", (unsigned long long)from);
    snprintf(a2, sizeof a2, "%llu", (unsigned long long)to);
    if ((rc = eval(ctx, (size_t)rt->id_redis, seed_script, keys, a1, a2, &v, err))) return rc;
  }
  return bee__error(err, BEE_EREDIS, 1, "could not allocate ids for '%s' after 4 attempts",
                    ctx->engine->entities[entity].name);
}

int bee_context_new_id(bee_context_t *ctx, const bee_entity_t *entity, uint64_t *id, bee_error_t *err) {
  if (!ctx || !entity || !id) return bee__error(err, BEE_EINVAL, 0, "context, entity or id is NULL");
  size_t i = (size_t)(entity - ctx->engine->entities);
  if (i >= ctx->engine->entity_count) return bee__error(err, BEE_EINVAL, 0, "entity of another engine");
  bee__entity_rt_t *rt = &ctx->engine->rt[i];
  pthread_mutex_lock(&rt->id_lock);
  int rc = 0;
  if (rt->id_next >= rt->id_end) {
    uint64_t start, end;
    rc = fetch_range(ctx, i, rt->id_batch, &start, &end, err);
    if (!rc) {
      rt->id_next = start;
      rt->id_end = end;
      /* A busy entity asks less often: ranges grow up to BEE__ID_BATCH_MAX. */
      if (rt->id_batch < BEE__ID_BATCH_MAX) rt->id_batch *= 2;
    }
  }
  if (!rc) *id = rt->id_next++;
  pthread_mutex_unlock(&rt->id_lock);
  return rc;
}
