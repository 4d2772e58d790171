/*
 * flush.c: tracked changes, the rows a flush touches, and the synchronous flush
 * (docs/guarantees.md G6, G7, G8).
 *
 * A flush runs in three steps. (1) In every MySQL pool involved: BEGIN, lock and read
 * the rows to be updated or deleted (their old values decide which cache keys to drop),
 * run the statements. (2) Commit every pool. (3) Update caches from the committed
 * result (cache_write.c): new rows written whole, changed columns dropped from the
 * cached rows (readers take them from MySQL), unique keys and id lists corrected, local
 * caches here and in other processes invalidated. A failure in (1) rolls every pool
 * back and leaves caches and tracked changes untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flush.h"
#include "sql.h"

/* ------------------------------------------------------------------------ */
/* Tracking                                                                 */

static void op_clear(bee__op_t *op) {
  bee__free(op->values); /* op->changed lives in the same block */
  bee__free(op->blob);
  memset(op, 0, sizeof *op);
}

/* Gives op zeroed values and changed flags for nf fields, in one block. 0 or BEE_ENOMEM. */
static int op_alloc(bee__op_t *op, size_t nf) {
  if (!nf) nf = 1;
  op->values = bee__calloc(1, nf * sizeof *op->values + nf);
  if (!op->values) return BEE_ENOMEM;
  op->changed = (unsigned char *)(op->values + nf);
  return 0;
}

void bee_context_drop_changes(bee_context_t *ctx) {
  if (!ctx) return;
  for (size_t i = 0; i < ctx->op_count; i++) op_clear(&ctx->ops[i]);
  ctx->op_count = 0;
}

void bee_context_clear_flush(bee_context_t *ctx) {
  if (!ctx) return;
  bee_context_drop_changes(ctx);
  ctx->unknown_outcome = 0; /* the next flush_async is a new one */
}

size_t bee_context_pending(const bee_context_t *ctx) { return ctx ? ctx->op_count : 0; }

static int entity_of(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, size_t *ei, bee_error_t *err) {
  *ei = 0;
  if (!ctx || !entity) return bee__error(err, BEE_EINVAL, 0, "context or entity is NULL");
  *ei = (size_t)(entity - ctx->engine->entities);
  if (*ei >= ctx->engine->entity_count) return bee__error(err, BEE_EINVAL, 0, "entity of another engine");
  if (id == 0) return bee__error(err, BEE_EINVAL, 0, "id 0 is not a valid id");
  return 0;
}

/* Appends op (taking what it owns); on failure frees it. */
static int push_op(bee_context_t *ctx, bee__op_t *op, bee_error_t *err) {
  if (ctx->op_count == ctx->op_cap) {
    size_t cap = ctx->op_cap ? ctx->op_cap * 2 : 16;
    bee__op_t *grown = bee__realloc(ctx->ops, cap * sizeof *grown);
    if (!grown) {
      op_clear(op);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
    }
    ctx->ops = grown;
    ctx->op_cap = cap;
  }
  ctx->ops[ctx->op_count++] = *op;
  return 0;
}

/* The same field, wide enough for increments and their sums (MySQL judges the result). */
static bee__field_t wide_field(const bee__field_t *f) {
  bee__field_t w = *f;
  w.bits = 64;
  w.is_unsigned = 0;
  w.precision = 65;
  w.required = 1;
  return w;
}

/*
 * Gives op copies of the values flagged in op->changed (validated into canonical form
 * first: nothing is copied when one fails; an ADD column holds an increment, checked as
 * a number of the field's kind of any range), all strings in one blob. 0 or the error.
 */
static int own_values(const bee__entity_t *e, bee__op_t *op, const bee_value_t *values, bee_error_t *err) {
  size_t nf = e->field_count;
  size_t scratch_size = BEE__VALUE_BUF(0) * (nf + 1);
  for (size_t i = 0; i < nf; i++)
    if (op->changed[i] && values[i].kind == BEE_VALUE_STRING) scratch_size += BEE__VALUE_BUF(values[i].len);
  char small[2048]; /* most rows: no allocation for the checks */
  char *scratch = scratch_size <= sizeof small ? small : bee__malloc(scratch_size);
  if (!scratch) return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
  size_t at = 0, blob_size = 0;
  for (size_t i = 0; i < nf; i++) {
    if (!op->changed[i]) continue;
    size_t room = BEE__VALUE_BUF(values[i].kind == BEE_VALUE_STRING ? values[i].len : 0);
    bee__field_t wide = wide_field(&e->fields[i]);
    const bee__field_t *f = op->changed[i] == BEE__COL_ADD ? &wide : &e->fields[i];
    int rc = bee__value_check(e, f, &values[i], &op->values[i], scratch + at, room, err);
    if (rc) {
      if (scratch != small) bee__free(scratch);
      return rc;
    }
    at += room;
    if (op->values[i].kind == BEE_VALUE_STRING) blob_size += op->values[i].len;
  }
  char *blob = bee__malloc(blob_size + 1);
  if (!blob) {
    if (scratch != small) bee__free(scratch);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
  }
  size_t b = 0;
  for (size_t i = 0; i < nf; i++) {
    if (!op->changed[i] || op->values[i].kind != BEE_VALUE_STRING) continue;
    if (op->values[i].len) memcpy(blob + b, op->values[i].str, op->values[i].len);
    op->values[i].str = blob + b;
    b += op->values[i].len;
  }
  bee__free(op->blob); /* last: the values may have pointed into it */
  op->blob = blob;
  if (scratch != small) bee__free(scratch);
  return 0;
}

/*
 * Validates the values selected by mask (NULL: all) and appends an op owning canonical
 * copies of them. Nothing is appended on failure.
 */
static int track(bee_context_t *ctx, int kind, const bee_entity_t *entity, uint64_t id, const bee_value_t *values,
                 const unsigned char *mask, bee_error_t *err) {
  size_t ei;
  int rc = entity_of(ctx, entity, id, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  bee__op_t op = {0};
  op.kind = kind;
  op.entity = ei;
  op.id = id;
  size_t nf = e->field_count;
  if (kind != BEE__OP_DELETE) {
    if (!values) return bee__error(err, BEE_EINVAL, 0, "values is NULL");
    if (op_alloc(&op, nf)) return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
    for (size_t i = 0; i < nf; i++) op.changed[i] = !mask || mask[i] ? BEE__COL_SET : BEE__COL_NONE;
    if ((rc = own_values(e, &op, values, err))) {
      op_clear(&op);
      return rc;
    }
  }
  return push_op(ctx, &op, err);
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

/* A validation error naming entity e and field f. */
static int field_fail(bee_error_t *err, const bee__entity_t *e, const bee__field_t *f, const char *msg) {
  int rc = bee__error(err, BEE_EVALIDATION, 0, "%s", msg);
  if (err) {
    bee__strlcpy(err->entity, e->name, sizeof err->entity);
    bee__strlcpy(err->field, f->name, sizeof err->field);
  }
  return rc;
}

int bee_context_increment(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, size_t field,
                          const bee_value_t *delta, bee_error_t *err) {
  size_t ei;
  int rc = entity_of(ctx, entity, id, &ei, err);
  if (rc) return rc;
  const bee__entity_t *e = &ctx->engine->entities[ei];
  if (field >= e->field_count) return bee__error(err, BEE_EINVAL, 0, "entity '%s' has no field #%zu", e->name, field);
  const bee__field_t *f = &e->fields[field];
  if (f->type != BEE_FIELD_INT && f->type != BEE_FIELD_DECIMAL)
    return bee__error(err, BEE_EINVAL, 0,
                      "field '%s' of '%s' is a %s field: only int and decimal fields can be incremented", f->name,
                      e->name, bee__field_type_name(f->type));
  if (!delta) return bee__error(err, BEE_EINVAL, 0, "delta is NULL");
  if (f->type == BEE_FIELD_INT && delta->kind != BEE_VALUE_INT)
    return field_fail(err, e, f, "an increment of an int field must be an integer");
  /* Checked like a value of the field, of any sign and range, but with the field's scale. */
  bee__field_t w = wide_field(f);
  char buf[BEE__VALUE_BUF(BEE__DELTA_TEXT)];
  bee_value_t canon;
  if (delta->kind == BEE_VALUE_STRING && delta->len > BEE__DELTA_TEXT)
    return field_fail(err, e, f, "an increment has too many digits");
  if ((rc = bee__value_check(e, &w, delta, &canon, buf, sizeof buf, err))) return rc;
  /* Consecutive changes of one row merge: an increment after a set of the field (or an
     insert) changes the value set; increments of one field add up. */
  bee__op_t *last = ctx->op_count ? &ctx->ops[ctx->op_count - 1] : NULL;
  if (last && last->entity == ei && last->id == id && last->kind != BEE__OP_DELETE) {
    bee_value_t sum = canon;
    char out[BEE__DELTA_TEXT];
    unsigned char was = last->changed[field];
    if (was == BEE__COL_SET && bee__value_add(f, &last->values[field], &canon, &sum, out, sizeof out))
      return field_fail(err, e, f, "the increment takes the value set in the same flush out of its range");
    if (was == BEE__COL_ADD && bee__value_add(&w, &last->values[field], &canon, &sum, out, sizeof out))
      return field_fail(err, e, f, "increments of one flush add up to too large a number");
    bee_value_t *vals = bee__malloc(e->field_count * sizeof *vals);
    if (!vals) return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
    memcpy(vals, last->values, e->field_count * sizeof *vals);
    vals[field] = sum;
    if (was == BEE__COL_NONE) last->changed[field] = BEE__COL_ADD;
    rc = own_values(e, last, vals, err); /* copies from the old blob before freeing it */
    bee__free(vals);
    if (rc) last->changed[field] = was;
    return rc;
  }
  bee__op_t op = {0};
  op.kind = BEE__OP_UPDATE;
  op.entity = ei;
  op.id = id;
  if (op_alloc(&op, e->field_count)) return bee__error(err, BEE_ENOMEM, 0, "out of memory tracking a change");
  op.changed[field] = BEE__COL_ADD;
  op.values[field] = canon;
  if ((rc = own_values(e, &op, op.values, err))) {
    op_clear(&op);
    return rc;
  }
  return push_op(ctx, &op, err);
}

/* ------------------------------------------------------------------------ */
/* Row states: each (entity, id) a flush touches, before and after          */

static int state_cmp(const void *a, const void *b) {
  const bee__state_t *x = a, *y = b;
  if (x->entity != y->entity) return x->entity < y->entity ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

bee__state_t *bee__state_find(bee__states_t *s, size_t entity, uint64_t id) {
  bee__state_t key = {.entity = entity, .id = id};
  return bsearch(&key, s->items, s->count, sizeof key, state_cmp);
}

void bee__states_free(bee__states_t *s) {
  for (size_t i = 0; i < s->count; i++) {
    bee__buf_free(&s->items[i].before);
    bee__buf_free(&s->items[i].after);
    bee__free(s->items[i].deltas);
  }
  bee__free(s->items);
  bee__free(s->published);
  bee__free(s->cols_block);
  s->cols_block = NULL;
  s->items = NULL;
  s->published = NULL;
  s->count = s->npublished = 0;
}

size_t bee__max_fields(const bee_engine_t *engine) {
  size_t m = 1;
  for (size_t i = 0; i < engine->entity_count; i++)
    if (engine->entities[i].field_count > m) m = engine->entities[i].field_count;
  return m;
}

/*
 * What the ops do to each column of their row: SET when any op sets it (the after-row
 * then holds the result), else ADD with the sum of the increments (a flush_async adds
 * that sum to whatever the cache holds: increments of other processes are not lost).
 */
static int states_columns(bee_context_t *ctx, bee__states_t *s) {
  bee_engine_t *engine = ctx->engine;
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    const bee__entity_t *e = &engine->entities[op->entity];
    bee__state_t *st = &s->items[op->state];
    size_t nf = e->field_count;
    for (size_t f = 0; f < nf && op->kind != BEE__OP_DELETE; f++) {
      if (op->changed[f] == BEE__COL_SET) st->cols[f] = BEE__COL_SET;
      if (op->changed[f] != BEE__COL_ADD || st->cols[f] == BEE__COL_SET) continue;
      if (!st->deltas && !(st->deltas = bee__calloc(nf, BEE__DELTA_TEXT))) return BEE_ENOMEM;
      char *text = st->deltas + f * BEE__DELTA_TEXT;
      bee__field_t w = e->fields[f];
      w.bits = 64, w.is_unsigned = 0, w.precision = 65;
      bee_value_t sum = op->values[f], prev = {.kind = BEE_VALUE_STRING, .str = text, .len = strlen(text)};
      char out[BEE__DELTA_TEXT];
      if (st->cols[f] == BEE__COL_ADD) {
        if (w.type == BEE_FIELD_INT) prev = (bee_value_t){.kind = BEE_VALUE_INT, .i = strtoll(text, NULL, 10)};
        if (bee__value_add(&w, &prev, &op->values[f], &sum, out, sizeof out)) return BEE_EINVAL;
      }
      if (sum.kind == BEE_VALUE_INT) snprintf(text, BEE__DELTA_TEXT, "%lld", (long long)sum.i);
      else snprintf(text, BEE__DELTA_TEXT, "%.*s", (int)sum.len, sum.str);
      st->cols[f] = BEE__COL_ADD;
    }
  }
  return 0;
}

int bee__states_build(bee_context_t *ctx, bee__states_t *s) {
  s->items = bee__calloc(ctx->op_count ? ctx->op_count : 1, sizeof *s->items);
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
  size_t total = 1;
  for (size_t i = 0; i < s->count; i++) total += ctx->engine->entities[s->items[i].entity].field_count;
  if (!(s->cols_block = bee__calloc(total, 1))) return BEE_ENOMEM;
  for (size_t i = 0, at = 0; i < s->count; i++) {
    s->items[i].cols = s->cols_block + at;
    at += ctx->engine->entities[s->items[i].entity].field_count;
  }
  for (size_t i = 0; i < ctx->op_count; i++)
    ctx->ops[i].state = (size_t)(bee__state_find(s, ctx->ops[i].entity, ctx->ops[i].id) - s->items);
  return states_columns(ctx, s) ? BEE_ENOMEM : 0;
}

int bee__compute_after(bee_context_t *ctx, bee__states_t *s, bee_value_t *values) {
  bee_engine_t *engine = ctx->engine;
  for (size_t i = 0; i < s->count; i++) {
    bee__state_t *st = &s->items[i];
    st->has_after = st->had_before;
    st->after.len = 0;
    if (st->had_before) bee__buf_append(&st->after, st->before.data, st->before.len);
  }
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    const bee__entity_t *e = &engine->entities[op->entity];
    bee__state_t *st = &s->items[op->state];
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
      char (*sums)[BEE__DELTA_TEXT] = NULL;
      for (size_t f = 0; f < e->field_count; f++) {
        if (op->changed[f] == BEE__COL_SET) values[f] = op->values[f];
        if (op->changed[f] != BEE__COL_ADD) continue;
        if (!sums && !(sums = bee__malloc(e->field_count * sizeof *sums))) {
          bee__buf_free(&cur);
          return BEE_ENOMEM;
        }
        bee_value_t sum;
        /* out of range: MySQL refuses it (sync: the flush fails first; async: the
           consumer parks the event and drops the cached row) */
        if (bee__value_add(&e->fields[f], &values[f], &op->values[f], &sum, sums[f], sizeof sums[f]) == 0)
          values[f] = sum;
      }
      st->after.len = 0;
      int rc = bee__row_encode(e, op->id, values, &st->after);
      bee__free(sums);
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

/* ------------------------------------------------------------------------ */
/* The synchronous flush                                                    */

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
static int read_before(bee_context_t *ctx, size_t pool, MYSQL *conn, bee__states_t *s, bee_value_t *values,
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
        bee__state_t *st = bee__state_find(s, ei, id);
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
        const char *name = e->fields[f].name;
        bee__buf_printf(&sql, "%s`%s`=", any++ ? "," : "", name);
        if (op->changed[f] == BEE__COL_SET) bee__sql_literal(conn, &op->values[f], &sql);
        else if (bee__sql_add(name, strlen(name), &op->values[f], &sql)) sql.failed = 1; /* never: validated when tracked */
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
  bee_value_t *values = bee__calloc(bee__max_fields(engine), sizeof *values);
  bee__states_t s = {0};
  int rc = 0;
  if (!used || !begun || !values || bee__states_build(ctx, &s)) {
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
      if (bee__compute_after(ctx, &s, values)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
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
  if (!rc && !single && bee__compute_after(ctx, &s, values)) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
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
      begun[p] = 0;
      continue;
    }
    if (mysql_query(ctx->mysql[p], "COMMIT") != 0) {
      rc = bee__mysql_error(err, ctx->mysql[p], &engine->mysql[p], "commit failed on");
      bee__ctx_mysql_broken(ctx, p);
      begun[p] = 0;
    } else {
      committed++;
    }
  }
  if (rc && !committed) goto out;
  if (rc) { /* a later pool failed to commit: only the committed pools' rows go to caches */
    size_t w = 0;
    for (size_t i = 0; i < s.count; i++) {
      if (begun[engine->rt[s.items[i].entity].mysql]) {
        s.items[w++] = s.items[i];
      } else {
        bee__buf_free(&s.items[i].before);
        bee__buf_free(&s.items[i].after);
        bee__free(s.items[i].deltas);
      }
    }
    s.count = w;
  }
  /* 3. caches, from what MySQL committed */
  int crc = bee__cache_write(ctx, &s, values, -1, NULL, "MySQL committed, but the cache update failed", rc ? NULL : err);
  if (!rc) rc = crc;
  bee_context_clear_flush(ctx); /* committed: nothing left to retry */
out:
  bee__states_free(&s);
  bee__free(values);
  bee__free(used);
  bee__free(begun);
  return rc;
}

