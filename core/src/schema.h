/*
 * schema.h: the validated schema model (entities, fields, indexes) shared by the
 * core's parts: definition checks (schema.c), value validation (value.c), DDL and
 * schema diffing (ddl.c). Built from definitions by bee_registry_validate; immutable
 * afterwards, so threads may read it freely.
 */
#ifndef BEE_SCHEMA_H
#define BEE_SCHEMA_H

#include <stdint.h>

#include "internal.h"

#define BEE__IDENT_MAX 65 /* MySQL identifiers: 64 characters + NUL */

typedef struct bee__field_s {
  char name[BEE__IDENT_MAX]; /* also the column name */
  bee_field_type_t type;
  int required;    /* NOT NULL; nil is rejected */
  int bits;        /* int: 8, 16, 24, 32 or 64 */
  int is_unsigned; /* int */
  int length;      /* string: maximum length in characters */
  int precision;   /* decimal: total digits, 1..65 */
  int scale;       /* decimal: digits after the point, 0..30, <= precision */
  char **values;   /* enum, set: members in definition order */
  size_t value_count;
  char ref_entity[BEE__IDENT_MAX]; /* ref: the entity referred to */
  int ref_index;                   /* ref: index of that entity in the schema */
  int cached;                      /* ref: keep get_by_reference id lists in Redis */
} bee__field_t;

typedef struct bee__index_s {
  char name[BEE__IDENT_MAX];
  int unique;
  int cached;       /* non-unique: keep the id list in Redis */
  size_t *fields;   /* indexes into the entity's fields */
  size_t field_count;
} bee__index_t;

typedef struct bee__entity_s {
  char name[BEE__IDENT_MAX];
  char table[BEE__IDENT_MAX];
  char mysql_pool[BEE_NAME_MAX];
  char redis_pool[BEE_NAME_MAX]; /* "" when there is no Redis cache */
  int64_t local_cache;           /* LRU capacity, 0 when off */
  int cache_all;
  bee__field_t *fields; /* `id` is implicit and not listed */
  size_t field_count;
  bee__index_t *indexes; /* unique and non-unique, definition order */
  size_t index_count;
  uint32_t layout_hash; /* bee__entity_hash, cached by the engine (0: compute when asked) */
} bee__entity_t;

/*
 * Checks value `in` against field f of entity e (docs/guarantees.md G7) and writes its canonical
 * form to *out: what MySQL will store and return, so caches hold the same bytes.
 * When the canonical text differs from the input (datetime without time, set members
 * reordered, decimal padded to its scale) it is written into buf and out->str points
 * there; otherwise out->str points at the input. buf must hold in->len + 80 bytes.
 * Returns 0, or BEE_EVALIDATION with err->entity, err->field and a message that says
 * what is wrong (without repeating entity and field).
 */
int bee__value_check(const bee__entity_t *e, const bee__field_t *f, const bee_value_t *in,
                     bee_value_t *out, char *buf, size_t bufsize, bee_error_t *err);

/* 1 when v fits an int column of `bits` bits (8, 16, 24, 32, 64), signed or unsigned. */
int bee__int_in_range(int64_t v, int bits, int is_unsigned);

/*
 * base + delta for an int or decimal field f, as MySQL computes `f = f + delta`: NULL
 * stays NULL. base is a canonical value of f, delta an integer (int fields) or a
 * canonical decimal of f (decimal fields). Writes the canonical result to *out (strings
 * in buf, at least 80 bytes). Returns 0, or BEE_EINVAL when the result does not fit f
 * (MySQL would refuse it too) or f is neither int nor decimal.
 */
int bee__value_add(const bee__field_t *f, const bee_value_t *base, const bee_value_t *delta, bee_value_t *out,
                   char *buf, size_t size);

/* Size of buf that bee__value_check needs for a value of len bytes. */
#define BEE__VALUE_BUF(len) ((len) + 80)

/* The Lua-side name of a value kind ("integer", "string", ...), as messages show it. */
const char *bee__value_kind_name(bee_value_kind_t k);

/* The name of a field type ("int", "decimal", ...); "?" when unknown. */
const char *bee__field_type_name(bee_field_type_t t);

#endif
