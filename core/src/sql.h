/* sql.h: rendering values as SQL literals and interpolating `?` placeholders. */
#ifndef BEE_SQL_H
#define BEE_SQL_H

#include <mysql.h>

#include "internal.h"

/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int bee__utf8_valid(const char *s, size_t n);

/*
 * Appends v as a literal to out: NULL, a number, 1/0, or a string escaped with
 * mysql_real_escape_string on conn (X'..' hex when not valid UTF-8). A non-finite
 * float is the caller's to reject.
 */
void bee__sql_literal(MYSQL *conn, const bee_value_t *v, bee__buf_t *out);

/*
 * Appends a number literal, unquoted so that MySQL adds it exactly (a quoted string in
 * arithmetic becomes a double): v an integer, or a decimal text (an optional '-',
 * digits, at most one '.' between digits). Returns 0, or -1 (out untouched) for
 * anything else, so text from outside (a queued event) can never inject SQL.
 */
int bee__sql_number(const bee_value_t *v, bee__buf_t *out);
/* 1 when bee__sql_number would take v. */
int bee__sql_number_ok(const bee_value_t *v);

/* Appends "`column`+(<number>)", an increment (see bee__sql_number). 0 or -1 (out untouched). */
int bee__sql_add(const char *column, size_t len, const bee_value_t *v, bee__buf_t *out);

/*
 * Appends sql to out with each `?` outside quotes, backticks and comments replaced by
 * the next argument's literal. Returns 0, BEE_EINVAL (count mismatch, non-finite
 * float) or BEE_ENOMEM.
 */
int bee__sql_interpolate(MYSQL *conn, const char *sql, const bee_value_t *args, size_t nargs, bee__buf_t *out,
                         bee_error_t *err);

#endif
