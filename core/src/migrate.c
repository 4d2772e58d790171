/*
 * migrate.c: reading the live schema from information_schema and applying alters.
 * The comparison itself is pure and lives in ddl.c.
 */
#include <stdio.h>
#include <string.h>

#include "ddl.h"
#include "engine.h"

static void live_table_clear(bee__live_table_t *t) {
  bee__free(t->columns);
  bee__free(t->indexes);
  memset(t, 0, sizeof *t);
}

/* Runs a query and returns its stored result, or NULL with err filled. */
static MYSQL_RES *query(MYSQL *conn, const bee__mysql_pool_t *pool, const char *sql, bee_error_t *err, int *rc) {
  if (mysql_query(conn, sql) != 0) {
    *rc = bee__mysql_error(err, conn, pool, "schema query failed on");
    return NULL;
  }
  MYSQL_RES *res = mysql_store_result(conn);
  if (!res) *rc = bee__mysql_error(err, conn, pool, "schema query failed on");
  return res;
}

/*
 * Reads table `name` into *t. *exists is 0 when there is no such table. Returns 0,
 * BEE_EMYSQL or BEE_ENOMEM.
 */
static int read_table(MYSQL *conn, const bee__mysql_pool_t *pool, const char *name, bee__live_table_t *t,
                      int *exists, bee_error_t *err) {
  char esc[2 * BEE__IDENT_MAX + 1], sql[1024];
  int rc = 0;
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  mysql_real_escape_string(conn, esc, name, (unsigned long)strlen(name));

  snprintf(sql, sizeof sql,
           "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, IFNULL(CHARACTER_SET_NAME, '') FROM information_schema.COLUMNS "
           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '%s' ORDER BY ORDINAL_POSITION", esc);
  MYSQL_RES *res = query(conn, pool, sql, err, &rc);
  if (!res) return rc;
  size_t n = (size_t)mysql_num_rows(res);
  *exists = n > 0;
  if (n) {
    t->columns = bee__calloc(n, sizeof *t->columns);
    if (!t->columns) {
      mysql_free_result(res);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory reading table '%s'", name);
    }
  }
  MYSQL_ROW row;
  while ((row = mysql_fetch_row(res)) != NULL) {
    bee__live_column_t *c = &t->columns[t->column_count++];
    snprintf(c->name, sizeof c->name, "%s", row[0]);
    snprintf(c->type, sizeof c->type, "%s", row[1]);
    c->nullable = !strcmp(row[2], "YES");
    snprintf(c->charset, sizeof c->charset, "%s", row[3]);
  }
  mysql_free_result(res);
  if (!*exists) return 0;

  snprintf(sql, sizeof sql,
           "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '%s' ORDER BY INDEX_NAME, SEQ_IN_INDEX", esc);
  if (!(res = query(conn, pool, sql, err, &rc))) {
    live_table_clear(t);
    return rc;
  }
  n = (size_t)mysql_num_rows(res);
  if (n) {
    t->indexes = bee__calloc(n, sizeof *t->indexes);
    if (!t->indexes) {
      mysql_free_result(res);
      live_table_clear(t);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory reading table '%s'", name);
    }
  }
  while ((row = mysql_fetch_row(res)) != NULL) {
    bee__live_index_t *ix = t->index_count ? &t->indexes[t->index_count - 1] : NULL;
    if (!ix || strcmp(ix->name, row[0]) != 0) {
      ix = &t->indexes[t->index_count++];
      snprintf(ix->name, sizeof ix->name, "%s", row[0]);
      ix->unique = !strcmp(row[1], "0");
    }
    if (ix->column_count < sizeof ix->columns / sizeof ix->columns[0])
      snprintf(ix->columns[ix->column_count++], sizeof ix->columns[0], "%s", row[2] ? row[2] : "");
  }
  mysql_free_result(res);

  snprintf(sql, sizeof sql, "SELECT 1 FROM `%s` LIMIT 1", name); /* name is a checked identifier */
  if (!(res = query(conn, pool, sql, err, &rc))) {
    live_table_clear(t);
    return rc;
  }
  t->empty = mysql_num_rows(res) == 0;
  mysql_free_result(res);
  return 0;
}

int bee_engine_schema_alters(bee_engine_t *engine, bee_alter_t **out, size_t *count, bee_error_t *err) {
  if (!engine || !out || !count) return bee__error(err, BEE_EINVAL, 0, "engine, out or count is NULL");
  *out = NULL;
  *count = 0;
  bee__alters_t list = {0};
  int rc = 0;
  for (size_t p = 0; p < engine->mysql_count && !rc; p++) {
    const bee__mysql_pool_t *pool = &engine->mysql[p];
    int used = 0;
    for (size_t i = 0; i < engine->entity_count; i++) used |= !strcmp(engine->entities[i].mysql_pool, pool->name);
    if (!used) continue;
    MYSQL *conn = NULL;
    if ((rc = bee__mysql_connect(pool, &conn, err))) break;
    for (size_t i = 0; i < engine->entity_count && !rc; i++) {
      const bee__entity_t *e = &engine->entities[i];
      if (strcmp(e->mysql_pool, pool->name)) continue;
      bee__live_table_t live;
      int exists = 0;
      if ((rc = read_table(conn, pool, e->table, &live, &exists, err))) break;
      rc = bee__schema_diff(e, exists ? &live : NULL, pool->name, &list);
      live_table_clear(&live);
      if (rc) bee__error(err, rc, 0, "out of memory listing alters");
    }
    mysql_close(conn);
  }
  if (rc) {
    bee_alters_free(list.items, list.count);
    return rc;
  }
  *out = list.items;
  *count = list.count;
  return 0;
}

int bee_engine_sync_schema(bee_engine_t *engine, int unsafe, size_t *applied, bee_error_t *err) {
  bee_alter_t *alters;
  size_t count, done = 0;
  if (applied) *applied = 0;
  int rc = bee_engine_schema_alters(engine, &alters, &count, err);
  if (rc) return rc;
  MYSQL *conn = NULL;
  const bee__mysql_pool_t *conn_pool = NULL;
  for (size_t i = 0; i < count && !rc; i++) {
    if (!alters[i].safe && !unsafe) continue;
    const bee__mysql_pool_t *pool = bee__engine_mysql(engine, alters[i].pool);
    if (pool != conn_pool) {
      if (conn) mysql_close(conn);
      conn = NULL;
      conn_pool = pool;
      if ((rc = bee__mysql_connect(pool, &conn, err))) break;
    }
    if (mysql_query(conn, alters[i].sql) != 0) {
      rc = bee__mysql_error(err, conn, pool, "schema change failed on");
      if (err) {
        char msg[BEE_ERROR_MESSAGE_MAX];
        snprintf(msg, sizeof msg, "%s", err->message);
        snprintf(err->message, sizeof err->message, "%.200s (running: %.280s)", msg, alters[i].sql);
      }
      break;
    }
    done++;
  }
  if (conn) mysql_close(conn);
  bee_alters_free(alters, count);
  if (applied) *applied = done;
  return rc;
}
