/*
 * schema.c: building entity definitions and checking them (README, Lua API).
 *
 * A definition records the first problem it meets and keeps accepting calls, so the
 * binding can feed a whole Lua table and report one error naming entity and field.
 * Whole-definition checks (defaults, scale <= precision, index fields exist) run in
 * bee_registry_add_entity; checks across entities and pools run at validate time.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "schema.h"
#include "schema_internal.h"

#define MAX_FIELDS 1000
#define MAX_INDEX_FIELDS 16
#define MAX_SET_VALUES 64
#define MAX_MEMBER_CHARS 255

static const char *const type_names[] = {
    [BEE_FIELD_INT] = "int",       [BEE_FIELD_BOOL] = "bool",         [BEE_FIELD_FLOAT] = "float",
    [BEE_FIELD_DECIMAL] = "decimal", [BEE_FIELD_STRING] = "string",   [BEE_FIELD_TEXT] = "text",
    [BEE_FIELD_BYTES] = "bytes",   [BEE_FIELD_DATE] = "date",         [BEE_FIELD_DATETIME] = "datetime",
    [BEE_FIELD_ENUM] = "enum",     [BEE_FIELD_SET] = "set",           [BEE_FIELD_REF] = "ref",
};

/* Options each field type accepts, for checks and for the "allowed:" lists. */
static const char *type_options(bee_field_type_t t) {
  switch (t) {
    case BEE_FIELD_INT: return "required, unique, bits, unsigned";
    case BEE_FIELD_DECIMAL: return "required, unique, precision, scale";
    case BEE_FIELD_STRING: return "required, unique, length";
    case BEE_FIELD_TEXT:
    case BEE_FIELD_BYTES: return "required";
    case BEE_FIELD_ENUM:
    case BEE_FIELD_SET: return "required, unique, values";
    case BEE_FIELD_REF: return "required, unique, entity, cached";
    default: return "required, unique";
  }
}

static int type_has_option(bee_field_type_t t, const char *key) {
  const char *list = type_options(t);
  size_t n = strlen(key);
  for (const char *p = list; (p = strstr(p, key)) != NULL; p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0')) return 1;
  return 0;
}

int bee__ident_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= BEE__IDENT_MAX) return 0;
  if (!(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
  return 1;
}

/* Copies a name for a message: at most 64 bytes, non-printables as '?'. */
static void quote_name(char *dst, size_t size, const char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 4 < size && i < 64; i++)
    dst[o++] = isprint((unsigned char)s[i]) ? s[i] : '?';
  if (n > 64 && o + 4 < size) {
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  dst[o] = '\0';
}

/* Records (the first) error and returns BEE_EDEFINITION. field may be NULL. */
static int def_fail(bee_entity_def_t *def, const char *field, const char *fmt, ...) BEE__PRINTF(3, 4);
static int def_fail(bee_entity_def_t *def, const char *field, const char *fmt, ...) {
  if (def->failed) return BEE_EDEFINITION;
  def->failed = 1;
  bee_error_t *err = &def->error;
  va_list ap;
  va_start(ap, fmt);
  bee__verror(err, BEE_EDEFINITION, 0, fmt, ap);
  va_end(ap);
  quote_name(err->entity, sizeof err->entity, def->e.name, strlen(def->e.name));
  if (field) quote_name(err->field, sizeof err->field, field, strlen(field));
  return BEE_EDEFINITION;
}

int bee_entity_def_fail(bee_entity_def_t *def, const char *field, const char *message) {
  if (!def) return BEE_EINVAL;
  return def_fail(def, field, "%s", message ? message : "bad definition");
}

static int def_nomem(bee_entity_def_t *def) {
  if (!def->failed) {
    def->failed = 1;
    bee__error(&def->error, BEE_ENOMEM, 0, "out of memory building entity '%s'", def->e.name);
  }
  return BEE_ENOMEM;
}

/* A string option value as a NUL-terminated name into dst; fails unless it fits. */
static int opt_name(bee_entity_def_t *def, const char *field, const char *key, const bee_value_t *v,
                    char *dst, size_t size) {
  if (v->kind != BEE_VALUE_STRING) return def_fail(def, field, "option '%s' must be a string, got %s", key,
                                                   bee__value_kind_name(v->kind));
  if (v->len >= size || memchr(v->str, 0, v->len)) {
    char q[80];
    quote_name(q, sizeof q, v->str, v->len);
    return def_fail(def, field, "option '%s' is too long: '%s'", key, q);
  }
  memcpy(dst, v->str, v->len);
  dst[v->len] = '\0';
  return 0;
}

static int opt_bool(bee_entity_def_t *def, const char *field, const char *key, const bee_value_t *v, int *out) {
  if (v->kind != BEE_VALUE_BOOL) return def_fail(def, field, "option '%s' must be a boolean, got %s", key,
                                                 bee__value_kind_name(v->kind));
  *out = v->i != 0;
  return 0;
}

static int opt_int(bee_entity_def_t *def, const char *field, const char *key, const bee_value_t *v, int64_t *out) {
  if (v->kind == BEE_VALUE_INT) {
    *out = v->i;
    return 0;
  }
  if (v->kind == BEE_VALUE_FLOAT && v->f == (double)(int64_t)v->f && v->f > -1e15 && v->f < 1e15) {
    *out = (int64_t)v->f;
    return 0;
  }
  return def_fail(def, field, "option '%s' must be an integer, got %s", key, bee__value_kind_name(v->kind));
}

bee_entity_def_t *bee_entity_def_new(const char *name) {
  bee_entity_def_t *def = bee__calloc(1, sizeof *def);
  if (!def) return NULL;
  snprintf(def->e.mysql_pool, sizeof def->e.mysql_pool, "default");
  if (!name) return def; /* bee__entity_def_finish reports the missing name */
  if (!bee__ident_ok(name)) {
    char q[80];
    quote_name(q, sizeof q, name, strlen(name));
    quote_name(def->e.name, sizeof def->e.name, name, strlen(name) < 60 ? strlen(name) : 60);
    def_fail(def, NULL, "bad entity name '%s' (use letters, digits and '_', not starting with a digit, at most 64)", q);
    return def;
  }
  snprintf(def->e.name, sizeof def->e.name, "%s", name);
  snprintf(def->e.table, sizeof def->e.table, "%s", name);
  return def;
}

void bee__entity_clear(bee__entity_t *e) {
  if (!e) return;
  for (size_t i = 0; i < e->field_count; i++) {
    for (size_t j = 0; j < e->fields[i].value_count; j++) bee__free(e->fields[i].values[j]);
    bee__free(e->fields[i].values);
  }
  bee__free(e->fields);
  for (size_t i = 0; i < e->index_count; i++) bee__free(e->indexes[i].fields);
  bee__free(e->indexes);
  memset(e, 0, sizeof *e);
}

void bee_entity_def_free(bee_entity_def_t *def) {
  if (!def) return;
  bee__entity_clear(&def->e);
  bee__free(def->extra);
  bee__free(def);
}

int bee_entity_def_option(bee_entity_def_t *def, const char *key, const bee_value_t *v) {
  if (!def || !key || !v) return BEE_EINVAL;
  bee__entity_t *e = &def->e;
  if (!strcmp(key, "table")) {
    char t[BEE__IDENT_MAX + 8];
    int rc = opt_name(def, NULL, key, v, t, sizeof t);
    if (rc) return rc;
    if (!bee__ident_ok(t))
      return def_fail(def, NULL, "bad table name '%s' (use letters, digits and '_', not starting with a digit, at most 64)", t);
    if (!strncmp(t, "_beeorm", 7)) return def_fail(def, NULL, "table names starting with '_beeorm' are reserved");
    memcpy(e->table, t, strlen(t) + 1); /* bee__ident_ok: shorter than BEE__IDENT_MAX */
    return 0;
  }
  if (!strcmp(key, "mysql")) return opt_name(def, NULL, key, v, e->mysql_pool, sizeof e->mysql_pool);
  if (!strcmp(key, "redis_cache")) {
    if (v->kind == BEE_VALUE_BOOL) {
      snprintf(e->redis_pool, sizeof e->redis_pool, "%s", v->i ? "default" : "");
      return 0;
    }
    if (v->kind != BEE_VALUE_STRING)
      return def_fail(def, NULL, "option 'redis_cache' must be true, false or a Redis pool name, got %s",
                      bee__value_kind_name(v->kind));
    return opt_name(def, NULL, key, v, e->redis_pool, sizeof e->redis_pool);
  }
  if (!strcmp(key, "local_cache")) {
    if (v->kind == BEE_VALUE_BOOL) {
      def->local_cache_default = v->i != 0;
      e->local_cache = 0;
      return 0;
    }
    if (v->kind == BEE_VALUE_INT && v->i >= 1 && v->i <= 1000000000) {
      def->local_cache_default = 0;
      e->local_cache = v->i;
      return 0;
    }
    if (v->kind == BEE_VALUE_INT)
      return def_fail(def, NULL, "option 'local_cache' must be true, false or a capacity from 1 to 1000000000, got %lld",
                      (long long)v->i);
    return def_fail(def, NULL, "option 'local_cache' must be true, false or a capacity from 1 to 1000000000, got %s",
                    bee__value_kind_name(v->kind));
  }
  if (!strcmp(key, "cache_all")) return opt_bool(def, NULL, key, v, &e->cache_all);
  char q[80];
  quote_name(q, sizeof q, key, strlen(key));
  return def_fail(def, NULL, "unknown option '%s' (allowed: table, mysql, redis_cache, local_cache, cache_all)", q);
}

static bee__field_t *field_at(bee_entity_def_t *def, int field) {
  if (field < 0 || (size_t)field >= def->e.field_count) return NULL;
  return &def->e.fields[field];
}

int bee_entity_def_field(bee_entity_def_t *def, const char *name, const char *type) {
  if (!def || !name || !type) return BEE_EINVAL;
  bee__entity_t *e = &def->e;
  char q[80];
  quote_name(q, sizeof q, name, strlen(name));
  if (!bee__ident_ok(name))
    return def_fail(def, q, "bad field name '%s' (use letters, digits and '_', not starting with a digit, at most 64)", q);
  if (!strcmp(name, "id")) return def_fail(def, name, "field 'id' is implicit (an unsigned 64-bit primary key); do not define it");
  for (size_t i = 0; i < e->field_count; i++)
    if (!strcmp(e->fields[i].name, name)) return def_fail(def, name, "field '%s' is defined twice", name);
  if (e->field_count >= MAX_FIELDS) return def_fail(def, name, "an entity has at most %d fields", MAX_FIELDS);
  bee_field_type_t t = 0;
  for (int i = BEE_FIELD_INT; i <= BEE_FIELD_REF; i++)
    if (!strcmp(type, type_names[i])) t = (bee_field_type_t)i;
  if (!t) {
    char qt[80];
    quote_name(qt, sizeof qt, type, strlen(type));
    return def_fail(def, name,
                    "unknown type '%s' (use int, bool, float, decimal, string, text, bytes, date, datetime, enum, set, ref)",
                    qt);
  }
  if (e->field_count == def->field_cap) {
    size_t cap = def->field_cap ? def->field_cap * 2 : 8;
    bee__field_t *f = bee__realloc(e->fields, cap * sizeof *f);
    if (!f) return def_nomem(def);
    e->fields = f;
    bee__field_extra_t *x = bee__realloc(def->extra, cap * sizeof *x);
    if (!x) return def_nomem(def);
    def->extra = x;
    def->field_cap = cap;
  }
  bee__field_t *f = &e->fields[e->field_count];
  memset(f, 0, sizeof *f);
  memset(&def->extra[e->field_count], 0, sizeof def->extra[0]);
  snprintf(f->name, sizeof f->name, "%s", name);
  f->type = t;
  f->ref_index = -1;
  return (int)e->field_count++;
}

int bee_entity_def_field_option(bee_entity_def_t *def, int field, const char *key, const bee_value_t *v) {
  if (!def || !key || !v) return BEE_EINVAL;
  bee__field_t *f = field_at(def, field);
  if (!f) return def->failed ? def->error.code : BEE_EINVAL;
  bee__field_extra_t *x = &def->extra[field];
  if (!type_has_option(f->type, key) || !strcmp(key, "values")) {
    char q[80];
    quote_name(q, sizeof q, key, strlen(key));
    if (!strcmp(key, "unique") && (f->type == BEE_FIELD_TEXT || f->type == BEE_FIELD_BYTES))
      return def_fail(def, f->name, "a %s field cannot be unique or indexed", type_names[f->type]);
    return def_fail(def, f->name, "unknown option '%s' for a %s field (allowed: %s)", q, type_names[f->type],
                    type_options(f->type));
  }
  int64_t n = 0;
  int rc;
  if (!strcmp(key, "required")) return opt_bool(def, f->name, key, v, &f->required);
  if (!strcmp(key, "unsigned")) return opt_bool(def, f->name, key, v, &f->is_unsigned);
  if (!strcmp(key, "cached")) return opt_bool(def, f->name, key, v, &f->cached);
  if (!strcmp(key, "unique")) {
    if (v->kind == BEE_VALUE_BOOL) {
      x->unique = v->i != 0;
      snprintf(x->unique_name, sizeof x->unique_name, "%s", f->name);
      return 0;
    }
    if (v->kind != BEE_VALUE_STRING)
      return def_fail(def, f->name, "option 'unique' must be true or an index name, got %s",
                      bee__value_kind_name(v->kind));
    if ((rc = opt_name(def, f->name, key, v, x->unique_name, sizeof x->unique_name))) return rc;
    if (!bee__ident_ok(x->unique_name))
      return def_fail(def, f->name, "bad index name '%s' (use letters, digits and '_', not starting with a digit, at most 64)",
                      x->unique_name);
    x->unique = 1;
    return 0;
  }
  if (!strcmp(key, "entity")) return opt_name(def, f->name, key, v, f->ref_entity, sizeof f->ref_entity);
  if ((rc = opt_int(def, f->name, key, v, &n))) return rc;
  if (!strcmp(key, "bits")) {
    if (n != 8 && n != 16 && n != 24 && n != 32 && n != 64)
      return def_fail(def, f->name, "bits must be 8, 16, 24, 32 or 64, got %lld", (long long)n);
    f->bits = (int)n;
  } else if (!strcmp(key, "length")) {
    if (n < 1 || n > 16383) return def_fail(def, f->name, "length must be 1 to 16383 characters, got %lld", (long long)n);
    f->length = (int)n;
  } else if (!strcmp(key, "precision")) {
    if (n < 1 || n > 65) return def_fail(def, f->name, "precision must be 1 to 65, got %lld", (long long)n);
    f->precision = (int)n;
    x->has_precision = 1;
  } else if (!strcmp(key, "scale")) {
    if (n < 0 || n > 30) return def_fail(def, f->name, "scale must be 0 to 30, got %lld", (long long)n);
    f->scale = (int)n;
    x->has_scale = 1;
  }
  return 0;
}

int bee_entity_def_field_value(bee_entity_def_t *def, int field, const char *member) {
  if (!def || !member) return BEE_EINVAL;
  bee__field_t *f = field_at(def, field);
  if (!f) return def->failed ? def->error.code : BEE_EINVAL;
  if (f->type != BEE_FIELD_ENUM && f->type != BEE_FIELD_SET)
    return def_fail(def, f->name, "unknown option 'values' for a %s field (allowed: %s)", type_names[f->type],
                    type_options(f->type));
  char q[80];
  size_t n = strlen(member);
  quote_name(q, sizeof q, member, n);
  if (n == 0) return def_fail(def, f->name, "values must not be empty strings");
  size_t chars = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)member[i];
    if ((c & 0xC0) != 0x80) chars++;
    if (c < 0x20 || c == 0x7f) return def_fail(def, f->name, "value '%s' contains a control character", q);
  }
  if (chars > MAX_MEMBER_CHARS) return def_fail(def, f->name, "value '%s' is longer than %d characters", q, MAX_MEMBER_CHARS);
  if (f->type == BEE_FIELD_SET && strchr(member, ','))
    return def_fail(def, f->name, "set value '%s' must not contain ','", q);
  for (size_t i = 0; i < f->value_count; i++)
    if (!strcmp(f->values[i], member)) return def_fail(def, f->name, "value '%s' is listed twice", q);
  if (f->type == BEE_FIELD_SET && f->value_count >= MAX_SET_VALUES)
    return def_fail(def, f->name, "a set field has at most %d values", MAX_SET_VALUES);
  if (f->value_count >= 65535) return def_fail(def, f->name, "an enum field has at most 65535 values");
  char *copy = bee__strdup(member);
  char **grown = copy ? bee__realloc(f->values, (f->value_count + 1) * sizeof *grown) : NULL;
  if (!grown) {
    bee__free(copy);
    return def_nomem(def);
  }
  f->values = grown;
  f->values[f->value_count++] = copy;
  return 0;
}

static bee__index_t *index_at(bee_entity_def_t *def, int index) {
  if (index < 0 || (size_t)index >= def->e.index_count) return NULL;
  return &def->e.indexes[index];
}

/* Adds an index without checking the name's uniqueness against field-level ones yet. */
int bee_entity_def_index(bee_entity_def_t *def, const char *name, int unique) {
  if (!def || !name) return BEE_EINVAL;
  bee__entity_t *e = &def->e;
  char q[80];
  quote_name(q, sizeof q, name, strlen(name));
  if (!bee__ident_ok(name) || !strcmp(name, "PRIMARY"))
    return def_fail(def, NULL, "bad index name '%s' (use letters, digits and '_', not starting with a digit, at most 64)", q);
  for (size_t i = 0; i < e->index_count; i++)
    if (!strcmp(e->indexes[i].name, name)) return def_fail(def, NULL, "index '%s' is defined twice", name);
  bee__index_t *grown = bee__realloc(e->indexes, (e->index_count + 1) * sizeof *grown);
  if (!grown) return def_nomem(def);
  e->indexes = grown;
  bee__index_t *ix = &e->indexes[e->index_count];
  memset(ix, 0, sizeof *ix);
  snprintf(ix->name, sizeof ix->name, "%s", name);
  ix->unique = unique != 0;
  return (int)e->index_count++;
}

int bee_entity_def_index_field(bee_entity_def_t *def, int index, const char *field) {
  if (!def || !field) return BEE_EINVAL;
  bee__index_t *ix = index_at(def, index);
  if (!ix) return def->failed ? def->error.code : BEE_EINVAL;
  char q[80];
  quote_name(q, sizeof q, field, strlen(field));
  int found = -1;
  for (size_t i = 0; i < def->e.field_count; i++)
    if (!strcmp(def->e.fields[i].name, field)) found = (int)i;
  if (found < 0) return def_fail(def, NULL, "index '%s' names unknown field '%s'", ix->name, q);
  bee__field_t *f = &def->e.fields[found];
  if (f->type == BEE_FIELD_TEXT || f->type == BEE_FIELD_BYTES)
    return def_fail(def, f->name, "index '%s' cannot include %s field '%s'", ix->name, type_names[f->type], f->name);
  for (size_t i = 0; i < ix->field_count; i++)
    if (ix->fields[i] == (size_t)found) return def_fail(def, NULL, "index '%s' lists field '%s' twice", ix->name, f->name);
  if (ix->field_count >= MAX_INDEX_FIELDS)
    return def_fail(def, NULL, "index '%s' has more than %d fields", ix->name, MAX_INDEX_FIELDS);
  size_t *grown = bee__realloc(ix->fields, (ix->field_count + 1) * sizeof *grown);
  if (!grown) return def_nomem(def);
  ix->fields = grown;
  ix->fields[ix->field_count++] = (size_t)found;
  return 0;
}

int bee_entity_def_index_option(bee_entity_def_t *def, int index, const char *key, const bee_value_t *v) {
  if (!def || !key || !v) return BEE_EINVAL;
  bee__index_t *ix = index_at(def, index);
  if (!ix) return def->failed ? def->error.code : BEE_EINVAL;
  if (strcmp(key, "cached") != 0) {
    char q[80];
    quote_name(q, sizeof q, key, strlen(key));
    return def_fail(def, NULL, "unknown option '%s' for index '%s' (allowed: cached)", q, ix->name);
  }
  if (ix->unique)
    return def_fail(def, NULL, "unique index '%s' is always cached; option 'cached' is for non-unique indexes", ix->name);
  return opt_bool(def, NULL, key, v, &ix->cached);
}

/*
 * Whole-definition checks and defaults: runs once, when the definition is complete.
 * Field-level `unique` becomes a one-field unique index; a ref field gets an index
 * for get_by_reference unless an index already starts with it.
 */
int bee__entity_def_finish(bee_entity_def_t *def) {
  bee__entity_t *e = &def->e;
  if (def->failed) return def->error.code;
  if (!e->name[0]) return def_fail(def, NULL, "an entity needs a name (option 'name')");
  for (size_t i = 0; i < e->field_count; i++) {
    bee__field_t *f = &e->fields[i];
    bee__field_extra_t *x = &def->extra[i];
    switch (f->type) {
      case BEE_FIELD_INT:
        if (!f->bits) f->bits = 32;
        break;
      case BEE_FIELD_STRING:
        if (!f->length) f->length = 255;
        break;
      case BEE_FIELD_DECIMAL:
        if (!x->has_precision) f->precision = 10;
        if (f->scale > f->precision)
          return def_fail(def, f->name, "scale %d is larger than precision %d", f->scale, f->precision);
        break;
      case BEE_FIELD_ENUM:
      case BEE_FIELD_SET:
        if (!f->value_count) return def_fail(def, f->name, "a%s %s field needs values", f->type == BEE_FIELD_ENUM ? "n" : "", type_names[f->type]);
        break;
      case BEE_FIELD_REF:
        if (!f->ref_entity[0]) return def_fail(def, f->name, "a ref field needs option 'entity'");
        break;
      default:
        break;
    }
  }
  for (size_t i = 0; i < e->index_count; i++)
    if (!e->indexes[i].field_count) return def_fail(def, NULL, "index '%s' has no fields", e->indexes[i].name);
  for (size_t i = 0; i < e->field_count; i++) {
    if (!def->extra[i].unique) continue;
    int ix = bee_entity_def_index(def, def->extra[i].unique_name, 1);
    if (ix < 0) return def->error.code;
    if (bee_entity_def_index_field(def, ix, e->fields[i].name)) return def->error.code;
  }
  for (size_t i = 0; i < e->field_count; i++) {
    if (e->fields[i].type != BEE_FIELD_REF) continue;
    int covered = 0;
    for (size_t j = 0; j < e->index_count; j++)
      if (e->indexes[j].fields[0] == i) covered = 1;
    if (covered) continue;
    for (size_t j = 0; j < e->index_count; j++)
      if (!strcmp(e->indexes[j].name, e->fields[i].name))
        return def_fail(def, e->fields[i].name,
                        "index name '%s' is taken, but ref field '%s' needs an index of that name (or an index starting with it)",
                        e->fields[i].name, e->fields[i].name);
    int ix = bee_entity_def_index(def, e->fields[i].name, 0);
    if (ix < 0) return def->error.code;
    if (bee_entity_def_index_field(def, ix, e->fields[i].name)) return def->error.code;
  }
  return 0;
}

/* Deep copy of a finished entity (for the engine). Returns 0 or BEE_ENOMEM (dst cleared). */
int bee__entity_copy(bee__entity_t *dst, const bee__entity_t *src) {
  *dst = *src;
  dst->fields = NULL;
  dst->indexes = NULL;
  dst->field_count = dst->index_count = 0;
  if (src->field_count) {
    dst->fields = bee__calloc(src->field_count, sizeof *dst->fields);
    if (!dst->fields) goto nomem;
  }
  for (size_t i = 0; i < src->field_count; i++) {
    dst->fields[i] = src->fields[i];
    dst->fields[i].values = NULL;
    dst->fields[i].value_count = 0;
    dst->field_count = i + 1;
    if (src->fields[i].value_count) {
      dst->fields[i].values = bee__calloc(src->fields[i].value_count, sizeof(char *));
      if (!dst->fields[i].values) goto nomem;
      for (size_t j = 0; j < src->fields[i].value_count; j++) {
        dst->fields[i].values[j] = bee__strdup(src->fields[i].values[j]);
        if (!dst->fields[i].values[j]) goto nomem;
        dst->fields[i].value_count = j + 1;
      }
    }
  }
  if (src->index_count) {
    dst->indexes = bee__calloc(src->index_count, sizeof *dst->indexes);
    if (!dst->indexes) goto nomem;
  }
  for (size_t i = 0; i < src->index_count; i++) {
    dst->indexes[i] = src->indexes[i];
    dst->indexes[i].fields = bee__calloc(src->indexes[i].field_count, sizeof(size_t));
    if (!dst->indexes[i].fields) {
      dst->indexes[i].field_count = 0;
      dst->index_count = i + 1;
      goto nomem;
    }
    memcpy(dst->indexes[i].fields, src->indexes[i].fields, src->indexes[i].field_count * sizeof(size_t));
    dst->index_count = i + 1;
  }
  return 0;
nomem:
  bee__entity_clear(dst);
  return BEE_ENOMEM;
}

/* ------------------------------------------------------------------------ */
/* Read access for engine users                                             */

const char *bee_entity_name(const bee_entity_t *e) { return e ? e->name : NULL; }
const char *bee_entity_table(const bee_entity_t *e) { return e ? e->table : NULL; }
size_t bee_entity_field_count(const bee_entity_t *e) { return e ? e->field_count : 0; }

int bee_entity_field_index(const bee_entity_t *e, const char *name) {
  if (!e || !name) return -1;
  for (size_t i = 0; i < e->field_count; i++)
    if (!strcmp(e->fields[i].name, name)) return (int)i;
  return -1;
}

int bee_entity_field_info(const bee_entity_t *e, size_t field, bee_field_info_t *out) {
  if (!e || !out || field >= e->field_count) return BEE_EINVAL;
  const bee__field_t *f = &e->fields[field];
  out->name = f->name;
  out->type = f->type;
  out->type_name = bee__field_type_name(f->type);
  out->required = f->required;
  return 0;
}

int bee_entity_check_value(const bee_entity_t *e, size_t field, const bee_value_t *in, bee_value_t *out,
                           char *buf, size_t bufsize, bee_error_t *err) {
  if (!e || !in || !out || field >= e->field_count) return bee__error(err, BEE_EINVAL, 0, "bad arguments");
  return bee__value_check(e, &e->fields[field], in, out, buf, bufsize, err);
}
