/*
 * value.c: checks a value against its field (docs/guarantees.md G7) and gives its canonical form.
 * Pure: no I/O and no allocation; rewritten text goes into the caller's buffer. The
 * canonical form is what MySQL stores and returns, so that a value written through a
 * cache and the same value read back from MySQL are the same bytes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* Quoted user input is cut to this many bytes so messages stay short. */
#define QUOTE_MAX 40
/* The member list in "is not one of: ..." stops growing at about this many bytes. */
#define MEMBER_LIST_MAX 200
/* TEXT and BLOB columns hold at most 65535 bytes. */
#define LONG_VALUE_MAX 65535

/* One check in progress: the arguments, the input's bytes and the output built so far. */
typedef struct {
  const bee__entity_t *e;
  const bee__field_t *f;
  const bee_value_t *in;
  bee_value_t o; /* copied to *out only on success */
  char *buf;
  size_t bufsize;
  bee_error_t *err;
  const char *s; /* BEE_VALUE_STRING input: never NULL, n bytes */
  size_t n;
} check_t;

const char *bee__field_type_name(bee_field_type_t t) {
  switch (t) {
    case BEE_FIELD_INT: return "int";
    case BEE_FIELD_BOOL: return "bool";
    case BEE_FIELD_FLOAT: return "float";
    case BEE_FIELD_DECIMAL: return "decimal";
    case BEE_FIELD_STRING: return "string";
    case BEE_FIELD_TEXT: return "text";
    case BEE_FIELD_BYTES: return "bytes";
    case BEE_FIELD_DATE: return "date";
    case BEE_FIELD_DATETIME: return "datetime";
    case BEE_FIELD_ENUM: return "enum";
    case BEE_FIELD_SET: return "set";
    case BEE_FIELD_REF: return "ref";
  }
  return "?";
}

const char *bee__value_kind_name(bee_value_kind_t k) {
  switch (k) {
    case BEE_VALUE_NIL: return "nil";
    case BEE_VALUE_INT: return "integer";
    case BEE_VALUE_FLOAT: return "float";
    case BEE_VALUE_BOOL: return "boolean";
    case BEE_VALUE_STRING: return "string";
  }
  return "?";
}

/* Copies a name into an error field, truncating: err->entity is smaller than an identifier. */
static void copy_name(char *dst, size_t size, const char *src) {
  size_t i = 0;
  for (; i + 1 < size && src[i]; i++) dst[i] = src[i];
  dst[i] = '\0';
}

static int fail(check_t *c, int code, const char *fmt, ...) BEE__PRINTF(3, 4);

/*
 * Fills c->err with code and the message, then names the entity and field (after
 * bee__error, which clears them). Returns code. Never touches the output.
 */
static int fail(check_t *c, int code, const char *fmt, ...) {
  char msg[BEE_ERROR_MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  bee__error(c->err, code, 0, "%s", msg);
  if (c->err) {
    copy_name(c->err->entity, sizeof c->err->entity, c->e->name);
    copy_name(c->err->field, sizeof c->err->field, c->f->name);
  }
  return code;
}

static int wrong_kind(check_t *c, const char *what) {
  return fail(c, BEE_EVALIDATION, "expected %s, got %s", what, bee__value_kind_name(c->in->kind));
}

/*
 * Decodes one UTF-8 sequence at s (n > 0 bytes available). Returns its length and sets
 * *cp, or 0 when the sequence is invalid: overlong, a surrogate, above U+10FFFF, a
 * stray continuation byte or cut short. The ranges are those of Unicode table 3-7,
 * which is also what MySQL's utf8mb4 accepts.
 */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t need;
  uint32_t v;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    v = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    v = c & 0x07;
    if (c == 0xF0) lo = 0x90;      /* overlong */
    else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0;
  }
  if (n <= need) return 0;
  for (size_t k = 1; k <= need; k++) {
    unsigned b = s[k];
    if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3F);
  }
  *cp = v;
  return need + 1;
}

/*
 * Returns 0 and the number of code points in *chars when s is valid UTF-8; otherwise
 * -1 with *bad the offset where the first invalid sequence starts.
 */
static int utf8_check(const char *s, size_t n, size_t *chars, size_t *bad) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, count = 0;
  while (i < n) {
    uint32_t cp;
    size_t k = utf8_next(p + i, n - i, &cp);
    if (!k) {
      *bad = i;
      return -1;
    }
    i += k;
    count++;
  }
  *chars = count;
  return 0;
}

/*
 * Writes at most the first QUOTE_MAX bytes of s into q (QUOTE_MAX + 1 bytes) for
 * quoting in a message. Printable ASCII and whole printable UTF-8 characters stay;
 * every other byte (controls, invalid or cut sequences, line separators) becomes '?',
 * so the message stays one readable line. Returns q.
 */
static const char *quote(char *q, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t lim = n < QUOTE_MAX ? n : QUOTE_MAX, i = 0, o = 0;
  while (i < lim) {
    unsigned c = p[i];
    if (c >= 0x20 && c < 0x7F) {
      q[o++] = (char)c;
      i++;
      continue;
    }
    if (c >= 0x80) {
      uint32_t cp;
      size_t k = utf8_next(p + i, lim - i, &cp);
      /* U+0080..U+009F are C1 controls; U+2028/2029 break lines in some viewers. */
      if (k && cp >= 0xA0 && cp != 0x2028 && cp != 0x2029) {
        memcpy(q + o, p + i, k);
        o += k;
        i += k;
        continue;
      }
    }
    q[o++] = '?';
    i++;
  }
  q[o] = '\0';
  return q;
}

/*
 * Writes the field's members joined by ", " into list (MEMBER_LIST_MAX + 8 bytes).
 * A long list stops before the member that would pass MEMBER_LIST_MAX and ends in
 * ", ..." so the message stays bounded.
 */
static const char *member_list(char *list, const bee__field_t *f) {
  size_t o = 0;
  for (size_t i = 0; i < f->value_count; i++) {
    const char *sep = i ? ", " : "";
    size_t sl = strlen(sep), ml = strlen(f->values[i]);
    if (o + sl + ml > MEMBER_LIST_MAX) {
      memcpy(list + o, sep, sl);
      memcpy(list + o + sl, "...", 3);
      o += sl + 3;
      break;
    }
    memcpy(list + o, sep, sl);
    memcpy(list + o + sl, f->values[i], ml);
    o += sl + ml;
  }
  list[o] = '\0';
  return list;
}

/*
 * 0 when the caller's buffer holds BEE__VALUE_BUF of the input's length (0 for a
 * non-string input), which bounds every rewritten form; otherwise BEE_EINVAL.
 */
static int buf_ok(check_t *c) {
  size_t in_len = c->in->kind == BEE_VALUE_STRING ? c->in->len : 0;
  if (!c->buf || in_len > SIZE_MAX - BEE__VALUE_BUF(0) || c->bufsize < BEE__VALUE_BUF(in_len))
    return fail(c, BEE_EINVAL, "value buffer too small");
  return 0;
}

/* Makes text (len bytes, len < 80 + input length) the output, NUL-terminated in buf. */
static int output_in_buf(check_t *c, const char *text, size_t len) {
  if (buf_ok(c)) return BEE_EINVAL;
  memcpy(c->buf, text, len);
  c->buf[len] = '\0';
  c->o.kind = BEE_VALUE_STRING;
  c->o.str = c->buf;
  c->o.len = len;
  return 0;
}

/* Makes the input string itself the output: it is already canonical. */
static int output_input(check_t *c) {
  c->o.kind = BEE_VALUE_STRING;
  c->o.str = c->s;
  c->o.len = c->n;
  return 0;
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* ------------------------------------------------------------------------ */
/* int and ref                                                              */

static const char UINT64_MAX_TEXT[] = "18446744073709551615";
static const char INT64_MAX_TEXT[] = "9223372036854775807";

/* "300 is out of range for unsigned 8-bit int (0 to 255)", value given as text. */
static int out_of_range(check_t *c, int bits, int is_unsigned, const char *value) {
  char lo[32], hi[32];
  if (is_unsigned) {
    uint64_t max = bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    snprintf(lo, sizeof lo, "0");
    snprintf(hi, sizeof hi, "%" PRIu64, max);
  } else {
    int64_t min = bits == 64 ? INT64_MIN : -((int64_t)1 << (bits - 1));
    int64_t max = bits == 64 ? INT64_MAX : ((int64_t)1 << (bits - 1)) - 1;
    snprintf(lo, sizeof lo, "%" PRId64, min);
    snprintf(hi, sizeof hi, "%" PRId64, max);
  }
  return fail(c, BEE_EVALIDATION, "%s is out of range for %s %d-bit int (%s to %s)", value,
              is_unsigned ? "unsigned" : "signed", bits, lo, hi);
}

int bee__int_in_range(int64_t v, int bits, int is_unsigned) {
  if (is_unsigned) {
    if (v < 0) return 0;
    return bits == 64 || (uint64_t)v <= ((uint64_t)1 << bits) - 1;
  }
  if (bits == 64) return 1;
  return v >= -((int64_t)1 << (bits - 1)) && v <= ((int64_t)1 << (bits - 1)) - 1;
}

/* Plain decimal digits: no sign, no space, no leading zero except "0" itself. */
static int plain_digits(const char *s, size_t n) {
  if (n == 0 || (n > 1 && s[0] == '0')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_digit(s[i])) return 0;
  return 1;
}

/*
 * int and ref. The output is BEE_VALUE_INT, except an unsigned 64-bit value above
 * INT64_MAX, which is a digit string: the input itself, or text in buf when it came
 * as a float. A ref is an unsigned 64-bit id of 1 or more.
 */
static int check_int(check_t *c) {
  const bee__field_t *f = c->f;
  int is_ref = f->type == BEE_FIELD_REF;
  int bits = is_ref ? 64 : f->bits;
  int is_unsigned = is_ref ? 1 : f->is_unsigned != 0;
  const char *what = is_ref ? "a positive integer id" : "an integer";
  char text[64];
  int64_t v;
  if (bits != 8 && bits != 16 && bits != 24 && bits != 32 && bits != 64)
    return fail(c, BEE_EINVAL, "field has a bad int width %d", bits);
  switch (c->in->kind) {
    case BEE_VALUE_INT:
      v = c->in->i;
      break;
    case BEE_VALUE_FLOAT: {
      double d = c->in->f;
      if (!isfinite(d)) return fail(c, BEE_EVALIDATION, "is not a finite number");
      if (d != floor(d)) return fail(c, BEE_EVALIDATION, "%.17g is not an integer", d);
      if (d >= -0x1p63 && d < 0x1p63) {
        v = (int64_t)d;
        break;
      }
      if (d > 0 && d < 0x1p64 && is_unsigned && bits == 64) {
        /* Exact: an integral double below 2^64 converts without loss. */
        int len = snprintf(text, sizeof text, "%" PRIu64, (uint64_t)d);
        return output_in_buf(c, text, (size_t)len);
      }
      if (is_ref && d < 0)
        return fail(c, BEE_EVALIDATION, "%.17g is not a valid id (ids are 1 or more)", d);
      snprintf(text, sizeof text, "%.17g", d);
      return out_of_range(c, bits, is_unsigned, text);
    }
    case BEE_VALUE_STRING:
      /* Lua integers stop at INT64_MAX: larger unsigned values travel as digits. */
      if (!is_unsigned || bits != 64 || !plain_digits(c->s, c->n)) return wrong_kind(c, what);
      if (c->n > 20 || (c->n == 20 && memcmp(c->s, UINT64_MAX_TEXT, 20) > 0)) {
        char q[QUOTE_MAX + 1];
        return out_of_range(c, bits, is_unsigned, quote(q, c->s, c->n));
      }
      if (c->n < 19 || (c->n == 19 && memcmp(c->s, INT64_MAX_TEXT, 19) <= 0)) {
        v = 0;
        for (size_t i = 0; i < c->n; i++) v = v * 10 + (c->s[i] - '0');
        break;
      }
      return output_input(c);
    default:
      return wrong_kind(c, what);
  }
  if (is_ref) {
    if (v < 1)
      return fail(c, BEE_EVALIDATION, "%" PRId64 " is not a valid id (ids are 1 or more)", v);
  } else if (!bee__int_in_range(v, bits, is_unsigned)) {
    snprintf(text, sizeof text, "%" PRId64, v);
    return out_of_range(c, bits, is_unsigned, text);
  }
  c->o.kind = BEE_VALUE_INT;
  c->o.i = v;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* bool, float                                                              */

static int check_bool(check_t *c) {
  if (c->in->kind != BEE_VALUE_BOOL) return wrong_kind(c, "a boolean");
  c->o.kind = BEE_VALUE_BOOL;
  c->o.i = c->in->i != 0;
  return 0;
}

static int check_float(check_t *c) {
  if (c->in->kind == BEE_VALUE_INT) {
    c->o.kind = BEE_VALUE_FLOAT;
    c->o.f = (double)c->in->i;
    return 0;
  }
  if (c->in->kind != BEE_VALUE_FLOAT) return wrong_kind(c, "a number");
  /* MySQL has no NaN or infinity in DOUBLE columns. */
  if (!isfinite(c->in->f)) return fail(c, BEE_EVALIDATION, "is not a finite number");
  c->o.kind = BEE_VALUE_FLOAT;
  c->o.f = c->in->f;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* decimal                                                                  */

/*
 * decimal(P,S): "-12.5" style text or an integer; never a float, whose binary value is
 * not the decimal the user typed. Nothing is rounded: too many digits on either side
 * is an error. The canonical text has no leading zeros, exactly S fraction digits and
 * no minus sign on zero.
 */
static int check_decimal(check_t *c) {
  int p = c->f->precision, sc = c->f->scale;
  if (p < 1 || p > 65 || sc < 0 || sc > 30 || sc > p)
    return fail(c, BEE_EINVAL, "field has a bad decimal definition (%d,%d)", p, sc);
  char num[32], q[QUOTE_MAX + 1];
  const char *s;
  size_t n;
  int from_int = c->in->kind == BEE_VALUE_INT;
  if (from_int) {
    n = (size_t)snprintf(num, sizeof num, "%" PRId64, c->in->i);
    s = num;
  } else if (c->in->kind == BEE_VALUE_STRING) {
    s = c->s;
    n = c->n;
  } else if (c->in->kind == BEE_VALUE_FLOAT) {
    return fail(c, BEE_EVALIDATION,
                "expected a decimal string or an integer, got float (floats are inexact)");
  } else {
    return wrong_kind(c, "a decimal string or an integer");
  }

  size_t i = 0, int_start, int_len, frac_start = 0, frac_len = 0;
  int neg = n > 0 && s[0] == '-';
  i = int_start = (size_t)neg;
  while (i < n && is_digit(s[i])) i++;
  int_len = i - int_start;
  int ok = int_len > 0;
  if (ok && i < n && s[i] == '.') {
    frac_start = ++i;
    while (i < n && is_digit(s[i])) i++;
    frac_len = i - frac_start;
    ok = frac_len > 0;
  }
  if (!ok || i != n)
    return fail(c, BEE_EVALIDATION, "'%s' is not a decimal number", quote(q, s, n));

  size_t sig = int_start, int_end = int_start + int_len;
  while (sig < int_end && s[sig] == '0') sig++;
  size_t sig_len = int_end - sig;
  if (sig_len > (size_t)(p - sc))
    return fail(c, BEE_EVALIDATION, "'%s' has too many digits before the point (at most %d)",
                quote(q, s, n), p - sc);
  if (frac_len > (size_t)sc)
    return fail(c, BEE_EVALIDATION, "'%s' has too many digits after the point (at most %d)",
                quote(q, s, n), sc);

  int zero = sig_len == 0;
  for (size_t k = 0; k < frac_len && zero; k++) zero = s[frac_start + k] == '0';
  /* At most '-', 65 digits, '.', 30 digits: the definition bounds it, not the input. */
  char canon[112];
  size_t o = 0;
  if (neg && !zero) canon[o++] = '-';
  if (sig_len) {
    memcpy(canon + o, s + sig, sig_len);
    o += sig_len;
  } else {
    canon[o++] = '0';
  }
  if (sc > 0) {
    canon[o++] = '.';
    memcpy(canon + o, s + frac_start, frac_len);
    o += frac_len;
    memset(canon + o, '0', (size_t)sc - frac_len);
    o += (size_t)sc - frac_len;
  }
  if (!from_int && o == n && memcmp(canon, s, n) == 0) return output_input(c);
  return output_in_buf(c, canon, o);
}

/* ------------------------------------------------------------------------ */
/* string, text, bytes                                                      */

static int check_string(check_t *c) {
  size_t chars, bad;
  if (c->in->kind != BEE_VALUE_STRING) return wrong_kind(c, "a string");
  if (utf8_check(c->s, c->n, &chars, &bad))
    return fail(c, BEE_EVALIDATION, "is not valid UTF-8 (bad byte at offset %zu)", bad);
  /* VARCHAR(L) counts characters, not bytes. */
  if (c->f->length < 0 || chars > (size_t)c->f->length)
    return fail(c, BEE_EVALIDATION, "is too long: %zu characters, at most %d", chars,
                c->f->length);
  return output_input(c);
}

/* text (utf8 = 1) and bytes (utf8 = 0): TEXT and BLOB, 65535 bytes at most. */
static int check_long(check_t *c, int utf8) {
  size_t chars, bad;
  if (c->in->kind != BEE_VALUE_STRING) return wrong_kind(c, "a string");
  if (c->n > LONG_VALUE_MAX)
    return fail(c, BEE_EVALIDATION, "is too long: %zu bytes, at most %d", c->n, LONG_VALUE_MAX);
  if (utf8 && utf8_check(c->s, c->n, &chars, &bad))
    return fail(c, BEE_EVALIDATION, "is not valid UTF-8 (bad byte at offset %zu)", bad);
  return output_input(c);
}

/* ------------------------------------------------------------------------ */
/* date, datetime                                                           */

/* Reads count digits at s into *v; 0 when any of them is not a digit. */
static int read_digits(const char *s, size_t count, int *v) {
  int r = 0;
  for (size_t i = 0; i < count; i++) {
    if (!is_digit(s[i])) return 0;
    r = r * 10 + (s[i] - '0');
  }
  *v = r;
  return 1;
}

/*
 * s holds at least 10 bytes: "YYYY-MM-DD", a real calendar day in years 1000..9999
 * (MySQL's supported DATE range; zero dates are refused).
 */
static int valid_date(const char *s) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y, m, d;
  if (!read_digits(s, 4, &y) || s[4] != '-' || !read_digits(s + 5, 2, &m) || s[7] != '-' ||
      !read_digits(s + 8, 2, &d))
    return 0;
  if (y < 1000 || m < 1 || m > 12 || d < 1) return 0;
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= days[m - 1] + (m == 2 && leap);
}

/* s holds at least 8 bytes: "hh:mm:ss" with hh 00-23 and mm, ss 00-59. */
static int valid_time(const char *s) {
  int h, m, sec;
  return read_digits(s, 2, &h) && s[2] == ':' && read_digits(s + 3, 2, &m) && s[5] == ':' &&
         read_digits(s + 6, 2, &sec) && h <= 23 && m <= 59 && sec <= 59;
}

static int check_date(check_t *c) {
  char q[QUOTE_MAX + 1];
  if (c->in->kind != BEE_VALUE_STRING) return wrong_kind(c, "a date string YYYY-MM-DD");
  if (c->n != 10 || !valid_date(c->s))
    return fail(c, BEE_EVALIDATION, "'%s' is not a valid date (expected YYYY-MM-DD)",
                quote(q, c->s, c->n));
  return output_input(c);
}

/* A date alone means midnight, written out in full as MySQL returns it. */
static int check_datetime(check_t *c) {
  char q[QUOTE_MAX + 1];
  if (c->in->kind != BEE_VALUE_STRING)
    return wrong_kind(c, "a datetime string YYYY-MM-DD hh:mm:ss");
  if (c->n == 10 && valid_date(c->s)) {
    char full[20];
    memcpy(full, c->s, 10);
    memcpy(full + 10, " 00:00:00", 9);
    return output_in_buf(c, full, 19);
  }
  if (c->n == 19 && valid_date(c->s) && c->s[10] == ' ' && valid_time(c->s + 11))
    return output_input(c);
  return fail(c, BEE_EVALIDATION, "'%s' is not a valid datetime (expected YYYY-MM-DD hh:mm:ss)",
              quote(q, c->s, c->n));
}

/* ------------------------------------------------------------------------ */
/* enum, set                                                                */

/* Index of the member equal to s (n bytes, case-sensitive), or -1. */
static long find_member(const bee__field_t *f, const char *s, size_t n) {
  for (size_t i = 0; i < f->value_count; i++)
    if (strlen(f->values[i]) == n && memcmp(f->values[i], s, n) == 0) return (long)i;
  return -1;
}

static int not_a_member(check_t *c, const char *s, size_t n) {
  char q[QUOTE_MAX + 1], list[MEMBER_LIST_MAX + 8];
  return fail(c, BEE_EVALIDATION, "'%s' is not one of: %s", quote(q, s, n),
              member_list(list, c->f));
}

static int check_enum(check_t *c) {
  if (c->in->kind != BEE_VALUE_STRING) return wrong_kind(c, "a string");
  if (find_member(c->f, c->s, c->n) < 0) return not_a_member(c, c->s, c->n);
  return output_input(c);
}

/* Whether the comma-separated list s (n bytes) has m (mlen bytes) as a member. */
static int list_has(const char *s, size_t n, const char *m, size_t mlen) {
  size_t start = 0;
  while (start <= n) {
    const char *comma = memchr(s + start, ',', n - start);
    size_t end = comma ? (size_t)(comma - s) : n;
    if (end - start == mlen && memcmp(s + start, m, mlen) == 0) return 1;
    start = end + 1;
  }
  return 0;
}

/*
 * set: members joined by ',', each at most once. MySQL returns the members in
 * definition order, so that order is canonical; input in another order is rewritten
 * into buf. Checked left to right: the first bad member is the one reported.
 * Every member is distinct and defined, so the work is bounded by the definition.
 */
static int check_set(check_t *c) {
  if (c->in->kind != BEE_VALUE_STRING) return wrong_kind(c, "a string");
  const char *s = c->s;
  size_t n = c->n;
  if (n == 0) return output_input(c);
  long prev = -1;
  int ordered = 1;
  size_t start = 0;
  for (;;) {
    const char *comma = memchr(s + start, ',', n - start);
    size_t end = comma ? (size_t)(comma - s) : n, mlen = end - start;
    if (mlen == 0) return fail(c, BEE_EVALIDATION, "has an empty member");
    long idx = find_member(c->f, s + start, mlen);
    if (idx < 0) return not_a_member(c, s + start, mlen);
    if (start > 0 && list_has(s, start - 1, s + start, mlen)) {
      char q[QUOTE_MAX + 1];
      return fail(c, BEE_EVALIDATION, "'%s' is given twice", quote(q, s + start, mlen));
    }
    if (idx < prev) ordered = 0;
    prev = idx;
    if (end == n) break;
    start = end + 1;
  }
  if (ordered) return output_input(c);
  /* Same members, same separators: the canonical text has the input's length. */
  if (buf_ok(c)) return BEE_EINVAL;
  size_t o = 0;
  for (size_t i = 0; i < c->f->value_count; i++) {
    const char *m = c->f->values[i];
    size_t ml = strlen(m);
    if (!list_has(s, n, m, ml)) continue;
    if (o) c->buf[o++] = ',';
    memcpy(c->buf + o, m, ml);
    o += ml;
  }
  c->buf[o] = '\0';
  c->o.kind = BEE_VALUE_STRING;
  c->o.str = c->buf;
  c->o.len = o;
  return 0;
}

/* ------------------------------------------------------------------------ */

int bee__value_check(const bee__entity_t *e, const bee__field_t *f, const bee_value_t *in,
                     bee_value_t *out, char *buf, size_t bufsize, bee_error_t *err) {
  if (!e || !f || !in || !out)
    return bee__error(err, BEE_EINVAL, 0, "bee__value_check: missing argument");
  check_t c;
  memset(&c, 0, sizeof c);
  c.e = e;
  c.f = f;
  c.in = in;
  c.buf = buf;
  c.bufsize = buf ? bufsize : 0;
  c.err = err;
  switch (in->kind) {
    case BEE_VALUE_NIL:
    case BEE_VALUE_INT:
    case BEE_VALUE_FLOAT:
    case BEE_VALUE_BOOL:
      break;
    case BEE_VALUE_STRING:
      if (!in->str && in->len) return fail(&c, BEE_EINVAL, "string value without bytes");
      c.s = in->str ? in->str : "";
      c.n = in->len;
      break;
    default:
      return fail(&c, BEE_EINVAL, "unknown value kind %d", (int)in->kind);
  }

  int rc;
  if (in->kind == BEE_VALUE_NIL) {
    if (f->required) return fail(&c, BEE_EVALIDATION, "is required");
    c.o.kind = BEE_VALUE_NIL;
    rc = 0;
  } else {
    switch (f->type) {
      case BEE_FIELD_INT:
      case BEE_FIELD_REF: rc = check_int(&c); break;
      case BEE_FIELD_BOOL: rc = check_bool(&c); break;
      case BEE_FIELD_FLOAT: rc = check_float(&c); break;
      case BEE_FIELD_DECIMAL: rc = check_decimal(&c); break;
      case BEE_FIELD_STRING: rc = check_string(&c); break;
      case BEE_FIELD_TEXT: rc = check_long(&c, 1); break;
      case BEE_FIELD_BYTES: rc = check_long(&c, 0); break;
      case BEE_FIELD_DATE: rc = check_date(&c); break;
      case BEE_FIELD_DATETIME: rc = check_datetime(&c); break;
      case BEE_FIELD_ENUM: rc = check_enum(&c); break;
      case BEE_FIELD_SET: rc = check_set(&c); break;
      default: return fail(&c, BEE_EINVAL, "field has unknown type %d", (int)f->type);
    }
  }
  if (rc == 0) *out = c.o;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Increments                                                               */

#define DIGITS_MAX 100 /* 65 digits of decimal(65,30) plus carries, or a 20-digit int */

/*
 * A canonical decimal (or integer) text as sign and digits with exactly sc digits after
 * an implied point, right-aligned in d[DIGITS_MAX]. 0, or -1 when it does not parse.
 */
static int digits_of(const char *s, size_t n, int sc, int *neg, unsigned char *d) {
  memset(d, 0, DIGITS_MAX);
  size_t i = 0;
  *neg = n > 0 && s[0] == '-';
  i = (size_t)*neg;
  size_t int_start = i;
  while (i < n && is_digit(s[i])) i++;
  size_t int_len = i - int_start, frac_start = i, frac_len = 0;
  if (i < n && s[i] == '.') {
    frac_start = ++i;
    while (i < n && is_digit(s[i])) i++;
    frac_len = i - frac_start;
  }
  if (i != n || int_len == 0 || frac_len > (size_t)sc || int_len + (size_t)sc >= DIGITS_MAX) return -1;
  size_t at = DIGITS_MAX - (size_t)sc; /* where the fraction starts */
  for (size_t k = 0; k < frac_len; k++) d[at + k] = (unsigned char)(s[frac_start + k] - '0');
  for (size_t k = 0; k < int_len; k++) d[at - int_len + k] = (unsigned char)(s[int_start + k] - '0');
  return 0;
}

/* Compares two digit arrays. */
static int digits_cmp(const unsigned char *a, const unsigned char *b) {
  for (size_t i = 0; i < DIGITS_MAX; i++)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

/* Writes sign and digits (sc after the point) as canonical text into buf; returns the length, 0 when it does not fit. */
static size_t digits_text(int neg, const unsigned char *d, int sc, char *buf, size_t size, size_t *int_digits) {
  size_t first = 0, point = DIGITS_MAX - (size_t)sc;
  while (first < point && d[first] == 0) first++;
  int zero = 1;
  for (size_t i = 0; i < DIGITS_MAX && zero; i++) zero = d[i] == 0;
  size_t need = (neg && !zero) + (first < point ? point - first : 1) + (sc ? 1 + (size_t)sc : 0);
  if (need >= size) return 0;
  size_t o = 0;
  if (neg && !zero) buf[o++] = '-';
  if (first == point) buf[o++] = '0';
  for (size_t i = first; i < point; i++) buf[o++] = (char)('0' + d[i]);
  if (sc) {
    buf[o++] = '.';
    for (size_t i = point; i < DIGITS_MAX; i++) buf[o++] = (char)('0' + d[i]);
  }
  buf[o] = '\0';
  *int_digits = point - first;
  return o;
}

/* a + b of two canonical texts with sc fraction digits, as canonical text into buf. 0 or -1. */
static int text_add(const char *a, size_t al, const char *b, size_t bl, int sc, char *buf, size_t size, size_t *len,
                    size_t *int_digits) {
  unsigned char x[DIGITS_MAX], y[DIGITS_MAX], r[DIGITS_MAX];
  int nx, ny, nr;
  if (digits_of(a, al, sc, &nx, x) || digits_of(b, bl, sc, &ny, y)) return -1;
  if (nx == ny) {
    int carry = 0;
    for (size_t i = DIGITS_MAX; i-- > 0;) {
      int v = x[i] + y[i] + carry;
      r[i] = (unsigned char)(v % 10);
      carry = v / 10;
    }
    if (carry) return -1;
    nr = nx;
  } else {
    int c = digits_cmp(x, y);
    const unsigned char *big = c >= 0 ? x : y, *small = c >= 0 ? y : x;
    nr = c >= 0 ? nx : ny;
    int borrow = 0;
    for (size_t i = DIGITS_MAX; i-- > 0;) {
      int v = big[i] - small[i] - borrow;
      borrow = v < 0;
      r[i] = (unsigned char)(v < 0 ? v + 10 : v);
    }
  }
  *len = digits_text(nr, r, sc, buf, size, int_digits);
  return *len ? 0 : -1;
}

int bee__value_add(const bee__field_t *f, const bee_value_t *base, const bee_value_t *delta, bee_value_t *out,
                   char *buf, size_t size) {
  memset(out, 0, sizeof *out);
  if (base->kind == BEE_VALUE_NIL) { /* NULL + x is NULL */
    out->kind = BEE_VALUE_NIL;
    return 0;
  }
  char num[32];
  size_t len, int_digits;
  if (f->type == BEE_FIELD_INT) {
    if (delta->kind != BEE_VALUE_INT) return BEE_EINVAL;
    const char *b = base->str;
    size_t bl = base->len;
    if (base->kind == BEE_VALUE_INT) {
      bl = (size_t)snprintf(num, sizeof num, "%" PRId64, base->i);
      b = num;
    } else if (base->kind != BEE_VALUE_STRING) {
      return BEE_EINVAL;
    }
    char d[32];
    size_t dl = (size_t)snprintf(d, sizeof d, "%" PRId64, delta->i);
    if (text_add(b, bl, d, dl, 0, buf, size, &len, &int_digits) || int_digits > 20) return BEE_EINVAL;
    int neg = buf[0] == '-';
    const char *digits = buf + neg;
    size_t n = len - (size_t)neg;
    if (neg) { /* negative: fits int64 unless below INT64_MIN */
      if (f->is_unsigned || n > 19 || (n == 19 && memcmp(digits, "9223372036854775808", 19) > 0)) return BEE_EINVAL;
    } else if (n == 20 && memcmp(digits, UINT64_MAX_TEXT, 20) > 0) {
      return BEE_EINVAL;
    }
    if (!neg && (n > 19 || (n == 19 && memcmp(digits, INT64_MAX_TEXT, 19) > 0))) {
      if (f->bits != 64 || !f->is_unsigned) return BEE_EINVAL;
      out->kind = BEE_VALUE_STRING; /* unsigned 64-bit above INT64_MAX: digits (codec.h) */
      out->str = buf;
      out->len = len;
      return 0;
    }
    long long v = strtoll(buf, NULL, 10);
    if (!bee__int_in_range((int64_t)v, f->bits, f->is_unsigned)) return BEE_EINVAL;
    out->kind = BEE_VALUE_INT;
    out->i = (int64_t)v;
    return 0;
  }
  if (f->type == BEE_FIELD_DECIMAL) {
    if (base->kind != BEE_VALUE_STRING || delta->kind != BEE_VALUE_STRING) return BEE_EINVAL;
    if (text_add(base->str, base->len, delta->str, delta->len, f->scale, buf, size, &len, &int_digits) ||
        int_digits > (size_t)(f->precision - f->scale))
      return BEE_EINVAL;
    out->kind = BEE_VALUE_STRING;
    out->str = buf;
    out->len = len;
    return 0;
  }
  return BEE_EINVAL;
}
