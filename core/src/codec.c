/*
 * codec.c: rows to and from the cache's binary form, the schema hash, and MySQL text
 * cells and ids to canonical values. Pure; see codec.h for the format and contracts.
 * Decoding trusts nothing in its input: every length is checked against what is left
 * before it is used, so any byte string is safe to feed it.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static const char UINT64_MAX_TEXT[] = "18446744073709551615";
static const char INT64_MAX_TEXT[] = "9223372036854775807";

/* ------------------------------------------------------------------------ */
/* Little-endian helpers                                                    */

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Two's complement both ways without implementation-defined conversions. */
static uint64_t i64_to_u64(int64_t v) { return (uint64_t)v; }
static int64_t u64_to_i64(uint64_t u) {
  return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* ------------------------------------------------------------------------ */
/* Which values fit which field                                             */

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* The plain digits (no leading zero) of a value in INT64_MAX+1 .. UINT64_MAX. */
static int big_unsigned_text(const char *s, size_t n) {
  if ((n != 19 && n != 20) || !s || s[0] == '0') return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_digit(s[i])) return 0;
  if (n == 19) return memcmp(s, INT64_MAX_TEXT, 19) > 0;
  return memcmp(s, UINT64_MAX_TEXT, 20) <= 0;
}

/* The width and signedness of an int-like field: ref is unsigned 64-bit. */
static void int_shape(const bee__field_t *f, int *bits, int *is_unsigned) {
  if (f->type == BEE_FIELD_REF) {
    *bits = 64;
    *is_unsigned = 1;
  } else {
    *bits = f->bits;
    *is_unsigned = f->is_unsigned != 0;
  }
}

static int bits_ok(int bits) {
  return bits == 8 || bits == 16 || bits == 24 || bits == 32 || bits == 64;
}

/* 1 when v is a value the codec stores for f (the table in codec.h), 0 otherwise. */
static int value_fits(const bee__field_t *f, const bee_value_t *v) {
  if (v->kind == BEE_VALUE_NIL) return 1;
  switch (f->type) {
    case BEE_FIELD_INT:
    case BEE_FIELD_REF: {
      int bits, is_unsigned;
      int_shape(f, &bits, &is_unsigned);
      if (!bits_ok(bits)) return 0;
      if (v->kind == BEE_VALUE_INT) return bee__int_in_range(v->i, bits, is_unsigned);
      return v->kind == BEE_VALUE_STRING && bits == 64 && is_unsigned &&
             big_unsigned_text(v->str, v->len);
    }
    case BEE_FIELD_BOOL:
      return v->kind == BEE_VALUE_BOOL;
    case BEE_FIELD_FLOAT:
      return v->kind == BEE_VALUE_FLOAT && isfinite(v->f);
    case BEE_FIELD_DECIMAL:
    case BEE_FIELD_STRING:
    case BEE_FIELD_TEXT:
    case BEE_FIELD_BYTES:
    case BEE_FIELD_DATE:
    case BEE_FIELD_DATETIME:
    case BEE_FIELD_ENUM:
    case BEE_FIELD_SET:
      return v->kind == BEE_VALUE_STRING && (v->str || v->len == 0);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Schema hash                                                              */

#define FNV_OFFSET 2166136261u
#define FNV_PRIME 16777619u

static uint32_t fnv_bytes(uint32_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= FNV_PRIME;
  }
  return h;
}

/* A string and its terminating 0: names cannot hold a 0, so the split is unambiguous. */
static uint32_t fnv_str(uint32_t h, const char *s) {
  if (!s) s = "";
  return fnv_bytes(h, s, strlen(s) + 1);
}

static uint32_t fnv_int(uint32_t h, uint32_t v) {
  unsigned char b[4];
  put_u32(b, v);
  return fnv_bytes(h, b, 4);
}

uint32_t bee__entity_hash(const bee__entity_t *e) {
  uint32_t h = FNV_OFFSET;
  h = fnv_int(h, BEE__ROW_VERSION);
  h = fnv_str(h, e->table);
  h = fnv_int(h, (uint32_t)e->field_count);
  for (size_t i = 0; i < e->field_count; i++) {
    const bee__field_t *f = &e->fields[i];
    h = fnv_str(h, f->name);
    h = fnv_int(h, (uint32_t)f->type);
    h = fnv_int(h, (uint32_t)f->required);
    h = fnv_int(h, (uint32_t)f->bits);
    h = fnv_int(h, (uint32_t)f->is_unsigned);
    h = fnv_int(h, (uint32_t)f->length);
    h = fnv_int(h, (uint32_t)f->precision);
    h = fnv_int(h, (uint32_t)f->scale);
    /* The count first: members ["a", "b"] and ["a"] then a field named "b" differ. */
    h = fnv_int(h, (uint32_t)f->value_count);
    for (size_t k = 0; k < f->value_count; k++) h = fnv_str(h, f->values ? f->values[k] : NULL);
    h = fnv_str(h, f->ref_entity);
  }
  return h;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */

int bee__row_encode(const bee__entity_t *e, uint64_t id, const bee_value_t *values,
                    bee__buf_t *out) {
  if (out->failed) return BEE_ENOMEM;
  if (id == 0 || (e->field_count && !values)) return BEE_EINVAL;
  for (size_t i = 0; i < e->field_count; i++) {
    if (!value_fits(&e->fields[i], &values[i])) return BEE_EINVAL;
    if (values[i].kind == BEE_VALUE_STRING && values[i].len > UINT32_MAX) return BEE_EINVAL;
  }

  unsigned char head[BEE__ROW_HEADER_LEN];
  head[0] = BEE__ROW_FOUND;
  head[1] = BEE__ROW_VERSION;
  put_u32(head + 2, e->layout_hash ? e->layout_hash : bee__entity_hash(e));
  put_u64(head + 6, id);
  bee__buf_append(out, (const char *)head, sizeof head);

  for (size_t i = 0; i < e->field_count; i++) {
    const bee_value_t *v = &values[i];
    unsigned char t[9];
    size_t n = 1;
    switch (v->kind) {
      case BEE_VALUE_NIL:
        t[0] = BEE__TAG_NIL;
        break;
      case BEE_VALUE_INT:
        t[0] = BEE__TAG_INT;
        put_u64(t + 1, i64_to_u64(v->i));
        n = 9;
        break;
      case BEE_VALUE_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->f, sizeof bits);
        t[0] = BEE__TAG_FLOAT;
        put_u64(t + 1, bits);
        n = 9;
        break;
      }
      case BEE_VALUE_BOOL:
        t[0] = BEE__TAG_BOOL;
        t[1] = v->i != 0;
        n = 2;
        break;
      case BEE_VALUE_STRING:
        t[0] = BEE__TAG_STRING;
        put_u32(t + 1, (uint32_t)v->len);
        n = 5;
        break;
    }
    bee__buf_append(out, (const char *)t, n);
    /* No append of an empty string: its pointer may be NULL. */
    if (v->kind == BEE_VALUE_STRING && v->len) bee__buf_append(out, v->str, v->len);
  }
  return out->failed ? BEE_ENOMEM : 0;
}

void bee__row_encode_missing(const bee__entity_t *e, bee__buf_t *out) {
  unsigned char m[BEE__ROW_MISSING_LEN];
  m[0] = BEE__ROW_MISSING;
  m[1] = BEE__ROW_VERSION;
  put_u32(m + 2, e->layout_hash ? e->layout_hash : bee__entity_hash(e));
  bee__buf_append(out, (const char *)m, sizeof m);
}

int bee__row_is_missing(const char *data, size_t len) {
  return data && len == BEE__ROW_MISSING_LEN && data[0] == BEE__ROW_MISSING &&
         (unsigned char)data[1] == BEE__ROW_VERSION;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */

/*
 * Walks the fields of a found row (p at the first tag, n bytes left). With values ==
 * NULL it only checks; otherwise it also writes them. 0 or BEE_EINVAL.
 */
static int decode_fields(const bee__entity_t *e, const unsigned char *p, size_t n,
                         bee_value_t *values) {
  size_t pos = 0;
  for (size_t i = 0; i < e->field_count; i++) {
    bee_value_t v;
    memset(&v, 0, sizeof v);
    if (pos >= n) return BEE_EINVAL;
    unsigned tag = p[pos++];
    size_t left = n - pos;
    switch (tag) {
      case BEE__TAG_NIL:
        v.kind = BEE_VALUE_NIL;
        break;
      case BEE__TAG_INT:
        if (left < 8) return BEE_EINVAL;
        v.kind = BEE_VALUE_INT;
        v.i = u64_to_i64(get_u64(p + pos));
        pos += 8;
        break;
      case BEE__TAG_FLOAT: {
        if (left < 8) return BEE_EINVAL;
        uint64_t bits = get_u64(p + pos);
        v.kind = BEE_VALUE_FLOAT;
        memcpy(&v.f, &bits, sizeof v.f);
        pos += 8;
        break;
      }
      case BEE__TAG_BOOL:
        if (left < 1 || p[pos] > 1) return BEE_EINVAL;
        v.kind = BEE_VALUE_BOOL;
        v.i = p[pos];
        pos += 1;
        break;
      case BEE__TAG_STRING: {
        if (left < 4) return BEE_EINVAL;
        uint32_t slen = get_u32(p + pos);
        pos += 4;
        if (slen > n - pos) return BEE_EINVAL;
        v.kind = BEE_VALUE_STRING;
        v.str = (const char *)p + pos;
        v.len = slen;
        pos += slen;
        break;
      }
      default:
        return BEE_EINVAL;
    }
    if (!value_fits(&e->fields[i], &v)) return BEE_EINVAL;
    if (values) values[i] = v;
  }
  return pos == n ? 0 : BEE_EINVAL;
}

int bee__row_decode(const bee__entity_t *e, const char *data, size_t len, uint64_t *id,
                    bee_value_t *values) {
  const unsigned char *p = (const unsigned char *)data;
  if (!p || len < BEE__ROW_MISSING_LEN) return BEE_EINVAL;
  if ((p[0] != BEE__ROW_FOUND && p[0] != BEE__ROW_MISSING) || p[1] != BEE__ROW_VERSION)
    return BEE_EINVAL;
  if (get_u32(p + 2) != (e->layout_hash ? e->layout_hash : bee__entity_hash(e))) return BEE_EINVAL;
  if (p[0] == BEE__ROW_MISSING) return len == BEE__ROW_MISSING_LEN ? BEE_ENOTFOUND : BEE_EINVAL;

  if (len < BEE__ROW_HEADER_LEN) return BEE_EINVAL;
  uint64_t row_id = get_u64(p + 6);
  if (row_id == 0) return BEE_EINVAL;
  if (e->field_count && !values) return BEE_EINVAL;
  /* Check everything first so that a failure leaves the outputs untouched. */
  p += BEE__ROW_HEADER_LEN;
  len -= BEE__ROW_HEADER_LEN;
  int rc = decode_fields(e, p, len, NULL);
  if (rc) return rc;
  decode_fields(e, p, len, values);
  if (id) *id = row_id;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* MySQL cells                                                              */

/* s holds n >= 1 decimal digits whose value fits in 64 bits. */
static int parse_u64(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i])) return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static int cell_int(const bee__field_t *f, const char *s, size_t n, bee_value_t *out) {
  int bits, is_unsigned;
  int_shape(f, &bits, &is_unsigned);
  if (!bits_ok(bits)) return BEE_EINVAL;
  int neg = n > 0 && s[0] == '-';
  if (neg && is_unsigned) return BEE_EINVAL;
  const char *d = s + neg;
  size_t dn = n - (size_t)neg;
  uint64_t mag;
  if (parse_u64(d, dn, &mag)) return BEE_EINVAL;
  if (!neg && mag > (uint64_t)INT64_MAX) {
    if (!is_unsigned || bits != 64) return BEE_EINVAL;
    /* Too big for an integer value: its digits, without the leading zeros. */
    while (dn > 1 && d[0] == '0') {
      d++;
      dn--;
    }
    out->kind = BEE_VALUE_STRING;
    out->i = 0;
    out->f = 0;
    out->str = d;
    out->len = dn;
    return 0;
  }
  int64_t v;
  if (neg) {
    if (mag > (uint64_t)INT64_MAX + 1) return BEE_EINVAL;
    v = mag == 0 ? 0 : -(int64_t)(mag - 1) - 1;
  } else {
    v = (int64_t)mag;
  }
  if (!bee__int_in_range(v, bits, is_unsigned)) return BEE_EINVAL;
  out->kind = BEE_VALUE_INT;
  out->i = v;
  out->f = 0;
  out->str = NULL;
  out->len = 0;
  return 0;
}

/* Longest float text accepted; MySQL prints a DOUBLE in at most about 23 bytes. */
#define FLOAT_TEXT_MAX 127

static int cell_float(const char *s, size_t n, bee_value_t *out) {
  char text[FLOAT_TEXT_MAX + 1];
  if (n == 0 || n > FLOAT_TEXT_MAX) return BEE_EINVAL;
  /* Only plain decimal notation: strtod would also take spaces, hex, inf and nan. */
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!is_digit(ch) && ch != '.' && ch != '-' && ch != '+' && ch != 'e' && ch != 'E')
      return BEE_EINVAL;
  }
  memcpy(text, s, n);
  text[n] = '\0';
  /* strtod follows the C locale's decimal point; the host may have set another one. */
  const char *point = localeconv()->decimal_point;
  if (point && point[0] && point[0] != '.' && !point[1]) {
    char *dot = memchr(text, '.', n);
    if (dot) *dot = point[0];
  }
  char *end;
  errno = 0;
  double d = strtod(text, &end);
  /* ERANGE on underflow still gives the nearest value (0 or a denormal): keep it. */
  if (end != text + n || !isfinite(d)) return BEE_EINVAL;
  out->kind = BEE_VALUE_FLOAT;
  out->i = 0;
  out->f = d;
  out->str = NULL;
  out->len = 0;
  return 0;
}

int bee__cell_value(const bee__field_t *f, const char *cell, size_t len, bee_value_t *out) {
  if (!cell) {
    memset(out, 0, sizeof *out);
    out->kind = BEE_VALUE_NIL;
    return 0;
  }
  switch (f->type) {
    case BEE_FIELD_INT:
    case BEE_FIELD_REF:
      return cell_int(f, cell, len, out);
    case BEE_FIELD_BOOL:
      if (len != 1 || (cell[0] != '0' && cell[0] != '1')) return BEE_EINVAL;
      memset(out, 0, sizeof *out);
      out->kind = BEE_VALUE_BOOL;
      out->i = cell[0] == '1';
      return 0;
    case BEE_FIELD_FLOAT:
      return cell_float(cell, len, out);
    case BEE_FIELD_DECIMAL:
    case BEE_FIELD_STRING:
    case BEE_FIELD_TEXT:
    case BEE_FIELD_BYTES:
    case BEE_FIELD_DATE:
    case BEE_FIELD_DATETIME:
    case BEE_FIELD_ENUM:
    case BEE_FIELD_SET:
      memset(out, 0, sizeof *out);
      out->kind = BEE_VALUE_STRING;
      out->str = cell;
      out->len = len;
      return 0;
  }
  return BEE_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Ids                                                                      */

int bee__id_parse(const char *s, size_t len, uint64_t *out) {
  uint64_t v;
  if (!s || len == 0 || len > 20 || s[0] == '0') return BEE_EINVAL;
  if (parse_u64(s, len, &v)) return BEE_EINVAL;
  *out = v;
  return 0;
}

size_t bee__id_format(uint64_t id, char *buf) {
  char rev[BEE__ID_BUF];
  size_t n = 0;
  do {
    rev[n++] = (char)('0' + id % 10);
    id /= 10;
  } while (id);
  for (size_t i = 0; i < n; i++) buf[i] = rev[n - 1 - i];
  buf[n] = '\0';
  return n;
}
