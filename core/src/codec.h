/*
 * codec.h: the binary form of a row in the Redis cache, the schema hash that names
 * cache keys, and the conversion of MySQL text-protocol cells and ids into canonical
 * values (the forms of value.c, see the conventions above bee_value_t). Pure: no I/O;
 * the only allocations are a bee__buf_t growing.
 *
 * Row format, version 1 (all integers little-endian):
 *
 *   found row:   'R'  u8 version (1)  u32 schema hash  u64 id (1 or more)
 *                then, for each field in definition order, a tag byte and its payload:
 *                  0 NIL     no payload
 *                  1 INT     8 bytes, two's complement
 *                  2 FLOAT   8 bytes, IEEE-754 binary64 (finite)
 *                  3 BOOL    1 byte, 0 or 1
 *                  4 STRING  u32 length, then that many bytes
 *                nothing follows the last field.
 *   not found:   'N'  u8 version (1)  u32 schema hash          (exactly 6 bytes)
 *
 * Which tags a field takes (the same rule for encoding and decoding, so whatever
 * encodes decodes and the reverse):
 *   every field     NIL (required is enforced when values are written, not here: a
 *                   row read from a table not yet migrated must still cache)
 *   int             INT within the field's bits and signedness; for unsigned 64-bit
 *                   also STRING of the plain digits of a value above INT64_MAX
 *   ref             as unsigned 64-bit int
 *   bool            BOOL
 *   float           FLOAT, finite
 *   decimal, string, text, bytes, date, datetime, enum, set
 *                   STRING (the bytes are not checked further)
 */
#ifndef BEE_CODEC_H
#define BEE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "schema.h"

#define BEE__ROW_VERSION 1
#define BEE__ROW_FOUND 'R'
#define BEE__ROW_MISSING 'N'
/* Length of the not-found marker and of the header every encoding starts with. */
#define BEE__ROW_MISSING_LEN 6
/* Header of a found row: marker, version, hash, id. */
#define BEE__ROW_HEADER_LEN 14

enum {
  BEE__TAG_NIL = 0,
  BEE__TAG_INT = 1,
  BEE__TAG_FLOAT = 2,
  BEE__TAG_BOOL = 3,
  BEE__TAG_STRING = 4
};

/* Room for the longest id in decimal (20 digits) and a NUL. */
#define BEE__ID_BUF 21

/*
 * Appends the encoding of row `id` of entity e to out. values holds e->field_count
 * canonical values (bee__value_check's output or bee__cell_value's). Every value is
 * checked before anything is appended. Returns 0; BEE_EINVAL when id is 0, a value does
 * not fit its field (see above), a string is longer than 4 GiB - 1, or a STRING value
 * has len > 0 and no bytes (out is then unchanged); BEE_ENOMEM when out->failed is set
 * (before or during the call: the bee__buf_t rule, the caller frees out either way).
 */
int bee__row_encode(const bee__entity_t *e, uint64_t id, const bee_value_t *values,
                    bee__buf_t *out);

/* Appends the not-found marker of entity e to out (check out->failed). */
void bee__row_encode_missing(const bee__entity_t *e, bee__buf_t *out);

/*
 * 1 when data (len bytes) has the shape of a not-found marker of some entity (any
 * hash), 0 otherwise. Whether it belongs to a given entity is bee__row_decode's answer.
 */
int bee__row_is_missing(const char *data, size_t len);

/*
 * Decodes a row of entity e from data (len bytes, any content: it may come from a
 * Redis that someone else wrote to). On success *id and values[0..e->field_count) are
 * written; STRING values point into data and live as long as it does. Returns 0;
 * BEE_ENOTFOUND when data is the not-found marker of e; BEE_EINVAL when data is
 * anything else: truncated, trailing bytes, unknown marker, tag or version, id 0, a
 * hash that is not e's (a cache written under another schema), a tag or value that does
 * not fit its field, a string running past the end. On any non-zero return *id and
 * values are untouched. Never reads outside data[0..len).
 */
int bee__row_decode(const bee__entity_t *e, const char *data, size_t len, uint64_t *id,
                    bee_value_t *values);

/*
 * FNV-1a 32-bit over the row format version, e's table name and every field's layout
 * (name, type, required, bits, unsigned, length, precision, scale, enum/set members in
 * order, ref entity), each string followed by a 0 byte and each number as 4 bytes
 * little-endian, so that different layouts hash differently. Cache key names carry it:
 * after a schema change (or a new row format) old entries are never read.
 */
uint32_t bee__entity_hash(const bee__entity_t *e);

/*
 * Converts one MySQL text-protocol cell of field f (cell == NULL for SQL NULL; len
 * bytes, not necessarily NUL-terminated) into the canonical value:
 *   int     decimal digits, '-' only for signed fields, leading zeros allowed; within
 *           bits and signedness. BEE_VALUE_INT, or for unsigned 64-bit values above
 *           INT64_MAX a BEE_VALUE_STRING of the digits (leading zeros skipped).
 *   ref     as unsigned 64-bit int (0 included: it is what the column holds)
 *   bool    "0" or "1" -> BEE_VALUE_BOOL
 *   float   a finite decimal number as strtod reads it ("1e308", "-0", denormals);
 *           no hex, inf or nan, no spaces, at most 127 bytes
 *   others  BEE_VALUE_STRING pointing at cell, len bytes (not checked further)
 * STRING outputs point into cell. Returns 0, or BEE_EINVAL (out untouched) for text
 * that does not parse for the type, or an unknown field type.
 */
int bee__cell_value(const bee__field_t *f, const char *cell, size_t len, bee_value_t *out);

/*
 * Parses an id: 1 to 20 decimal digits, no sign, no leading zero, value 1 to
 * 18446744073709551615. Returns 0 (and *out), or BEE_EINVAL (*out untouched).
 */
int bee__id_parse(const char *s, size_t len, uint64_t *out);

/* Writes id in decimal into buf (at least BEE__ID_BUF bytes), NUL-terminated; returns its length. */
size_t bee__id_format(uint64_t id, char *buf);

#endif
