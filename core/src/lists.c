/*
 * lists.c: loaders of id lists (README, Lua API, G8): get_by_reference, get_by_index, get_all
 * and search. Lists of cached indexes, cached references and cache_all are kept in Redis
 * (sorted ids); a reader rebuilding one from MySQL corrects it by the ids marked pending
 * in it by flush_async (their rows, as cached, decide), and fills it back only when the
 * entity's version did not move meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

/*
 * Reads the entity's version and one key in one round trip. On success *out is the
 * key's reply (the caller frees it) and version holds the version text ("" if none).
 */
static int get_versioned(bee_context_t *ctx, const bee__entity_rt_t *rt, const char *key, size_t key_len,
                         char *version, size_t version_size, bee__reply_t **out, bee_error_t *err) {
  char version_key[BEE__KEY_ROW_MAX];
  bee__key_version(rt->prefix, version_key, sizeof version_key);
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, (size_t)rt->redis, &c, err);
  if (rc) return rc;
  bee__redis_append(c, "GET %s", version_key);
  bee__redis_append(c, "GET %b", key, key_len);
  bee__reply_t *r1 = NULL, *r2 = NULL;
  if (bee__redis_get_reply(c, &r1) != 0 || bee__redis_get_reply(c, &r2) != 0) {
    if (r1) bee__reply_free(r1);
    rc = bee__redis_error(err, &ctx->engine->redis[rt->redis], c, NULL, "reading the cache failed");
    bee__ctx_redis_broken(ctx, (size_t)rt->redis);
    return rc;
  }
  bee__reply_text(r1, version, version_size);
  bee__reply_free(r1);
  *out = r2;
  return 0;
}

/* Which rows a cached list holds: those whose fields[0..n) hold the list's values (fields NULL: all rows). */
typedef struct {
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
  if (!j->spec->fields) {
    j->member[index] = 1;
    return 0;
  }
  const bee__entity_rt_t *rt = &j->ctx->engine->rt[j->ei];
  if (bee__key_list(rt->prefix, row->entity, j->spec->fields, j->spec->n, row->values, &j->scratch))
    return BEE_ENOMEM;
  j->member[index] = j->scratch.len == j->key->len && !memcmp(j->scratch.data, j->key->data, j->key->len);
  return 0;
}

static int cmp_id(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The pending ids of a list (flush_async changes a consumer has not applied yet). */
static int pending_ids(bee_context_t *ctx, const bee__entity_rt_t *rt, const bee__buf_t *key, bee__idlist_t *out,
                       bee_error_t *err) {
  bee__buf_t pkey = {0};
  bee__buf_append(&pkey, key->data, key->len);
  if (pkey.failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory");
  bee__key_list_pending(rt->prefix, &pkey);
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, (size_t)rt->redis, &c, err);
  bee__reply_t *r = rc ? NULL : bee__redis_command(c, "HKEYS %b", pkey.data, pkey.len);
  bee__buf_free(&pkey);
  if (rc) return rc;
  if (!r || r->type != BEE__REPLY_ARRAY) {
    rc = bee__redis_error(err, &ctx->engine->redis[rt->redis], c, r, "reading the cache failed");
    if (r) bee__reply_free(r);
    else bee__ctx_redis_broken(ctx, (size_t)rt->redis);
    return rc;
  }
  for (size_t i = 0; i < r->elements && !rc; i++) {
    uint64_t id;
    bee__reply_t *it = r->element[i];
    if (it->type != BEE__REPLY_STRING || bee__id_parse(it->str, it->len, &id)) continue;
    if (bee__idlist_push(out, id)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
  }
  bee__reply_free(r);
  return rc;
}

/*
 * MySQL's ids for a list corrected by its pending ids: a row with a queued change is in
 * the list when its current row (the caches hold it since the flush_async) says so.
 */
static int apply_pending(bee_context_t *ctx, size_t ei, const list_spec_t *spec, const bee__buf_t *key,
                         const bee__idlist_t *pending, bee__idlist_t *out, bee_error_t *err) {
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
    if (j.member[i] && bee__idlist_push(out, pending->ids[i])) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
  bee__free(j.member);
  if (rc) return rc;
  if (out->n > 1) qsort(out->ids, out->n, sizeof *out->ids, cmp_id); /* (ids is NULL when empty) */
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
                    const bee_value_t *args, size_t nargs, bee__idlist_t *out, bee_error_t *err) {
  bee__entity_rt_t *rt = &ctx->engine->rt[ei];
  char version[32] = "";
  int cached = key && rt->redis >= 0;
  bee__idlist_t pending = {0};
  if (cached) {
    bee__reply_t *r = NULL;
    int rc = get_versioned(ctx, rt, key->data, key->len, version, sizeof version, &r, err);
    if (rc) return rc;
    int hit = r->type == BEE__REPLY_STRING && r->len >= 1 && r->str[0] == 'L' && (r->len - 1) % 8 == 0;
    if (hit) {
      for (size_t i = 1; i < r->len; i += 8) {
        uint64_t id = 0;
        for (int b = 7; b >= 0; b--) id = (id << 8) | (unsigned char)r->str[i + (size_t)b];
        if (bee__idlist_push(out, id)) {
          hit = -1;
          break;
        }
      }
    }
    bee__reply_free(r);
    if (hit == -1) return bee__error(err, BEE_ENOMEM, 0, "out of memory reading ids");
    if (hit) return 0;
    /* Before MySQL: an id that stops being pending was applied before it left the hash. */
    if ((rc = pending_ids(ctx, rt, key, &pending, err))) {
      bee__free(pending.ids);
      return rc;
    }
  }
  int rc = bee__query_ids(ctx, ei, where, args, nargs, " ORDER BY `id`", out, err);
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
    bee__fill_string(ctx, rt, version, key->data, key->len, val.data, val.len);
  }
  bee__buf_free(&val);
  return 0;
}

int bee_context_get_by_reference(bee_context_t *ctx, const bee_entity_t *entity, const char *field, uint64_t id,
                                 bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = bee__entity_index(ctx, entity, &ei, err);
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
  int cached = e->fields[f].cached && bee__key_list(ctx->engine->rt[ei].prefix, e, &fi, 1, row, &key) == 0;
  list_spec_t spec = {&fi, 1};
  bee__buf_printf(&where, "`%s` = ?", e->fields[f].name);
  bee__idlist_t l = {0};
  rc = where.failed ? bee__error(err, BEE_ENOMEM, 0, "out of memory")
                    : list_ids(ctx, ei, cached ? &key : NULL, &spec, where.data, &row[f], 1, &l, err);
  bee__free(row);
  bee__buf_free(&key);
  bee__buf_free(&where);
  return bee__deliver_list(ctx, ei, rc, &l, fn, ud, err);
}

int bee_context_get_by_index(bee_context_t *ctx, const bee_entity_t *entity, const char *index,
                             const bee_value_t *values, size_t n, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = bee__entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  const bee__index_t *ix;
  if ((rc = bee__lookup_index(e, index, 0, n, &ix, err))) return rc;
  bee_value_t canon[16], args[16];
  bee__buf_t strings = {0}, key = {0}, where = {0};
  bee__idlist_t l = {0};
  if ((rc = bee__canonical_lookup(e, ix->fields, n, values, canon, &strings, err))) goto out;
  bee_value_t *row = bee__calloc(e->field_count, sizeof *row);
  if (!row) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < n; k++) row[ix->fields[k]] = canon[k];
  int cached = ix->cached && bee__key_list(ctx->engine->rt[ei].prefix, e, ix->fields, n, row, &key) == 0;
  bee__free(row);
  size_t nargs;
  if (bee__index_where(e, ix->fields, n, canon, &where, args, &nargs)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory");
    goto out;
  }
  list_spec_t spec = {ix->fields, n};
  rc = list_ids(ctx, ei, cached ? &key : NULL, &spec, where.data, args, nargs, &l, err);
out:
  bee__buf_free(&strings);
  bee__buf_free(&key);
  bee__buf_free(&where);
  return bee__deliver_list(ctx, ei, rc, &l, fn, ud, err);
}

int bee_context_get_all(bee_context_t *ctx, const bee_entity_t *entity, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = bee__entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__buf_t key = {0};
  int cached = e->cache_all && bee__key_list(ctx->engine->rt[ei].prefix, e, NULL, 0, NULL, &key) == 0;
  bee__idlist_t l = {0};
  list_spec_t spec = {NULL, 0};
  rc = list_ids(ctx, ei, cached ? &key : NULL, &spec, "", NULL, 0, &l, err);
  bee__buf_free(&key);
  return bee__deliver_list(ctx, ei, rc, &l, fn, ud, err);
}

int bee_context_search(bee_context_t *ctx, const bee_entity_t *entity, const char *where, const bee_value_t *args,
                       size_t nargs, size_t offset, size_t limit, bee_row_fn fn, void *ud, bee_error_t *err) {
  size_t ei;
  int rc = bee__entity_index(ctx, entity, &ei, err);
  if (rc) return rc;
  char tail[64] = "";
  if (limit) snprintf(tail, sizeof tail, " LIMIT %zu, %zu", offset, limit);
  else if (offset) snprintf(tail, sizeof tail, " LIMIT %zu, 18446744073709551615", offset);
  bee__idlist_t l = {0};
  rc = bee__query_ids(ctx, ei, where, args, nargs, tail, &l, err);
  return bee__deliver_list(ctx, ei, rc, &l, fn, ud, err);
}
