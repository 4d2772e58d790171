/* rowhash.c: a row in the Redis cache as a hash of named columns (format in rowhash.h). Pure. */
#include <string.h>

#include "codec.h"
#include "keys.h"
#include "rowhash.h"

void bee__rowhash_text(const bee_value_t *v, bee__buf_t *out) {
  if (v->kind == BEE_VALUE_NIL) return;
  bee__buf_append(out, "=", 1);
  bee__key_value_text(v, out);
}

void bee__rowhash_begin(bee__rowhash_info_t *info, unsigned char *present, size_t nfields) {
  memset(info, 0, sizeof *info);
  if (nfields) memset(present, 0, nfields);
}

static int name_is(const bee__field_t *f, const char *name, size_t nlen) {
  return strlen(f->name) == nlen && memcmp(f->name, name, nlen) == 0;
}

void bee__rowhash_pair(const bee__entity_t *e, const char *name, size_t nlen, const char *val, size_t vlen,
                       bee_value_t *values, unsigned char *present, bee__rowhash_info_t *info) {
  if (nlen == 1 && name[0] == '!') {
    if (vlen == 1 && (val[0] == 'R' || val[0] == 'N')) info->mark = val[0];
    return;
  }
  size_t i = info->next;
  if (i >= e->field_count || !name_is(&e->fields[i], name, nlen))
    for (i = 0; i < e->field_count && !name_is(&e->fields[i], name, nlen); i++) {
    }
  if (i >= e->field_count || present[i]) return;
  info->next = i + 1;
  if (vlen == 0) {
    memset(&values[i], 0, sizeof values[i]);
    values[i].kind = BEE_VALUE_NIL;
  } else if (val[0] != '=' || bee__cell_value(&e->fields[i], val + 1, vlen - 1, &values[i]) != 0) {
    return;
  }
  present[i] = 1;
  info->found++;
}

int bee__rowhash_complete(const bee__entity_t *e, const bee__rowhash_info_t *info) {
  return info->mark == 'R' && info->found == e->field_count;
}
