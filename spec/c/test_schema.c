/*
 * test_schema.c: column types, CREATE TABLE and the diff against a live table
 * (core/src/ddl.c), no server. Entities are built through the public definition API;
 * live tables are plain data shaped like what MariaDB 10.11 (or MySQL 8) reports in
 * information_schema.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ddl.h"
#include "schema_internal.h"
#include "task.h"

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* ------------------------------------------------------------------------ */
/* Building definitions                                                     */

/*
 * Adds field `name` from a spec "type opt opt=value ...": a bare option is the boolean
 * true (required, unsigned, unique); entity= and unique= take a string; values= takes
 * members separated by '|'; any other key=value is an integer (bits, length, ...).
 * Problems are recorded in def and show up in bee__entity_def_finish.
 */
static int add_field(bee_entity_def_t *def, const char *name, const char *spec) {
  char type[32];
  size_t n = strcspn(spec, " ");
  snprintf(type, sizeof type, "%.*s", (int)n, spec);
  int f = bee_entity_def_field(def, name, type);
  if (f < 0) return f;
  for (const char *p = spec + n; *p;) {
    while (*p == ' ') p++;
    size_t len = strcspn(p, " ");
    if (!len) break;
    char tok[256], *val;
    snprintf(tok, sizeof tok, "%.*s", (int)len, p);
    p += len;
    bee_value_t v = {BEE_VALUE_BOOL, 1, 0, NULL, 0};
    if ((val = strchr(tok, '=')) != NULL) {
      *val++ = '\0';
      if (!strcmp(tok, "values")) {
        for (char *m = val;;) {
          char *bar = strchr(m, '|');
          if (bar) *bar = '\0';
          bee_entity_def_field_value(def, f, m);
          if (!bar) break;
          m = bar + 1;
        }
        continue;
      }
      if (!strcmp(tok, "entity") || !strcmp(tok, "unique")) {
        v.kind = BEE_VALUE_STRING;
        v.str = val;
        v.len = strlen(val);
      } else {
        v.kind = BEE_VALUE_INT;
        v.i = strtoll(val, NULL, 10);
      }
    }
    bee_entity_def_field_option(def, f, tok, &v);
  }
  return f;
}

/* Adds index `name` over fields "a,b,..."; cached applies to non-unique ones. */
static void add_index(bee_entity_def_t *def, const char *name, int unique, int cached, const char *fields) {
  int ix = bee_entity_def_index(def, name, unique);
  if (ix < 0) return;
  char list[256];
  snprintf(list, sizeof list, "%s", fields);
  for (char *m = list;;) {
    char *comma = strchr(m, ',');
    if (comma) *comma = '\0';
    bee_entity_def_index_field(def, ix, m);
    if (!comma) break;
    m = comma + 1;
  }
  if (cached) {
    bee_value_t v = {BEE_VALUE_BOOL, 1, 0, NULL, 0};
    bee_entity_def_index_option(def, ix, "cached", &v);
  }
}

static void set_table(bee_entity_def_t *def, const char *table) {
  bee_value_t v = {BEE_VALUE_STRING, 0, 0, table, strlen(table)};
  bee_entity_def_option(def, "table", &v);
}

/* Entity "t" with the one field "c" of spec; NULL when the definition fails. */
static bee_entity_def_t *one_field(const char *spec) {
  bee_entity_def_t *def = bee_entity_def_new("t");
  if (!def) return NULL;
  add_field(def, "c", spec);
  if (bee__entity_def_finish(def)) {
    fprintf(stderr, "  definition of '%s' failed: %s\n", spec, def->error.message);
    bee_entity_def_free(def);
    return NULL;
  }
  return def;
}

/* ------------------------------------------------------------------------ */
/* Live tables and alter lists                                              */

#define ID_COLUMN {"id", "bigint(20) unsigned", 0, ""}
#define PRIMARY_INDEX {"PRIMARY", 1, {"id"}, 1}
#define LIVE(tname, is_empty, cols, ixs) {tname, is_empty, cols, COUNT(cols), ixs, COUNT(ixs)}

static int textual_type(const char *t) {
  return !strncmp(t, "varchar", 7) || !strncmp(t, "text", 4) || !strncmp(t, "enum", 4) ||
         !strncmp(t, "set", 3);
}

static void set_column(bee__live_column_t *c, const char *name, const char *type, int nullable) {
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "%s", name);
  snprintf(c->type, sizeof c->type, "%s", type);
  c->nullable = nullable;
  snprintf(c->charset, sizeof c->charset, "%s", textual_type(type) ? "utf8mb4" : "");
}

static int diff(const bee_entity_def_t *def, const bee__live_table_t *live, bee__alters_t *list) {
  memset(list, 0, sizeof *list);
  return bee__schema_diff(&def->e, live, "default", list);
}

static void alters_clear(bee__alters_t *list) {
  bee_alters_free(list->items, list->count);
  memset(list, 0, sizeof *list);
}

static void dump(const bee__alters_t *list) {
  fprintf(stderr, "  the diff gave %zu alter(s):\n", list->count);
  for (size_t i = 0; i < list->count; i++)
    fprintf(stderr, "    %s %s\n", list->items[i].safe ? "safe  " : "UNSAFE", list->items[i].sql);
}

typedef struct {
  int safe;
  const char *sql;
} want_t;

/* 0 when list is exactly the statements of w, in order, for pool "default" and table. */
static int expect_alters(const bee__alters_t *list, const char *table, const want_t *w, size_t n) {
  int same = list->count == n;
  for (size_t i = 0; same && i < n; i++)
    same = !strcmp(list->items[i].sql, w[i].sql) && list->items[i].safe == w[i].safe;
  if (!same) dump(list);
  ASSERT_EQ(list->count, n);
  for (size_t i = 0; i < n; i++) {
    ASSERT_STR_EQ(list->items[i].sql, w[i].sql);
    ASSERT_EQ(list->items[i].safe, w[i].safe);
    ASSERT_STR_EQ(list->items[i].pool, "default");
    ASSERT_STR_EQ(list->items[i].table, table);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Column types                                                             */

TEST_IMPL(ddl_column_type_for_every_field_type_and_option) {
  static const struct {
    const char *spec, *type;
  } cases[] = {
      {"int", "int"},
      {"int bits=8", "tinyint"},
      {"int bits=8 unsigned", "tinyint unsigned"},
      {"int bits=16", "smallint"},
      {"int bits=16 unsigned", "smallint unsigned"},
      {"int bits=24", "mediumint"},
      {"int bits=24 unsigned", "mediumint unsigned"},
      {"int bits=32", "int"},
      {"int bits=32 unsigned", "int unsigned"},
      {"int bits=64", "bigint"},
      {"int bits=64 unsigned required", "bigint unsigned"},
      {"bool", "tinyint(1)"},
      {"float", "double"},
      {"decimal", "decimal(10,0)"},
      {"decimal precision=12 scale=4", "decimal(12,4)"},
      {"decimal scale=3", "decimal(10,3)"},
      {"decimal precision=65 scale=30", "decimal(65,30)"},
      {"string", "varchar(255)"},
      {"string length=100", "varchar(100)"},
      {"string length=16383", "varchar(16383)"},
      {"text", "text"},
      {"bytes", "blob"},
      {"date", "date"},
      {"datetime", "datetime"},
      {"enum values=a", "enum('a')"},
      {"enum values=Red|it's|back\\slash", "enum('Red','it''s','back\\\\slash')"},
      {"set values=x|y", "set('x','y')"},
      {"set values=o'k|a\\b|''", "set('o''k','a\\\\b','''''')"},
      {"ref entity=user", "bigint unsigned"},
  };
  for (size_t i = 0; i < COUNT(cases); i++) {
    bee_entity_def_t *def = one_field(cases[i].spec);
    ASSERT(def);
    bee__buf_t b = {0};
    bee__ddl_column_type(&def->e.fields[0], &b);
    ASSERT(!b.failed);
    if (strcmp(b.data, cases[i].type)) fprintf(stderr, "  field spec: %s\n", cases[i].spec);
    ASSERT_STR_EQ(b.data, cases[i].type);
    bee__buf_free(&b);
    bee_entity_def_free(def);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* CREATE TABLE                                                             */

/* Entity "post" (table "posts"): a unique field, a composite unique, a cached index, a ref. */
static bee_entity_def_t *post_def(void) {
  bee_entity_def_t *def = bee_entity_def_new("post");
  if (!def) return NULL;
  set_table(def, "posts");
  add_field(def, "title", "string length=100 required unique");
  add_field(def, "slug", "string length=50");
  add_field(def, "lang", "enum values=en|pl");
  add_field(def, "category", "int bits=32 unsigned");
  add_field(def, "author", "ref entity=user");
  add_index(def, "slug_lang", 1, 0, "slug,lang");
  add_index(def, "by_category", 0, 1, "category");
  if (bee__entity_def_finish(def)) {
    fprintf(stderr, "  definition of post failed: %s\n", def->error.message);
    bee_entity_def_free(def);
    return NULL;
  }
  return def;
}

#define POST_CREATE                                                                               \
  "CREATE TABLE `posts` (`id` bigint unsigned NOT NULL, "                                         \
  "`title` varchar(100) CHARACTER SET utf8mb4 NOT NULL, "                                         \
  "`slug` varchar(50) CHARACTER SET utf8mb4 DEFAULT NULL, "                                       \
  "`lang` enum('en','pl') CHARACTER SET utf8mb4 DEFAULT NULL, "                                   \
  "`category` int unsigned DEFAULT NULL, `author` bigint unsigned DEFAULT NULL, "                 \
  "PRIMARY KEY (`id`), UNIQUE KEY `slug_lang` (`slug`,`lang`), KEY `by_category` (`category`), " \
  "UNIQUE KEY `title` (`title`), KEY `author` (`author`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"

TEST_IMPL(ddl_create_table_with_unique_composite_cached_and_ref_indexes) {
  bee_entity_def_t *def = post_def();
  ASSERT(def);
  ASSERT_EQ(def->e.index_count, 4);
  ASSERT(def->e.indexes[1].cached);
  bee__buf_t b = {0};
  bee__ddl_create_table(&def->e, &b);
  ASSERT(!b.failed);
  ASSERT_STR_EQ(b.data, POST_CREATE);
  bee__buf_free(&b);
  bee_entity_def_free(def);
  return 0;
}

TEST_IMPL(schema_diff_without_live_table_creates_it) {
  bee_entity_def_t *def = post_def();
  ASSERT(def);
  bee__alters_t list = {0};
  ASSERT_EQ(bee__schema_diff(&def->e, NULL, "main", &list), 0);
  ASSERT_EQ(list.count, 1);
  ASSERT_STR_EQ(list.items[0].sql, POST_CREATE);
  ASSERT_EQ(list.items[0].safe, 1);
  ASSERT_STR_EQ(list.items[0].pool, "main");
  ASSERT_STR_EQ(list.items[0].table, "posts");
  alters_clear(&list);
  bee_entity_def_free(def);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* A table that matches                                                     */

/* Entity "item": every field type and option, with what each server reports for it. */
static const struct {
  const char *name, *spec, *mariadb, *mysql8;
  int nullable;
} item_fields[] = {
    {"i8", "int bits=8", "tinyint(4)", "tinyint", 1},
    {"u8", "int bits=8 unsigned", "tinyint(3) unsigned", "tinyint unsigned", 1},
    {"i16", "int bits=16", "smallint(6)", "smallint", 1},
    {"u16", "int bits=16 unsigned", "smallint(5) unsigned", "smallint unsigned", 1},
    {"i24", "int bits=24", "mediumint(9)", "mediumint", 1},
    {"u24", "int bits=24 unsigned", "mediumint(8) unsigned", "mediumint unsigned", 1},
    {"i32", "int required", "int(11)", "int", 0},
    {"u32", "int bits=32 unsigned", "int(10) unsigned", "int unsigned", 1},
    {"i64", "int bits=64", "bigint(20)", "bigint", 1},
    {"u64", "int bits=64 unsigned required", "bigint(20) unsigned", "bigint unsigned", 0},
    {"flag", "bool required", "tinyint(1)", "tinyint(1)", 0},
    {"ratio", "float", "double", "double", 1},
    {"price", "decimal precision=10 scale=2", "decimal(10,2)", "decimal(10,2)", 1},
    {"whole", "decimal", "decimal(10,0)", "decimal(10,0)", 1},
    {"name", "string length=100 unique", "varchar(100)", "varchar(100)", 1},
    {"code", "string required", "varchar(255)", "varchar(255)", 0},
    {"body", "text", "text", "text", 1},
    {"data", "bytes", "blob", "blob", 1},
    {"day", "date", "date", "date", 1},
    {"at", "datetime required", "datetime", "datetime", 0},
    {"color", "enum values=Red|it's|back\\slash", "enum('Red','it''s','back\\\\slash')",
     "enum('Red','it''s','back\\\\slash')", 1},
    {"tags", "set values=x|y", "set('x','y')", "set('x','y')", 1},
    {"owner", "ref entity=user", "bigint(20) unsigned", "bigint unsigned", 1},
};

static bee_entity_def_t *item_def(void) {
  bee_entity_def_t *def = bee_entity_def_new("item");
  if (!def) return NULL;
  for (size_t i = 0; i < COUNT(item_fields); i++) add_field(def, item_fields[i].name, item_fields[i].spec);
  add_index(def, "by_day_at", 0, 1, "day,at");
  if (bee__entity_def_finish(def)) {
    fprintf(stderr, "  definition of item failed: %s\n", def->error.message);
    bee_entity_def_free(def);
    return NULL;
  }
  return def;
}

static bee__live_column_t item_columns[1 + COUNT(item_fields)];
static bee__live_index_t item_indexes[4];
static const bee__live_index_t item_indexes_as_defined[] = {
    PRIMARY_INDEX,
    {"by_day_at", 0, {"day", "at"}, 2},
    {"name", 1, {"name"}, 1},
    {"owner", 0, {"owner"}, 1},
};

/* The live "item" table as MariaDB 10.11 (mysql8 = 0) or MySQL 8 reports it. */
static bee__live_table_t item_live(int mysql8) {
  memcpy(item_indexes, item_indexes_as_defined, sizeof item_indexes);
  set_column(&item_columns[0], "id", mysql8 ? "bigint unsigned" : "bigint(20) unsigned", 0);
  for (size_t i = 0; i < COUNT(item_fields); i++)
    set_column(&item_columns[i + 1], item_fields[i].name, mysql8 ? item_fields[i].mysql8 : item_fields[i].mariadb,
               item_fields[i].nullable);
  bee__live_table_t t = LIVE("item", 0, item_columns, item_indexes);
  return t;
}

TEST_IMPL(schema_diff_of_matching_mariadb_table_is_empty) {
  bee_entity_def_t *def = item_def();
  ASSERT(def);
  bee__live_table_t live = item_live(0);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  ASSERT_EQ(expect_alters(&list, "item", NULL, 0), 0);
  ASSERT(list.items == NULL);
  /* the same on an empty table, with names in other case: still nothing */
  live.empty = 1;
  snprintf(item_indexes[2].name, sizeof item_indexes[2].name, "NAME");
  snprintf(item_columns[1].name, sizeof item_columns[1].name, "I8");
  ASSERT_EQ(diff(def, &live, &list), 0);
  ASSERT_EQ(expect_alters(&list, "item", NULL, 0), 0);
  bee_entity_def_free(def);
  return 0;
}

TEST_IMPL(schema_diff_of_matching_mysql8_table_is_empty) {
  bee_entity_def_t *def = item_def();
  ASSERT(def);
  bee__live_table_t live = item_live(1);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  ASSERT_EQ(expect_alters(&list, "item", NULL, 0), 0);
  bee_entity_def_free(def);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Columns added and dropped                                                */

TEST_IMPL(schema_diff_adds_missing_column_after_previous) {
  bee_entity_def_t *def = bee_entity_def_new("t");
  ASSERT(def);
  add_field(def, "a", "int");
  add_field(def, "b", "string length=50 required");
  add_field(def, "c", "date");
  ASSERT_EQ(bee__entity_def_finish(def), 0);
  bee__live_column_t cols[] = {ID_COLUMN, {"a", "int(11)", 1, ""}, {"c", "date", 1, ""}};
  bee__live_index_t ixs[] = {PRIMARY_INDEX};
  bee__live_table_t live = LIVE("t", 0, cols, ixs);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  want_t w[] = {{1, "ALTER TABLE `t` ADD COLUMN `b` varchar(50) CHARACTER SET utf8mb4 NOT NULL AFTER `a`"}};
  ASSERT_EQ(expect_alters(&list, "t", w, COUNT(w)), 0);
  alters_clear(&list);

  /* the first field goes after `id` */
  bee__live_column_t cols2[] = {ID_COLUMN, {"b", "varchar(50)", 0, "utf8mb4"}, {"c", "date", 1, ""}};
  bee__live_table_t live2 = LIVE("t", 0, cols2, ixs);
  ASSERT_EQ(diff(def, &live2, &list), 0);
  want_t w2[] = {{1, "ALTER TABLE `t` ADD COLUMN `a` int DEFAULT NULL AFTER `id`"}};
  ASSERT_EQ(expect_alters(&list, "t", w2, COUNT(w2)), 0);
  alters_clear(&list);
  bee_entity_def_free(def);
  return 0;
}

TEST_IMPL(schema_diff_drops_extra_column_unsafely) {
  bee_entity_def_t *def = one_field("int");
  ASSERT(def);
  bee__live_column_t cols[] = {ID_COLUMN, {"c", "int(11)", 1, ""}, {"legacy", "varchar(10)", 1, "utf8mb4"}};
  bee__live_index_t ixs[] = {PRIMARY_INDEX};
  bee__live_table_t live = LIVE("t", 0, cols, ixs);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  want_t w[] = {{0, "ALTER TABLE `t` DROP COLUMN `legacy`"}};
  ASSERT_EQ(expect_alters(&list, "t", w, COUNT(w)), 0);
  alters_clear(&list);
  bee_entity_def_free(def);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Columns modified                                                         */

typedef struct {
  const char *spec;      /* the definition of field c */
  const char *live_type; /* COLUMN_TYPE of the live column c */
  int live_nullable;
  const char *sql; /* the expected MODIFY */
} change_t;

#define MODIFY "ALTER TABLE `t` MODIFY COLUMN `c` "
#define UTF8 " CHARACTER SET utf8mb4"

static const change_t widening[] = {
    {"int bits=64", "int(11)", 1, MODIFY "bigint DEFAULT NULL"},
    {"string length=100", "varchar(50)", 1, MODIFY "varchar(100)" UTF8 " DEFAULT NULL"},
    {"decimal precision=12 scale=2", "decimal(10,2)", 1, MODIFY "decimal(12,2) DEFAULT NULL"},
    {"decimal precision=12 scale=3", "decimal(10,2)", 1, MODIFY "decimal(12,3) DEFAULT NULL"},
    {"enum values=a|b|c", "enum('a','b')", 1, MODIFY "enum('a','b','c')" UTF8 " DEFAULT NULL"},
    {"set values=x|y|z", "set('x','y')", 1, MODIFY "set('x','y','z')" UTF8 " DEFAULT NULL"},
    {"int", "int(11)", 0, MODIFY "int DEFAULT NULL"},
    {"datetime", "date", 1, MODIFY "datetime DEFAULT NULL"},
    {"int bits=64", "int(10) unsigned", 1, MODIFY "bigint DEFAULT NULL"},
    {"int bits=16", "tinyint(4)", 1, MODIFY "smallint DEFAULT NULL"},
    {"int bits=32 unsigned", "smallint(5) unsigned", 1, MODIFY "int unsigned DEFAULT NULL"},
    {"int bits=16", "tinyint(3) unsigned", 1, MODIFY "smallint DEFAULT NULL"},
    {"int bits=8", "tinyint(1)", 1, MODIFY "tinyint DEFAULT NULL"},
    {"text", "varchar(255)", 1, MODIFY "text" UTF8 " DEFAULT NULL"},
    {"int bits=64 required", "int(11)", 0, MODIFY "bigint NOT NULL"},
};

static const change_t narrowing[] = {
    {"int", "bigint(20)", 1, MODIFY "int DEFAULT NULL"},
    {"string length=50", "varchar(100)", 1, MODIFY "varchar(50)" UTF8 " DEFAULT NULL"},
    {"decimal precision=10 scale=2", "decimal(12,2)", 1, MODIFY "decimal(10,2) DEFAULT NULL"},
    {"decimal precision=10 scale=3", "decimal(10,2)", 1, MODIFY "decimal(10,3) DEFAULT NULL"},
    {"enum values=a|b", "enum('a','b','c')", 1, MODIFY "enum('a','b')" UTF8 " DEFAULT NULL"},
    {"enum values=b|a", "enum('a','b')", 1, MODIFY "enum('b','a')" UTF8 " DEFAULT NULL"},
    {"int required", "int(11)", 1, MODIFY "int NOT NULL"},
    {"int bits=64 required", "int(11)", 1, MODIFY "bigint NOT NULL"},
    {"int unsigned", "int(11)", 1, MODIFY "int unsigned DEFAULT NULL"},
    {"int bits=64 unsigned", "bigint(20)", 1, MODIFY "bigint unsigned DEFAULT NULL"},
    {"int", "int(10) unsigned", 1, MODIFY "int DEFAULT NULL"},
    {"int", "varchar(100)", 1, MODIFY "int DEFAULT NULL"},
    {"string length=100", "text", 1, MODIFY "varchar(100)" UTF8 " DEFAULT NULL"},
    {"date", "datetime", 1, MODIFY "date DEFAULT NULL"},
    {"bool", "int(11)", 1, MODIFY "tinyint(1) DEFAULT NULL"},
};

/* Runs one change against a live table of `empty`; 0 when it gives one MODIFY of `safe`. */
static int run_change(const change_t *c, int empty, int safe) {
  bee_entity_def_t *def = one_field(c->spec);
  ASSERT(def);
  bee__live_column_t cols[2] = {ID_COLUMN};
  set_column(&cols[1], "c", c->live_type, c->live_nullable);
  bee__live_index_t ixs[] = {PRIMARY_INDEX};
  bee__live_table_t live = LIVE("t", empty, cols, ixs);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  want_t w[] = {{safe, c->sql}};
  if (expect_alters(&list, "t", w, 1)) {
    fprintf(stderr, "  live `c` %s %s, definition '%s', %s table\n", c->live_type,
            c->live_nullable ? "NULL" : "NOT NULL", c->spec, empty ? "empty" : "non-empty");
    return 1;
  }
  alters_clear(&list);
  bee_entity_def_free(def);
  return 0;
}

TEST_IMPL(schema_diff_widening_is_safe_on_non_empty_table) {
  int failed = 0;
  for (size_t i = 0; i < COUNT(widening); i++) failed += run_change(&widening[i], 0, 1);
  ASSERT_EQ(failed, 0);
  return 0;
}

TEST_IMPL(schema_diff_narrowing_is_unsafe_on_non_empty_table) {
  int failed = 0;
  for (size_t i = 0; i < COUNT(narrowing); i++) failed += run_change(&narrowing[i], 0, 0);
  ASSERT_EQ(failed, 0);
  return 0;
}

TEST_IMPL(schema_diff_narrowing_is_safe_on_empty_table) {
  int failed = 0;
  for (size_t i = 0; i < COUNT(narrowing); i++) failed += run_change(&narrowing[i], 1, 1);
  for (size_t i = 0; i < COUNT(widening); i++) failed += run_change(&widening[i], 1, 1);
  ASSERT_EQ(failed, 0);
  return 0;
}

TEST_IMPL(schema_diff_converts_other_charsets_to_utf8mb4) {
  bee_entity_def_t *def = bee_entity_def_new("t");
  ASSERT(def);
  add_field(def, "name", "string length=100");
  add_field(def, "body", "text required");
  add_field(def, "kind", "enum values=a|b");
  ASSERT_EQ(bee__entity_def_finish(def), 0);
  bee__live_column_t cols[] = {
      ID_COLUMN,
      {"name", "varchar(100)", 1, "latin1"},
      {"body", "text", 0, "utf8mb3"},
      {"kind", "enum('a','b')", 1, "utf8mb4"},
  };
  bee__live_index_t ixs[] = {PRIMARY_INDEX};
  bee__live_table_t live = LIVE("t", 0, cols, ixs);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  want_t w[] = {
      {1, "ALTER TABLE `t` MODIFY COLUMN `name` varchar(100) CHARACTER SET utf8mb4 DEFAULT NULL"},
      {1, "ALTER TABLE `t` MODIFY COLUMN `body` text CHARACTER SET utf8mb4 NOT NULL"},
  };
  ASSERT_EQ(expect_alters(&list, "t", w, COUNT(w)), 0);
  alters_clear(&list);
  bee_entity_def_free(def);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Indexes                                                                  */

TEST_IMPL(schema_diff_adds_drops_and_rebuilds_indexes_but_never_primary) {
  bee_entity_def_t *def = bee_entity_def_new("t");
  ASSERT(def);
  add_field(def, "a", "int");
  add_field(def, "b", "int");
  add_field(def, "age", "int bits=8 unsigned");
  add_field(def, "email", "string length=100 unique");
  add_index(def, "ab", 0, 0, "a,b");
  add_index(def, "by_age", 0, 1, "age");
  ASSERT_EQ(bee__entity_def_finish(def), 0);
  bee__live_column_t cols[] = {
      ID_COLUMN,
      {"a", "int(11)", 1, ""},
      {"b", "int(11)", 1, ""},
      {"age", "tinyint(3) unsigned", 1, ""},
      {"email", "varchar(100)", 1, "utf8mb4"},
  };
  bee__alters_t list;

  /* every index missing */
  bee__live_index_t only_pk[] = {PRIMARY_INDEX};
  bee__live_table_t live = LIVE("t", 0, cols, only_pk);
  ASSERT_EQ(diff(def, &live, &list), 0);
  want_t added[] = {
      {1, "ALTER TABLE `t` ADD INDEX `ab` (`a`,`b`)"},
      {1, "ALTER TABLE `t` ADD INDEX `by_age` (`age`)"},
      {1, "ALTER TABLE `t` ADD UNIQUE INDEX `email` (`email`)"},
  };
  ASSERT_EQ(expect_alters(&list, "t", added, COUNT(added)), 0);
  alters_clear(&list);

  /* other columns, other column order, not unique, an extra one: drop first, add last */
  bee__live_index_t changed[] = {
      {"ab", 0, {"b", "a"}, 2},
      PRIMARY_INDEX,
      {"old_idx", 0, {"b"}, 1},
      {"by_age", 0, {"age", "a"}, 2},
      {"email", 0, {"email"}, 1},
  };
  bee__live_table_t live2 = LIVE("t", 0, cols, changed);
  ASSERT_EQ(diff(def, &live2, &list), 0);
  want_t rebuilt[] = {
      {1, "ALTER TABLE `t` DROP INDEX `ab`"},
      {1, "ALTER TABLE `t` DROP INDEX `old_idx`"},
      {1, "ALTER TABLE `t` DROP INDEX `by_age`"},
      {1, "ALTER TABLE `t` DROP INDEX `email`"},
      {1, "ALTER TABLE `t` ADD INDEX `ab` (`a`,`b`)"},
      {1, "ALTER TABLE `t` ADD INDEX `by_age` (`age`)"},
      {1, "ALTER TABLE `t` ADD UNIQUE INDEX `email` (`email`)"},
  };
  ASSERT_EQ(expect_alters(&list, "t", rebuilt, COUNT(rebuilt)), 0);
  alters_clear(&list);
  bee_entity_def_free(def);

  /* an entity without indexes keeps the primary key and drops the rest */
  def = one_field("int");
  ASSERT(def);
  bee__live_column_t cols3[] = {ID_COLUMN, {"c", "int(11)", 1, ""}};
  bee__live_index_t ixs3[] = {PRIMARY_INDEX, {"c_idx", 1, {"c"}, 1}};
  bee__live_table_t live3 = LIVE("t", 0, cols3, ixs3);
  ASSERT_EQ(diff(def, &live3, &list), 0);
  want_t dropped[] = {{1, "ALTER TABLE `t` DROP INDEX `c_idx`"}};
  ASSERT_EQ(expect_alters(&list, "t", dropped, COUNT(dropped)), 0);
  alters_clear(&list);
  live3.index_count = 1;
  ASSERT_EQ(diff(def, &live3, &list), 0);
  ASSERT_EQ(expect_alters(&list, "t", NULL, 0), 0);
  bee_entity_def_free(def);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Several changes at once                                                  */

/* Entity "t": a modified (a), an added (b), an unchanged (c) column and a missing index. */
static bee_entity_def_t *mixed_def(void) {
  bee_entity_def_t *def = bee_entity_def_new("t");
  if (!def) return NULL;
  add_field(def, "a", "int");
  add_field(def, "b", "string length=20");
  add_field(def, "c", "int");
  add_index(def, "by_c", 0, 0, "c");
  if (bee__entity_def_finish(def)) {
    bee_entity_def_free(def);
    return NULL;
  }
  return def;
}

static bee__live_column_t mixed_columns[] = {
    ID_COLUMN,
    {"a", "tinyint(4)", 1, ""},
    {"c", "int(11)", 1, ""},
    {"old", "varchar(10)", 1, "utf8mb4"},
};
static bee__live_index_t mixed_indexes[] = {PRIMARY_INDEX, {"by_old", 0, {"old"}, 1}};

TEST_IMPL(schema_diff_orders_alters_by_kind) {
  bee_entity_def_t *def = mixed_def();
  ASSERT(def);
  bee__live_table_t live = LIVE("t", 0, mixed_columns, mixed_indexes);
  bee__alters_t list;
  ASSERT_EQ(diff(def, &live, &list), 0);
  /* ddl.h: drop indexes, add columns, modify columns, drop columns, add indexes */
  want_t w[] = {
      {1, "ALTER TABLE `t` DROP INDEX `by_old`"},
      {1, "ALTER TABLE `t` ADD COLUMN `b` varchar(20) CHARACTER SET utf8mb4 DEFAULT NULL AFTER `a`"},
      {1, "ALTER TABLE `t` MODIFY COLUMN `a` int DEFAULT NULL"},
      {0, "ALTER TABLE `t` DROP COLUMN `old`"},
      {1, "ALTER TABLE `t` ADD INDEX `by_c` (`c`)"},
  };
  ASSERT_EQ(expect_alters(&list, "t", w, COUNT(w)), 0);
  alters_clear(&list);
  bee_entity_def_free(def);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Allocation failures                                                      */

/*
 * Fails the 1st, 2nd, ... allocation of one diff until it succeeds whole. Each run must
 * return BEE_ENOMEM (its partial list freed by the caller) or 0 with the same list as
 * without failures (only the first mismatch is shown; every failure point still runs, so
 * leaks on any path show under the sanitizers).
 */
static int diff_survives_allocation_failures(const bee_entity_def_t *def, const bee__live_table_t *live,
                                             const char *what) {
  bee__alters_t ref, list;
  ASSERT_EQ(diff(def, live, &ref), 0);
  int failed = 0;
  for (long n = 1; n < 10000; n++) {
    bee_test_fail_alloc_at(n);
    int rc = diff(def, live, &list);
    long used = bee_test_alloc_count();
    bee_test_fail_alloc_at(0);
    if (rc != 0 && rc != BEE_ENOMEM) {
      fprintf(stderr, "  %s: allocation %ld failed and the diff returned %d\n", what, n, rc);
      failed = 1;
    }
    for (size_t i = 0; i < list.count; i++)
      if (!list.items[i].sql) failed = 1;
    if (rc == 0) {
      want_t w[64];
      size_t count = ref.count < COUNT(w) ? ref.count : COUNT(w);
      for (size_t i = 0; i < count; i++) w[i] = (want_t){ref.items[i].safe, ref.items[i].sql};
      if (!failed && expect_alters(&list, def->e.table, w, count)) {
        fprintf(stderr, "  %s: allocation %ld failed, yet the diff returned 0 with another list\n", what, n);
        failed = 1;
      }
    }
    alters_clear(&list);
    if (rc == 0 && used < n) break; /* no allocation failed: done */
    if (n == 9999) failed = 1;
  }
  alters_clear(&ref);
  return failed;
}

TEST_IMPL(schema_diff_survives_every_allocation_failure) {
  bee_entity_def_t *post = post_def(), *item = item_def(), *mixed = mixed_def();
  ASSERT(post && item && mixed);
  bee__live_table_t live = LIVE("t", 0, mixed_columns, mixed_indexes);
  bee__live_table_t item_t = item_live(0);
  int failed = diff_survives_allocation_failures(post, NULL, "create post");
  failed += diff_survives_allocation_failures(mixed, &live, "mixed changes");
  failed += diff_survives_allocation_failures(item, &item_t, "matching item");
  bee_entity_def_free(post);
  bee_entity_def_free(item);
  bee_entity_def_free(mixed);
  ASSERT_EQ(failed, 0);
  return 0;
}
