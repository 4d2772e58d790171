/* keys.c: the names of an entity's Redis cache keys (layout in keys.h). Pure. */
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "keys.h"

size_t bee__key_row(const char *prefix, uint64_t id, char *buf, size_t size) {
  char num[BEE__ID_BUF];
  size_t nl = bee__id_format(id, num), pl = strlen(prefix);
  if (pl + 2 + nl >= size) return 0;
  memcpy(buf, prefix, pl);
  memcpy(buf + pl, "r:", 2);
  memcpy(buf + pl + 2, num, nl + 1);
  return pl + 2 + nl;
}

size_t bee__key_version(const char *prefix, char *buf, size_t size) {
  int n = snprintf(buf, size, "%sv", prefix);
  return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

/* Appends a signed 64-bit integer in decimal (printf costs ten times more on this hot path). */
static void int_text(int64_t i, bee__buf_t *out) {
  char num[24];
  size_t k = sizeof num;
  uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
  do num[--k] = (char)('0' + u % 10);
  while ((u /= 10) > 0);
  if (i < 0) num[--k] = '-';
  bee__buf_append(out, num + k, sizeof num - k);
}

void bee__key_value_text(const bee_value_t *v, bee__buf_t *out) {
  switch (v->kind) {
    case BEE_VALUE_INT: int_text(v->i, out); break;
    case BEE_VALUE_FLOAT: bee__buf_printf(out, "%.17g", v->f); break;
    case BEE_VALUE_BOOL: bee__buf_puts(out, v->i ? "1" : "0"); break;
    case BEE_VALUE_STRING: bee__buf_append(out, v->str, v->len); break;
    default: break;
  }
}

int bee__key_values_text(const bee_value_t *values, const size_t *fields, size_t n, int null_ok, bee__buf_t *out) {
  for (size_t k = 0; k < n; k++) {
    const bee_value_t *v = &values[fields[k]];
    if (k) bee__buf_append(out, "\x1f", 1);
    if (v->kind == BEE_VALUE_NIL) {
      if (!null_ok) return 1;
      bee__buf_append(out, "\x1e", 1);
    } else {
      bee__key_value_text(v, out);
    }
  }
  return out->failed ? BEE_ENOMEM : 0;
}

/* "<p><kind>:<col>,<col>" (out reset). */
static void columns_key(const char *prefix, const char *kind, const bee__entity_t *e, const size_t *fields, size_t n,
                        bee__buf_t *out) {
  out->len = 0;
  bee__buf_printf(out, "%s%s:", prefix, kind);
  for (size_t k = 0; k < n; k++) bee__buf_printf(out, "%s%s", k ? "," : "", e->fields[fields[k]].name);
}

int bee__key_unique(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, const bee_value_t *values,
                    bee__buf_t *out) {
  columns_key(prefix, "u", e, ix->fields, ix->field_count, out);
  bee__buf_puts(out, ":");
  int rc = bee__key_values_text(values, ix->fields, ix->field_count, 0, out);
  return rc ? rc : out->failed ? BEE_ENOMEM : 0;
}

int bee__key_unique_gen(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, bee__buf_t *out) {
  columns_key(prefix, "g", e, ix->fields, ix->field_count, out);
  return out->failed ? BEE_ENOMEM : 0;
}

int bee__key_unique_pending(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, bee__buf_t *out) {
  columns_key(prefix, "p:u", e, ix->fields, ix->field_count, out);
  return out->failed ? BEE_ENOMEM : 0;
}

int bee__key_list(const char *prefix, const bee__entity_t *e, const size_t *fields, size_t n, const bee_value_t *values,
                  bee__buf_t *out) {
  if (!fields) {
    out->len = 0;
    bee__buf_printf(out, "%sl:a", prefix);
    return out->failed ? BEE_ENOMEM : 0;
  }
  columns_key(prefix, "l:c", e, fields, n, out);
  bee__buf_puts(out, ":");
  bee__key_values_text(values, fields, n, 1, out);
  return out->failed ? BEE_ENOMEM : 0;
}

void bee__key_list_pending(const char *prefix, bee__buf_t *list_key) {
  size_t at = strlen(prefix);
  if (list_key->len > at && list_key->data[at] == 'l') list_key->data[at] = 'p';
}
