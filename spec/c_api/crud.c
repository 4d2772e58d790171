/*
 * crud.c: a C program using only the public API (<beeorm.h>) against live servers.
 * Built by spec/packaging_spec.lua from an installed tree with
 *   cc crud.c $(pkg-config --cflags --libs --static beeorm)
 *
 * usage: crud MYSQL_DSN REDIS_ADDR REDIS_DB
 *
 * Registers the pools, defines entity pk_crud (several field types, a unique string),
 * validates, syncs the schema, inserts two rows with a synchronous flush, edits one
 * with flush_async, drains the queue once (non-blocking consumer), reads both rows back
 * through a fresh context (by id and by the unique index) and checks MySQL with plain
 * SQL. Prints "ok ..." and exits 0, or prints every difference and exits 1. Every
 * failing call is reported with bee_error_format. Everything is freed.
 */
#include <beeorm.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTITY "pk_crud"
#define NFIELDS 7 /* name qty price active status weight born */

static int failures;

/* Reports a failed call (rc != 0) with its error line; returns rc. */
static int report(const char *what, int rc, const bee_error_t *err) {
  char line[1024];
  bee_error_format(err, line, sizeof line);
  printf("FAIL %s: %s (%s): %s\n", what, bee_err_name(rc), bee_strerror(rc), line);
  return rc;
}

/* Runs a call returning 0 or a BEE_E* code; on failure reports it and jumps to done. */
#define TRY(call)                        \
  do {                                   \
    bee_error_clear(&err);               \
    int rc_ = (call);                    \
    if (rc_ != 0) {                      \
      report(#call, rc_, &err);          \
      failures++;                        \
      goto done;                         \
    }                                    \
  } while (0)

/* Like TRY for the definition calls that return a number (field, index) or a negative code. */
#define TRY_NUM(var, call)               \
  do {                                   \
    bee_error_clear(&err);               \
    (var) = (call);                      \
    if ((var) < 0) {                     \
      report(#call, (var), &err);        \
      failures++;                        \
      goto done;                         \
    }                                    \
  } while (0)

static void check(int ok, const char *fmt, const char *what, const char *got, const char *want) {
  if (ok) return;
  failures++;
  printf(fmt, what, got, want);
}

static void expect_str(const char *what, const char *got, const char *want) {
  check(got && strcmp(got, want) == 0, "FAIL %s: got '%s', want '%s'\n", what, got ? got : "(none)", want);
}

static bee_value_t v_int(int64_t i) { return (bee_value_t){.kind = BEE_VALUE_INT, .i = i}; }
static bee_value_t v_bool(int b) { return (bee_value_t){.kind = BEE_VALUE_BOOL, .i = b != 0}; }
static bee_value_t v_float(double f) { return (bee_value_t){.kind = BEE_VALUE_FLOAT, .f = f}; }
static bee_value_t v_str(const char *s) { return (bee_value_t){.kind = BEE_VALUE_STRING, .str = s, .len = strlen(s)}; }

/* A value as text: "int:3", "bool:true", "float:1.25", "str:abc", "nil". */
static void value_text(const bee_value_t *v, char *buf, size_t size) {
  switch (v->kind) {
  case BEE_VALUE_INT: snprintf(buf, size, "int:%" PRId64, v->i); break;
  case BEE_VALUE_BOOL: snprintf(buf, size, "bool:%s", v->i ? "true" : "false"); break;
  case BEE_VALUE_FLOAT: snprintf(buf, size, "float:%.17g", v->f); break;
  case BEE_VALUE_STRING: snprintf(buf, size, "str:%.*s", (int)(v->len < 200 ? v->len : 200), v->str); break;
  default: snprintf(buf, size, "nil"); break;
  }
}

/* What a loader callback saw: one row, its values as text. */
typedef struct {
  int calls;
  int found;
  uint64_t id;
  char text[NFIELDS][256];
} seen_t;

static int on_row(void *ud, size_t index, const bee_row_t *row) {
  seen_t *s = ud;
  (void)index;
  s->calls++;
  if (!row) return 0;
  s->found = 1;
  s->id = row->id;
  for (size_t i = 0; i < NFIELDS; i++) value_text(&row->values[i], s->text[i], sizeof s->text[i]);
  return 0;
}

static void expect_row(const char *what, const seen_t *s, uint64_t id, const char *const want[NFIELDS],
                       const int field_of[NFIELDS]) {
  static const char *const names[NFIELDS] = {"name", "qty", "price", "active", "status", "weight", "born"};
  char label[128];
  if (s->calls != 1 || !s->found || s->id != id) {
    failures++;
    printf("FAIL %s: %d calls, found %d, id %" PRIu64 " (want 1 call, id %" PRIu64 ")\n", what, s->calls, s->found,
           s->id, id);
    return;
  }
  for (int i = 0; i < NFIELDS; i++) {
    snprintf(label, sizeof label, "%s: field %s", what, names[i]);
    expect_str(label, s->text[field_of[i]], want[i]);
  }
}

/* Rows of a SQL query as "a|b|c" lines. */
typedef struct {
  char out[1024];
  size_t len;
} sql_rows_t;

static int on_sql_row(void *ud, size_t ncols, const char *const *names, const char *const *cells,
                      const size_t *lens) {
  sql_rows_t *r = ud;
  (void)names;
  for (size_t c = 0; c < ncols; c++) {
    int n = snprintf(r->out + r->len, sizeof r->out - r->len, "%s%.*s", c ? "|" : "", cells[c] ? (int)lens[c] : 4,
                     cells[c] ? cells[c] : "NULL");
    if (n < 0 || (size_t)n >= sizeof r->out - r->len) return 1;
    r->len += (size_t)n;
  }
  if (r->len + 1 < sizeof r->out) r->out[r->len++] = '\n';
  r->out[r->len] = '\0';
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MYSQL_DSN REDIS_ADDR REDIS_DB\n", argv[0]);
    return 2;
  }
  bee_error_t err;
  bee_registry_t *reg = NULL;
  bee_entity_def_t *def = NULL;
  bee_engine_t *engine = NULL;
  bee_context_t *ctx = NULL, *ctx2 = NULL;
  char sql[256];
  uint64_t id_a = 0, id_b = 0;

  reg = bee_registry_new();
  if (!reg) {
    printf("FAIL bee_registry_new: out of memory\n");
    return 1;
  }
  TRY(bee_registry_add_mysql(reg, "default", argv[1], &err));
  TRY(bee_registry_add_redis(reg, "default", argv[2], atoi(argv[3]), &err));

  /* The entity: fields of several types, a unique string, Redis cache. */
  def = bee_entity_def_new(ENTITY);
  if (!def) {
    printf("FAIL bee_entity_def_new: out of memory\n");
    failures++;
    goto done;
  }
  bee_value_t yes = v_bool(1);
  TRY(bee_entity_def_option(def, "redis_cache", &yes));
  int f;
  TRY_NUM(f, bee_entity_def_field(def, "name", "string"));
  bee_value_t len64 = v_int(64);
  TRY(bee_entity_def_field_option(def, f, "length", &len64));
  TRY(bee_entity_def_field_option(def, f, "required", &yes));
  TRY(bee_entity_def_field_option(def, f, "unique", &yes));
  TRY_NUM(f, bee_entity_def_field(def, "qty", "int"));
  bee_value_t bits16 = v_int(16);
  TRY(bee_entity_def_field_option(def, f, "bits", &bits16));
  TRY(bee_entity_def_field_option(def, f, "unsigned", &yes));
  TRY_NUM(f, bee_entity_def_field(def, "price", "decimal"));
  bee_value_t p10 = v_int(10), s2 = v_int(2);
  TRY(bee_entity_def_field_option(def, f, "precision", &p10));
  TRY(bee_entity_def_field_option(def, f, "scale", &s2));
  TRY_NUM(f, bee_entity_def_field(def, "active", "bool"));
  TRY_NUM(f, bee_entity_def_field(def, "status", "enum"));
  TRY(bee_entity_def_field_value(def, f, "new"));
  TRY(bee_entity_def_field_value(def, f, "done"));
  TRY(bee_entity_def_field_option(def, f, "required", &yes));
  TRY_NUM(f, bee_entity_def_field(def, "weight", "float"));
  TRY_NUM(f, bee_entity_def_field(def, "born", "date"));
  {
    bee_entity_def_t *d = def;
    def = NULL; /* the registry takes it in every case */
    TRY(bee_registry_add_entity(reg, d, &err));
  }
  TRY(bee_registry_validate(reg, &engine, &err));
  bee_registry_free(reg); /* the engine owns copies of what it needs */
  reg = NULL;

  const bee_entity_t *e = bee_engine_entity(engine, ENTITY);
  if (!e || bee_entity_field_count(e) != NFIELDS) {
    printf("FAIL bee_engine_entity: %s\n", e ? "wrong field count" : "entity not found");
    failures++;
    goto done;
  }
  static const char *const names[NFIELDS] = {"name", "qty", "price", "active", "status", "weight", "born"};
  int fi[NFIELDS];
  for (int i = 0; i < NFIELDS; i++) {
    fi[i] = bee_entity_field_index(e, names[i]);
    if (fi[i] < 0) {
      printf("FAIL bee_entity_field_index: no field %s\n", names[i]);
      failures++;
      goto done;
    }
  }

  /* A fresh table, then the schema from the definition. */
  snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS `%s`", bee_entity_table(e));
  TRY(bee_engine_sql_exec(engine, NULL, sql, NULL, 0, NULL, &err));
  size_t applied = 0;
  TRY(bee_engine_sync_schema(engine, 0, &applied, &err));
  if (applied < 1) {
    printf("FAIL bee_engine_sync_schema: ran %zu statements, want at least 1 (CREATE TABLE)\n", applied);
    failures++;
    goto done;
  }
  bee_alter_t *alters = NULL;
  size_t nalters = 0;
  TRY(bee_engine_schema_alters(engine, &alters, &nalters, &err));
  bee_alters_free(alters, nalters);
  if (nalters != 0) {
    printf("FAIL bee_engine_schema_alters: %zu alters left after sync\n", nalters);
    failures++;
  }

  /* Create two rows, synchronous flush. */
  TRY(bee_engine_context(engine, &ctx, &err));
  TRY(bee_context_new_id(ctx, e, &id_a, &err));
  TRY(bee_context_new_id(ctx, e, &id_b, &err));
  if (id_a == 0 || id_b == 0 || id_a == id_b) {
    printf("FAIL bee_context_new_id: ids %" PRIu64 " and %" PRIu64 "\n", id_a, id_b);
    failures++;
    goto done;
  }
  bee_value_t a[NFIELDS], b[NFIELDS];
  a[fi[0]] = v_str("pk-alpha");
  a[fi[1]] = v_int(3);
  a[fi[2]] = v_str("7.5"); /* canonical: 7.50 */
  a[fi[3]] = v_bool(1);
  a[fi[4]] = v_str("new");
  a[fi[5]] = v_float(1.25);
  a[fi[6]] = v_str("2024-02-29");
  b[fi[0]] = v_str("pk-beta");
  b[fi[1]] = v_int(10);
  b[fi[2]] = v_int(4); /* integers are accepted for decimals: 4.00 */
  b[fi[3]] = v_bool(1);
  b[fi[4]] = v_str("new");
  b[fi[5]] = (bee_value_t){.kind = BEE_VALUE_NIL};
  b[fi[6]] = (bee_value_t){.kind = BEE_VALUE_NIL};
  TRY(bee_context_insert(ctx, e, id_a, a, &err));
  TRY(bee_context_insert(ctx, e, id_b, b, &err));
  if (bee_context_pending(ctx) != 2) {
    printf("FAIL bee_context_pending: %zu, want 2\n", bee_context_pending(ctx));
    failures++;
  }
  TRY(bee_context_flush(ctx, &err));

  /* A value the definition refuses is rejected when tracked (G7), naming the field. */
  {
    bee_value_t bad[NFIELDS];
    memcpy(bad, b, sizeof bad);
    bad[fi[1]] = v_int(70000); /* unsigned 16-bit */
    bee_error_clear(&err);
    int rc = bee_context_update(ctx, e, id_b, bad, (const unsigned char[NFIELDS]){0}, &err);
    if (rc != 0) {
      report("bee_context_update with nothing changed", rc, &err);
      failures++;
    }
    unsigned char only_qty[NFIELDS] = {0};
    only_qty[fi[1]] = 1;
    bee_error_clear(&err);
    rc = bee_context_update(ctx, e, id_b, bad, only_qty, &err);
    if (rc != BEE_EVALIDATION || strcmp(err.field, "qty") != 0) {
      printf("FAIL an out-of-range qty: got %s (field '%s'), want BEE_EVALIDATION on field 'qty'\n", bee_err_name(rc),
             err.field);
      failures++;
    }
    bee_context_clear_flush(ctx);
  }

  /* Edit b (quantity, price, status, active), asynchronously. */
  bee_value_t edit[NFIELDS];
  memcpy(edit, b, sizeof edit);
  edit[fi[1]] = v_int(42);
  edit[fi[2]] = v_str("19.99");
  edit[fi[3]] = v_bool(0);
  edit[fi[4]] = v_str("done");
  unsigned char changed[NFIELDS] = {0};
  changed[fi[1]] = changed[fi[2]] = changed[fi[3]] = changed[fi[4]] = 1;
  TRY(bee_context_update(ctx, e, id_b, edit, changed, &err));
  TRY(bee_context_flush_async(ctx, &err));
  bee_context_free(ctx);
  ctx = NULL;

  /* MySQL has not seen the edit yet: only a consumer applies it. */
  sql_rows_t before = {{0}, 0};
  bee_value_t arg_b = v_int((int64_t)id_b);
  snprintf(sql, sizeof sql, "SELECT name, qty, price, active, status FROM `%s` WHERE id = ?", bee_entity_table(e));
  TRY(bee_engine_sql_query(engine, NULL, sql, &arg_b, 1, on_sql_row, &before, &err));
  expect_str("MySQL before the consumer ran", before.out, "pk-beta|10|4.00|1|new\n");

  /* Drain the queue once (non-blocking). */
  bee_consume_options_t opts = {.block = 0, .workers = 1};
  bee_consume_stats_t stats;
  TRY(bee_engine_consume(engine, &opts, &stats, &err));
  if (stats.events < 1 || stats.entries < 1 || stats.failed != 0) {
    printf("FAIL bee_engine_consume: %" PRIu64 " entries, %" PRIu64 " events, %" PRIu64 " failed\n", stats.entries,
           stats.events, stats.failed);
    failures++;
  }

  /* Read both back through a fresh context. */
  TRY(bee_engine_context(engine, &ctx2, &err));
  static const char *const want_a[NFIELDS] = {"str:pk-alpha", "int:3",    "str:7.50",       "bool:true",
                                              "str:new",      "float:1.25", "str:2024-02-29"};
  static const char *const want_b[NFIELDS] = {"str:pk-beta", "int:42", "str:19.99", "bool:false",
                                              "str:done",    "nil",    "nil"};
  seen_t seen;
  memset(&seen, 0, sizeof seen);
  TRY(bee_context_get_by_ids(ctx2, e, &id_a, 1, on_row, &seen, &err));
  expect_row("get_by_ids(a)", &seen, id_a, want_a, fi);
  memset(&seen, 0, sizeof seen);
  TRY(bee_context_get_by_ids(ctx2, e, &id_b, 1, on_row, &seen, &err));
  expect_row("get_by_ids(b)", &seen, id_b, want_b, fi);
  memset(&seen, 0, sizeof seen);
  bee_value_t key = v_str("pk-beta");
  TRY(bee_context_get_by_unique(ctx2, e, "name", &key, 1, on_row, &seen, &err));
  expect_row("get_by_unique(name = pk-beta)", &seen, id_b, want_b, fi);
  memset(&seen, 0, sizeof seen);
  uint64_t missing = id_b + 1000000;
  TRY(bee_context_get_by_ids(ctx2, e, &missing, 1, on_row, &seen, &err));
  if (seen.calls != 1 || seen.found) {
    printf("FAIL get_by_ids(missing id): %d calls, found %d (want 1 call, not found)\n", seen.calls, seen.found);
    failures++;
  }

  /* And MySQL, through plain SQL. */
  sql_rows_t rows = {{0}, 0};
  snprintf(sql, sizeof sql, "SELECT id, name, qty, price, active, status, weight, born FROM `%s` ORDER BY id",
           bee_entity_table(e));
  TRY(bee_engine_sql_query(engine, NULL, sql, NULL, 0, on_sql_row, &rows, &err));
  char want_rows[512];
  snprintf(want_rows, sizeof want_rows,
           "%" PRIu64 "|pk-alpha|3|7.50|1|new|1.25|2024-02-29\n%" PRIu64 "|pk-beta|42|19.99|0|done|NULL|NULL\n", id_a,
           id_b);
  expect_str("MySQL rows after the consumer ran", rows.out, want_rows);

done:
  bee_context_free(ctx2);
  bee_context_free(ctx);
  bee_engine_free(engine);
  bee_entity_def_free(def);
  bee_registry_free(reg);
  bee_library_end();
  if (failures) {
    printf("%d check(s) failed\n", failures);
    return 1;
  }
  printf("ok c_api crud: entity %s, ids %" PRIu64 " and %" PRIu64 ", flush, flush_async, consume, get_by_ids, "
         "get_by_unique, sql_query\n",
         ENTITY, id_a, id_b);
  return 0;
}
