/*
 * keys.h: the names of an entity's Redis cache keys (pure: no I/O).
 *
 * Every key of a table starts with its prefix "bee:{<database>.<table>}:" (one hash tag:
 * one Redis Cluster slot per table). Keys carry no definition hash: every definition of
 * a table (a rolling deploy, a C host beside a Lua app) reads and writes the same keys,
 * and rows are hashes of named columns (rowhash.h), so each reads the columns it knows.
 *
 *   <p>r:<id>               the row (rowhash.h)
 *   <p>v                    version: bumped by every write that deletes cached data; a
 *                           reader fills only if it is unchanged since it read it
 *   <p>u:<cols>:<values>    a unique lookup: "<id>:<values>" (the row's own values when
 *                           the entry was written; checked against the row on every hit)
 *                           or "N<gen>" (not found while the index's generation was gen)
 *   <p>g:<cols>             a unique index's generation: a random token that every write
 *                           of the index's values replaces (or deletes)
 *   <p>p:u:<cols>           ids with a queued change to a unique index (id -> flush token)
 *   <p>l:c:<cols>:<values>  sorted ids of rows whose columns hold values (cached index or
 *                           reference); <p>l:a the ids of all rows (cache_all)
 *   <p>p:c:..., <p>p:a      ids with a queued change to that list (id -> flush token)
 *   <p>ids, <p>idmax, <p>idrun  the id allocator (ids.c)
 * <cols> are the column names joined by ','; <values> the key texts of the values
 * joined by 0x1f, NULL written as 0x1e (a list of rows with NULL differs from "").
 */
#ifndef BEE_KEYS_H
#define BEE_KEYS_H

#include "schema.h"

/* Room for a prefix ("bee:{" database "." table "}:"), and for a row or version key. */
#define BEE__KEY_PREFIX_MAX (BEE_DSN_FIELD_MAX + BEE__IDENT_MAX + 8)
#define BEE__KEY_ROW_MAX (BEE__KEY_PREFIX_MAX + 24)

/* "<p>r:<id>" into buf (size >= BEE__KEY_ROW_MAX); returns its length. */
size_t bee__key_row(const char *prefix, uint64_t id, char *buf, size_t size);

/* Appends the key text of a value: ints in decimal, floats %.17g, bools 0/1, strings as they are. */
void bee__key_value_text(const bee_value_t *v, bee__buf_t *out);

/*
 * The values of fields[0..n) of a row (values laid out by field) as key text, joined by
 * 0x1f. Returns 0; 1 when a value is NULL and null_ok is 0 (nothing is appended after
 * it); BEE_ENOMEM.
 */
int bee__key_values_text(const bee_value_t *values, const size_t *fields, size_t n, int null_ok, bee__buf_t *out);

/* The key of a unique index for a row's values (out is reset). 0; 1 when a value is NULL (never unique); BEE_ENOMEM. */
int bee__key_unique(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, const bee_value_t *values,
                    bee__buf_t *out);
/* The generation key and the pending hash of a unique index (out is reset). 0 or BEE_ENOMEM. */
int bee__key_unique_gen(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, bee__buf_t *out);
int bee__key_unique_pending(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, bee__buf_t *out);

/*
 * The key of a cached id list (out is reset): rows whose fields[0..n) hold the values of
 * the row `values` (laid out by field); fields NULL: the list of all rows. 0 or BEE_ENOMEM.
 */
int bee__key_list(const char *prefix, const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *values,
                  bee__buf_t *out);

/* The pending hash of a list: rewrites a list key made by bee__key_list in place. */
void bee__key_list_pending(const char *prefix, bee__buf_t *list_key);

/* "<p>v" into buf (size >= BEE__KEY_ROW_MAX); returns its length. */
size_t bee__key_version(const char *prefix, char *buf, size_t size);

#endif
