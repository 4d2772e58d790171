/*
 * sql.c: plain statements with `?` placeholders. Values never become SQL text except
 * through the client library's escaping (docs/guarantees.md G10); identifiers never come from here.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "sql.h"

int bee__utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if ((size_t)(end - p) < len) return 0;
    for (size_t i = 1; i < len; i++) {
      if ((p[i] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    p += len;
  }
  return 1;
}

void bee__sql_literal(MYSQL *conn, const bee_value_t *v, bee__buf_t *out) {
  switch (v->kind) {
    case BEE_VALUE_NIL: bee__buf_puts(out, "NULL"); return;
    case BEE_VALUE_INT: bee__buf_printf(out, "%lld", (long long)v->i); return;
    case BEE_VALUE_BOOL: bee__buf_puts(out, v->i ? "1" : "0"); return;
    case BEE_VALUE_FLOAT: bee__buf_printf(out, "%.17g", v->f); return;
    case BEE_VALUE_STRING: break;
  }
  if (!bee__utf8_valid(v->str, v->len)) {
    static const char hex[] = "0123456789ABCDEF";
    bee__buf_puts(out, "X'");
    for (size_t i = 0; i < v->len; i++) {
      char pair[2] = {hex[(unsigned char)v->str[i] >> 4], hex[(unsigned char)v->str[i] & 15]};
      bee__buf_append(out, pair, 2);
    }
    bee__buf_puts(out, "'");
    return;
  }
  /* Reserve 2n+1 bytes in place and let the client library escape into them. */
  bee__buf_puts(out, "'");
  size_t start = out->len;
  bee__buf_append(out, v->str, v->len); /* grows the buffer ... */
  bee__buf_append(out, v->str, v->len); /* ... to hold 2n bytes */
  if (out->failed) return;
  unsigned long n = mysql_real_escape_string(conn, out->data + start, v->str, (unsigned long)v->len);
  out->len = start + n;
  out->data[out->len] = '\0';
  bee__buf_puts(out, "'");
}

int bee__sql_number_ok(const bee_value_t *v) {
  if (v->kind == BEE_VALUE_INT) return 1;
  if (v->kind != BEE_VALUE_STRING || !v->len || v->len > 100) return 0;
  size_t i = v->str[0] == '-', digits = 0, points = 0;
  for (; i < v->len; i++) {
    char c = v->str[i];
    if (c >= '0' && c <= '9') digits++;
    else if (c == '.' && digits && !points && i + 1 < v->len) points++;
    else return 0;
  }
  return digits > 0;
}

int bee__sql_number(const bee_value_t *v, bee__buf_t *out) {
  if (!bee__sql_number_ok(v)) return -1;
  if (v->kind == BEE_VALUE_INT) bee__buf_printf(out, "%lld", (long long)v->i);
  else bee__buf_append(out, v->str, v->len);
  return 0;
}

int bee__sql_add(const char *column, size_t len, const bee_value_t *v, bee__buf_t *out) {
  size_t at = out->len;
  bee__buf_printf(out, "`%.*s`+(", (int)len, column);
  if (bee__sql_number(v, out)) {
    out->len = at;
    if (out->data) out->data[at] = '\0';
    return -1;
  }
  bee__buf_puts(out, ")");
  return 0;
}

int bee__sql_interpolate(MYSQL *conn, const char *sql, const bee_value_t *args, size_t nargs, bee__buf_t *out,
                         bee_error_t *err) {
  size_t used = 0;
  const char *p = sql, *run = sql;
  while (*p) {
    char c = *p;
    if (c == '\'' || c == '"' || c == '`') { /* quoted: skip to the matching quote */
      p++;
      while (*p && *p != c) p += (*p == '\\' && c != '`' && p[1]) ? 2 : 1;
      if (*p) p++;
    } else if ((c == '-' && p[1] == '-' && (p[2] == ' ' || p[2] == '\t' || p[2] == '\n')) || c == '#') {
      while (*p && *p != '\n') p++;
    } else if (c == '/' && p[1] == '*') {
      const char *end = strstr(p + 2, "*/");
      p = end ? end + 2 : p + strlen(p);
    } else if (c == '?') {
      bee__buf_append(out, run, (size_t)(p - run));
      if (used < nargs) {
        const bee_value_t *v = &args[used];
        if (v->kind == BEE_VALUE_FLOAT && !isfinite(v->f))
          return bee__error(err, BEE_EINVAL, 0, "argument %zu is not a finite number", used + 1);
        bee__sql_literal(conn, v, out);
      }
      used++;
      run = ++p;
    } else {
      p++;
    }
  }
  bee__buf_append(out, run, (size_t)(p - run));
  if (used != nargs)
    return bee__error(err, BEE_EINVAL, 0, "the statement has %zu placeholder%s but %zu argument%s were given", used,
                      used == 1 ? "" : "s", nargs, nargs == 1 ? "" : "s");
  if (out->failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");
  return 0;
}

/* Runs sql (interpolated) on a connection of pool; on success the connection is in *out. */
static int run(bee_engine_t *engine, const char *pool_name, const char *sql, const bee_value_t *args, size_t nargs,
               const bee__mysql_pool_t **pool_out, MYSQL **out, bee_error_t *err) {
  if (!engine || !sql) return bee__error(err, BEE_EINVAL, 0, "engine or statement is NULL");
  const bee__mysql_pool_t *pool = bee__engine_mysql(engine, pool_name ? pool_name : "default");
  if (!pool) return bee__error(err, BEE_EINVAL, 0, "unknown MySQL pool '%s'", pool_name ? pool_name : "default");
  MYSQL *conn;
  int rc = bee__engine_mysql_acquire(engine, pool, &conn, err);
  if (rc) return rc;
  bee__buf_t text = {0};
  rc = bee__sql_interpolate(conn, sql, args, nargs, &text, err);
  if (rc) {
    bee__buf_free(&text);
    bee__engine_mysql_release(engine, pool, conn, 0);
    return rc;
  }
  if (mysql_real_query(conn, text.data, (unsigned long)text.len) != 0) {
    rc = bee__mysql_error(err, conn, pool, "statement failed on");
    bee__buf_free(&text);
    bee__engine_mysql_release(engine, pool, conn, err ? err->temporary : 1);
    return rc;
  }
  bee__buf_free(&text);
  *pool_out = pool;
  *out = conn;
  return 0;
}

int bee_engine_sql_exec(bee_engine_t *engine, const char *pool_name, const char *sql, const bee_value_t *args,
                        size_t nargs, uint64_t *affected, bee_error_t *err) {
  const bee__mysql_pool_t *pool;
  MYSQL *conn;
  int rc = run(engine, pool_name, sql, args, nargs, &pool, &conn, err);
  if (rc) return rc;
  MYSQL_RES *res = mysql_store_result(conn); /* a statement may still return rows */
  if (res) mysql_free_result(res);
  my_ulonglong n = mysql_affected_rows(conn);
  if (affected) *affected = n == (my_ulonglong)-1 ? 0 : (uint64_t)n;
  bee__engine_mysql_release(engine, pool, conn, 0);
  return 0;
}

int bee_engine_sql_query(bee_engine_t *engine, const char *pool_name, const char *sql, const bee_value_t *args,
                         size_t nargs, bee_sql_row_fn fn, void *ud, bee_error_t *err) {
  const bee__mysql_pool_t *pool;
  MYSQL *conn;
  int rc = run(engine, pool_name, sql, args, nargs, &pool, &conn, err);
  if (rc) return rc;
  MYSQL_RES *res = mysql_store_result(conn);
  if (!res) {
    if (mysql_field_count(conn) != 0) {
      rc = bee__mysql_error(err, conn, pool, "reading rows failed on");
      bee__engine_mysql_release(engine, pool, conn, 1);
      return rc;
    }
    bee__engine_mysql_release(engine, pool, conn, 0);
    return 0;
  }
  size_t ncols = mysql_num_fields(res);
  MYSQL_FIELD *fields = mysql_fetch_fields(res);
  const char **names = bee__calloc(ncols ? ncols : 1, sizeof *names);
  size_t *lens = bee__calloc(ncols ? ncols : 1, sizeof *lens);
  if (!names || !lens) {
    bee__free(names);
    bee__free(lens);
    mysql_free_result(res);
    bee__engine_mysql_release(engine, pool, conn, 0);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory reading rows");
  }
  for (size_t i = 0; i < ncols; i++) names[i] = fields[i].name;
  MYSQL_ROW row;
  while ((row = mysql_fetch_row(res)) != NULL) {
    unsigned long *l = mysql_fetch_lengths(res);
    for (size_t i = 0; i < ncols; i++) lens[i] = l[i];
    if (fn && fn(ud, ncols, names, (const char *const *)row, lens)) break;
  }
  bee__free(names);
  bee__free(lens);
  mysql_free_result(res);
  bee__engine_mysql_release(engine, pool, conn, 0);
  return 0;
}
