/*
 * loader.c: reading entities through the local cache, Redis and MySQL (DESIGN §2, G8).
 *
 * Every loader ends in bee__load_by_ids: local cache hits first, then one pipelined
 * Redis round trip for the misses, then one SQL query for what is still missing. What
 * MySQL returns (rows and not-found markers) is written back to Redis by a script that
 * compares the entity's version with the one read before asking MySQL, and to the
 * local cache with the epoch taken before asking Redis: a concurrent flush wins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orm.h"
#include "sql.h"

#define BEE__SQL_IDS 1000

/*
 * Sets every missing KEYS[i>1] to ARGV[i] unless the version KEYS[1] moved from ARGV[1].
 * A key that exists was written since this reader missed it (by a flush, or by another
 * reader): never older than what this reader has, so it stays (NX). The version fences
 * the other race, a key dropped (DEL) by a flush while this reader asked MySQL.
 */
static const char *const fill_script =
    "local v = redis.call('GET', KEYS[1]) or '' "
    "if v ~= ARGV[1] then return 0 end "
    "for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'NX') end "
    "return 1";

typedef struct {
  bee_context_t *ctx;
  size_t entity;
  const bee__entity_t *e;
  bee__entity_rt_t *rt;
  bee_value_t *values;
  bee_row_fn fn;
  void *ud;
  int stopped; /* fn returned non-zero: its value */
} load_t;

/* Hands an encoded row (or not-found) to fn. Returns 0, BEE_EINVAL (undecodable) or fn's stop value. */
static int deliver_encoded(load_t *l, size_t index, uint64_t id, const char *data, size_t len) {
  uint64_t got;
  int rc = bee__row_decode(l->e, data, len, &got, l->values);
  if (rc == BEE_ENOTFOUND) return (l->stopped = l->fn(l->ud, index, NULL));
  if (rc || got != id) return BEE_EINVAL;
  bee_row_t row = {l->e, id, l->values};
  return (l->stopped = l->fn(l->ud, index, &row));
}

/* Reads the version key; "" when absent. */
static void version_text(redisReply *r, char *out, size_t size) {
  if (r && r->type == REDIS_REPLY_STRING) snprintf(out, size, "%.*s", (int)r->len, r->str);
  else if (r && r->type == REDIS_REPLY_INTEGER) snprintf(out, size, "%lld", r->integer);
  else out[0] = '\0';
}

/* Writes keys/values to Redis with the version check, in chunks. Failures only cost a later miss. */
static void fill_redis(bee_context_t *ctx, int pool, const char *version_key, const char *version, char **keys,
                       size_t *key_lens, char **vals, size_t *val_lens, size_t n) {
  redisContext *c;
  bee_error_t ignored;
  if (pool < 0 || !n || bee__ctx_redis(ctx, (size_t)pool, &c, &ignored)) return;
  for (size_t at = 0; at < n; at += 500) {
    size_t m = n - at < 500 ? n - at : 500;
    size_t argc = 3 + (m + 1) * 2;
    const char **argv = bee__malloc(argc * sizeof *argv);
    size_t *lens = bee__malloc(argc * sizeof *lens);
    char nk[16];
    if (!argv || !lens) {
      bee__free(argv);
      bee__free(lens);
      return;
    }
    snprintf(nk, sizeof nk, "%zu", m + 1);
    argv[0] = "EVAL", lens[0] = 4;
    argv[1] = fill_script, lens[1] = strlen(fill_script);
    argv[2] = nk, lens[2] = strlen(nk);
    argv[3] = version_key, lens[3] = strlen(version_key);
    for (size_t i = 0; i < m; i++) argv[4 + i] = keys[at + i], lens[4 + i] = key_lens[at + i];
    argv[4 + m] = version, lens[4 + m] = strlen(version);
    for (size_t i = 0; i < m; i++) argv[5 + m + i] = vals[at + i], lens[5 + m + i] = val_lens[at + i];
    redisReply *r = redisCommandArgv(c, (int)argc, argv, lens);
    bee__free(argv);
    bee__free(lens);
    if (!r) {
      bee__ctx_redis_broken(ctx, (size_t)pool);
      return;
    }
    freeReplyObject(r);
  }
}

/* Where the encoded row of one index sits in the context's scratch buffer (len 0: not yet). */
typedef struct {
  size_t off, len;
} slot_t;

/* 1 when data is a row (or a not-found marker) of this entity for id. */
static int valid_for(load_t *l, uint64_t id, const char *data, size_t len) {
  uint64_t got;
  int rc = bee__row_decode(l->e, data, len, &got, l->values);
  return rc == BEE_ENOTFOUND || (rc == 0 && got == id);
}

/* Appends data to rows and records it as the answer for index i. */
static int keep(bee__buf_t *rows, slot_t *slot, const char *data, size_t len) {
  slot->off = rows->len;
  bee__buf_append(rows, data, len);
  slot->len = len;
  return rows->failed ? BEE_ENOMEM : 0;
}

/* Asks MySQL for the indexes still missing; keeps rows and not-found markers; fills caches. */
static int load_from_mysql(load_t *l, const uint64_t *ids, size_t n, slot_t *slots, int local, uint64_t epoch,
                           int redis_ok, const char *version_key, const char *version, bee_error_t *err) {
  bee_context_t *ctx = l->ctx;
  bee__buf_t *rows = &ctx->scratch;
  size_t nf = l->e->field_count;
  const bee__mysql_pool_t *pool = &ctx->engine->mysql[l->rt->mysql];
  MYSQL *conn;
  int rc = bee__ctx_mysql(ctx, l->rt->mysql, &conn, err);
  if (rc) return rc;
  bee__buf_t sql = {0}, miss = {0}, found_rows = {0};
  bee__row_encode_missing(l->e, &miss);
  size_t i = 0;
  while (i < n && !rc) {
    size_t chunk_start = i, count = 0;
    sql.len = 0;
    bee__buf_puts(&sql, "SELECT `id`");
    for (size_t f = 0; f < nf; f++) bee__buf_printf(&sql, ",`%s`", l->e->fields[f].name);
    bee__buf_printf(&sql, " FROM `%s` WHERE `id` IN (", l->e->table);
    for (; i < n && count < BEE__SQL_IDS; i++) {
      if (slots[i].len) continue;
      char num[BEE__ID_BUF];
      if (count++) bee__buf_puts(&sql, ",");
      bee__buf_append(&sql, num, bee__id_format(ids[i], num));
    }
    if (!count) break;
    bee__buf_puts(&sql, ")");
    if (sql.failed || miss.failed) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory building a query");
      break;
    }
    if (mysql_real_query(conn, sql.data, (unsigned long)sql.len) != 0) {
      rc = bee__mysql_error(err, conn, pool, "loading failed on");
      if (err && err->temporary) bee__ctx_mysql_broken(ctx, l->rt->mysql);
      break;
    }
    MYSQL_RES *res = mysql_store_result(conn);
    if (!res) {
      rc = bee__mysql_error(err, conn, pool, "loading failed on");
      break;
    }
    /* Encode every row found into found_rows: [u64 id][u32 len][bytes]... */
    found_rows.len = 0;
    MYSQL_ROW row;
    bee__buf_t enc = {0};
    while ((row = mysql_fetch_row(res)) != NULL) {
      unsigned long *lens = mysql_fetch_lengths(res);
      uint64_t id;
      int bad = !row[0] || bee__id_parse(row[0], lens[0], &id);
      for (size_t f = 0; f < nf && !bad; f++)
        bad = bee__cell_value(&l->e->fields[f], row[f + 1], row[f + 1] ? lens[f + 1] : 0, &l->values[f]) != 0;
      enc.len = 0;
      if (bad || bee__row_encode(l->e, id, l->values, &enc)) {
        rc = bee__error(err, BEE_EMYSQL, 0, "table '%s' holds a value that does not fit its definition (id %s)",
                        l->e->table, row[0] ? row[0] : "NULL");
        break;
      }
      uint32_t len = (uint32_t)enc.len;
      bee__buf_append(&found_rows, (const char *)&id, sizeof id);
      bee__buf_append(&found_rows, (const char *)&len, sizeof len);
      bee__buf_append(&found_rows, enc.data, enc.len);
    }
    bee__buf_free(&enc);
    mysql_free_result(res);
    if (rc) break;
    if (found_rows.failed) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory loading '%s'", l->e->name);
      break;
    }
    size_t count_filled = 0;
    size_t *from_mysql = bee__malloc((i - chunk_start) * sizeof *from_mysql + 1); /* indexes answered here */
    for (size_t j = chunk_start; j < i && !rc; j++) {
      if (slots[j].len) continue;
      const char *data = miss.data;
      size_t len = miss.len;
      for (size_t at = 0; at < found_rows.len;) {
        uint64_t id;
        uint32_t rl;
        memcpy(&id, found_rows.data + at, sizeof id);
        memcpy(&rl, found_rows.data + at + sizeof id, sizeof rl);
        if (id == ids[j]) {
          data = found_rows.data + at + sizeof id + sizeof rl;
          len = rl;
          break;
        }
        at += sizeof id + sizeof rl + rl;
      }
      rc = keep(rows, &slots[j], data, len);
      if (!rc && local) bee__lru_put(l->rt->lru, ids[j], data, len, epoch);
      if (from_mysql) from_mysql[count_filled] = j;
      count_filled++;
    }
    if (rc) {
      bee__free(from_mysql);
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory loading '%s'", l->e->name);
      break;
    }
    if (redis_ok && count_filled && from_mysql) {
      /* rows no longer grows in this chunk: pointers into it stay valid for the fill */
      char **keys = bee__calloc(count_filled, sizeof *keys), **vals = bee__calloc(count_filled, sizeof *vals);
      size_t *klens = bee__calloc(count_filled, sizeof *klens), *vlens = bee__calloc(count_filled, sizeof *vlens);
      char *keybuf = bee__malloc(count_filled * (sizeof l->rt->prefix + 32));
      if (keys && vals && klens && vlens && keybuf) {
        size_t k = 0;
        for (size_t m = 0; m < count_filled; m++) {
          size_t j = from_mysql[m];
          keys[k] = keybuf + k * (sizeof l->rt->prefix + 32);
          klens[k] = bee__row_key(l->rt, ids[j], keys[k], sizeof l->rt->prefix + 32);
          vals[k] = rows->data + slots[j].off;
          vlens[k] = slots[j].len;
          k++;
        }
        fill_redis(ctx, l->rt->redis, version_key, version, keys, klens, vals, vlens, k);
      }
      bee__free(keys);
      bee__free(vals);
      bee__free(klens);
      bee__free(vlens);
      bee__free(keybuf);
    }
    bee__free(from_mysql);
  }
  bee__buf_free(&sql);
  bee__buf_free(&miss);
  bee__buf_free(&found_rows);
  return rc;
}

int bee__load_by_ids(bee_context_t *ctx, size_t entity, const uint64_t *ids, size_t n, bee_row_fn fn, void *ud,
                     bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  load_t l = {ctx, entity, &engine->entities[entity], &engine->rt[entity], NULL, fn, ud, 0};
  if (!n) return 0;
  size_t nf = l.e->field_count;
  /* Small lookups (the common get_by_id) use the stack and the context's scratch buffer. */
  bee_value_t values_small[32];
  slot_t slots_small[64];
  l.values = nf <= 32 ? values_small : bee__calloc(nf, sizeof *l.values);
  slot_t *slots = n <= 64 ? slots_small : bee__calloc(n, sizeof *slots);
  if (n <= 64) memset(slots_small, 0, n * sizeof *slots);
  bee__buf_t *rows = &ctx->scratch;
  rows->len = 0;
  int rc = 0;
  if (!l.values || !slots) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory loading '%s'", l.e->name);
    goto out;
  }
  size_t missing = n;

  /* 1. local cache (unless invalidations may be in flight, see bee__local_cache_ok) */
  int local = l.rt->lru && bee__local_cache_ok(engine);
  uint64_t epoch = local ? bee__lru_epoch(l.rt->lru) : 0;
  if (local && n == 1) { /* get_by_id: a hit is delivered straight away, decoded once */
    if (bee__lru_get(l.rt->lru, ids[0], rows) == 1) {
      int d = deliver_encoded(&l, 0, ids[0], rows->data, rows->len);
      if (d != BEE_EINVAL) {
        rc = d;
        goto out;
      }
    }
    rows->len = 0;
  } else if (local) {
    for (size_t i = 0; i < n; i++) {
      size_t off = rows->len;
      int got = bee__lru_get(l.rt->lru, ids[i], rows);
      if (got == 1 && valid_for(&l, ids[i], rows->data + off, rows->len - off)) {
        slots[i].off = off;
        slots[i].len = rows->len - off;
        missing--;
      } else {
        rows->len = off;
      }
    }
  }

  /* 2. Redis: the version, then every missing row, in one round trip */
  char version[32] = "";
  char version_key[sizeof l.rt->prefix + 4];
  snprintf(version_key, sizeof version_key, "%sv", l.rt->prefix);
  int redis_ok = 0;
  if (missing && l.rt->redis >= 0) {
    redisContext *c;
    if ((rc = bee__ctx_redis(ctx, (size_t)l.rt->redis, &c, err))) goto out;
    redisAppendCommand(c, "GET %s", version_key);
    for (size_t i = 0; i < n; i++) {
      if (slots[i].len) continue;
      char key[sizeof l.rt->prefix + 32];
      size_t kl = bee__row_key(l.rt, ids[i], key, sizeof key);
      redisAppendCommand(c, "GET %b", key, kl);
    }
    redis_ok = 1;
    size_t want = missing;
    for (size_t i = 0, k = 0; k <= want; k++) {
      void *reply = NULL;
      if (redisGetReply(c, &reply) != REDIS_OK) {
        rc = bee__redis_error(err, &engine->redis[l.rt->redis], c, NULL, "reading the cache failed");
        bee__ctx_redis_broken(ctx, (size_t)l.rt->redis);
        goto out;
      }
      redisReply *r = reply;
      if (k == 0) {
        version_text(r, version, sizeof version);
        freeReplyObject(r);
        continue;
      }
      while (slots[i].len) i++;
      if (!rc && r->type == REDIS_REPLY_STRING && valid_for(&l, ids[i], r->str, r->len)) {
        rc = keep(rows, &slots[i], r->str, r->len);
        if (!rc && local) bee__lru_put(l.rt->lru, ids[i], r->str, r->len, epoch);
        missing--;
      }
      freeReplyObject(r);
      i++;
    }
    if (rc) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory loading '%s'", l.e->name);
      goto out;
    }
  }

  /* 3. MySQL for the rest */
  if (missing && (rc = load_from_mysql(&l, ids, n, slots, local, epoch, redis_ok, version_key, version, err)))
    goto out;

  /* 4. every answer, in the order of ids */
  for (size_t i = 0; i < n; i++) {
    int d = deliver_encoded(&l, i, ids[i], rows->data + slots[i].off, slots[i].len);
    if (d == BEE_EINVAL) d = bee__error(err, BEE_EINVAL, 0, "cannot decode a row of '%s'", l.e->name);
    if (d) {
      rc = d;
      break;
    }
  }
out:
  if (rows->cap > 65536) bee__buf_free(rows); /* do not keep a huge result's buffer */
  if (l.values != values_small) bee__free(l.values);
  if (slots != slots_small) bee__free(slots);
  return rc;
}

static int entity_index(bee_context_t *ctx, const bee_entity_t *entity, size_t *out, bee_error_t *err) {
  if (!ctx || !entity) return bee__error(err, BEE_EINVAL, 0, "context or entity is NULL");
  size_t i = (size_t)(entity - ctx->engine->entities);
  if (i >= ctx->engine->entity_count) return bee__error(err, BEE_EINVAL, 0, "entity of another engine");
  *out = i;
  return 0;
}

int bee_context_get_by_ids(bee_context_t *ctx, const bee_entity_t *entity, const uint64_t *ids, size_t n,
                           bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++)
    if (ids[i] == 0) return bee__error(err, BEE_EINVAL, 0, "id 0 is not a valid id");
  return bee__load_by_ids(ctx, ei, ids, n, fn, ud, err);
}

/* ------------------------------------------------------------------------ */
/* Id lists: references, indexes, all                                       */

typedef struct {
  uint64_t *ids;
  size_t n, cap;
} idlist_t;

static int idlist_push(idlist_t *l, uint64_t id) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    uint64_t *p = bee__realloc(l->ids, cap * sizeof *p);
    if (!p) return BEE_ENOMEM;
    l->ids = p;
    l->cap = cap;
  }
  l->ids[l->n++] = id;
  return 0;
}

/* Runs "SELECT `id` FROM t WHERE <where>" and collects the ids. */
static int query_ids(bee_context_t *ctx, size_t ei, const char *where, const bee_value_t *args, size_t nargs,
                     const char *tail, idlist_t *out, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  const bee__entity_t *e = &engine->entities[ei];
  size_t p = engine->rt[ei].mysql;
  MYSQL *conn;
  int rc = bee__ctx_mysql(ctx, p, &conn, err);
  if (rc) return rc;
  bee__buf_t head = {0}, sql = {0};
  bee__buf_printf(&head, "SELECT `id` FROM `%s`%s", e->table, where && *where ? " WHERE " : "");
  bee__buf_puts(&head, where ? where : "");
  if (tail) bee__buf_puts(&head, tail);
  if (head.failed) {
    bee__buf_free(&head);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory building a query");
  }
  rc = bee__sql_interpolate(conn, head.data, args, nargs, &sql, err);
  bee__buf_free(&head);
  if (rc) {
    bee__buf_free(&sql);
    return rc;
  }
  if (mysql_real_query(conn, sql.data, (unsigned long)sql.len) != 0) {
    rc = bee__mysql_error(err, conn, &engine->mysql[p], "query failed on");
    bee__buf_free(&sql);
    return rc;
  }
  bee__buf_free(&sql);
  MYSQL_RES *res = mysql_store_result(conn);
  if (!res) return bee__mysql_error(err, conn, &engine->mysql[p], "query failed on");
  MYSQL_ROW row;
  while ((row = mysql_fetch_row(res)) != NULL) {
    uint64_t id;
    if (!row[0] || bee__id_parse(row[0], mysql_fetch_lengths(res)[0], &id)) continue;
    if (idlist_push(out, id)) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
      break;
    }
  }
  mysql_free_result(res);
  return rc;
}

int bee__select_ids(bee_context_t *ctx, size_t entity, const char *where, const bee_value_t *args, size_t nargs,
                    uint64_t **ids, size_t *n, bee_error_t *err) {
  idlist_t l = {0};
  int rc = query_ids(ctx, entity, where, args, nargs, NULL, &l, err);
  if (rc) {
    bee__free(l.ids);
    return rc;
  }
  *ids = l.ids;
  *n = l.n;
  return 0;
}

/*
 * Reads the entity's version and one key in one round trip. On success *out is the
 * key's reply (the caller frees it) and version holds the version text ("" if none).
 */
static int get_versioned(bee_context_t *ctx, const bee__entity_rt_t *rt, const char *key, size_t key_len,
                         char *version, size_t version_size, redisReply **out, bee_error_t *err) {
  char version_key[sizeof rt->prefix + 4];
  snprintf(version_key, sizeof version_key, "%sv", rt->prefix);
  redisContext *c;
  int rc = bee__ctx_redis(ctx, (size_t)rt->redis, &c, err);
  if (rc) return rc;
  redisAppendCommand(c, "GET %s", version_key);
  redisAppendCommand(c, "GET %b", key, key_len);
  void *r1 = NULL, *r2 = NULL;
  if (redisGetReply(c, &r1) != REDIS_OK || redisGetReply(c, &r2) != REDIS_OK) {
    if (r1) freeReplyObject(r1);
    rc = bee__redis_error(err, &ctx->engine->redis[rt->redis], c, NULL, "reading the cache failed");
    bee__ctx_redis_broken(ctx, (size_t)rt->redis);
    return rc;
  }
  version_text(r1, version, version_size);
  freeReplyObject(r1);
  *out = r2;
  return 0;
}

/* Which rows a cached list holds: kind 'a' (all), 'i' (index) or 'f' (reference field). */
typedef struct {
  char kind;
  const char *name;
  const size_t *fields;
  size_t n;
} list_spec_t;

typedef struct {
  bee_context_t *ctx;
  size_t ei;
  const list_spec_t *spec;
  const bee__buf_t *key;
  bee__buf_t scratch;
  unsigned char *member; /* per pending id: 1 when its row as cached now belongs to the list */
} judge_t;

static int judge_row(void *ud, size_t index, const bee_row_t *row) {
  judge_t *j = ud;
  if (!row) return 0;
  if (j->spec->kind == 'a') {
    j->member[index] = 1;
    return 0;
  }
  const bee__entity_rt_t *rt = &j->ctx->engine->rt[j->ei];
  if (bee__list_key(rt, row->entity, j->spec->kind, j->spec->name, j->spec->fields, j->spec->n, row->values,
                    &j->scratch))
    return BEE_ENOMEM;
  j->member[index] = j->scratch.len == j->key->len && !memcmp(j->scratch.data, j->key->data, j->key->len);
  return 0;
}

static int cmp_id(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The pending ids of a list (flush_async changes a consumer has not applied yet). */
static int pending_ids(bee_context_t *ctx, const bee__entity_rt_t *rt, const bee__buf_t *key, idlist_t *out,
                       bee_error_t *err) {
  bee__buf_t pkey = {0};
  bee__buf_append(&pkey, key->data, key->len);
  if (pkey.failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory");
  bee__pending_key(rt, &pkey);
  redisContext *c;
  int rc = bee__ctx_redis(ctx, (size_t)rt->redis, &c, err);
  redisReply *r = rc ? NULL : redisCommand(c, "HKEYS %b", pkey.data, pkey.len);
  bee__buf_free(&pkey);
  if (rc) return rc;
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    rc = bee__redis_error(err, &ctx->engine->redis[rt->redis], c, r, "reading the cache failed");
    if (r) freeReplyObject(r);
    else bee__ctx_redis_broken(ctx, (size_t)rt->redis);
    return rc;
  }
  for (size_t i = 0; i < r->elements && !rc; i++) {
    uint64_t id;
    redisReply *it = r->element[i];
    if (it->type != REDIS_REPLY_STRING || bee__id_parse(it->str, it->len, &id)) continue;
    if (idlist_push(out, id)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
  }
  freeReplyObject(r);
  return rc;
}

/*
 * MySQL's ids for a list corrected by its pending ids: a row with a queued change is in
 * the list when its current row (the caches hold it since the flush_async) says so.
 */
static int apply_pending(bee_context_t *ctx, size_t ei, const list_spec_t *spec, const bee__buf_t *key,
                         const idlist_t *pending, idlist_t *out, bee_error_t *err) {
  judge_t j = {ctx, ei, spec, key, {0}, bee__calloc(pending->n, 1)};
  if (!j.member) return bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
  int rc = bee__load_by_ids(ctx, ei, pending->ids, pending->n, judge_row, &j, err);
  bee__buf_free(&j.scratch);
  if (rc == BEE_ENOMEM) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
  if (rc) {
    bee__free(j.member);
    return rc;
  }
  uint64_t *sorted = bee__malloc(pending->n * sizeof *sorted);
  if (!sorted) {
    bee__free(j.member);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
  }
  memcpy(sorted, pending->ids, pending->n * sizeof *sorted);
  qsort(sorted, pending->n, sizeof *sorted, cmp_id);
  size_t w = 0; /* drop MySQL's ids that are pending: their rows decide */
  for (size_t i = 0; i < out->n; i++)
    if (!bsearch(&out->ids[i], sorted, pending->n, sizeof *sorted, cmp_id)) out->ids[w++] = out->ids[i];
  out->n = w;
  bee__free(sorted);
  for (size_t i = 0; i < pending->n && !rc; i++)
    if (j.member[i] && idlist_push(out, pending->ids[i])) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
  bee__free(j.member);
  if (rc) return rc;
  qsort(out->ids, out->n, sizeof *out->ids, cmp_id);
  w = 0;
  for (size_t i = 0; i < out->n; i++)
    if (!w || out->ids[w - 1] != out->ids[i]) out->ids[w++] = out->ids[i];
  out->n = w;
  return 0;
}

/*
 * The ids for a list key: from Redis when cached there, else from MySQL corrected by
 * the list's pending ids (then cached with the version check). key NULL: never cached.
 */
static int list_ids(bee_context_t *ctx, size_t ei, const bee__buf_t *key, const list_spec_t *spec, const char *where,
                    const bee_value_t *args, size_t nargs, idlist_t *out, bee_error_t *err) {
  bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  char version[32] = "";
  char version_key[sizeof rt->prefix + 4];
  snprintf(version_key, sizeof version_key, "%sv", rt->prefix);
  int cached = key && rt->redis >= 0;
  idlist_t pending = {0};
  if (cached) {
    redisReply *r;
    int rc = get_versioned(ctx, rt, key->data, key->len, version, sizeof version, &r, err);
    if (rc) return rc;
    int hit = r->type == REDIS_REPLY_STRING && r->len >= 1 && r->str[0] == 'L' && (r->len - 1) % 8 == 0;
    if (hit) {
      for (size_t i = 1; i < r->len; i += 8) {
        uint64_t id = 0;
        for (int b = 7; b >= 0; b--) id = (id << 8) | (unsigned char)r->str[i + (size_t)b];
        if (idlist_push(out, id)) {
          hit = -1;
          break;
        }
      }
    }
    freeReplyObject(r);
    if (hit == -1) return bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
    if (hit) return 0;
    /* Before MySQL: an id that stops being pending was applied before it left the hash. */
    if ((rc = pending_ids(ctx, rt, key, &pending, err))) {
      bee__free(pending.ids);
      return rc;
    }
  }
  int rc = query_ids(ctx, ei, where, args, nargs, " ORDER BY `id`", out, err);
  if (!rc && pending.n) rc = apply_pending(ctx, ei, spec, key, &pending, out, err);
  bee__free(pending.ids);
  if (rc || !cached) return rc;
  bee__buf_t val = {0};
  bee__buf_append(&val, "L", 1);
  for (size_t i = 0; i < out->n; i++) {
    unsigned char b[8];
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(out->ids[i] >> (8 * k));
    bee__buf_append(&val, (const char *)b, 8);
  }
  if (!val.failed) {
    char *k = key->data, *v = val.data;
    size_t kl = key->len, vl = val.len;
    fill_redis(ctx, rt->redis, version_key, version, &k, &kl, &v, &vl, 1);
  }
  bee__buf_free(&val);
  return 0;
}

/* Delivers rows for a list of ids in order, skipping ids whose row is gone. */
typedef struct {
  bee_row_fn fn;
  void *ud;
  size_t next;
} skip_t;

static int skip_missing(void *ud, size_t index, const bee_row_t *row) {
  skip_t *s = ud;
  (void)index;
  if (!row) return 0;
  return s->fn(s->ud, s->next++, row);
}

/* Ends a list loader: delivers the rows of l unless rc (the listing's result) failed; frees l. */
static int deliver_list(bee_context_t *ctx, size_t ei, int rc, idlist_t *l, bee_row_fn fn, void *ud,
                        bee_error_t *err) {
  skip_t s = {fn, ud, 0};
  if (!rc) rc = bee__load_by_ids(ctx, ei, l->ids, l->n, skip_missing, &s, err);
  bee__free(l->ids);
  return rc;
}

/* "`a` = ? AND `b` IS NULL ..." for the fields of an index, with args for the non-NULLs. */
static int index_where(const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *values,
                       bee__buf_t *where, bee_value_t *args, size_t *nargs) {
  *nargs = 0;
  for (size_t k = 0; k < n; k++) {
    const char *name = e->fields[fields[k]].name;
    if (k) bee__buf_puts(where, " AND ");
    if (values[k].kind == BEE_VALUE_NIL) {
      bee__buf_printf(where, "`%s` IS NULL", name);
    } else {
      bee__buf_printf(where, "`%s` = ?", name);
      args[(*nargs)++] = values[k];
    }
  }
  return where->failed ? BEE_ENOMEM : 0;
}

/* Validates lookup values against their fields into canonical form (strings in buf). */
static int canonical_lookup(const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *in,
                            bee_value_t *out, bee__buf_t *buf, bee_error_t *err) {
  size_t need = 0;
  for (size_t k = 0; k < n; k++) need += BEE__VALUE_BUF(in[k].kind == BEE_VALUE_STRING ? in[k].len : 0);
  buf->len = 0;
  char *scratch = bee__malloc(need);
  if (!scratch) return bee__error(err, BEE_ENOMEM, 0, "out of memory");
  size_t at = 0;
  int rc = 0;
  for (size_t k = 0; k < n && !rc; k++) {
    size_t room = BEE__VALUE_BUF(in[k].kind == BEE_VALUE_STRING ? in[k].len : 0);
    bee__field_t f = e->fields[fields[k]];
    f.required = 0; /* a lookup may ask for NULL */
    rc = bee__value_check(e, &f, &in[k], &out[k], scratch + at, room, err);
    at += room;
  }
  if (!rc) {
    /* Move strings into buf so scratch can go. */
    for (size_t k = 0; k < n; k++) {
      if (out[k].kind != BEE_VALUE_STRING) continue;
      size_t off = buf->len;
      bee__buf_append(buf, out[k].str, out[k].len);
      if (buf->failed) {
        rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
        break;
      }
      out[k].str = (const char *)(uintptr_t)off; /* fixed up below, buf may move */
    }
    for (size_t k = 0; k < n && !rc; k++)
      if (out[k].kind == BEE_VALUE_STRING) out[k].str = buf->data + (uintptr_t)out[k].str;
  }
  bee__free(scratch);
  return rc;
}

static const bee__index_t *find_index(const bee__entity_t *e, const char *name, int unique) {
  for (size_t i = 0; i < e->index_count; i++)
    if (!strcmp(e->indexes[i].name, name) && e->indexes[i].unique == unique) return &e->indexes[i];
  return NULL;
}

/* The (unique or non-unique) index a lookup names, checked against the number of values given. */
static int lookup_index(const bee__entity_t *e, const char *index, int unique, size_t n, const bee__index_t **out,
                        bee_error_t *err) {
  const char *what = unique ? "unique index" : "index";
  const bee__index_t *ix = index ? find_index(e, index, unique) : NULL;
  if (!ix) return bee__error(err, BEE_EINVAL, 0, "entity '%s' has no %s '%s'", e->name, what, index ? index : "");
  if (n != ix->field_count)
    return bee__error(err, BEE_EINVAL, 0, "%s '%s' has %zu field(s), %zu value(s) given", what, ix->name,
                      ix->field_count, n);
  *out = ix;
  return 0;
}

int bee_context_get_by_unique(bee_context_t *ctx, const bee_entity_t *entity, const char *index,
                              const bee_value_t *values, size_t n, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  const bee__index_t *ix;
  if ((rc = lookup_index(e, index, 1, n, &ix, err))) return rc;
  bee_value_t canon[16], args[16];
  bee__buf_t strings = {0}, key = {0}, where = {0};
  if ((rc = canonical_lookup(e, ix->fields, n, values, canon, &strings, err))) goto out;
  for (size_t k = 0; k < n; k++)
    if (canon[k].kind == BEE_VALUE_NIL) { /* NULLs are never unique: no row is identified */
      rc = fn(ud, 0, NULL);
      goto out;
    }
  /* A row's values laid out by field, for bee__unique_key. */
  bee_value_t *row = bee__calloc(e->field_count ? e->field_count : 1, sizeof *row);
  if (!row) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < n; k++) row[ix->fields[k]] = canon[k];
  int has_key = bee__unique_key(rt, e, ix, row, &key) == 0;
  bee__free(row);
  uint64_t id = 0;
  int known = 0; /* 1: id from cache, -1: cached as absent */
  char version[32] = "", version_key[sizeof rt->prefix + 4];
  snprintf(version_key, sizeof version_key, "%sv", rt->prefix);
  if (has_key && rt->redis >= 0) {
    redisReply *r;
    if ((rc = get_versioned(ctx, rt, key.data, key.len, version, sizeof version, &r, err))) goto out;
    if (r->type == REDIS_REPLY_STRING) {
      if (r->len == 1 && r->str[0] == 'N') known = -1;
      else if (bee__id_parse(r->str, r->len, &id) == 0) known = 1;
    }
    freeReplyObject(r);
  }
  if (!known) {
    size_t nargs;
    if (index_where(e, ix->fields, n, canon, &where, args, &nargs)) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
      goto out;
    }
    idlist_t l = {0};
    rc = query_ids(ctx, ei, where.data, args, nargs, " LIMIT 1", &l, err);
    if (rc) {
      bee__free(l.ids);
      goto out;
    }
    known = l.n ? 1 : -1;
    if (l.n) id = l.ids[0];
    bee__free(l.ids);
    if (has_key && rt->redis >= 0) {
      char num[BEE__ID_BUF];
      size_t nl = known == 1 ? bee__id_format(id, num) : (num[0] = 'N', 1);
      char *k = key.data, *v = num;
      size_t kl = key.len;
      fill_redis(ctx, rt->redis, version_key, version, &k, &kl, &v, &nl, 1);
    }
  }
  if (known == -1) {
    rc = fn(ud, 0, NULL);
    goto out;
  }
  rc = bee__load_by_ids(ctx, ei, &id, 1, fn, ud, err);
out:
  bee__buf_free(&strings);
  bee__buf_free(&key);
  bee__buf_free(&where);
  return rc;
}

int bee_context_get_by_reference(bee_context_t *ctx, const bee_entity_t *entity, const char *field, uint64_t id,
                                 bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  int f = bee_entity_field_index(e, field);
  if (f < 0 || e->fields[f].type != BEE_FIELD_REF)
    return bee__error(err, BEE_EINVAL, 0, "entity '%s' has no ref field '%s'", e->name, field ? field : "");
  bee_value_t *row = bee__calloc(e->field_count, sizeof *row);
  if (!row) return bee__error(err, BEE_ENOMEM, 0, "out of memory");
  row[f].kind = BEE_VALUE_INT;
  row[f].i = (int64_t)id;
  char num[BEE__ID_BUF];
  row[f].kind = BEE_VALUE_STRING;
  row[f].str = num;
  row[f].len = bee__id_format(id, num);
  bee__buf_t key = {0}, where = {0};
  size_t fi = (size_t)f;
  int cached = e->fields[f].cached && bee__list_key(&ctx->engine->rt[ei], e, 'f', e->fields[f].name, &fi, 1, row, &key) == 0;
  list_spec_t spec = {'f', e->fields[f].name, &fi, 1};
  bee__buf_printf(&where, "`%s` = ?", e->fields[f].name);
  idlist_t l = {0};
  rc = where.failed ? bee__error(err, BEE_ENOMEM, 0, "out of memory")
                    : list_ids(ctx, ei, cached ? &key : NULL, &spec, where.data, &row[f], 1, &l, err);
  bee__free(row);
  bee__buf_free(&key);
  bee__buf_free(&where);
  return deliver_list(ctx, ei, rc, &l, fn, ud, err);
}

int bee_context_get_by_index(bee_context_t *ctx, const bee_entity_t *entity, const char *index,
                             const bee_value_t *values, size_t n, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  const bee__index_t *ix;
  if ((rc = lookup_index(e, index, 0, n, &ix, err))) return rc;
  bee_value_t canon[16], args[16];
  bee__buf_t strings = {0}, key = {0}, where = {0};
  idlist_t l = {0};
  if ((rc = canonical_lookup(e, ix->fields, n, values, canon, &strings, err))) goto out;
  bee_value_t *row = bee__calloc(e->field_count, sizeof *row);
  if (!row) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < n; k++) row[ix->fields[k]] = canon[k];
  int cached = ix->cached && bee__list_key(&ctx->engine->rt[ei], e, 'i', ix->name, ix->fields, n, row, &key) == 0;
  bee__free(row);
  size_t nargs;
  if (index_where(e, ix->fields, n, canon, &where, args, &nargs)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  list_spec_t spec = {'i', ix->name, ix->fields, n};
  rc = list_ids(ctx, ei, cached ? &key : NULL, &spec, where.data, args, nargs, &l, err);
out:
  bee__buf_free(&strings);
  bee__buf_free(&key);
  bee__buf_free(&where);
  return deliver_list(ctx, ei, rc, &l, fn, ud, err);
}

int bee_context_get_all(bee_context_t *ctx, const bee_entity_t *entity, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__buf_t key = {0};
  int cached = e->cache_all && bee__list_key(&ctx->engine->rt[ei], e, 'a', "", NULL, 0, NULL, &key) == 0;
  idlist_t l = {0};
  list_spec_t spec = {'a', "", NULL, 0};
  rc = list_ids(ctx, ei, cached ? &key : NULL, &spec, "", NULL, 0, &l, err);
  bee__buf_free(&key);
  return deliver_list(ctx, ei, rc, &l, fn, ud, err);
}

int bee_context_search(bee_context_t *ctx, const bee_entity_t *entity, const char *where, const bee_value_t *args,
                       size_t nargs, size_t offset, size_t limit, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  char tail[64] = "";
  if (limit) snprintf(tail, sizeof tail, " LIMIT %zu, %zu", offset, limit);
  else if (offset) snprintf(tail, sizeof tail, " LIMIT %zu, 18446744073709551615", offset);
  idlist_t l = {0};
  rc = query_ids(ctx, ei, where, args, nargs, tail, &l, err);
  return deliver_list(ctx, ei, rc, &l, fn, ud, err);
}
