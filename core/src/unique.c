/*
 * unique.c: get_by_unique_index (README, Lua API, G8): lookups that obey the column's collation.
 *
 * MySQL compares a unique string column by its collation ("alice" finds "Alice", and
 * "Alice " too), but a cache key is the bytes looked up. So a cached answer is never
 * trusted blindly:
 *   - "<id>:<values>" (keys.h) is a hit only when the row, as the caches hold it now,
 *     still has those values or exactly the values looked up; otherwise the lookup
 *     asks again. A row renamed since is never returned for its old name.
 *   - "N<gen>" (not found) holds only while the index's generation is gen: every write
 *     of the index's values (insert, delete, a changed value; any definition, any
 *     process; and the consumer applying a queued one) replaces the generation, so no
 *     spelling's cached not-found hides a row written under another spelling.
 * Asking again means: the ids with queued changes to the index (marked by flush_async,
 * read before MySQL), and MySQL's answer; each candidate's row as cached decides, its
 * values compared with the lookup exactly or, for string columns whose bytes differ,
 * by MySQL under the column's own collation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "loader.h"
#include "schema_internal.h"
#include "sql.h"

/*
 * KEYS[1] the index's generation, KEYS[2] the lookup key; ARGV[1] the generation read
 * before asking MySQL ("" for none), ARGV[2] the answer, ARGV[3] a fresh generation.
 * Written only when the generation did not move. A not-found ("N...") needs one: when
 * there is none, one is started and nothing is written.
 */
static const char *const fill_unique_script =
    "local g = redis.call('GET', KEYS[1]) "
    "if (g or '') ~= ARGV[1] then return 0 end "
    "if not g and ARGV[2]:sub(1, 1) == 'N' then redis.call('SET', KEYS[1], ARGV[3], 'NX') return 0 end "
    "redis.call('SET', KEYS[2], ARGV[2]) return 1";

/* A candidate row for a lookup: its values' key text and its encoded row, as the caches hold it. */
typedef struct {
  uint64_t id;
  int found;
  bee__buf_t text, row;
} cand_t;

typedef struct {
  const bee__index_t *ix;
  cand_t *cands;
  int failed;
} collect_t;

static int collect_cand(void *ud, size_t index, const bee_row_t *row) {
  collect_t *c = ud;
  cand_t *cd = &c->cands[index];
  if (!row) return 0;
  cd->found = 1;
  cd->text.len = cd->row.len = 0;
  bee__key_values_text(row->values, c->ix->fields, c->ix->field_count, 1, &cd->text);
  bee__row_encode(row->entity, row->id, row->values, &cd->row);
  if (cd->text.failed || cd->row.failed) c->failed = 1;
  return 0;
}

static int same_text(const bee__buf_t *a, const char *b, size_t bl) { return a->len == bl && !memcmp(a->data, b, bl); }

/* The charset and collation of every column of e, read from information_schema once. */
static int load_collations(bee_context_t *ctx, size_t ei, bee_error_t *err) {
  bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  const bee__entity_t *e = &ctx->engine->entities[ei];
  pthread_mutex_lock(&rt->collation_lock);
  if (rt->collation) {
    pthread_mutex_unlock(&rt->collation_lock);
    return 0;
  }
  MYSQL *conn;
  int rc = bee__ctx_mysql(ctx, rt->mysql, &conn, err);
  char (*col)[2][BEE__IDENT_MAX] = rc ? NULL : bee__calloc(e->field_count ? e->field_count : 1, sizeof *col);
  if (!rc && !col) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '%s'",
           e->table); /* a checked identifier */
  if (!rc && mysql_query(conn, sql) != 0) rc = bee__mysql_error(err, conn, &ctx->engine->mysql[rt->mysql], "reading collations failed on");
  MYSQL_RES *res = rc ? NULL : mysql_store_result(conn);
  if (!rc && !res) rc = bee__mysql_error(err, conn, &ctx->engine->mysql[rt->mysql], "reading collations failed on");
  MYSQL_ROW row;
  while (res && (row = mysql_fetch_row(res)) != NULL) {
    int f = row[0] ? bee_entity_field_index(e, row[0]) : -1;
    if (f < 0 || !row[1] || !row[2] || !bee__ident_ok(row[1]) || !bee__ident_ok(row[2])) continue;
    bee__strlcpy(col[f][0], row[1], sizeof col[f][0]);
    bee__strlcpy(col[f][1], row[2], sizeof col[f][1]);
  }
  if (res) mysql_free_result(res);
  if (!rc) rt->collation = col;
  else bee__free(col);
  pthread_mutex_unlock(&rt->collation_lock);
  return rc;
}

/*
 * 1 when the row (encoded) matches the lookup values `want` under MySQL's comparison:
 * other columns exactly, string columns by MySQL under their collation. 0, 1, or < 0.
 */
static int collation_match(bee_context_t *ctx, size_t ei, const bee__index_t *ix, const cand_t *cd,
                           const bee_value_t *want, bee_error_t *err) {
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  bee_value_t small[32], *values = e->field_count <= 32 ? small : bee__calloc(e->field_count, sizeof *values);
  if (!values) return bee__error(err, BEE_ENOMEM, 0, "out of memory");
  uint64_t id;
  int rc = bee__row_decode(e, cd->row.data, cd->row.len, &id, values) ? 0 : 1;
  bee__buf_t sql = {0};
  bee_value_t args[32];
  size_t nargs = 0;
  bee__buf_puts(&sql, "SELECT 1");
  for (size_t k = 0; k < ix->field_count && rc == 1; k++) {
    size_t f = ix->fields[k];
    const bee__field_t *fd = &e->fields[f];
    const bee_value_t *have = &values[f];
    if (fd->type != BEE_FIELD_STRING && fd->type != BEE_FIELD_TEXT) {
      bee__buf_t a = {0}, b = {0};
      bee__key_value_text(have, &a);
      bee__key_value_text(&want[k], &b);
      rc = have->kind == want[k].kind && a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len));
      bee__buf_free(&a);
      bee__buf_free(&b);
      continue;
    }
    if (have->kind != BEE_VALUE_STRING) {
      rc = 0;
      continue;
    }
    if (rt->collation && rt->collation[f][1][0])
      bee__buf_printf(&sql, " AND CONVERT(? USING %s) COLLATE %s = CONVERT(? USING %s)", rt->collation[f][0],
                      rt->collation[f][1], rt->collation[f][0]);
    else
      bee__buf_puts(&sql, " AND ? = ?");
    args[nargs++] = *have;
    args[nargs++] = want[k];
  }
  if (rc == 1 && nargs) {
    MYSQL *conn;
    bee__buf_t full = {0};
    int q = sql.failed ? bee__error(err, BEE_ENOMEM, 0, "out of memory") : bee__ctx_mysql(ctx, rt->mysql, &conn, err);
    if (!q) q = bee__sql_interpolate(conn, sql.data, args, nargs, &full, err);
    if (!q && mysql_real_query(conn, full.data, (unsigned long)full.len) != 0)
      q = bee__mysql_error(err, conn, &ctx->engine->mysql[rt->mysql], "comparing values failed on");
    MYSQL_RES *res = q ? NULL : mysql_store_result(conn);
    if (!q && !res) q = bee__mysql_error(err, conn, &ctx->engine->mysql[rt->mysql], "comparing values failed on");
    if (res) {
      MYSQL_ROW r = mysql_fetch_row(res);
      rc = r && r[0] && r[0][0] == '1';
      mysql_free_result(res);
    }
    bee__buf_free(&full);
    if (q) rc = q;
  }
  bee__buf_free(&sql);
  if (values != small) bee__free(values);
  return rc;
}

/* Writes the answer for a lookup key, fenced by the generation read before MySQL. */
static void fill_unique(bee_context_t *ctx, const bee__entity_rt_t *rt, const bee__buf_t *gen_key, const char *gen,
                        const bee__buf_t *key, const char *val, size_t len) {
  bee__rconn_t *c;
  bee_error_t ignored;
  if (bee__ctx_redis(ctx, (size_t)rt->redis, &c, &ignored)) return;
  char fresh[17];
  bee__token_format(bee__flush_token(), fresh);
  bee__reply_t *r = bee__redis_command(c, "EVAL %s 2 %b %b %s %b %s", fill_unique_script, gen_key->data, gen_key->len,
                               key->data, key->len, gen, val, len, fresh);
  if (r) bee__reply_free(r);
  else bee__ctx_redis_broken(ctx, (size_t)rt->redis);
}

typedef struct {
  bee_context_t *ctx;
  size_t ei;
  const bee__entity_t *e;
  bee__entity_rt_t *rt;
  const bee__index_t *ix;
  const bee_value_t *want; /* canonical lookup values, one per index field */
  const bee__buf_t *text;  /* their key text */
} lookup_t;

/*
 * The id of the row matching the lookup now, or 0: MySQL's answer and the ids with
 * queued changes to the index, each judged by its row as the caches hold it. text_out
 * gets the matching row's values as key text.
 */
static int resolve(lookup_t *lk, const bee__idlist_t *pending, uint64_t *match, bee__buf_t *text_out,
                   bee_error_t *err) {
  bee_context_t *ctx = lk->ctx;
  const bee__entity_t *e = lk->e;
  const bee__index_t *ix = lk->ix;
  *match = 0;
  /* MySQL's answer, with its values as MySQL has them. */
  bee__buf_t where = {0}, sql = {0}, mysql_text = {0};
  bee_value_t args[16];
  size_t nargs;
  int rc = bee__index_where(e, ix->fields, ix->field_count, lk->want, &where, args, &nargs)
               ? bee__error(err, BEE_ENOMEM, 0, "out of memory")
               : 0;
  uint64_t id0 = 0;
  MYSQL *conn = NULL;
  if (!rc) rc = bee__ctx_mysql(ctx, lk->rt->mysql, &conn, err);
  if (!rc) {
    bee__buf_puts(&sql, "SELECT `id`");
    for (size_t k = 0; k < ix->field_count; k++) bee__buf_printf(&sql, ",`%s`", e->fields[ix->fields[k]].name);
    bee__buf_printf(&sql, " FROM `%s` WHERE %s LIMIT 1", e->table, where.data);
    bee__buf_t full = {0};
    rc = sql.failed ? bee__error(err, BEE_ENOMEM, 0, "out of memory") : bee__sql_interpolate(conn, sql.data, args, nargs, &full, err);
    if (!rc && mysql_real_query(conn, full.data, (unsigned long)full.len) != 0)
      rc = bee__mysql_error(err, conn, &ctx->engine->mysql[lk->rt->mysql], "query failed on");
    bee__buf_free(&full);
    MYSQL_RES *res = rc ? NULL : mysql_store_result(conn);
    if (!rc && !res) rc = bee__mysql_error(err, conn, &ctx->engine->mysql[lk->rt->mysql], "query failed on");
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    if (row && row[0] && bee__id_parse(row[0], mysql_fetch_lengths(res)[0], &id0) == 0) {
      unsigned long *lens = mysql_fetch_lengths(res);
      bee_value_t vals[16]; /* MySQL's values of the index, in index order */
      size_t seq[16];
      for (size_t k = 0; k < ix->field_count; k++) {
        seq[k] = k;
        if (bee__cell_value(&e->fields[ix->fields[k]], row[k + 1], row[k + 1] ? lens[k + 1] : 0, &vals[k])) id0 = 0;
      }
      if (id0) bee__key_values_text(vals, seq, ix->field_count, 1, &mysql_text);
    }
    if (res) mysql_free_result(res);
  }
  bee__buf_free(&where);
  bee__buf_free(&sql);
  if (rc) {
    bee__buf_free(&mysql_text);
    return rc;
  }
  /* The candidates: MySQL's row first, then the pending ids. */
  size_t n = 0, cap = (id0 ? 1 : 0) + pending->n;
  uint64_t *ids = bee__malloc((cap ? cap : 1) * sizeof *ids);
  cand_t *cands = bee__calloc(cap ? cap : 1, sizeof *cands);
  if (!ids || !cands) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
  if (!rc && id0) ids[n++] = id0;
  for (size_t i = 0; !rc && i < pending->n; i++)
    if (pending->ids[i] != id0) ids[n++] = pending->ids[i];
  collect_t col = {ix, cands, 0};
  if (!rc && n) rc = bee__load_by_ids(ctx, lk->ei, ids, n, collect_cand, &col, err);
  if (!rc && col.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
  /* Certain matches first: the bytes looked up, or MySQL's own values on MySQL's row. */
  for (size_t i = 0; !rc && i < n && !*match; i++) {
    cand_t *cd = &cands[i];
    if (cd->found && (same_text(&cd->text, lk->text->data, lk->text->len) ||
                      (ids[i] == id0 && same_text(&cd->text, mysql_text.data, mysql_text.len))))
      *match = ids[i];
  }
  /* Then what only the column's collation can tell. */
  int need = 0;
  for (size_t k = 0; k < ix->field_count; k++) {
    bee_field_type_t t = e->fields[ix->fields[k]].type;
    need |= t == BEE_FIELD_STRING || t == BEE_FIELD_TEXT;
  }
  if (!rc && !*match && need && n && (rc = load_collations(ctx, lk->ei, err)) == 0) {
    for (size_t i = 0; i < n && !*match; i++) {
      if (!cands[i].found) continue;
      int m = collation_match(ctx, lk->ei, ix, &cands[i], lk->want, err);
      if (m < 0) {
        rc = m;
        break;
      }
      if (m) *match = ids[i];
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!rc && *match && ids[i] == *match) bee__buf_append(text_out, cands[i].text.data, cands[i].text.len);
  for (size_t i = 0; i < cap && cands; i++) {
    bee__buf_free(&cands[i].text);
    bee__buf_free(&cands[i].row);
  }
  bee__free(cands);
  bee__free(ids);
  bee__buf_free(&mysql_text);
  return rc;
}

/* Checks a cached "<id>:<values>" answer against the row as cached now; delivers it on a match (1). */
typedef struct {
  const bee__index_t *ix;
  const char *stored;
  size_t stored_len;
  const bee__buf_t *text;
  bee_row_fn fn;
  void *ud;
  int matched, stop;
  bee__buf_t scratch;
} verify_t;

static int verify_row(void *ud, size_t index, const bee_row_t *row) {
  verify_t *v = ud;
  (void)index;
  if (!row) return 0;
  v->scratch.len = 0;
  bee__key_values_text(row->values, v->ix->fields, v->ix->field_count, 1, &v->scratch);
  if (v->scratch.failed) return BEE_ENOMEM;
  if (!same_text(&v->scratch, v->stored, v->stored_len) && !same_text(&v->scratch, v->text->data, v->text->len))
    return 0;
  v->matched = 1;
  return (v->stop = v->fn(v->ud, 0, row));
}

int bee_context_get_by_unique(bee_context_t *ctx, const bee_entity_t *entity, const char *index,
                              const bee_value_t *values, size_t n, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = bee__entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  const bee__index_t *ix;
  if ((rc = bee__lookup_index(e, index, 1, n, &ix, err))) return rc;
  bee_value_t canon[16];
  bee__buf_t strings = {0}, key = {0}, text = {0}, gen_key = {0}, pend_key = {0}, found_text = {0};
  bee__idlist_t pending = {0};
  bee__reply_t *r_gen = NULL, *r_val = NULL, *r_pend = NULL;
  if ((rc = bee__canonical_lookup(e, ix->fields, n, values, canon, &strings, err))) goto out;
  for (size_t k = 0; k < n; k++)
    if (canon[k].kind == BEE_VALUE_NIL) { /* NULLs are never unique: no row is identified */
      rc = fn(ud, 0, NULL);
      goto out;
    }
  /* The lookup's values laid out by field, for the key functions. */
  bee_value_t *row = bee__calloc(e->field_count ? e->field_count : 1, sizeof *row);
  if (!row) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < n; k++) row[ix->fields[k]] = canon[k];
  bee__key_values_text(row, ix->fields, ix->field_count, 1, &text);
  bee__key_unique(rt->prefix, e, ix, row, &key);
  bee__free(row);
  bee__key_unique_gen(rt->prefix, e, ix, &gen_key);
  bee__key_unique_pending(rt->prefix, e, ix, &pend_key);
  if (text.failed || key.failed || gen_key.failed || pend_key.failed) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  lookup_t lk = {ctx, ei, e, rt, ix, canon, &text};
  char gen[64] = "";
  if (rt->redis >= 0) {
    /* 1. the generation, the cached answer and the ids with queued changes, in one round trip */
    bee__rconn_t *c;
    if ((rc = bee__ctx_redis(ctx, (size_t)rt->redis, &c, err))) goto out;
    bee__redis_append(c, "GET %b", gen_key.data, gen_key.len);
    bee__redis_append(c, "GET %b", key.data, key.len);
    bee__redis_append(c, "HKEYS %b", pend_key.data, pend_key.len);
    bee__reply_t *r1 = NULL, *r2 = NULL, *r3 = NULL;
    if (bee__redis_get_reply(c, &r1) != 0 || bee__redis_get_reply(c, &r2) != 0 || bee__redis_get_reply(c, &r3) != 0) {
      if (r1) bee__reply_free(r1);
      if (r2) bee__reply_free(r2);
      rc = bee__redis_error(err, &ctx->engine->redis[rt->redis], c, NULL, "reading the cache failed");
      bee__ctx_redis_broken(ctx, (size_t)rt->redis);
      goto out;
    }
    r_gen = r1, r_val = r2, r_pend = r3;
    bee__reply_text(r_gen, gen, sizeof gen);
    if (r_pend->type == BEE__REPLY_ARRAY)
      for (size_t i = 0; i < r_pend->elements; i++) {
        uint64_t id;
        const bee__reply_t *it = r_pend->element[i];
        if (it->type == BEE__REPLY_STRING && bee__id_parse(it->str, it->len, &id) == 0 &&
            bee__idlist_push(&pending, id)) {
          rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
          goto out;
        }
      }
    if (r_val->type == BEE__REPLY_STRING && r_val->len >= 1 && r_val->str[0] == 'N') {
      /* 2a. a cached not-found, valid while the generation it was taken under holds */
      if (gen[0] && strlen(gen) == r_val->len - 1 && !memcmp(gen, r_val->str + 1, r_val->len - 1)) {
        rc = fn(ud, 0, NULL);
        goto out;
      }
    } else if (r_val->type == BEE__REPLY_STRING) {
      /* 2b. a cached row, valid while the row still has those values */
      const char *colon = memchr(r_val->str, ':', r_val->len);
      uint64_t id;
      if (colon && bee__id_parse(r_val->str, (size_t)(colon - r_val->str), &id) == 0) {
        verify_t v = {ix, colon + 1, r_val->len - (size_t)(colon + 1 - r_val->str), &text, fn, ud, 0, 0, {0}};
        rc = bee__load_by_ids(ctx, ei, &id, 1, verify_row, &v, err);
        bee__buf_free(&v.scratch);
        if (rc || v.matched) goto out;
      }
    }
  }
  /* 3. ask again: MySQL and the queued changes, judged by the rows as cached */
  uint64_t match = 0;
  if ((rc = resolve(&lk, &pending, &match, &found_text, err))) goto out;
  if (rt->redis >= 0) {
    bee__buf_t val = {0};
    if (match) {
      char num[BEE__ID_BUF];
      bee__buf_append(&val, num, bee__id_format(match, num));
      bee__buf_puts(&val, ":");
      bee__buf_append(&val, found_text.data, found_text.len);
    } else {
      bee__buf_printf(&val, "N%s", gen);
    }
    if (!val.failed) fill_unique(ctx, rt, &gen_key, gen, &key, val.data, val.len);
    bee__buf_free(&val);
  }
  rc = match ? bee__load_by_ids(ctx, ei, &match, 1, fn, ud, err) : fn(ud, 0, NULL);
out:
  if (r_gen) bee__reply_free(r_gen);
  if (r_val) bee__reply_free(r_val);
  if (r_pend) bee__reply_free(r_pend);
  bee__free(pending.ids);
  bee__buf_free(&strings);
  bee__buf_free(&key);
  bee__buf_free(&text);
  bee__buf_free(&gen_key);
  bee__buf_free(&pend_key);
  bee__buf_free(&found_text);
  return rc;
}
