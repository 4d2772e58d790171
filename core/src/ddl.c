/* ddl.c: column types, CREATE TABLE, and the safe/unsafe diff against a live table. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ddl.h"

static const char *int_base(int bits) {
  switch (bits) {
    case 8: return "tinyint";
    case 16: return "smallint";
    case 24: return "mediumint";
    case 64: return "bigint";
    default: return "int";
  }
}

/* Appends s as a SQL string literal: quotes doubled, backslashes doubled. */
static void put_literal(bee__buf_t *b, const char *s) {
  bee__buf_puts(b, "'");
  for (; *s; s++) {
    if (*s == '\'') bee__buf_puts(b, "''");
    else if (*s == '\\') bee__buf_puts(b, "\\\\");
    else bee__buf_append(b, s, 1);
  }
  bee__buf_puts(b, "'");
}

void bee__ddl_column_type(const bee__field_t *f, bee__buf_t *b) {
  switch (f->type) {
    case BEE_FIELD_INT:
      bee__buf_printf(b, "%s%s", int_base(f->bits), f->is_unsigned ? " unsigned" : "");
      break;
    case BEE_FIELD_BOOL: bee__buf_puts(b, "tinyint(1)"); break;
    case BEE_FIELD_FLOAT: bee__buf_puts(b, "double"); break;
    case BEE_FIELD_DECIMAL: bee__buf_printf(b, "decimal(%d,%d)", f->precision, f->scale); break;
    case BEE_FIELD_STRING: bee__buf_printf(b, "varchar(%d)", f->length); break;
    case BEE_FIELD_TEXT: bee__buf_puts(b, "text"); break;
    case BEE_FIELD_BYTES: bee__buf_puts(b, "blob"); break;
    case BEE_FIELD_DATE: bee__buf_puts(b, "date"); break;
    case BEE_FIELD_DATETIME: bee__buf_puts(b, "datetime"); break;
    case BEE_FIELD_ENUM:
    case BEE_FIELD_SET:
      bee__buf_puts(b, f->type == BEE_FIELD_ENUM ? "enum(" : "set(");
      for (size_t i = 0; i < f->value_count; i++) {
        if (i) bee__buf_puts(b, ",");
        put_literal(b, f->values[i]);
      }
      bee__buf_puts(b, ")");
      break;
    case BEE_FIELD_REF: bee__buf_puts(b, "bigint unsigned"); break;
  }
}

static int is_textual(bee_field_type_t t) {
  return t == BEE_FIELD_STRING || t == BEE_FIELD_TEXT || t == BEE_FIELD_ENUM || t == BEE_FIELD_SET;
}

/* "`name` type [CHARACTER SET utf8mb4] NOT NULL|DEFAULT NULL" */
static void column_def(const bee__field_t *f, bee__buf_t *b) {
  bee__buf_printf(b, "`%s` ", f->name);
  bee__ddl_column_type(f, b);
  if (is_textual(f->type)) bee__buf_puts(b, " CHARACTER SET utf8mb4");
  bee__buf_puts(b, f->required ? " NOT NULL" : " DEFAULT NULL");
}

static void index_columns(const bee__entity_t *e, const bee__index_t *ix, bee__buf_t *b) {
  bee__buf_puts(b, "(");
  for (size_t i = 0; i < ix->field_count; i++)
    bee__buf_printf(b, "%s`%s`", i ? "," : "", e->fields[ix->fields[i]].name);
  bee__buf_puts(b, ")");
}

void bee__ddl_create_table(const bee__entity_t *e, bee__buf_t *b) {
  bee__buf_printf(b, "CREATE TABLE `%s` (`id` bigint unsigned NOT NULL", e->table);
  for (size_t i = 0; i < e->field_count; i++) {
    bee__buf_puts(b, ", ");
    column_def(&e->fields[i], b);
  }
  bee__buf_puts(b, ", PRIMARY KEY (`id`)");
  for (size_t i = 0; i < e->index_count; i++) {
    const bee__index_t *ix = &e->indexes[i];
    bee__buf_printf(b, ", %sKEY `%s` ", ix->unique ? "UNIQUE " : "", ix->name);
    index_columns(e, ix, b);
  }
  bee__buf_puts(b, ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
}

/* ------------------------------------------------------------------------ */
/* Diff                                                                     */

/*
 * A live COLUMN_TYPE in beeorm's spelling: integer display widths dropped (MySQL 8
 * drops them too) except tinyint(1), which is how booleans are told apart.
 */
static void normalize_type(const char *in, char *out, size_t size) {
  char tmp[512];
  size_t n = 0;
  for (; *in && n + 1 < sizeof tmp; in++) tmp[n++] = *in;
  tmp[n] = '\0';
  static const char *const ints[] = {"tinyint", "smallint", "mediumint", "int", "bigint"};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
    size_t l = strlen(ints[i]);
    if (strncasecmp(tmp, ints[i], l) == 0 && tmp[l] == '(') {
      char *close = strchr(tmp + l, ')');
      if (!close) break;
      if (strncasecmp(tmp, "tinyint(1)", 10) == 0) break;
      snprintf(out, size, "%.*s%s", (int)l, tmp, close + 1);
      for (char *p = out; *p; p++) *p = (char)tolower((unsigned char)*p);
      return;
    }
  }
  snprintf(out, size, "%s", tmp);
  /* Lower-case the base type only: enum/set members keep their case. */
  for (char *p = out; *p && *p != '('; p++) *p = (char)tolower((unsigned char)*p);
}

typedef struct {
  char base[32];
  char args[480];
  int is_unsigned;
} shape_t;

static void parse_shape(const char *t, shape_t *s) {
  memset(s, 0, sizeof *s);
  size_t n = strcspn(t, "( ");
  snprintf(s->base, sizeof s->base, "%.*s", (int)(n < 31 ? n : 31), t);
  if (t[n] == '(') {
    const char *close = strrchr(t, ')');
    if (close && close > t + n) snprintf(s->args, sizeof s->args, "%.*s", (int)(close - t - n - 1), t + n + 1);
  }
  size_t len = strlen(t);
  s->is_unsigned = len > 9 && strcmp(t + len - 9, " unsigned") == 0;
}

static int int_bits(const char *base) {
  if (!strcmp(base, "tinyint")) return 8;
  if (!strcmp(base, "smallint")) return 16;
  if (!strcmp(base, "mediumint")) return 24;
  if (!strcmp(base, "int")) return 32;
  if (!strcmp(base, "bigint")) return 64;
  return 0;
}

/* 1 when every value of type `from` fits `to` unchanged. */
static int widens(const char *from, const char *to) {
  if (!strcmp(from, to)) return 1;
  shape_t a, b;
  parse_shape(from, &a);
  parse_shape(to, &b);
  int ab = int_bits(a.base), bb = int_bits(b.base);
  if (ab && bb) {
    if (!strcmp(from, "tinyint(1)")) a.is_unsigned = 0;
    if (a.is_unsigned == b.is_unsigned) return bb >= ab;
    return a.is_unsigned && !b.is_unsigned && bb > ab;
  }
  if (!strcmp(a.base, "varchar") && !strcmp(b.base, "varchar")) return atoi(b.args) >= atoi(a.args);
  if (!strcmp(a.base, "varchar") && (!strcmp(b.base, "text") || !strcmp(b.base, "mediumtext") || !strcmp(b.base, "longtext")))
    return atoi(a.args) <= 16383;
  if (!strcmp(a.base, "decimal") && !strcmp(b.base, "decimal")) {
    int p1 = 0, s1 = 0, p2 = 0, s2 = 0;
    if (sscanf(a.args, "%d,%d", &p1, &s1) < 1 || sscanf(b.args, "%d,%d", &p2, &s2) < 1) return 0;
    return s2 >= s1 && p2 - s2 >= p1 - s1;
  }
  if ((!strcmp(a.base, "enum") && !strcmp(b.base, "enum")) || (!strcmp(a.base, "set") && !strcmp(b.base, "set"))) {
    size_t n = strlen(a.args);
    return strncmp(a.args, b.args, n) == 0 && b.args[n] == ',';
  }
  if (!strcmp(a.base, "date") && !strcmp(b.base, "datetime")) return 1;
  return 0;
}

static int push(bee__alters_t *list, bee__buf_t *sql, int safe, const char *pool, const char *table) {
  char *text = bee__buf_take(sql);
  if (!text) return BEE_ENOMEM;
  if (list->count == list->cap) {
    size_t cap = list->cap ? list->cap * 2 : 8;
    bee_alter_t *grown = bee__realloc(list->items, cap * sizeof *grown);
    if (!grown) {
      bee__free(text);
      return BEE_ENOMEM;
    }
    list->items = grown;
    list->cap = cap;
  }
  bee_alter_t *a = &list->items[list->count++];
  memset(a, 0, sizeof *a);
  a->sql = text;
  a->safe = safe;
  snprintf(a->pool, sizeof a->pool, "%s", pool);
  snprintf(a->table, sizeof a->table, "%s", table);
  return 0;
}

static const bee__live_column_t *live_column(const bee__live_table_t *t, const char *name) {
  for (size_t i = 0; i < t->column_count; i++)
    if (!strcasecmp(t->columns[i].name, name)) return &t->columns[i];
  return NULL;
}

static const bee__live_index_t *live_index(const bee__live_table_t *t, const char *name) {
  for (size_t i = 0; i < t->index_count; i++)
    if (!strcasecmp(t->indexes[i].name, name)) return &t->indexes[i];
  return NULL;
}

static int index_matches(const bee__entity_t *e, const bee__index_t *ix, const bee__live_index_t *li) {
  if (ix->unique != li->unique || ix->field_count != li->column_count) return 0;
  for (size_t i = 0; i < ix->field_count; i++)
    if (strcasecmp(e->fields[ix->fields[i]].name, li->columns[i])) return 0;
  return 1;
}

/* Expected type and nullability of a column (the implicit id when f is NULL); 0 or BEE_ENOMEM. */
static int expected_column(const bee__field_t *f, char *type, size_t size, int *nullable) {
  bee__buf_t b = {0};
  if (f) bee__ddl_column_type(f, &b);
  else bee__buf_puts(&b, "bigint unsigned");
  int failed = b.failed || !b.data;
  if (!failed) snprintf(type, size, "%s", b.data);
  bee__buf_free(&b);
  *nullable = f ? !f->required : 0;
  return failed ? BEE_ENOMEM : 0;
}

int bee__schema_diff(const bee__entity_t *e, const bee__live_table_t *live, const char *pool, bee__alters_t *list) {
  bee__buf_t sql = {0};
  int rc;
  if (!live) {
    bee__ddl_create_table(e, &sql);
    return push(list, &sql, 1, pool, e->table);
  }
  /* 1. indexes that are gone or different */
  for (size_t i = 0; i < live->index_count; i++) {
    const bee__live_index_t *li = &live->indexes[i];
    if (!strcasecmp(li->name, "PRIMARY")) continue;
    const bee__index_t *ix = NULL;
    for (size_t j = 0; j < e->index_count; j++)
      if (!strcasecmp(e->indexes[j].name, li->name)) ix = &e->indexes[j];
    if (ix && index_matches(e, ix, li)) continue;
    bee__buf_printf(&sql, "ALTER TABLE `%s` DROP INDEX `%s`", e->table, li->name);
    if ((rc = push(list, &sql, 1, pool, e->table))) return rc;
  }
  /* 2. columns to add, then 3. columns to modify (id first in both) */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i <= e->field_count; i++) {
      const bee__field_t *f = i ? &e->fields[i - 1] : NULL;
      const bee__live_column_t *lc = live_column(live, f ? f->name : "id");
      if (pass == 0 && !lc) {
        bee__buf_printf(&sql, "ALTER TABLE `%s` ADD COLUMN ", e->table);
        if (f) {
          column_def(f, &sql);
          bee__buf_printf(&sql, " AFTER `%s`", i > 1 ? e->fields[i - 2].name : "id");
        } else {
          bee__buf_puts(&sql, "`id` bigint unsigned NOT NULL FIRST");
        }
        if ((rc = push(list, &sql, 1, pool, e->table))) return rc;
      }
      if (pass == 0 || !lc) continue;
      char want[512], have[512];
      int nullable;
      if ((rc = expected_column(f, want, sizeof want, &nullable))) return rc;
      normalize_type(lc->type, have, sizeof have);
      int charset_ok = !(f && is_textual(f->type)) || !lc->charset[0] || !strcmp(lc->charset, "utf8mb4");
      if (!strcmp(have, want) && lc->nullable == nullable && charset_ok) continue;
      int safe = live->empty || (widens(have, want) && (nullable || !lc->nullable));
      bee__buf_printf(&sql, "ALTER TABLE `%s` MODIFY COLUMN ", e->table);
      if (f) column_def(f, &sql);
      else bee__buf_puts(&sql, "`id` bigint unsigned NOT NULL");
      if ((rc = push(list, &sql, safe, pool, e->table))) return rc;
    }
  }
  /* 4. columns no field defines */
  for (size_t i = 0; i < live->column_count; i++) {
    const char *name = live->columns[i].name;
    int known = !strcasecmp(name, "id");
    for (size_t j = 0; j < e->field_count && !known; j++) known = !strcasecmp(e->fields[j].name, name);
    if (known) continue;
    bee__buf_printf(&sql, "ALTER TABLE `%s` DROP COLUMN `%s`", e->table, name);
    if ((rc = push(list, &sql, 0, pool, e->table))) return rc;
  }
  /* 5. the primary key and indexes that are missing or were dropped in step 1 */
  const bee__live_index_t *pk = live_index(live, "PRIMARY");
  if (!pk || pk->column_count != 1 || strcasecmp(pk->columns[0], "id")) {
    if (pk) bee__buf_printf(&sql, "ALTER TABLE `%s` DROP PRIMARY KEY, ADD PRIMARY KEY (`id`)", e->table);
    else bee__buf_printf(&sql, "ALTER TABLE `%s` ADD PRIMARY KEY (`id`)", e->table);
    if ((rc = push(list, &sql, live->empty, pool, e->table))) return rc;
  }
  for (size_t i = 0; i < e->index_count; i++) {
    const bee__index_t *ix = &e->indexes[i];
    const bee__live_index_t *li = live_index(live, ix->name);
    if (li && index_matches(e, ix, li)) continue;
    bee__buf_printf(&sql, "ALTER TABLE `%s` ADD %sINDEX `%s` ", e->table, ix->unique ? "UNIQUE " : "", ix->name);
    index_columns(e, ix, &sql);
    if ((rc = push(list, &sql, 1, pool, e->table))) return rc;
  }
  return 0;
}

void bee_alters_free(bee_alter_t *alters, size_t count) {
  if (!alters) return;
  for (size_t i = 0; i < count; i++) bee__free(alters[i].sql);
  bee__free(alters);
}
