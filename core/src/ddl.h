/*
 * ddl.h: SQL for tables (CREATE TABLE) and the diff between an entity and the live
 * table, as pure functions: the live table is plain data read by migrate.c, so the
 * diff is tested without a server.
 */
#ifndef BEE_DDL_H
#define BEE_DDL_H

#include "schema.h"

typedef struct bee__live_column_s {
  char name[BEE__IDENT_MAX];
  char type[512]; /* information_schema.COLUMNS.COLUMN_TYPE, e.g. "int(10) unsigned" */
  int nullable;
  char charset[32]; /* "" when not textual */
} bee__live_column_t;

typedef struct bee__live_index_s {
  char name[BEE__IDENT_MAX];
  int unique;
  char columns[16][BEE__IDENT_MAX];
  size_t column_count;
} bee__live_index_t;

typedef struct bee__live_table_s {
  char name[BEE__IDENT_MAX];
  int empty; /* no rows: any change is safe */
  bee__live_column_t *columns;
  size_t column_count;
  bee__live_index_t *indexes;
  size_t index_count;
} bee__live_table_t;

/* The column type beeorm declares for f, e.g. "int unsigned", "varchar(100)". */
void bee__ddl_column_type(const bee__field_t *f, bee__buf_t *b);

/* The full CREATE TABLE statement for e (one line). */
void bee__ddl_create_table(const bee__entity_t *e, bee__buf_t *b);

/* A list of alters being built. */
typedef struct bee__alters_s {
  bee_alter_t *items;
  size_t count, cap;
} bee__alters_t;

/*
 * Appends to list the statements that bring `live` (NULL: the table does not exist)
 * to entity e of pool `pool`. Order per table: drop indexes, add columns, modify
 * columns, drop columns, add indexes. Returns 0 or BEE_ENOMEM.
 */
int bee__schema_diff(const bee__entity_t *e, const bee__live_table_t *live, const char *pool,
                     bee__alters_t *list);

#endif
