/*
 * loader.h: what the loaders share: rows by id through every cache (loader.c), id lists
 * (lists.c) and unique lookups (unique.c).
 */
#ifndef BEE_LOADER_H
#define BEE_LOADER_H

#include "orm.h"
#include "rowhash.h"

/* The index of entity in its engine, or BEE_EINVAL. */
int bee__entity_index(bee_context_t *ctx, const bee_entity_t *entity, size_t *out, bee_error_t *err);

/* A growing list of ids. */
typedef struct {
  uint64_t *ids;
  size_t n, cap;
} bee__idlist_t;

/* 0 or BEE_ENOMEM. */
int bee__idlist_push(bee__idlist_t *l, uint64_t id);

/* Runs "SELECT `id` FROM t [WHERE <where>]<tail>" (args for its ? placeholders) and collects the ids. */
int bee__query_ids(bee_context_t *ctx, size_t ei, const char *where, const bee_value_t *args, size_t nargs,
                   const char *tail, bee__idlist_t *out, bee_error_t *err);

/* Reads an HGETALL reply of a row hash for entity e into values and present (rowhash.h). */
void bee__read_row_hash(const bee__entity_t *e, const bee__reply_t *r, bee_value_t *values, unsigned char *present,
                        bee__rowhash_info_t *info);

/* Reads a number-or-string reply as text into out ("" for nil). */
void bee__reply_text(const bee__reply_t *r, char *out, size_t size);

/*
 * Sets key to val (NX: a key a flush or another reader wrote since is never older) when
 * the entity's version is still `version`, read before asking MySQL (a flush that
 * dropped the key meanwhile moved it). Failures only cost a later miss.
 */
void bee__fill_string(bee_context_t *ctx, const bee__entity_rt_t *rt, const char *version, const char *key,
                      size_t key_len, const char *val, size_t val_len);

/* Checks lookup values against the index fields into canonical form (strings copied into buf). */
int bee__canonical_lookup(const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *in,
                          bee_value_t *out, bee__buf_t *buf, bee_error_t *err);

/* The (unique or non-unique) index a lookup names, checked against the number of values given. */
int bee__lookup_index(const bee__entity_t *e, const char *index, int unique, size_t n, const bee__index_t **out,
                      bee_error_t *err);

/* "`a` = ? AND `b` IS NULL ..." for the fields of an index, with args for the non-NULLs. 0 or BEE_ENOMEM. */
int bee__index_where(const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *values,
                     bee__buf_t *where, bee_value_t *args, size_t *nargs);

/* Ends a list loader: delivers the rows of l in order (skipping rows gone) unless rc failed; frees l. */
int bee__deliver_list(bee_context_t *ctx, size_t ei, int rc, bee__idlist_t *l, bee_row_fn fn, void *ud,
                      bee_error_t *err);

#endif
