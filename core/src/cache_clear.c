/*
 * cache_clear.c: bee_engine_clear_cache (docs/guarantees.md G8): forgetting what the caches hold of
 * an entity, for rows changed behind them by plain SQL.
 *
 * With ids: the rows' keys, the unique keys and id lists of their values as cached and
 * as MySQL has them now, and the generations of the entity's unique indexes (a cached
 * not-found of any spelling of a new value goes too). Without ids: every key of the
 * table but the id allocator and the pending marks of queued changes. Either way the
 * version moves after the keys are gone, so no reader that read MySQL before puts an
 * old row back, and every process drops its local copies before this returns.
 */
#include <stdio.h>
#include <string.h>

#include "loader.h"
#include "rcmd.h"
#include "rowhash.h"

/* Adds the unique keys and list keys of a row's values (values laid out by field, present flags) to cmd. */
static void value_keys(bee__rcmd_t *cmd, const bee__entity_rt_t *rt, const bee__entity_t *e, const bee_value_t *values,
                       const unsigned char *present) {
  bee__buf_t key = {0};
  for (size_t i = 0; i < e->index_count; i++) {
    const bee__index_t *ix = &e->indexes[i];
    int all = 1;
    for (size_t k = 0; k < ix->field_count; k++) all &= present[ix->fields[k]];
    if (!all) continue;
    if (ix->unique && bee__key_unique(rt->prefix, e, ix, values, &key) == 0) bee__rcmd_arg(cmd, key.data, key.len);
    if (!ix->unique && ix->cached && bee__key_list(rt->prefix, e, ix->fields, ix->field_count, values, &key) == 0)
      bee__rcmd_arg(cmd, key.data, key.len);
  }
  for (size_t f = 0; f < e->field_count; f++)
    if (present[f] && e->fields[f].type == BEE_FIELD_REF && e->fields[f].cached &&
        bee__key_list(rt->prefix, e, &f, 1, values, &key) == 0)
      bee__rcmd_arg(cmd, key.data, key.len);
  bee__buf_free(&key);
}

/* The keys of the given rows: their own, and those of their values in Redis and in MySQL. */
static int ids_keys(bee_context_t *ctx, size_t ei, bee__rconn_t *c, const uint64_t *ids, size_t n, bee__rcmd_t *cmd,
                    bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  const bee__entity_t *e = &engine->entities[ei];
  const bee__entity_rt_t *rt = &engine->rt[ei];
  size_t nf = e->field_count ? e->field_count : 1;
  bee_value_t *values = bee__calloc(nf, sizeof *values);
  unsigned char *present = bee__calloc(nf, 1);
  int rc = values && present ? 0 : bee__error(err, BEE_ENOMEM, 0, "out of memory clearing the cache");
  char key[BEE__KEY_ROW_MAX];
  /* as cached */
  for (size_t i = 0; i < n && !rc; i++) {
    size_t kl = bee__key_row(rt->prefix, ids[i], key, sizeof key);
    bee__rcmd_arg(cmd, key, kl);
    bee__redis_append(c, "HGETALL %b", key, kl);
  }
  for (size_t i = 0; i < n && !rc; i++) {
    bee__reply_t *reply = NULL;
    if (bee__redis_get_reply(c, &reply) != 0) {
      rc = bee__redis_error(err, &engine->redis[rt->redis], c, NULL, "clearing the cache failed");
      bee__ctx_redis_broken(ctx, (size_t)rt->redis);
      break;
    }
    bee__rowhash_info_t info;
    bee__read_row_hash(e, reply, values, present, &info);
    value_keys(cmd, rt, e, values, present);
    bee__reply_free(reply);
  }
  /* as MySQL has them now */
  bee__buf_t sql = {0};
  bee__buf_puts(&sql, "SELECT `id`");
  for (size_t f = 0; f < e->field_count; f++) bee__buf_printf(&sql, ",`%s`", e->fields[f].name);
  bee__buf_printf(&sql, " FROM `%s` WHERE `id` IN (", e->table);
  for (size_t i = 0; i < n; i++) {
    char num[BEE__ID_BUF];
    if (i) bee__buf_puts(&sql, ",");
    bee__buf_append(&sql, num, bee__id_format(ids[i], num));
  }
  bee__buf_puts(&sql, ")");
  MYSQL *conn;
  if (!rc && sql.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory clearing the cache");
  if (!rc) rc = bee__ctx_mysql(ctx, rt->mysql, &conn, err);
  if (!rc && mysql_real_query(conn, sql.data, (unsigned long)sql.len) != 0)
    rc = bee__mysql_error(err, conn, &engine->mysql[rt->mysql], "clearing the cache failed on");
  MYSQL_RES *res = rc ? NULL : mysql_store_result(conn);
  if (!rc && !res) rc = bee__mysql_error(err, conn, &engine->mysql[rt->mysql], "clearing the cache failed on");
  MYSQL_ROW row;
  while (res && (row = mysql_fetch_row(res)) != NULL) {
    unsigned long *lens = mysql_fetch_lengths(res);
    for (size_t f = 0; f < e->field_count; f++)
      present[f] = bee__cell_value(&e->fields[f], row[f + 1], row[f + 1] ? lens[f + 1] : 0, &values[f]) == 0;
    value_keys(cmd, rt, e, values, present);
  }
  if (res) mysql_free_result(res);
  bee__buf_free(&sql);
  bee__free(values);
  bee__free(present);
  return rc;
}

/* Appends s to out with the glob characters of SCAN MATCH escaped. */
static void glob_escape(const char *s, bee__buf_t *out) {
  for (; *s; s++) {
    if (strchr("*?[]\\", *s)) bee__buf_append(out, "\\", 1);
    bee__buf_append(out, s, 1);
  }
}

/* Every key of the table but the id allocator, the pending marks and the version. */
static int all_keys(bee_context_t *ctx, size_t ei, bee__rconn_t *c, bee__rcmd_t *cmd, bee_error_t *err) {
  const bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  size_t pl = strlen(rt->prefix);
  bee__buf_t match = {0};
  glob_escape(rt->prefix, &match);
  bee__buf_puts(&match, "*");
  if (match.failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory clearing the cache");
  char cursor[32] = "0";
  int rc = 0;
  do {
    bee__reply_t *r = bee__redis_command(c, "SCAN %s MATCH %b COUNT 1000", cursor, match.data, match.len);
    if (!r || r->type != BEE__REPLY_ARRAY || r->elements != 2 || r->element[0]->type != BEE__REPLY_STRING) {
      rc = bee__redis_error(err, &ctx->engine->redis[rt->redis], c, r, "clearing the cache failed");
      if (r) bee__reply_free(r);
      else bee__ctx_redis_broken(ctx, (size_t)rt->redis);
      break;
    }
    snprintf(cursor, sizeof cursor, "%.*s", (int)r->element[0]->len, r->element[0]->str);
    const bee__reply_t *keys = r->element[1];
    for (size_t i = 0; keys->type == BEE__REPLY_ARRAY && i < keys->elements; i++) {
      const bee__reply_t *k = keys->element[i];
      if (k->type != BEE__REPLY_STRING || k->len <= pl) continue;
      const char *rest = k->str + pl;
      size_t rl = k->len - pl;
      int keep = (rl == 3 && !memcmp(rest, "ids", 3)) || (rl == 5 && !memcmp(rest, "idmax", 5)) ||
                 (rl == 5 && !memcmp(rest, "idrun", 5)) ||
                 (rl == 1 && rest[0] == 'v') || (rl >= 2 && !memcmp(rest, "p:", 2));
      if (!keep) bee__rcmd_arg(cmd, k->str, k->len);
    }
    bee__reply_free(r);
  } while (strcmp(cursor, "0") != 0);
  bee__buf_free(&match);
  return rc;
}

int bee_engine_clear_cache(bee_engine_t *engine, const bee_entity_t *entity, const uint64_t *ids, size_t n,
                           bee_error_t *err) {
  if (!engine || !entity) return bee__error(err, BEE_EINVAL, 0, "engine or entity is NULL");
  size_t ei = (size_t)(entity - engine->entities);
  if (ei >= engine->entity_count) return bee__error(err, BEE_EINVAL, 0, "entity of another engine");
  for (size_t i = 0; ids && i < n; i++)
    if (ids[i] == 0) return bee__error(err, BEE_EINVAL, 0, "id 0 is not a valid id");
  if (ids && !n) return 0;
  const bee__entity_t *e = &engine->entities[ei];
  bee__entity_rt_t *rt = &engine->rt[ei];
  bee_context_t *ctx;
  int rc = bee_engine_context(engine, &ctx, err);
  if (rc) return rc;
  if (rt->redis >= 0) {
    bee__rconn_t *c;
    bee__rcmd_t cmd = {0};
    if (!(rc = bee__ctx_redis(ctx, (size_t)rt->redis, &c, err))) {
      bee__rcmd_begin(&cmd, "DEL");
      bee__buf_t key = {0};
      for (size_t i = 0; i < e->index_count; i++) /* not-founds of every spelling */
        if (e->indexes[i].unique && bee__key_unique_gen(rt->prefix, e, &e->indexes[i], &key) == 0)
          bee__rcmd_arg(&cmd, key.data, key.len);
      if (e->cache_all && bee__key_list(rt->prefix, e, NULL, 0, NULL, &key) == 0) bee__rcmd_arg(&cmd, key.data, key.len);
      bee__buf_free(&key);
      rc = ids ? ids_keys(ctx, ei, c, ids, n, &cmd, err) : all_keys(ctx, ei, c, &cmd, err);
    }
    if (!rc && (cmd.failed || cmd.text.failed)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory clearing the cache");
    if (!rc) {
      /* the keys, then the version (readers that read MySQL before must not fill) */
      size_t count = 0;
      bee__redis_append(c, "MULTI");
      count++;
      if (cmd.n > 1) bee__rcmd_send(c, &cmd, &count);
      bee__redis_append(c, "INCR %sv", rt->prefix);
      bee__redis_append(c, "EXEC");
      count += 2;
      rc = bee__ctx_redis_replies(ctx, (size_t)rt->redis, c, count, "clearing the cache failed", err);
    }
    bee__rcmd_free(&cmd);
  }
  /* local caches: here, then every other process (which acknowledges before this returns) */
  if (!rc) {
    if (rt->lru && ids)
      for (size_t i = 0; i < n; i++) bee__lru_remove(rt->lru, ids[i]);
    else if (rt->lru)
      bee__lru_clear(rt->lru);
    rc = bee__publish_invalidation(ctx, ei, ids, ids ? n : 0, err);
  }
  bee_context_free(ctx);
  return rc;
}
