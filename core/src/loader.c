/*
 * loader.c: reading rows by id through the local cache, Redis and MySQL (README, Lua API, G8),
 * and what the other loaders (lists.c, unique.c) share.
 *
 * Every loader ends in bee__load_by_ids: local cache hits first, then one pipelined
 * Redis round trip for the misses, then one SQL query for what is still missing. A row
 * hash in Redis may lack columns (rowhash.h): MySQL gives them, and what Redis has wins,
 * since a flush_async's columns are in Redis before MySQL has them. What MySQL gives is
 * written back to Redis by a script that checks the entity's version read before asking
 * MySQL and only adds what is missing (HSETNX), and to the local cache with the epoch
 * taken before asking Redis: a concurrent flush always wins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "rcmd.h"
#include "rowhash.h"
#include "sql.h"

#define BEE__SQL_IDS 1000

/*
 * KEYS[1] the version, KEYS[2..] row hashes; ARGV[1] the version the reader read before
 * asking MySQL, ARGV[2] a fresh version to start with when there is none (then nothing
 * is filled: a reader that read "none" cannot tell a dropped version from a new one),
 * then per row: n and n field/value pairs to add where missing (HSETNX: what a flush
 * wrote is never older), or n = 0 for "no such row", written only where nothing is.
 */
static const char *const fill_rows_script =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then redis.call('SET', KEYS[1], ARGV[2], 'NX') return 0 end "
    "if v ~= ARGV[1] then return 0 end "
    "local a = 3 "
    "for i = 2, #KEYS do "
    "local n = tonumber(ARGV[a]) a = a + 1 "
    "if n == 0 then "
    "if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('HSET', KEYS[i], '!', 'N') end "
    "else for j = a, a + 2 * n - 1, 2 do redis.call('HSETNX', KEYS[i], ARGV[j], ARGV[j + 1]) end end "
    "a = a + 2 * n end "
    "return 1";

/* Like the script above for one string key (lists): SET NX when the version is unchanged. */
static const char *const fill_string_script =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then redis.call('SET', KEYS[1], ARGV[3], 'NX') return 0 end "
    "if v ~= ARGV[1] then return 0 end "
    "redis.call('SET', KEYS[2], ARGV[2], 'NX') return 1";

/* A fresh version: a random number INCR can count up from. */
static void fresh_version(char out[24]) {
  snprintf(out, 24, "%llu", (unsigned long long)(bee__flush_token() >> 2));
}

void bee__reply_text(const bee__reply_t *r, char *out, size_t size) {
  if (r && r->type == BEE__REPLY_STRING) snprintf(out, size, "%.*s", (int)r->len, r->str);
  else if (r && r->type == BEE__REPLY_INTEGER) snprintf(out, size, "%lld", r->integer);
  else out[0] = '\0';
}

void bee__fill_string(bee_context_t *ctx, const bee__entity_rt_t *rt, const char *version, const char *key,
                      size_t key_len, const char *val, size_t val_len) {
  bee__rconn_t *c;
  bee_error_t ignored;
  if (rt->redis < 0 || bee__ctx_redis(ctx, (size_t)rt->redis, &c, &ignored)) return;
  char vkey[BEE__KEY_ROW_MAX], fresh[24];
  bee__key_version(rt->prefix, vkey, sizeof vkey);
  fresh_version(fresh);
  bee__reply_t *r = bee__redis_command(c, "EVAL %s 2 %s %b %s %b %s", fill_string_script, vkey, key, key_len, version, val,
                               val_len, fresh);
  if (r) bee__reply_free(r);
  else bee__ctx_redis_broken(ctx, (size_t)rt->redis);
}

int bee__entity_index(bee_context_t *ctx, const bee_entity_t *entity, size_t *out, bee_error_t *err) {
  if (!ctx || !entity) return bee__error(err, BEE_EINVAL, 0, "context or entity is NULL");
  size_t i = (size_t)(entity - ctx->engine->entities);
  if (i >= ctx->engine->entity_count) return bee__error(err, BEE_EINVAL, 0, "entity of another engine");
  *out = i;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Rows by id                                                               */

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

/* Encodes values (id) and keeps them as the answer for a slot. */
static int keep_values(load_t *l, bee__buf_t *rows, slot_t *slot, uint64_t id, const bee_value_t *values) {
  slot->off = rows->len;
  if (bee__row_encode(l->e, id, values, rows)) return rows->failed ? BEE_ENOMEM : BEE_EINVAL;
  slot->len = rows->len - slot->off;
  return 0;
}

void bee__read_row_hash(const bee__entity_t *e, const bee__reply_t *r, bee_value_t *values, unsigned char *present,
                        bee__rowhash_info_t *info) {
  bee__rowhash_begin(info, present, e->field_count);
  if (r->type != BEE__REPLY_ARRAY) return;
  for (size_t k = 0; k + 1 < r->elements; k += 2) {
    const bee__reply_t *f = r->element[k], *v = r->element[k + 1];
    if (f->type == BEE__REPLY_STRING && v->type == BEE__REPLY_STRING)
      bee__rowhash_pair(e, f->str, f->len, v->str, v->len, values, present, info);
  }
}

/* Appends a row's fill arguments (n, then the mark and every column) to cmd. */
static void fill_args(bee__rcmd_t *cmd, const bee__entity_t *e, const bee_value_t *values) {
  char num[24];
  snprintf(num, sizeof num, "%zu", e->field_count + 1);
  bee__rcmd_str(cmd, num);
  bee__rcmd_str(cmd, BEE__ROWHASH_MARK);
  bee__rcmd_str(cmd, "R");
  for (size_t f = 0; f < e->field_count; f++) {
    bee__rcmd_str(cmd, e->fields[f].name);
    bee__rcmd_open(cmd);
    bee__rowhash_text(&values[f], &cmd->text);
    bee__rcmd_close(cmd);
  }
}

/* Sends a fill script built in cmd and reads its reply (failures only cost a later miss). */
static void fill_send(bee_context_t *ctx, int pool, bee__rcmd_t *cmd) {
  bee__rconn_t *c;
  bee_error_t ignored;
  size_t count = 0;
  if (pool < 0 || bee__ctx_redis(ctx, (size_t)pool, &c, &ignored)) return;
  bee__rcmd_send(c, cmd, &count);
  if (!count) return;
  bee__reply_t *reply = NULL;
  if (bee__redis_get_reply(c, &reply) != 0) bee__ctx_redis_broken(ctx, (size_t)pool);
  else bee__reply_free(reply);
}

/*
 * Asks MySQL for the indexes still missing, merges what partial Redis rows hold (they
 * win), keeps rows and not-found markers, and fills the caches.
 */
static int load_from_mysql(load_t *l, const uint64_t *ids, size_t n, slot_t *slots, bee__reply_t **partial, int local,
                           uint64_t epoch, int redis_ok, const char *version, bee_error_t *err) {
  bee_context_t *ctx = l->ctx;
  bee__buf_t *rows = &ctx->scratch;
  const bee__entity_t *e = l->e;
  size_t nf = e->field_count;
  const bee__mysql_pool_t *pool = &ctx->engine->mysql[l->rt->mysql];
  MYSQL *conn;
  int rc = bee__ctx_mysql(ctx, l->rt->mysql, &conn, err);
  if (rc) return rc;
  bee__buf_t sql = {0}, miss = {0};
  bee__rcmd_t fill = {0}, keys = {0}, vals = {0}; /* the fill script, its row keys, its arguments */
  bee_value_t *over = bee__calloc(nf ? nf : 1, sizeof *over);
  unsigned char *present = bee__calloc(nf ? nf : 1, 1), *got = bee__calloc(n, 1);
  bee__row_encode_missing(e, &miss);
  if (!over || !present || !got || miss.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory loading '%s'", e->name);
  char vkey[BEE__KEY_ROW_MAX], fresh[24];
  bee__key_version(l->rt->prefix, vkey, sizeof vkey);
  fresh_version(fresh);
  size_t i = 0;
  while (i < n && !rc) {
    size_t chunk_start = i, count = 0;
    sql.len = 0;
    bee__buf_puts(&sql, "SELECT `id`");
    for (size_t f = 0; f < nf; f++) bee__buf_printf(&sql, ",`%s`", e->fields[f].name);
    bee__buf_printf(&sql, " FROM `%s` WHERE `id` IN (", e->table);
    for (; i < n && count < BEE__SQL_IDS; i++) {
      if (slots[i].len) continue;
      char num[BEE__ID_BUF];
      if (count++) bee__buf_puts(&sql, ",");
      bee__buf_append(&sql, num, bee__id_format(ids[i], num));
    }
    if (!count) break;
    bee__buf_puts(&sql, ")");
    if (sql.failed) {
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
    MYSQL_ROW row;
    /* Rows found: merged with the partial Redis rows, kept, cached. */
    bee__rcmd_reset(&keys);
    bee__rcmd_reset(&vals);
    while ((row = mysql_fetch_row(res)) != NULL && !rc) {
      unsigned long *lens = mysql_fetch_lengths(res);
      uint64_t id;
      int bad = !row[0] || bee__id_parse(row[0], lens[0], &id);
      for (size_t f = 0; f < nf && !bad; f++)
        bad = bee__cell_value(&e->fields[f], row[f + 1], row[f + 1] ? lens[f + 1] : 0, &l->values[f]) != 0;
      if (bad) {
        rc = bee__error(err, BEE_EMYSQL, 0, "table '%s' holds a value that does not fit its definition (id %s)",
                        e->table, row[0] ? row[0] : "NULL");
        break;
      }
      int filled = 0; /* an id asked twice is filled once */
      for (size_t j = chunk_start; j < i; j++) {
        if (slots[j].len || got[j] || ids[j] != id) continue;
        got[j] = 1;
        if (partial && partial[j]) { /* what Redis has is newer than MySQL */
          bee__rowhash_info_t info;
          bee__read_row_hash(e, partial[j], over, present, &info);
          for (size_t f = 0; f < nf; f++)
            if (present[f]) l->values[f] = over[f];
        }
        if ((rc = keep_values(l, rows, &slots[j], id, l->values))) break;
        if (local) bee__lru_put(l->rt->lru, id, rows->data + slots[j].off, slots[j].len, epoch);
        if (redis_ok && !filled) {
          char key[BEE__KEY_ROW_MAX];
          bee__rcmd_arg(&keys, key, bee__key_row(l->rt->prefix, id, key, sizeof key));
          fill_args(&vals, e, l->values);
          filled = 1;
        }
      }
    }
    mysql_free_result(res);
    /* Rows MySQL does not have: a row a flush_async wrote (marked existing) stands with
       what Redis has; otherwise not found. */
    for (size_t j = chunk_start; j < i && !rc; j++) {
      if (slots[j].len || got[j]) continue;
      bee__rowhash_info_t info = {0};
      if (partial && partial[j]) bee__read_row_hash(e, partial[j], l->values, present, &info);
      if (info.mark == 'R') {
        for (size_t f = 0; f < nf; f++)
          if (!present[f]) l->values[f] = (bee_value_t){.kind = BEE_VALUE_NIL};
        rc = keep_values(l, rows, &slots[j], ids[j], l->values);
        continue;
      }
      if ((rc = keep(rows, &slots[j], miss.data, miss.len))) break;
      if (partial && partial[j]) continue; /* columns without a row: leave them to the writer */
      if (local) bee__lru_put(l->rt->lru, ids[j], miss.data, miss.len, epoch);
      if (redis_ok) {
        char key[BEE__KEY_ROW_MAX];
        bee__rcmd_arg(&keys, key, bee__key_row(l->rt->prefix, ids[j], key, sizeof key));
        bee__rcmd_str(&vals, "0");
      }
    }
    if (!rc && redis_ok && keys.n) {
      char num[24];
      snprintf(num, sizeof num, "%zu", keys.n + 1);
      bee__rcmd_begin(&fill, "EVAL");
      bee__rcmd_str(&fill, fill_rows_script);
      bee__rcmd_str(&fill, num);
      bee__rcmd_str(&fill, vkey);
      for (size_t k = 0; k < keys.n; k++) bee__rcmd_arg(&fill, keys.text.data + keys.spans[k][0], keys.spans[k][1]);
      bee__rcmd_str(&fill, version);
      bee__rcmd_str(&fill, fresh);
      for (size_t k = 0; k < vals.n; k++) bee__rcmd_arg(&fill, vals.text.data + vals.spans[k][0], vals.spans[k][1]);
      fill_send(ctx, l->rt->redis, &fill);
    }
  }
  if (!rc && rows->failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory loading '%s'", e->name);
  bee__buf_free(&sql);
  bee__buf_free(&miss);
  bee__rcmd_free(&fill);
  bee__rcmd_free(&keys);
  bee__rcmd_free(&vals);
  bee__free(over);
  bee__free(present);
  bee__free(got);
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
  unsigned char present_small[32];
  slot_t slots_small[64];
  bee__reply_t *partial_small[64];
  l.values = nf <= 32 ? values_small : bee__calloc(nf, sizeof *l.values);
  unsigned char *present = nf <= 32 ? present_small : bee__calloc(nf, 1);
  slot_t *slots = n <= 64 ? slots_small : bee__calloc(n, sizeof *slots);
  bee__reply_t **partial = NULL;
  if (n <= 64) memset(slots_small, 0, n * sizeof *slots);
  bee__buf_t *rows = &ctx->scratch;
  rows->len = 0;
  int rc = 0;
  if (!l.values || !slots || !present) {
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
      int hit = bee__lru_get(l.rt->lru, ids[i], rows);
      if (hit == 1 && valid_for(&l, ids[i], rows->data + off, rows->len - off)) {
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
  int redis_ok = 0;
  if (missing && l.rt->redis >= 0) {
    bee__rconn_t *c;
    if ((rc = bee__ctx_redis(ctx, (size_t)l.rt->redis, &c, err))) goto out;
    char key[BEE__KEY_ROW_MAX];
    bee__key_version(l.rt->prefix, key, sizeof key);
    bee__redis_append(c, "GET %s", key);
    for (size_t i = 0; i < n; i++) {
      if (slots[i].len) continue;
      size_t kl = bee__key_row(l.rt->prefix, ids[i], key, sizeof key);
      bee__redis_append(c, "HGETALL %b", key, kl);
    }
    redis_ok = 1;
    size_t want = missing;
    for (size_t i = 0, k = 0; k <= want; k++) {
      bee__reply_t *reply = NULL;
      if (bee__redis_get_reply(c, &reply) != 0) {
        rc = bee__redis_error(err, &engine->redis[l.rt->redis], c, NULL, "reading the cache failed");
        bee__ctx_redis_broken(ctx, (size_t)l.rt->redis);
        goto out;
      }
      bee__reply_t *r = reply;
      if (k == 0) {
        bee__reply_text(r, version, sizeof version);
        bee__reply_free(r);
        continue;
      }
      while (slots[i].len) i++;
      bee__rowhash_info_t info;
      bee__read_row_hash(l.e, r, l.values, present, &info);
      if (!rc && info.mark == 'N') {
        bee__buf_t miss = {0};
        bee__row_encode_missing(l.e, &miss);
        rc = miss.failed ? BEE_ENOMEM : keep(rows, &slots[i], miss.data, miss.len);
        bee__buf_free(&miss);
      } else if (!rc && bee__rowhash_complete(l.e, &info)) {
        rc = keep_values(&l, rows, &slots[i], ids[i], l.values);
      } else if (!rc && r->type == BEE__REPLY_ARRAY && r->elements) { /* kept for the merge with MySQL */
        if (!partial) {
          partial = n <= 64 ? partial_small : bee__calloc(n, sizeof *partial);
          if (partial == partial_small) memset(partial_small, 0, n * sizeof *partial);
        }
        if (partial) {
          partial[i] = r;
          r = NULL;
        }
      }
      if (slots[i].len) {
        missing--;
        if (!rc && local) bee__lru_put(l.rt->lru, ids[i], rows->data + slots[i].off, slots[i].len, epoch);
      }
      if (r) bee__reply_free(r);
      i++;
    }
    if (rc) {
      rc = bee__error(err, rc == BEE_ENOMEM ? BEE_ENOMEM : BEE_EINVAL, 0, "cannot keep a cached row of '%s'",
                      l.e->name);
      goto out;
    }
  }

  /* 3. MySQL for the rest */
  if (missing && (rc = load_from_mysql(&l, ids, n, slots, partial, local, epoch, redis_ok, version, err))) goto out;

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
  if (partial) {
    for (size_t i = 0; i < n; i++)
      if (partial[i]) bee__reply_free(partial[i]);
    if (partial != partial_small) bee__free(partial);
  }
  if (rows->cap > 65536) bee__buf_free(rows); /* do not keep a huge result's buffer */
  if (l.values != values_small) bee__free(l.values);
  if (present != present_small) bee__free(present);
  if (slots != slots_small) bee__free(slots);
  return rc;
}

int bee_context_get_by_ids(bee_context_t *ctx, const bee_entity_t *entity, const uint64_t *ids, size_t n,
                           bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = bee__entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++)
    if (ids[i] == 0) return bee__error(err, BEE_EINVAL, 0, "id 0 is not a valid id");
  return bee__load_by_ids(ctx, ei, ids, n, fn, ud, err);
}

/* ------------------------------------------------------------------------ */
/* What the other loaders share                                             */

int bee__idlist_push(bee__idlist_t *l, uint64_t id) {
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

int bee__query_ids(bee_context_t *ctx, size_t ei, const char *where, const bee_value_t *args, size_t nargs,
                   const char *tail, bee__idlist_t *out, bee_error_t *err) {
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
    if (bee__idlist_push(out, id)) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
      break;
    }
  }
  mysql_free_result(res);
  return rc;
}

int bee__select_ids(bee_context_t *ctx, size_t entity, const char *where, const bee_value_t *args, size_t nargs,
                    uint64_t **ids, size_t *n, bee_error_t *err) {
  bee__idlist_t l = {0};
  int rc = bee__query_ids(ctx, entity, where, args, nargs, NULL, &l, err);
  if (rc) {
    bee__free(l.ids);
    return rc;
  }
  *ids = l.ids;
  *n = l.n;
  return 0;
}

int bee__index_where(const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *values,
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

int bee__canonical_lookup(const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *in,
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

int bee__lookup_index(const bee__entity_t *e, const char *index, int unique, size_t n, const bee__index_t **out,
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

int bee__deliver_list(bee_context_t *ctx, size_t ei, int rc, bee__idlist_t *l, bee_row_fn fn, void *ud,
                      bee_error_t *err) {
  skip_t s = {fn, ud, 0};
  if (!rc) rc = bee__load_by_ids(ctx, ei, l->ids, l->n, skip_missing, &s, err);
  bee__free(l->ids);
  return rc;
}

