/*
 * rowhash.h: a row in the Redis cache, a hash of named columns (pure: no I/O).
 *
 * The row key (keys.h) holds a Redis hash:
 *   "!"        "R": the row exists; "N": there is no such row (a cached not-found)
 *   <column>   "" for NULL, else "=" and the value's text as MySQL's text protocol gives
 *              it (ints in decimal, floats %.17g, bools 0/1, everything else as stored)
 * Columns are named, so a flush writes exactly the columns it changes (HSET; concurrent
 * writers of different columns never overwrite each other), an increment adds to one
 * column in Redis, and every definition of a table reads the columns it knows. A hash
 * may lack columns: a definition that does not know them wrote the row, or a flush
 * dropped them (a sync update drops the columns it changed: MySQL has them). A reader
 * takes what is missing from MySQL, and what the hash has wins (it is never older).
 */
#ifndef BEE_ROWHASH_H
#define BEE_ROWHASH_H

#include "schema.h"

#define BEE__ROWHASH_MARK "!"

/* Appends the cache text of v ("" for NULL, "=" and the text otherwise). */
void bee__rowhash_text(const bee_value_t *v, bee__buf_t *out);

/* What a row hash said, filled pair by pair by bee__rowhash_pair. */
typedef struct {
  int mark;     /* 'R', 'N', or 0 when the hash has no "!" field */
  size_t found; /* columns of the entity read (present[i] set) */
  size_t next;  /* the column expected next (writers keep definition order) */
} bee__rowhash_info_t;

/* Starts reading a hash for an entity of nfields columns: clears info and present. */
void bee__rowhash_begin(bee__rowhash_info_t *info, unsigned char *present, size_t nfields);

/*
 * Reads one field/value pair of a row hash for entity e: the mark, or a column of e
 * (values[i] set and present[i] = 1; STRING values point into val). A column e does not
 * know, a repeated one, or one whose text does not fit its field is skipped (a reader
 * then takes it from MySQL).
 */
void bee__rowhash_pair(const bee__entity_t *e, const char *name, size_t nlen, const char *val, size_t vlen,
                       bee_value_t *values, unsigned char *present, bee__rowhash_info_t *info);

/* 1 when the hash read holds the whole row of e: marked existing and every column present. */
int bee__rowhash_complete(const bee__entity_t *e, const bee__rowhash_info_t *info);

#endif
