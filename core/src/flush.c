/*
 * flush.c: tracked changes and the synchronous flush (DESIGN G6, G7, G8).
 *
 * A flush runs in three steps. (1) In every MySQL pool involved: BEGIN, lock and read
 * the rows to be updated or deleted (their old values decide which cache keys to drop),
 * run the statements. (2) Commit every pool. (3) Update caches from the committed
 * result: Redis rows and unique keys set, cached id lists dropped, the entity's version
 * bumped (readers that asked MySQL before the commit cannot write back), local caches
 * updated here and invalidated in other processes. A failure in (1) rolls every pool
 * back and leaves caches and tracked changes untouched.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "orm.h"
#include "sql.h"

#define BEE__INSERT_ROWS 1000
#define BEE__SQL_MAX (4u << 20)

/* ------------------------------------------------------------------------ */
/* Tracking                                                                 */

static void op_clear(bee__op_t *op) {
  bee__free(op->values);
  bee__free(op->changed);
  bee__free(op->blob);
  memset(op, 0, sizeof *op);
}

void bee_context_clear_flush(bee_context_t *ctx) {
  if (!ctx) return;
  for (size_t i = 0; i < ctx->op_count; i++) op_clear(&ctx->ops[i]);
  ctx->op_count = 0;
}

size_t bee_context_pending(const bee_context_t *ctx) { return ctx ? ctx->op_count : 0; }

/*
 * Validates the values selected by mask (NULL: all) and appends an op owning canonical
 * copies of them. Nothing is appended on failure.
 */
static int track(bee_context_t *ctx, int kind, const bee_entity_t *entity, uint64_t id, const bee_value_t *values,
                 const unsigned char *mask, bee_error_t *err) {
  if (!ctx || !entity) return bee__error(err, BEE_EINVAL, 0, "context or entity is NULL");
  size_t ei = (size_t)(entity - ctx->engine->entities);
  if (ei >= ctx->engine->entity_count) return bee__error(err, BEE_EINVAL, 0, "entity of another engine");
  if (id == 0) return bee__error(err, BEE_EINVAL, 0, "id 0 is not a valid id");
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__op_t op = {0};
  op.kind = kind;
  op.entity = ei;
  op.id = id;
  size_t nf = e->field_count;
  if (kind != BEE__OP_DELETE) {
    if (!values) return bee__error(err, BEE_EINVAL, 0, "values is NULL");
    op.values = bee__calloc(nf ? nf : 1, sizeof *op.values);
    op.changed = bee__calloc(nf ? nf : 1, 1);
    size_t scratch_size = 0;
    for (size_t i = 0; i < nf; i++)
      if ((!mask || mask[i]) && values[i].kind == BEE_VALUE_STRING) scratch_size += BEE__VALUE_BUF(values[i].len);
    char *scratch = bee__malloc(scratch_size + BEE__VALUE_BUF(0) * (nf + 1));
    if (!op.values || !op.changed || !scratch) {
      bee__free(scratch);
      op_clear(&op);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
    }
    /* Check everything first, into scratch; then copy strings into one blob. */
    size_t at = 0, blob_size = 0;
    for (size_t i = 0; i < nf; i++) {
      if (mask && !mask[i]) continue;
      op.changed[i] = 1;
      size_t room = BEE__VALUE_BUF(values[i].kind == BEE_VALUE_STRING ? values[i].len : 0);
      int rc = bee__value_check(e, &e->fields[i], &values[i], &op.values[i], scratch + at, room, err);
      if (rc) {
        bee__free(scratch);
        op_clear(&op);
        return rc;
      }
      at += room;
      if (op.values[i].kind == BEE_VALUE_STRING) blob_size += op.values[i].len;
    }
    op.blob = bee__malloc(blob_size);
    if (!op.blob) {
      bee__free(scratch);
      op_clear(&op);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
    }
    size_t b = 0;
    for (size_t i = 0; i < nf; i++) {
      if (!op.changed[i] || op.values[i].kind != BEE_VALUE_STRING) continue;
      if (op.values[i].len) memcpy(op.blob + b, op.values[i].str, op.values[i].len);
      op.values[i].str = op.blob + b;
      b += op.values[i].len;
    }
    bee__free(scratch);
  }
  if (ctx->op_count == ctx->op_cap) {
    size_t cap = ctx->op_cap ? ctx->op_cap * 2 : 16;
    bee__op_t *grown = bee__realloc(ctx->ops, cap * sizeof *grown);
    if (!grown) {
      op_clear(&op);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
    }
    ctx->ops = grown;
    ctx->op_cap = cap;
  }
  ctx->ops[ctx->op_count++] = op;
  return 0;
}

int bee_context_insert(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, const bee_value_t *values,
                       bee_error_t *err) {
  return track(ctx, BEE__OP_INSERT, entity, id, values, NULL, err);
}

int bee_context_update(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, const bee_value_t *values,
                       const unsigned char *changed, bee_error_t *err) {
  return track(ctx, BEE__OP_UPDATE, entity, id, values, changed, err);
}

int bee_context_delete(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, bee_error_t *err) {
  return track(ctx, BEE__OP_DELETE, entity, id, NULL, NULL, err);
}

/* ------------------------------------------------------------------------ */
/* Row states: each (entity, id) a flush touches, before and after          */

typedef struct {
  size_t entity;
  uint64_t id;
  int had_before, has_after;
  bee__buf_t before, after; /* encoded rows */
} state_t;

typedef struct {
  state_t *items;
  size_t count;
} states_t;

static int state_cmp(const void *a, const void *b) {
  const state_t *x = a, *y = b;
  if (x->entity != y->entity) return x->entity < y->entity ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static state_t *state_find(states_t *s, size_t entity, uint64_t id) {
  state_t key = {.entity = entity, .id = id};
  return bsearch(&key, s->items, s->count, sizeof key, state_cmp);
}

static void states_free(states_t *s) {
  for (size_t i = 0; i < s->count; i++) {
    bee__buf_free(&s->items[i].before);
    bee__buf_free(&s->items[i].after);
  }
  bee__free(s->items);
  s->items = NULL;
  s->count = 0;
}

static int states_build(bee_context_t *ctx, states_t *s) {
  s->items = bee__calloc(ctx->op_count, sizeof *s->items);
  if (!s->items) return BEE_ENOMEM;
  for (size_t i = 0; i < ctx->op_count; i++) {
    s->items[i].entity = ctx->ops[i].entity;
    s->items[i].id = ctx->ops[i].id;
  }
  qsort(s->items, ctx->op_count, sizeof *s->items, state_cmp);
  size_t w = 0;
  for (size_t i = 0; i < ctx->op_count; i++)
    if (!w || state_cmp(&s->items[w - 1], &s->items[i])) s->items[w++] = s->items[i];
  s->count = w;
  return 0;
}

/* Column list "`id`,`a`,`b`" of an entity. */
static void column_list(const bee__entity_t *e, bee__buf_t *b) {
  bee__buf_puts(b, "`id`");
  for (size_t i = 0; i < e->field_count; i++) bee__buf_printf(b, ",`%s`", e->fields[i].name);
}

/* Encodes a MySQL text row (id first) of entity e into out. */
static int encode_mysql_row(const bee__entity_t *e, MYSQL_ROW row, unsigned long *lens, bee_value_t *values,
                            bee__buf_t *out, uint64_t *id) {
  if (!row[0] || bee__id_parse(row[0], lens[0], id)) return BEE_EINVAL;
  for (size_t i = 0; i < e->field_count; i++)
    if (bee__cell_value(&e->fields[i], row[i + 1], row[i + 1] ? lens[i + 1] : 0, &values[i])) return BEE_EINVAL;
  out->len = 0;
  return bee__row_encode(e, *id, values, out);
}

/* Reads (and locks) the current rows of every state of pool `pool` that an update or delete touches. */
static int read_before(bee_context_t *ctx, size_t pool, MYSQL *conn, states_t *s, bee_value_t *values,
                       bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  bee__buf_t sql = {0};
  int rc = 0;
  for (size_t ei = 0; ei < engine->entity_count && !rc; ei++) {
    if (engine->rt[ei].mysql != pool) continue;
    const bee__entity_t *e = &engine->entities[ei];
    size_t n = 0;
    sql.len = 0;
    bee__buf_puts(&sql, "SELECT ");
    column_list(e, &sql);
    bee__buf_printf(&sql, " FROM `%s` WHERE `id` IN (", e->table);
    for (size_t i = 0; i < ctx->op_count; i++) {
      if (ctx->ops[i].entity != ei || ctx->ops[i].kind == BEE__OP_INSERT) continue;
      char num[BEE__ID_BUF];
      size_t l = bee__id_format(ctx->ops[i].id, num);
      if (n++) bee__buf_puts(&sql, ",");
      bee__buf_append(&sql, num, l);
    }
    if (!n) continue;
    bee__buf_puts(&sql, ") FOR UPDATE");
    if (sql.failed) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory building a query");
      break;
    }
    if (mysql_real_query(conn, sql.data, (unsigned long)sql.len) != 0) {
      rc = bee__mysql_error(err, conn, &engine->mysql[pool], "flush failed on");
      break;
    }
    MYSQL_RES *res = mysql_store_result(conn);
    if (!res) {
      rc = bee__mysql_error(err, conn, &engine->mysql[pool], "flush failed on");
      break;
    }
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
      uint64_t id;
      bee__buf_t tmp = {0};
      if (encode_mysql_row(e, row, mysql_fetch_lengths(res), values, &tmp, &id) == 0) {
        state_t *st = state_find(s, ei, id);
        if (st) {
          st->had_before = 1;
          bee__buf_append(&st->before, tmp.data, tmp.len);
        }
      }
      bee__buf_free(&tmp);
    }
    mysql_free_result(res);
  }
  bee__buf_free(&sql);
  return rc;
}

/* Runs one statement built in sql; returns 0 or a MySQL error naming the pool. */
static int exec(bee_context_t *ctx, size_t pool, MYSQL *conn, bee__buf_t *sql, bee_error_t *err) {
  if (sql->failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");
  if (mysql_real_query(conn, sql->data, (unsigned long)sql->len) != 0)
    return bee__mysql_error(err, conn, &ctx->engine->mysql[pool], "flush failed on");
  return 0;
}

/* Runs the ops of pool `pool` in order, batching consecutive inserts and deletes per table. */
static int run_ops(bee_context_t *ctx, size_t pool, MYSQL *conn, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  bee__buf_t sql = {0};
  int rc = 0;
  for (size_t i = 0; i < ctx->op_count && !rc;) {
    const bee__op_t *op = &ctx->ops[i];
    if (engine->rt[op->entity].mysql != pool) {
      i++;
      continue;
    }
    const bee__entity_t *e = &engine->entities[op->entity];
    sql.len = 0;
    size_t j = i;
    if (op->kind == BEE__OP_INSERT) {
      bee__buf_printf(&sql, "INSERT INTO `%s` (", e->table);
      column_list(e, &sql);
      bee__buf_puts(&sql, ") VALUES ");
      for (; j < ctx->op_count && j - i < BEE__INSERT_ROWS && sql.len < BEE__SQL_MAX; j++) {
        const bee__op_t *o = &ctx->ops[j];
        if (o->kind != BEE__OP_INSERT || o->entity != op->entity) break;
        char num[BEE__ID_BUF];
        bee__buf_puts(&sql, j > i ? ",(" : "(");
        bee__buf_append(&sql, num, bee__id_format(o->id, num));
        for (size_t f = 0; f < e->field_count; f++) {
          bee__buf_puts(&sql, ",");
          bee__sql_literal(conn, &o->values[f], &sql);
        }
        bee__buf_puts(&sql, ")");
      }
    } else if (op->kind == BEE__OP_DELETE) {
      bee__buf_printf(&sql, "DELETE FROM `%s` WHERE `id` IN (", e->table);
      for (; j < ctx->op_count && j - i < BEE__INSERT_ROWS; j++) {
        const bee__op_t *o = &ctx->ops[j];
        if (o->kind != BEE__OP_DELETE || o->entity != op->entity) break;
        char num[BEE__ID_BUF];
        if (j > i) bee__buf_puts(&sql, ",");
        bee__buf_append(&sql, num, bee__id_format(o->id, num));
      }
      bee__buf_puts(&sql, ")");
    } else {
      j = i + 1;
      int any = 0;
      bee__buf_printf(&sql, "UPDATE `%s` SET ", e->table);
      for (size_t f = 0; f < e->field_count; f++) {
        if (!op->changed[f]) continue;
        bee__buf_printf(&sql, "%s`%s`=", any++ ? "," : "", e->fields[f].name);
        bee__sql_literal(conn, &op->values[f], &sql);
      }
      char num[BEE__ID_BUF];
      bee__buf_puts(&sql, " WHERE `id`=");
      bee__buf_append(&sql, num, bee__id_format(op->id, num));
      if (!any) {
        i = j;
        continue;
      }
    }
    rc = exec(ctx, pool, conn, &sql, err);
    i = j;
  }
  bee__buf_free(&sql);
  return rc;
}

/* Applies the ops in order to the before-states, giving each state's after row. */
static int compute_after(bee_context_t *ctx, states_t *s, bee_value_t *values) {
  bee_engine_t *engine = ctx->engine;
  for (size_t i = 0; i < s->count; i++) {
    state_t *st = &s->items[i];
    st->has_after = st->had_before;
    if (st->had_before) bee__buf_append(&st->after, st->before.data, st->before.len);
  }
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    const bee__entity_t *e = &engine->entities[op->entity];
    state_t *st = state_find(s, op->entity, op->id);
    if (op->kind == BEE__OP_DELETE) {
      st->has_after = 0;
      continue;
    }
    if (op->kind == BEE__OP_UPDATE) {
      if (!st->has_after) continue; /* updating a row that is not there changes nothing */
      uint64_t id;
      bee__buf_t cur = {0};
      bee__buf_append(&cur, st->after.data, st->after.len);
      if (cur.failed || bee__row_decode(e, cur.data, cur.len, &id, values)) {
        bee__buf_free(&cur);
        return BEE_ENOMEM;
      }
      for (size_t f = 0; f < e->field_count; f++)
        if (op->changed[f]) values[f] = op->values[f];
      st->after.len = 0;
      int rc = bee__row_encode(e, op->id, values, &st->after);
      bee__buf_free(&cur);
      if (rc) return rc;
    } else {
      st->after.len = 0;
      int rc = bee__row_encode(e, op->id, op->values, &st->after);
      if (rc) return rc;
      st->has_after = 1;
    }
  }
  for (size_t i = 0; i < s->count; i++)
    if (s->items[i].before.failed || s->items[i].after.failed) return BEE_ENOMEM;
  return 0;
}

/* Text of a value inside a cache key. */
static void key_value(const bee_value_t *v, bee__buf_t *b) {
  switch (v->kind) {
    case BEE_VALUE_INT: bee__buf_printf(b, "%lld", (long long)v->i); break;
    case BEE_VALUE_FLOAT: bee__buf_printf(b, "%.17g", v->f); break;
    case BEE_VALUE_BOOL: bee__buf_puts(b, v->i ? "1" : "0"); break;
    case BEE_VALUE_STRING: bee__buf_append(b, v->str, v->len); break;
    default: break;
  }
}

int bee__unique_key(const bee__entity_rt_t *rt, const bee__entity_t *e, const bee__index_t *ix,
                    const bee_value_t *values, bee__buf_t *out) {
  out->len = 0;
  bee__buf_printf(out, "%su:%s:", rt->prefix, ix->name);
  for (size_t k = 0; k < ix->field_count; k++) {
    const bee_value_t *v = &values[ix->fields[k]];
    if (v->kind == BEE_VALUE_NIL) return 1; /* NULLs are never unique: not cached */
    if (k) bee__buf_append(out, "\x1f", 1);
    key_value(v, out);
  }
  (void)e;
  return out->failed ? BEE_ENOMEM : 0;
}

int bee__list_key(const bee__entity_rt_t *rt, const bee__entity_t *e, char kind, const char *name,
                  const size_t *fields, size_t n, const bee_value_t *values, bee__buf_t *out) {
  out->len = 0;
  bee__buf_printf(out, "%sl:%c:%s:", rt->prefix, kind, name);
  for (size_t k = 0; k < n; k++) {
    if (k) bee__buf_append(out, "\x1f", 1);
    const bee_value_t *v = &values[fields[k]];
    if (v->kind == BEE_VALUE_NIL) bee__buf_append(out, "\x1e", 1); /* NULL differs from "" */
    else key_value(v, out);
  }
  (void)e;
  return out->failed ? BEE_ENOMEM : 0;
}

/*
 * A cached id list the row leaves or joins: dropped (the next reader rebuilds it), and
 * with a token (flush_async) the row marked pending in it, so that rebuild, which reads
 * MySQL before the consumer applied the change, takes the row's state from the cache.
 */
static void list_commands(redisContext *c, const bee__entity_rt_t *rt, bee__buf_t *key, const char *num, size_t nl,
                          const char *token, size_t *count) {
  redisAppendCommand(c, "DEL %b", key->data, key->len);
  (*count)++;
  if (!token) return;
  bee__pending_key(rt, key);
  redisAppendCommand(c, "HSET %b %b %s", key->data, key->len, num, nl, token);
  (*count)++;
}

/* The hash of ids with queued changes to a cached list: the list key with "l:" as "p:". */
void bee__pending_key(const bee__entity_rt_t *rt, bee__buf_t *list_key) {
  size_t at = strlen(rt->prefix);
  if (list_key->len > at && list_key->data[at] == 'l') list_key->data[at] = 'p';
}

/*
 * Appends the cache commands for one row version (before: drop, after: set). token
 * (flush_async only, else NULL) marks the row as pending in each list it leaves or joins.
 */
static void cache_commands(redisContext *c, const bee__entity_rt_t *rt, const bee__entity_t *e, const state_t *st,
                           int after, bee_value_t *values, const char *token, size_t *count) {
  const bee__buf_t *row = after ? &st->after : &st->before;
  uint64_t id;
  if (bee__row_decode(e, row->data, row->len, &id, values)) return;
  bee__buf_t key = {0};
  char num[BEE__ID_BUF];
  size_t nl = bee__id_format(st->id, num);
  for (size_t i = 0; i < e->index_count; i++) {
    const bee__index_t *ix = &e->indexes[i];
    if (ix->unique) {
      if (bee__unique_key(rt, e, ix, values, &key) == 0) {
        /* The old value's key says "not found" rather than nothing: with flush_async,
           MySQL still has the old value and a reader must not fill it back from there. */
        if (after) redisAppendCommand(c, "SET %b %b", key.data, key.len, num, nl);
        else redisAppendCommand(c, "SET %b N", key.data, key.len);
        (*count)++;
      }
    } else if (ix->cached) {
      if (bee__list_key(rt, e, 'i', ix->name, ix->fields, ix->field_count, values, &key) == 0)
        list_commands(c, rt, &key, num, nl, token, count);
    }
  }
  for (size_t f = 0; f < e->field_count; f++) {
    if (e->fields[f].type != BEE_FIELD_REF || !e->fields[f].cached) continue;
    if (bee__list_key(rt, e, 'f', e->fields[f].name, &f, 1, values, &key) == 0)
      list_commands(c, rt, &key, num, nl, token, count);
  }
  bee__buf_free(&key);
}

/* 1 when a flush of e may drop cached id lists (cache_all, cached indexes or references). */
static int drops_lists(const bee__entity_t *e) {
  if (e->cache_all) return 1;
  for (size_t i = 0; i < e->index_count; i++)
    if (!e->indexes[i].unique && e->indexes[i].cached) return 1;
  for (size_t f = 0; f < e->field_count; f++)
    if (e->fields[f].type == BEE_FIELD_REF && e->fields[f].cached) return 1;
  return 0;
}

/* A stream entry to add in the same MULTI/EXEC as the cache writes (flush_async). */
typedef struct {
  char key[128];
  bee__buf_t payload;
  bee__batch_t w;
  size_t pool, shard;
} qentry_t;

/*
 * Writes the states of entities cached in Redis pool rp, and appends the stream
 * entries q, as one MULTI/EXEC: all of it or nothing (G1).
 */
static int update_redis(bee_context_t *ctx, size_t rp, states_t *s, bee_value_t *values, const qentry_t *q,
                        size_t nq, const char *token, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  redisContext *c;
  int rc = bee__ctx_redis(ctx, rp, &c, err);
  if (rc) return rc;
  size_t count = 0;
  redisAppendCommand(c, "MULTI");
  count++;
  for (size_t i = 0; i < nq; i++) {
    redisAppendCommand(c, "XADD %s * e %b", q[i].key, q[i].payload.data, q[i].payload.len);
    count++;
  }
  for (size_t ei = 0; ei < engine->entity_count; ei++) {
    const bee__entity_rt_t *rt = &engine->rt[ei];
    if (rt->redis != (int)rp) continue;
    const bee__entity_t *e = &engine->entities[ei];
    int touched = 0, all_changed = 0;
    for (size_t i = 0; i < s->count; i++) {
      const state_t *st = &s->items[i];
      if (st->entity != ei) continue;
      touched = 1;
      all_changed |= st->had_before != st->has_after;
      char key[sizeof rt->prefix + 32];
      size_t kl = bee__row_key(rt, st->id, key, sizeof key);
      if (st->had_before) cache_commands(c, rt, e, st, 0, values, token, &count);
      if (token && e->cache_all && st->had_before != st->has_after) {
        bee__buf_t all = {0};
        if (bee__list_key(rt, e, 'a', "", NULL, 0, NULL, &all) == 0) {
          char num[BEE__ID_BUF];
          bee__pending_key(rt, &all);
          redisAppendCommand(c, "HSET %b %b %s", all.data, all.len, num, bee__id_format(st->id, num), token);
          count++;
        }
        bee__buf_free(&all);
      }
      if (st->has_after) {
        redisAppendCommand(c, "SET %b %b", key, kl, st->after.data, st->after.len);
        cache_commands(c, rt, e, st, 1, values, token, &count);
      } else {
        bee__buf_t miss = {0};
        bee__row_encode_missing(e, &miss);
        redisAppendCommand(c, "SET %b %b", key, kl, miss.data, miss.len);
        bee__buf_free(&miss);
      }
      count++;
    }
    if (!touched) continue;
    if (all_changed && e->cache_all) {
      bee__buf_t key = {0};
      if (bee__list_key(rt, e, 'a', "", NULL, 0, NULL, &key) == 0) {
        redisAppendCommand(c, "DEL %b", key.data, key.len);
        count++;
      }
      bee__buf_free(&key);
    }
    /* The version fences readers' fills against the keys dropped here (lists). Keys set
       here need no fence: fills never overwrite an existing key (loader.c). */
    if (drops_lists(e)) {
      redisAppendCommand(c, "INCR %sv", rt->prefix);
      count++;
    }
  }
  redisAppendCommand(c, "EXEC");
  count++;
  for (size_t i = 0; i < count; i++) {
    void *reply = NULL;
    if (redisGetReply(c, &reply) != REDIS_OK) {
      rc = bee__redis_error(err, &engine->redis[rp], c, NULL, "updating the cache failed");
      bee__ctx_redis_broken(ctx, rp);
      return rc;
    }
    redisReply *r = reply;
    if (!rc && i == count - 1 && r->type != REDIS_REPLY_ARRAY)
      rc = bee__redis_error(err, &engine->redis[rp], c, r, "updating the cache failed");
    freeReplyObject(r);
  }
  return rc;
}

/* Local caches of this process, then the other processes through pub/sub. */
static int update_local(bee_context_t *ctx, states_t *s, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  int rc = 0;
  for (size_t ei = 0; ei < engine->entity_count; ei++) {
    bee__entity_rt_t *rt = &engine->rt[ei];
    if (!rt->lru) continue;
    uint64_t *ids = bee__malloc(s->count * sizeof *ids + 1);
    size_t n = 0;
    bee__buf_t miss = {0};
    bee__row_encode_missing(&engine->entities[ei], &miss);
    for (size_t i = 0; i < s->count; i++) {
      const state_t *st = &s->items[i];
      if (st->entity != ei) continue;
      bee__lru_remove(rt->lru, st->id);
      if (bee__local_cache_ok(engine)) {
        const bee__buf_t *row = st->has_after ? &st->after : &miss;
        bee__lru_put(rt->lru, st->id, row->data, row->len, bee__lru_epoch(rt->lru));
      }
      if (ids) ids[n++] = st->id;
    }
    bee__buf_free(&miss);
    if (!ids) {
      if (!rc) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory publishing invalidations");
      continue;
    }
    int prc = bee__publish_invalidation(ctx, ei, ids, n, err);
    if (!rc) rc = prc;
    bee__free(ids);
  }
  return rc;
}

/*
 * After the writes are durable (committed or queued): the Redis caches of every pool but
 * skip_pool, then local caches here and in other processes. Returns 0 or the first
 * failure, its message prefixed with `what` (the writes stand; only caches may lag).
 */
static int update_caches(bee_context_t *ctx, states_t *s, bee_value_t *values, int skip_pool, const char *what,
                         bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  bee_error_t cache_err;
  int crc = 0;
  for (size_t rp = 0; rp < engine->redis_count; rp++) {
    if ((int)rp == skip_pool) continue;
    int any = 0;
    for (size_t i = 0; i < s->count && !any; i++) any = engine->rt[s->items[i].entity].redis == (int)rp;
    if (any) {
      int r1 = update_redis(ctx, rp, s, values, NULL, 0, NULL, &cache_err);
      if (r1 && !crc) crc = r1;
    }
  }
  int r2 = update_local(ctx, s, crc ? NULL : &cache_err);
  if (r2 && !crc) crc = r2;
  if (crc && err) {
    *err = cache_err;
    char msg[BEE_ERROR_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%s", err->message);
    snprintf(err->message, sizeof err->message, "%s: %.400s", what, msg);
  }
  return crc;
}

/*
 * 1 when the tracked changes make exactly one statement: inserts of one entity, at most
 * BEE__INSERT_ROWS, whose SQL surely stays under BEE__SQL_MAX (run_ops would split it).
 */
static int single_statement(const bee_context_t *ctx) {
  if (!ctx->op_count || ctx->op_count > BEE__INSERT_ROWS) return 0;
  size_t entity = ctx->ops[0].entity, size = 256;
  const bee__entity_t *e = &ctx->engine->entities[entity];
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    if (op->kind != BEE__OP_INSERT || op->entity != entity) return 0;
    size += 24;
    for (size_t f = 0; f < e->field_count; f++)
      size += op->values[f].kind == BEE_VALUE_STRING ? 2 * op->values[f].len + 8 : 32; /* escaped or hex */
  }
  return size < BEE__SQL_MAX / 2;
}

int bee_context_flush(bee_context_t *ctx, bee_error_t *err) {
  if (!ctx) return bee__error(err, BEE_EINVAL, 0, "context is NULL");
  if (!ctx->op_count) return 0;
  bee_engine_t *engine = ctx->engine;
  size_t npools = engine->mysql_count;
  unsigned char *used = bee__calloc(npools, 1), *begun = bee__calloc(npools, 1);
  size_t max_fields = 1;
  for (size_t i = 0; i < engine->entity_count; i++)
    if (engine->entities[i].field_count > max_fields) max_fields = engine->entities[i].field_count;
  bee_value_t *values = bee__calloc(max_fields, sizeof *values);
  states_t s = {0};
  int rc = 0;
  if (!used || !begun || !values || states_build(ctx, &s)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
    goto out;
  }
  for (size_t i = 0; i < ctx->op_count; i++) used[engine->rt[ctx->ops[i].entity].mysql] = 1;
  /* One statement in one pool is atomic by itself: run it without BEGIN and COMMIT
     (two round trips fewer for the common flush of new entities). */
  int single = single_statement(ctx);

  /* 1. statements in every pool */
  for (size_t p = 0; p < npools && !rc; p++) {
    if (!used[p]) continue;
    MYSQL *conn;
    if ((rc = bee__ctx_mysql(ctx, p, &conn, err))) break;
    if (single) { /* what caches get is known before: nothing can fail after the commit */
      if (compute_after(ctx, &s, values)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
      else rc = run_ops(ctx, p, conn, err);
      break;
    }
    if (mysql_query(conn, "START TRANSACTION") != 0) {
      rc = bee__mysql_error(err, conn, &engine->mysql[p], "flush failed on");
      bee__ctx_mysql_broken(ctx, p);
      break;
    }
    begun[p] = 1;
    if (!(rc = read_before(ctx, p, conn, &s, values, err))) rc = run_ops(ctx, p, conn, err);
  }
  if (!rc && !single && compute_after(ctx, &s, values)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
  if (rc) {
    for (size_t p = 0; p < npools; p++) {
      if (!begun[p]) continue;
      if (mysql_query(ctx->mysql[p], "ROLLBACK") != 0) bee__ctx_mysql_broken(ctx, p);
    }
    goto out;
  }
  /* 2. commits */
  size_t committed = single; /* the single statement committed itself */
  for (size_t p = 0; p < npools; p++) {
    if (!begun[p]) continue;
    if (rc) {
      if (mysql_query(ctx->mysql[p], "ROLLBACK") != 0) bee__ctx_mysql_broken(ctx, p);
      continue;
    }
    if (mysql_query(ctx->mysql[p], "COMMIT") != 0) {
      rc = bee__mysql_error(err, ctx->mysql[p], &engine->mysql[p], "commit failed on");
      bee__ctx_mysql_broken(ctx, p);
    } else {
      committed++;
    }
  }
  if (rc && !committed) goto out;
  if (rc) { /* a later pool failed to commit: only the committed pools' rows go to caches */
    size_t w = 0;
    for (size_t i = 0; i < s.count; i++) {
      size_t p = engine->rt[s.items[i].entity].mysql;
      if (begun[p] && ctx->mysql[p]) s.items[w++] = s.items[i];
      else {
        bee__buf_free(&s.items[i].before);
        bee__buf_free(&s.items[i].after);
      }
    }
    s.count = w;
  }
  /* 3. caches, from what MySQL committed */
  int crc = update_caches(ctx, &s, values, -1, "MySQL committed, but the cache update failed", rc ? NULL : err);
  if (!rc) rc = crc;
  bee_context_clear_flush(ctx); /* committed: nothing left to retry */
out:
  states_free(&s);
  bee__free(values);
  bee__free(used);
  bee__free(begun);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* flush_async                                                              */

typedef struct {
  states_t *s;
  size_t entity;
  const uint64_t *ids;
} before_t;

static int keep_before(void *ud, size_t index, const bee_row_t *row) {
  before_t *b = ud;
  if (!row) return 0;
  state_t *st = state_find(b->s, b->entity, b->ids[index]);
  if (!st || st->had_before) return 0;
  st->had_before = 1;
  return bee__row_encode(row->entity, row->id, row->values, &st->before) ? BEE_ENOMEM : 0;
}

/*
 * The current rows of updated and deleted states, as readers see them now: through the
 * caches, which already hold earlier flush_async results that MySQL may not have yet.
 */
static int load_before(bee_context_t *ctx, states_t *s, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  uint64_t *ids = bee__malloc((s->count ? s->count : 1) * sizeof *ids);
  if (!ids) return bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
  int rc = 0;
  for (size_t ei = 0; ei < engine->entity_count && !rc; ei++) {
    size_t n = 0;
    for (size_t i = 0; i < ctx->op_count; i++) {
      const bee__op_t *op = &ctx->ops[i];
      if (op->entity != ei || op->kind == BEE__OP_INSERT) continue;
      int dup = 0;
      for (size_t k = 0; k < n && !dup; k++) dup = ids[k] == op->id;
      if (!dup) ids[n++] = op->id;
    }
    if (!n) continue;
    before_t b = {s, ei, ids};
    rc = bee__load_by_ids(ctx, ei, ids, n, keep_before, &b, err);
  }
  bee__free(ids);
  return rc;
}

/*
 * Adds the cache keys a consumer handles for one row version: the unique keys and the
 * id lists go on failure ('F'); the lists' pending marks go either way ('P').
 */
static void list_keys(bee__batch_t *w, const bee__entity_rt_t *rt, bee__buf_t *key) {
  bee__batch_key(w, 'F', key->data, key->len);
  bee__pending_key(rt, key);
  bee__batch_key(w, 'P', key->data, key->len);
}

static void event_keys(bee__batch_t *w, const bee__entity_rt_t *rt, const bee__entity_t *e, const bee__buf_t *row,
                       bee_value_t *values) {
  uint64_t id;
  if (bee__row_decode(e, row->data, row->len, &id, values)) return;
  bee__buf_t key = {0};
  for (size_t i = 0; i < e->index_count; i++) {
    const bee__index_t *ix = &e->indexes[i];
    if (ix->unique && bee__unique_key(rt, e, ix, values, &key) == 0) bee__batch_key(w, 'F', key.data, key.len);
    if (!ix->unique && ix->cached && bee__list_key(rt, e, 'i', ix->name, ix->fields, ix->field_count, values, &key) == 0)
      list_keys(w, rt, &key);
  }
  for (size_t f = 0; f < e->field_count; f++)
    if (e->fields[f].type == BEE_FIELD_REF && e->fields[f].cached &&
        bee__list_key(rt, e, 'f', e->fields[f].name, &f, 1, values, &key) == 0)
      list_keys(w, rt, &key);
  bee__buf_free(&key);
}

/* A number no other flush_async (of any process) is likely to draw: random seed + counter. */
static uint64_t bee__flush_token(void) {
  static _Atomic uint64_t next;
  static _Atomic uint64_t seed;
  uint64_t s = atomic_load(&seed);
  if (!s) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      r = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    r |= 1;
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&seed, &zero, r);
    s = atomic_load(&seed);
  }
  uint64_t t = s + atomic_fetch_add(&next, 0x9E3779B97F4A7C15ull);
  return t ? t : 1;
}

static qentry_t *queue_entry(bee_context_t *ctx, qentry_t *q, size_t *nq, size_t pool, size_t shard,
                             uint64_t token) {
  for (size_t i = 0; i < *nq; i++)
    if (q[i].pool == pool && q[i].shard == shard) return &q[i];
  qentry_t *e = &q[(*nq)++];
  memset(e, 0, sizeof *e);
  e->pool = pool;
  e->shard = shard;
  bee__queue_key(ctx->engine, pool, shard, "s", e->key, sizeof e->key);
  bee__batch_begin(&e->w, &e->payload, token);
  return e;
}

int bee_context_flush_async(bee_context_t *ctx, bee_error_t *err) {
  if (!ctx) return bee__error(err, BEE_EINVAL, 0, "context is NULL");
  if (!ctx->op_count) return 0;
  bee_engine_t *engine = ctx->engine;
  if (engine->inval_redis < 0)
    return bee__error(err, BEE_ECONFIG, 0, "flush_async needs a Redis pool to queue events on (register one)");
  size_t qp = (size_t)engine->inval_redis;
  size_t max_fields = 1;
  for (size_t i = 0; i < engine->entity_count; i++)
    if (engine->entities[i].field_count > max_fields) max_fields = engine->entities[i].field_count;
  bee_value_t *values = bee__calloc(max_fields, sizeof *values);
  qentry_t *q = bee__calloc(ctx->op_count, sizeof *q);
  size_t nq = 0;
  states_t s = {0};
  int rc = 0;
  if (!values || !q || states_build(ctx, &s)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
    goto out;
  }
  if ((rc = load_before(ctx, &s, err))) goto out;
  uint64_t token = bee__flush_token();
  char token_text[17];
  bee__token_format(token, token_text);
  if (compute_after(ctx, &s, values)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
    goto out;
  }
  /* One stream entry per (pool, shard) touched, events in flush order. */
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    const bee__entity_t *e = &engine->entities[op->entity];
    const bee__entity_rt_t *rt = &engine->rt[op->entity];
    qentry_t *qe = queue_entry(ctx, q, &nq, rt->mysql, bee__shard(op->id), token);
    char kind = op->kind == BEE__OP_INSERT ? 'I' : op->kind == BEE__OP_UPDATE ? 'U' : 'D';
    bee__batch_event(&qe->w, kind, e->table, e->name, rt->redis >= 0 ? engine->redis[rt->redis].name : "",
                     rt->redis >= 0 ? rt->prefix : "", op->id);
    for (size_t f = 0; f < e->field_count && op->kind != BEE__OP_DELETE; f++)
      if (op->kind == BEE__OP_INSERT || op->changed[f]) bee__batch_col(&qe->w, e->fields[f].name, &op->values[f]);
    bee__batch_keys_begin(&qe->w);
    if (rt->redis >= 0) {
      state_t *st = state_find(&s, op->entity, op->id); /* (the row key is implied: see event.h) */
      if (st->had_before) event_keys(&qe->w, rt, e, &st->before, values);
      if (st->has_after) event_keys(&qe->w, rt, e, &st->after, values);
      if (e->cache_all && st->had_before != st->has_after) {
        bee__buf_t all = {0};
        if (bee__list_key(rt, e, 'a', "", NULL, 0, NULL, &all) == 0) list_keys(&qe->w, rt, &all);
        bee__buf_free(&all);
      }
    }
  }
  for (size_t i = 0; i < nq; i++)
    if (bee__batch_end(&q[i].w)) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory encoding events");
      goto out;
    }
  /* The queue's Redis pool: events and that pool's caches in one MULTI/EXEC (G1). */
  if ((rc = update_redis(ctx, qp, &s, values, q, nq, token_text, err))) goto out;
  /* Caches on other Redis pools, then local caches: the events are queued already. */
  rc = update_caches(ctx, &s, values, (int)qp, "events queued, but a cache update failed", err);
  bee_context_clear_flush(ctx); /* queued: nothing left to retry */
out:
  for (size_t i = 0; q && i < nq; i++) bee__buf_free(&q[i].payload);
  bee__free(q);
  states_free(&s);
  bee__free(values);
  return rc;
}
