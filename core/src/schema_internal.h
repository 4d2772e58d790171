/* schema_internal.h: entity definitions while they are being built (schema.c, registry.c). */
#ifndef BEE_SCHEMA_INTERNAL_H
#define BEE_SCHEMA_INTERNAL_H

#include "schema.h"

typedef struct bee__field_extra_s {
  int unique; /* field-level unique: becomes a one-field unique index */
  char unique_name[BEE__IDENT_MAX];
  int has_precision, has_scale;
} bee__field_extra_t;

struct bee_entity_def_s {
  bee__entity_t e;
  size_t field_cap;
  bee__field_extra_t *extra; /* parallel to e.fields */
  int local_cache_default;   /* local_cache = true: capacity decided at validate */
  int failed;                /* error holds the first problem */
  bee_error_t error;
};

/* 1 when s is a safe SQL identifier: [A-Za-z_][A-Za-z0-9_]*, at most 64 characters. */
int bee__ident_ok(const char *s);
/* Defaults and whole-definition checks; returns 0 or the recorded error code. */
int bee__entity_def_finish(bee_entity_def_t *def);
/* Deep copy; returns 0 or BEE_ENOMEM with dst cleared. */
int bee__entity_copy(bee__entity_t *dst, const bee__entity_t *src);
/* Frees what e owns and zeroes it. */
void bee__entity_clear(bee__entity_t *e);

#endif
