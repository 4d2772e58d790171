/* test_codec.c: the cache row codec, schema hash, MySQL cells and ids (core/src/codec.c). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"
#include "task.h"

/* ------------------------------------------------------------------------ */
/* The entity "every": one field per type and int width.                    */

#define INT_FIELD(fname, b, u) \
  { .name = fname, .type = BEE_FIELD_INT, .bits = (b), .is_unsigned = (u) }
static char *colors[] = {"red", "green", "blue"};
static char *tag_names[] = {"new", "hot", "sale"};

enum { F_I8, F_U8, F_I16, F_U16, F_I24, F_U24, F_I32, F_U32, F_I64, F_U64, F_FLAG, F_RATIO,
       F_PRICE, F_NAME, F_BODY, F_BLOB, F_DAY, F_AT, F_COLOR, F_TAGS, F_OWNER, F_QTY, NFIELDS };

static bee__field_t every_fields[NFIELDS] = {
    INT_FIELD("i8", 8, 0),   INT_FIELD("u8", 8, 1),   INT_FIELD("i16", 16, 0),
    INT_FIELD("u16", 16, 1), INT_FIELD("i24", 24, 0), INT_FIELD("u24", 24, 1),
    INT_FIELD("i32", 32, 0), INT_FIELD("u32", 32, 1), INT_FIELD("i64", 64, 0),
    INT_FIELD("u64", 64, 1),
    {.name = "flag", .type = BEE_FIELD_BOOL},
    {.name = "ratio", .type = BEE_FIELD_FLOAT},
    {.name = "price", .type = BEE_FIELD_DECIMAL, .precision = 10, .scale = 2},
    {.name = "name", .type = BEE_FIELD_STRING, .length = 255},
    {.name = "body", .type = BEE_FIELD_TEXT},
    {.name = "blob", .type = BEE_FIELD_BYTES},
    {.name = "day", .type = BEE_FIELD_DATE},
    {.name = "at", .type = BEE_FIELD_DATETIME},
    {.name = "color", .type = BEE_FIELD_ENUM, .values = colors, .value_count = 3},
    {.name = "tags", .type = BEE_FIELD_SET, .values = tag_names, .value_count = 3},
    {.name = "owner", .type = BEE_FIELD_REF, .ref_entity = "user"},
    {.name = "qty", .type = BEE_FIELD_INT, .required = 1, .bits = 32, .is_unsigned = 1},
};
static const bee__entity_t every = {.name = "every", .table = "every", .mysql_pool = "default",
                                    .fields = every_fields, .field_count = NFIELDS};
/* The same layout under another table name: another schema hash. */
static const bee__entity_t every_elsewhere = {.name = "every", .table = "every2",
                                              .mysql_pool = "default", .fields = every_fields,
                                              .field_count = NFIELDS};

#define VNIL {BEE_VALUE_NIL, 0, 0, NULL, 0}
#define VI(x) {BEE_VALUE_INT, (x), 0, NULL, 0}
#define VF(x) {BEE_VALUE_FLOAT, 0, (x), NULL, 0}
#define VB(x) {BEE_VALUE_BOOL, (x), 0, NULL, 0}
#define VS(lit) {BEE_VALUE_STRING, 0, 0, (lit), sizeof(lit) - 1}

static const bee_value_t row_low[NFIELDS] = {
    VI(-128), VI(0), VI(-32768), VI(0), VI(-8388608), VI(0), VI(INT32_MIN), VI(0),
    VI(INT64_MIN), VI(0), VB(0), VF(-0.0), VS("-99999999.99"), VS(""), VS("a\0b\0"), VS("\0"),
    VS("1000-01-01"), VS("1000-01-01 00:00:00"), VS("red"), VS(""), VI(1), VI(0)};
static const bee_value_t row_high[NFIELDS] = {
    VI(127), VI(255), VI(32767), VI(65535), VI(8388607), VI(16777215), VI(INT32_MAX),
    VI(4294967295LL), VI(INT64_MAX), VS("18446744073709551615"), VB(1), VF(DBL_MAX),
    VS("99999999.99"), VS("h\xc3\xa9llo"), VS("text"), VS("\xff\x00\xfe"),
    VS("9999-12-31"), VS("9999-12-31 23:59:59"), VS("blue"), VS("new,hot,sale"),
    VS("18446744073709551615"), VI(4294967295LL)};
static const bee_value_t row_odd[NFIELDS] = {
    VI(0), VI(1), VI(-1), VI(1), VI(-1), VI(1), VI(-1), VI(1), VI(-1),
    VS("9223372036854775808"), VNIL, VF(0x1p-1074), VNIL, VS("\0\0\0"), VNIL, VS(""), VNIL,
    VNIL, VS("green"), VS("hot"), VI(INT64_MAX), VI(7)};
static const bee_value_t row_nil[NFIELDS] = {VNIL, VNIL, VNIL, VNIL, VNIL, VNIL, VNIL, VNIL,
                                             VNIL, VNIL, VNIL, VNIL, VNIL, VNIL, VNIL, VNIL,
                                             VNIL, VNIL, VNIL, VNIL, VNIL, VNIL};

/* Same kind and same bytes: floats compare by bits, so -0.0 differs from 0.0. */
static int same_value(const bee_value_t *a, const bee_value_t *b) {
  if (a->kind != b->kind) return 0;
  switch (a->kind) {
    case BEE_VALUE_NIL: return 1;
    case BEE_VALUE_INT:
    case BEE_VALUE_BOOL: return a->i == b->i;
    case BEE_VALUE_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case BEE_VALUE_STRING:
      return a->len == b->len && (a->len == 0 || memcmp(a->str, b->str, a->len) == 0);
  }
  return 0;
}

static int all_bytes_are(const void *p, size_t n, unsigned char b) {
  for (size_t i = 0; i < n; i++)
    if (((const unsigned char *)p)[i] != b) return 0;
  return 1;
}

/* The encoded size of values, computed from the documented format. */
static size_t encoded_size(const bee_value_t *v, size_t n) {
  size_t size = BEE__ROW_HEADER_LEN;
  for (size_t i = 0; i < n; i++) {
    switch (v[i].kind) {
      case BEE_VALUE_NIL: size += 1; break;
      case BEE_VALUE_INT:
      case BEE_VALUE_FLOAT: size += 9; break;
      case BEE_VALUE_BOOL: size += 2; break;
      case BEE_VALUE_STRING: size += 5 + v[i].len; break;
    }
  }
  return size;
}

/* Encodes, decodes into an exactly sized copy (so ASan sees any overread) and compares. */
static int round_trip(const bee__entity_t *e, uint64_t id, const bee_value_t *values) {
  bee__buf_t b = {0};
  ASSERT_EQ(bee__row_encode(e, id, values, &b), 0);
  ASSERT_EQ(b.len, encoded_size(values, e->field_count));
  ASSERT_EQ(b.data[0], 'R');
  ASSERT_EQ(b.data[1], 1);
  uint32_t h = bee__entity_hash(e);
  for (int k = 0; k < 4; k++) ASSERT_EQ((unsigned char)b.data[2 + k], (h >> (8 * k)) & 0xff);
  for (int k = 0; k < 8; k++) ASSERT_EQ((unsigned char)b.data[6 + k], (id >> (8 * k)) & 0xff);
  ASSERT(!bee__row_is_missing(b.data, b.len));

  char *copy = malloc(b.len);
  ASSERT(copy);
  memcpy(copy, b.data, b.len);
  bee__buf_free(&b);
  bee_value_t *got = malloc(e->field_count * sizeof *got);
  ASSERT(got);
  uint64_t got_id = 0;
  int rc = bee__row_decode(e, copy, encoded_size(values, e->field_count), &got_id, got);
  int ok = rc == 0 && got_id == id;
  for (size_t i = 0; ok && i < e->field_count; i++) {
    if (!same_value(&got[i], &values[i])) {
      fprintf(stderr, "  field %s differs\n", e->fields[i].name);
      ok = 0;
    }
    /* Strings point into the encoded bytes: no copies. */
    if (got[i].kind == BEE_VALUE_STRING && got[i].len &&
        (got[i].str < copy || got[i].str >= copy + encoded_size(values, e->field_count)))
      ok = 0;
  }
  free(got);
  free(copy);
  ASSERT_EQ(rc, 0);
  ASSERT(ok);
  return 0;
}

TEST_IMPL(codec_row_round_trips_every_field_type_at_its_bounds) {
  ASSERT_EQ(round_trip(&every, 1, row_low), 0);
  ASSERT_EQ(round_trip(&every, UINT64_MAX, row_high), 0);
  ASSERT_EQ(round_trip(&every, 9223372036854775808ULL, row_odd), 0);
  return 0;
}

TEST_IMPL(codec_row_round_trips_nil_in_every_field) {
  /* NIL fits every field, required ones included: a legacy NULL must still cache. */
  ASSERT_EQ(round_trip(&every, 42, row_nil), 0);
  return 0;
}

TEST_IMPL(codec_row_round_trips_an_entity_without_fields) {
  static const bee__entity_t bare = {.name = "bare", .table = "bare"};
  ASSERT_EQ(round_trip(&bare, 5, NULL), 0);
  return 0;
}

TEST_IMPL(codec_row_round_trips_a_1_mib_string_with_nul_bytes) {
  size_t n = 1 << 20;
  char *big = malloc(n);
  ASSERT(big);
  for (size_t i = 0; i < n; i++) big[i] = (char)(i * 7);
  bee_value_t values[NFIELDS];
  memcpy(values, row_high, sizeof values);
  values[F_BLOB].str = big;
  values[F_BLOB].len = n;
  values[F_BODY].str = big + 1;
  values[F_BODY].len = n - 1;
  int rc = round_trip(&every, 3, values);
  free(big);
  ASSERT_EQ(rc, 0);
  return 0;
}

/* The bytes of one small row, written out by hand from the format in codec.h. */
TEST_IMPL(codec_row_encoding_is_the_documented_format) {
  static bee__field_t fields[] = {INT_FIELD("n", 64, 0),
                                  {.name = "s", .type = BEE_FIELD_STRING, .length = 9},
                                  {.name = "b", .type = BEE_FIELD_BOOL},
                                  {.name = "f", .type = BEE_FIELD_FLOAT},
                                  {.name = "z", .type = BEE_FIELD_TEXT}};
  static const bee__entity_t e = {.name = "small", .table = "small", .fields = fields,
                                  .field_count = 5};
  const bee_value_t values[] = {VI(-2), VS("hi"), VB(1), VF(1.0), VNIL};
  uint32_t h = bee__entity_hash(&e);
  const unsigned char want[] = {
      'R', 1, h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, h >> 24,
      0x02, 0x01, 0, 0, 0, 0, 0, 0,                       /* id 258 */
      1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  /* INT -2 */
      4, 2, 0, 0, 0, 'h', 'i',                            /* STRING "hi" */
      3, 1,                                               /* BOOL true */
      2, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,                    /* FLOAT 1.0 */
      0};                                                 /* NIL */
  bee__buf_t b = {0};
  ASSERT_EQ(bee__row_encode(&e, 258, values, &b), 0);
  ASSERT_EQ(b.len, sizeof want);
  ASSERT(memcmp(b.data, want, sizeof want) == 0);
  bee__buf_free(&b);

  bee__row_encode_missing(&e, &b);
  const unsigned char missing[] = {'N', 1, h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, h >> 24};
  ASSERT_EQ(b.len, sizeof missing);
  ASSERT(memcmp(b.data, missing, sizeof missing) == 0);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(codec_encode_appends_to_what_the_buffer_holds) {
  bee__buf_t b = {0};
  bee__buf_append(&b, "prefix", 6);
  ASSERT_EQ(bee__row_encode(&every, 7, row_low, &b), 0);
  ASSERT_EQ(b.len, 6 + encoded_size(row_low, NFIELDS));
  ASSERT(memcmp(b.data, "prefix", 6) == 0);
  uint64_t id;
  bee_value_t got[NFIELDS];
  ASSERT_EQ(bee__row_decode(&every, b.data + 6, b.len - 6, &id, got), 0);
  ASSERT_EQ(id, 7);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(codec_missing_marker_round_trips) {
  bee__buf_t b = {0};
  bee__row_encode_missing(&every, &b);
  ASSERT(!b.failed);
  ASSERT_EQ(b.len, 6);
  ASSERT(bee__row_is_missing(b.data, b.len));
  uint64_t id = 99;
  bee_value_t got[NFIELDS];
  memset(got, 0x5a, sizeof got);
  ASSERT_EQ(bee__row_decode(&every, b.data, b.len, &id, got), BEE_ENOTFOUND);
  ASSERT_EQ(id, 99);
  ASSERT(all_bytes_are(got, sizeof got, 0x5a));
  /* Another entity's marker is stale, not "not found". */
  ASSERT_EQ(bee__row_decode(&every_elsewhere, b.data, b.len, &id, got), BEE_EINVAL);
  /* A marker with anything after it is malformed. */
  bee__buf_append(&b, "x", 1);
  ASSERT(!bee__row_is_missing(b.data, b.len));
  ASSERT_EQ(bee__row_decode(&every, b.data, b.len, &id, got), BEE_EINVAL);
  bee__buf_free(&b);

  ASSERT(!bee__row_is_missing(NULL, 0));
  ASSERT(!bee__row_is_missing("N\x01", 2));
  ASSERT(!bee__row_is_missing("N\x02\0\0\0\0", 6));
  ASSERT(!bee__row_is_missing("R\x01\0\0\0\0", 6));
  ASSERT(bee__row_is_missing("N\x01\0\0\0\0", 6));
  return 0;
}

TEST_IMPL(codec_decode_rejects_every_truncation) {
  const bee_value_t *rows[] = {row_low, row_high, row_odd, row_nil};
  for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
    bee__buf_t b = {0};
    ASSERT_EQ(bee__row_encode(&every, 11, rows[r], &b), 0);
    for (size_t n = 0; n < b.len; n++) {
      char *copy = malloc(n ? n : 1);
      ASSERT(copy);
      memcpy(copy, b.data, n);
      uint64_t id = 5;
      bee_value_t got[NFIELDS];
      memset(got, 0x5a, sizeof got);
      int rc = bee__row_decode(&every, copy, n, &id, got);
      free(copy);
      if (rc != BEE_EINVAL) fprintf(stderr, "  row %zu, prefix of %zu bytes\n", r, n);
      ASSERT_EQ(rc, BEE_EINVAL);
      ASSERT_EQ(id, 5);
      ASSERT(all_bytes_are(got, sizeof got, 0x5a));
    }
    bee__buf_free(&b);
  }
  bee__buf_t m = {0};
  bee__row_encode_missing(&every, &m);
  for (size_t n = 0; n < m.len; n++) {
    uint64_t id;
    bee_value_t got[NFIELDS];
    ASSERT_EQ(bee__row_decode(&every, m.data, n, &id, got), BEE_EINVAL);
  }
  bee__buf_free(&m);
  ASSERT_EQ(bee__row_decode(&every, NULL, 0, NULL, NULL), BEE_EINVAL);
  return 0;
}

/* Offsets of the tag bytes of an encoding of values. */
static size_t tag_offsets(const bee_value_t *v, size_t n, size_t *at) {
  size_t pos = BEE__ROW_HEADER_LEN;
  for (size_t i = 0; i < n; i++) {
    at[i] = pos;
    pos += encoded_size(&v[i], 1) - BEE__ROW_HEADER_LEN;
  }
  return n;
}

TEST_IMPL(codec_decode_rejects_every_corruption_of_header_and_tags) {
  const bee_value_t *rows[] = {row_low, row_high, row_odd, row_nil};
  for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
    bee__buf_t b = {0};
    ASSERT_EQ(bee__row_encode(&every, 11, rows[r], &b), 0);
    size_t at[6 + NFIELDS];
    for (size_t k = 0; k < 6; k++) at[k] = k; /* marker, version, hash */
    size_t count = 6 + tag_offsets(rows[r], NFIELDS, at + 6);
    for (size_t k = 0; k < count; k++) {
      for (int byte = 0; byte < 256; byte++) {
        unsigned char old = (unsigned char)b.data[at[k]];
        if (byte == old) continue;
        b.data[at[k]] = (char)byte;
        uint64_t id;
        bee_value_t got[NFIELDS];
        int rc = bee__row_decode(&every, b.data, b.len, &id, got);
        b.data[at[k]] = (char)old;
        if (rc != BEE_EINVAL)
          fprintf(stderr, "  row %zu, byte %zu set to %d: %d\n", r, at[k], byte, rc);
        ASSERT_EQ(rc, BEE_EINVAL);
      }
    }
    bee__buf_free(&b);
  }
  return 0;
}

TEST_IMPL(codec_decode_rejects_trailing_bytes) {
  bee__buf_t b = {0};
  ASSERT_EQ(bee__row_encode(&every, 11, row_high, &b), 0);
  size_t len = b.len;
  for (int extra = 1; extra <= 8; extra++) {
    bee__buf_append(&b, "\0", 1);
    uint64_t id;
    bee_value_t got[NFIELDS];
    ASSERT_EQ(bee__row_decode(&every, b.data, len + (size_t)extra, &id, got), BEE_EINVAL);
  }
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(codec_decode_rejects_a_row_of_another_schema) {
  bee__buf_t b = {0};
  ASSERT(bee__entity_hash(&every) != bee__entity_hash(&every_elsewhere));
  ASSERT_EQ(bee__row_encode(&every_elsewhere, 11, row_high, &b), 0);
  uint64_t id;
  bee_value_t got[NFIELDS];
  ASSERT_EQ(bee__row_decode(&every, b.data, b.len, &id, got), BEE_EINVAL);
  ASSERT_EQ(bee__row_decode(&every_elsewhere, b.data, b.len, &id, got), 0);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(codec_decode_rejects_id_zero_and_unknown_markers) {
  bee__buf_t b = {0};
  ASSERT_EQ(bee__row_encode(&every, 1, row_nil, &b), 0);
  uint64_t id;
  bee_value_t got[NFIELDS];
  b.data[6] = 0; /* the id's low byte: now 0 */
  ASSERT_EQ(bee__row_decode(&every, b.data, b.len, &id, got), BEE_EINVAL);
  b.data[6] = 1;
  ASSERT_EQ(bee__row_decode(&every, b.data, b.len, &id, got), 0);
  bee__buf_free(&b);
  ASSERT_EQ(bee__row_encode(&every, 0, row_nil, &b), BEE_EINVAL);
  ASSERT_EQ(b.len, 0);
  return 0;
}

/* A one-field entity per field, to feed hand-made payloads. */
static int decode_one(const bee__field_t *f, const unsigned char *payload, size_t n) {
  bee__entity_t e = {.name = "one", .table = "one", .fields = (bee__field_t *)f, .field_count = 1};
  unsigned char data[64];
  uint32_t h = bee__entity_hash(&e);
  data[0] = 'R';
  data[1] = 1;
  for (int k = 0; k < 4; k++) data[2 + k] = (unsigned char)(h >> (8 * k));
  memset(data + 6, 0, 8);
  data[6] = 9;
  memcpy(data + 14, payload, n);
  uint64_t id;
  bee_value_t v;
  return bee__row_decode(&e, (const char *)data, 14 + n, &id, &v);
}

#define P(...) (const unsigned char[]){__VA_ARGS__}, sizeof((const unsigned char[]){__VA_ARGS__})

TEST_IMPL(codec_decode_rejects_tags_that_do_not_fit_the_field) {
  const bee__field_t *i8 = &every_fields[F_I8], *u8 = &every_fields[F_U8],
                     *i64 = &every_fields[F_I64], *u64 = &every_fields[F_U64],
                     *flag = &every_fields[F_FLAG], *ratio = &every_fields[F_RATIO],
                     *name = &every_fields[F_NAME], *owner = &every_fields[F_OWNER],
                     *price = &every_fields[F_PRICE];
  /* What fits, for contrast. */
  ASSERT_EQ(decode_one(i8, P(1, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), 0);
  ASSERT_EQ(decode_one(flag, P(3, 1)), 0);
  ASSERT_EQ(decode_one(name, P(4, 1, 0, 0, 0, 'x')), 0);
  ASSERT_EQ(decode_one(u64, P(4, 19, 0, 0, 0, '9', '2', '2', '3', '3', '7', '2', '0', '3', '6',
                              '8', '5', '4', '7', '7', '5', '8', '0', '8')), 0);
  /* Wrong tags. */
  ASSERT_EQ(decode_one(i8, P(3, 1)), BEE_EINVAL);
  ASSERT_EQ(decode_one(i8, P(2, 0, 0, 0, 0, 0, 0, 0, 0)), BEE_EINVAL);
  ASSERT_EQ(decode_one(i8, P(4, 1, 0, 0, 0, '1')), BEE_EINVAL);
  ASSERT_EQ(decode_one(flag, P(1, 1, 0, 0, 0, 0, 0, 0, 0)), BEE_EINVAL);
  ASSERT_EQ(decode_one(ratio, P(1, 1, 0, 0, 0, 0, 0, 0, 0)), BEE_EINVAL);
  ASSERT_EQ(decode_one(ratio, P(3, 0)), BEE_EINVAL);
  ASSERT_EQ(decode_one(name, P(1, 1, 0, 0, 0, 0, 0, 0, 0)), BEE_EINVAL);
  ASSERT_EQ(decode_one(price, P(2, 0, 0, 0, 0, 0, 0, 0, 0)), BEE_EINVAL);
  ASSERT_EQ(decode_one(owner, P(3, 1)), BEE_EINVAL);
  ASSERT_EQ(decode_one(i8, P(5)), BEE_EINVAL);
  ASSERT_EQ(decode_one(i8, P(0xff)), BEE_EINVAL);
  /* Right tag, value the field cannot hold. */
  ASSERT_EQ(decode_one(i8, P(1, 0x80, 0, 0, 0, 0, 0, 0, 0)), BEE_EINVAL);           /* 128 */
  ASSERT_EQ(decode_one(u8, P(1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), BEE_EINVAL);
  ASSERT_EQ(decode_one(flag, P(3, 2)), BEE_EINVAL);
  ASSERT_EQ(decode_one(ratio, P(2, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f)), BEE_EINVAL);     /* inf */
  ASSERT_EQ(decode_one(ratio, P(2, 1, 0, 0, 0, 0, 0, 0xf8, 0x7f)), BEE_EINVAL);     /* nan */
  ASSERT_EQ(decode_one(u64, P(4, 3, 0, 0, 0, '1', '2', '3')), BEE_EINVAL);          /* an INT */
  ASSERT_EQ(decode_one(i64, P(4, 19, 0, 0, 0, '9', '2', '2', '3', '3', '7', '2', '0', '3', '6',
                              '8', '5', '4', '7', '7', '5', '8', '0', '8')), BEE_EINVAL);
  ASSERT_EQ(decode_one(u64, P(4, 20, 0, 0, 0, '1', '8', '4', '4', '6', '7', '4', '4', '0', '7',
                              '3', '7', '0', '9', '5', '5', '1', '6', '1', '6')), BEE_EINVAL);
  /* Lengths past the end, including ones that would wrap a 32-bit sum. */
  ASSERT_EQ(decode_one(name, P(4, 2, 0, 0, 0, 'x')), BEE_EINVAL);
  ASSERT_EQ(decode_one(name, P(4, 0xff, 0xff, 0xff, 0xff, 'x')), BEE_EINVAL);
  ASSERT_EQ(decode_one(name, P(4, 0, 0, 0)), BEE_EINVAL);
  return 0;
}

TEST_IMPL(codec_encode_rejects_values_that_do_not_fit_the_field) {
  static const struct {
    int field;
    bee_value_t v;
  } bad[] = {
      {F_I8, VB(1)},
      {F_I8, VI(128)},
      {F_I8, VI(-129)},
      {F_U8, VI(-1)},
      {F_U32, VI(4294967296LL)},
      {F_I32, VF(1.0)},
      {F_I32, VS("1")},
      {F_I64, VS("9223372036854775808")},
      {F_U64, VS("123")},
      {F_U64, VS("9223372036854775807")},
      {F_U64, VS("18446744073709551616")},
      {F_U64, VS("09223372036854775808")},
      {F_U64, VI(-1)},
      {F_FLAG, VI(1)},
      {F_RATIO, VI(1)},
      {F_RATIO, VF(NAN)},
      {F_RATIO, VF(INFINITY)},
      {F_PRICE, VF(1.5)},
      {F_NAME, VI(5)},
      {F_DAY, VB(0)},
      {F_OWNER, VI(-1)},
      {F_OWNER, VS("abc")},
      {F_COLOR, {BEE_VALUE_STRING, 0, 0, NULL, 3}},
      {F_TAGS, {(bee_value_kind_t)9, 0, 0, NULL, 0}},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bee_value_t values[NFIELDS];
    memcpy(values, row_low, sizeof values);
    values[bad[i].field] = bad[i].v;
    bee__buf_t b = {0};
    int rc = bee__row_encode(&every, 1, values, &b);
    if (rc != BEE_EINVAL) fprintf(stderr, "  bad value %zu\n", i);
    ASSERT_EQ(rc, BEE_EINVAL);
    ASSERT_EQ(b.len, 0);
    ASSERT(b.data == NULL);
  }
  return 0;
}

TEST_IMPL(codec_encode_out_of_memory_is_enomem) {
  bee__buf_t b = {0};
  bee_test_fail_alloc_at(1);
  ASSERT_EQ(bee__row_encode(&every, 1, row_high, &b), BEE_ENOMEM);
  ASSERT(b.failed);
  bee_test_fail_alloc_at(0);
  /* A failed buffer stays failed: the caller checks once and frees. */
  ASSERT_EQ(bee__row_encode(&every, 1, row_high, &b), BEE_ENOMEM);
  bee__buf_free(&b);

  /* The 1 MiB string is what fails: the buffer grows once the header is in. */
  size_t n = 1 << 20;
  char *big = malloc(n);
  ASSERT(big);
  memset(big, 'x', n);
  bee_value_t values[NFIELDS];
  memcpy(values, row_nil, sizeof values);
  values[F_BLOB].kind = BEE_VALUE_STRING;
  values[F_BLOB].str = big;
  values[F_BLOB].len = n;
  bee_test_fail_alloc_at(2);
  int rc = bee__row_encode(&every, 1, values, &b);
  bee_test_fail_alloc_at(0);
  free(big);
  ASSERT_EQ(rc, BEE_ENOMEM);
  ASSERT(b.failed);
  bee__buf_free(&b);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Schema hash                                                              */

typedef struct {
  bee__entity_t e;
  bee__field_t f[6];
  char *members[4];
  char member_y[2];
} layout_t;

static void base_layout(layout_t *l) {
  memset(l, 0, sizeof *l);
  strcpy(l->e.name, "thing");
  strcpy(l->e.table, "things");
  strcpy(l->e.mysql_pool, "default");
  l->e.fields = l->f;
  l->e.field_count = 6;
  l->f[0] = (bee__field_t){.name = "a", .type = BEE_FIELD_INT, .bits = 32};
  l->f[1] = (bee__field_t){.name = "b", .type = BEE_FIELD_DECIMAL, .precision = 10, .scale = 2};
  l->f[2] = (bee__field_t){.name = "c", .type = BEE_FIELD_STRING, .length = 255};
  /* A member in the layout's own memory: equal layouts need not share pointers. */
  strcpy(l->member_y, "y");
  l->members[0] = "x";
  l->members[1] = l->member_y;
  l->members[2] = "z";
  l->members[3] = "w";
  l->f[3] = (bee__field_t){.name = "d", .type = BEE_FIELD_ENUM, .values = l->members,
                           .value_count = 3};
  l->f[4] = (bee__field_t){.name = "e", .type = BEE_FIELD_REF, .ref_entity = "user"};
  l->f[5] = (bee__field_t){.name = "g", .type = BEE_FIELD_SET, .values = l->members,
                           .value_count = 2};
}

TEST_IMPL(codec_hash_is_equal_for_identical_layouts) {
  layout_t a, b;
  base_layout(&a);
  base_layout(&b);
  ASSERT(a.members[1] != b.members[1]);
  ASSERT_EQ(bee__entity_hash(&a.e), bee__entity_hash(&b.e));
  ASSERT_EQ(bee__entity_hash(&a.e), bee__entity_hash(&a.e));
  /* What is not the row layout does not count: the name, pools, caches, ref_index. */
  strcpy(b.e.name, "other");
  strcpy(b.e.mysql_pool, "second");
  strcpy(b.e.redis_pool, "cache");
  b.e.local_cache = 100;
  b.e.cache_all = 1;
  b.f[4].ref_index = 7;
  ASSERT_EQ(bee__entity_hash(&a.e), bee__entity_hash(&b.e));
  return 0;
}

TEST_IMPL(codec_hash_changes_with_every_layout_detail) {
  layout_t base;
  base_layout(&base);
  uint32_t h0 = bee__entity_hash(&base.e);
  static const char *what[] = {
      "table name", "field name", "type", "required", "bits", "unsigned", "length",
      "precision", "scale", "enum member", "member order", "member added", "member removed",
      "ref entity", "field order", "field removed", "name boundary"};
  size_t n = sizeof what / sizeof *what;
  for (size_t k = 0; k < n; k++) {
    layout_t l;
    base_layout(&l);
    switch (k) {
      case 0: strcpy(l.e.table, "thing"); break;
      case 1: strcpy(l.f[2].name, "cc"); break;
      case 2: l.f[0].type = BEE_FIELD_BOOL; break;
      case 3: l.f[0].required = 1; break;
      case 4: l.f[0].bits = 64; break;
      case 5: l.f[0].is_unsigned = 1; break;
      case 6: l.f[2].length = 254; break;
      case 7: l.f[1].precision = 11; break;
      case 8: l.f[1].scale = 3; break;
      case 9: l.member_y[0] = 'q'; break;
      case 10: l.members[0] = l.member_y; l.members[1] = "x"; break;
      case 11: l.f[3].value_count = 4; break;
      case 12: l.f[3].value_count = 2; break;
      case 13: strcpy(l.f[4].ref_entity, "users"); break;
      case 14: {
        bee__field_t t = l.f[0];
        l.f[0] = l.f[1];
        l.f[1] = t;
        break;
      }
      case 15: l.e.field_count = 5; break;
      case 16: /* "things" + "a" becomes "thing" + "sa" */
        strcpy(l.e.table, "thing");
        strcpy(l.f[0].name, "sa");
        break;
    }
    uint32_t h = bee__entity_hash(&l.e);
    if (h == h0) fprintf(stderr, "  %s did not change the hash\n", what[k]);
    ASSERT(h != h0);
  }
  return 0;
}

static uint32_t fnv1a(uint32_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

TEST_IMPL(codec_hash_is_fnv1a_over_the_documented_bytes) {
  static char *members[] = {"p", "q"};
  static bee__field_t fields[] = {{.name = "k", .type = BEE_FIELD_ENUM, .required = 1,
                                   .values = members, .value_count = 2, .ref_entity = ""}};
  static const bee__entity_t e = {.name = "t", .table = "t", .fields = fields, .field_count = 1};
  /* version, table, field count, then name, type ... value count, members, ref entity. */
  const unsigned char bytes[] = {1, 0, 0, 0, 't', 0, 1, 0, 0, 0,
                                 'k', 0,
                                 BEE_FIELD_ENUM, 0, 0, 0, 1, 0, 0, 0, /* type, required */
                                 0, 0, 0, 0, 0, 0, 0, 0,              /* bits, unsigned */
                                 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* length, precision, scale */
                                 2, 0, 0, 0, 'p', 0, 'q', 0,          /* members */
                                 0};                                  /* ref entity */
  ASSERT_EQ(bee__entity_hash(&e), fnv1a(2166136261u, bytes, sizeof bytes));
  /* The FNV-1a test vector, so the helper itself is right. */
  ASSERT_EQ(fnv1a(2166136261u, (const unsigned char *)"a", 1), 0xe40c292cu);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Fuzzing the decoder                                                      */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t xorshift64(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

TEST_IMPL(codec_decode_survives_random_bytes) {
  static bee__field_t fields[] = {INT_FIELD("n", 32, 0),
                                  {.name = "b", .type = BEE_FIELD_BOOL},
                                  {.name = "s", .type = BEE_FIELD_STRING, .length = 9},
                                  {.name = "r", .type = BEE_FIELD_REF, .ref_entity = "x"},
                                  {.name = "u", .type = BEE_FIELD_INT, .bits = 64,
                                   .is_unsigned = 1}};
  static const bee__entity_t e = {.name = "fz", .table = "fz", .fields = fields,
                                  .field_count = 5};
  const bee_value_t values[] = {VI(-5), VB(1), VS("abc"), VI(3), VNIL};
  bee__buf_t row = {0}, miss = {0};
  ASSERT_EQ(bee__row_encode(&e, 77, values, &row), 0);
  bee__row_encode_missing(&e, &miss);
  ASSERT(!miss.failed);
  uint32_t h = bee__entity_hash(&e);
  long counts[3] = {0, 0, 0};
  rng_state = 0x9e3779b97f4a7c15ULL;
  for (int iter = 0; iter < 100000; iter++) {
    unsigned char tmp[64];
    size_t len;
    if (iter % 2 == 0) {
      /* Random bytes; a quarter start with a valid header to get past it. */
      len = (size_t)(xorshift64() % 65);
      for (size_t i = 0; i < len; i++) tmp[i] = (unsigned char)xorshift64();
      if (len >= 6 && xorshift64() % 4 == 0) {
        tmp[0] = xorshift64() % 2 ? 'R' : 'N';
        tmp[1] = 1;
        for (int k = 0; k < 4; k++) tmp[2 + k] = (unsigned char)(h >> (8 * k));
      }
    } else {
      /* A valid encoding (row or marker), then 1 to 4 mutations. */
      const bee__buf_t *src = xorshift64() % 8 ? &row : &miss;
      len = src->len;
      memcpy(tmp, src->data, len);
      int muts = 1 + (int)(xorshift64() % 4);
      for (int m = 0; m < muts; m++) {
        switch (xorshift64() % 5) {
          case 0: /* a random byte anywhere */
            if (len) tmp[xorshift64() % len] = (unsigned char)xorshift64();
            break;
          case 1: /* a small value: tags, lengths, bools */
            if (len) tmp[xorshift64() % len] = (unsigned char)(xorshift64() % 6);
            break;
          case 2: /* cut */
            len = len ? (size_t)(xorshift64() % len) : 0;
            break;
          case 3: /* extend */
            while (len < 64 && xorshift64() % 2) tmp[len++] = (unsigned char)xorshift64();
            break;
          case 4: /* flip one bit */
            if (len) tmp[xorshift64() % len] ^= (unsigned char)(1u << (xorshift64() % 8));
            break;
        }
      }
    }
    /* An exactly sized heap copy, so any read past the end trips ASan. */
    char *data = malloc(len ? len : 1);
    ASSERT(data);
    memcpy(data, tmp, len);
    uint64_t id = 0;
    bee_value_t got[5];
    int rc = bee__row_decode(&e, data, len, &id, got);
    if (rc == 0) {
      ASSERT(id != 0);
      for (int i = 0; i < 5; i++)
        if (got[i].kind == BEE_VALUE_STRING && got[i].len)
          ASSERT(got[i].str >= data && got[i].str + got[i].len <= data + len);
    }
    free(data);
    if (rc == 0) counts[0]++;
    else if (rc == BEE_ENOTFOUND) counts[1]++;
    else if (rc == BEE_EINVAL) counts[2]++;
    else ASSERT(!"unexpected return code");
  }
  bee__buf_free(&row);
  bee__buf_free(&miss);
  /* The mutations reach every outcome, so the fuzzing gets past the header. */
  ASSERT(counts[0] > 0);
  ASSERT(counts[1] > 0);
  ASSERT(counts[2] > 0);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* MySQL cells                                                              */

#define CELL(lit) (lit), sizeof(lit) - 1

TEST_IMPL(cell_value_parses_every_type_at_its_bounds) {
  static const struct {
    int field;
    const char *cell;
    size_t len;
    bee_value_t want;
  } good[] = {
      {F_I8, CELL("-128"), VI(-128)},
      {F_I8, CELL("127"), VI(127)},
      {F_U8, CELL("0"), VI(0)},
      {F_U8, CELL("255"), VI(255)},
      {F_I16, CELL("-32768"), VI(-32768)},
      {F_U16, CELL("65535"), VI(65535)},
      {F_I24, CELL("-8388608"), VI(-8388608)},
      {F_U24, CELL("16777215"), VI(16777215)},
      {F_I32, CELL("-2147483648"), VI(INT32_MIN)},
      {F_I32, CELL("-0"), VI(0)},
      {F_U32, CELL("4294967295"), VI(4294967295LL)},
      {F_I64, CELL("-9223372036854775808"), VI(INT64_MIN)},
      {F_I64, CELL("9223372036854775807"), VI(INT64_MAX)},
      {F_U64, CELL("9223372036854775807"), VI(INT64_MAX)},
      {F_U64, CELL("9223372036854775808"), VS("9223372036854775808")},
      {F_U64, CELL("18446744073709551615"), VS("18446744073709551615")},
      {F_U64, CELL("0018446744073709551615"), VS("18446744073709551615")},
      {F_U64, CELL("007"), VI(7)},
      {F_OWNER, CELL("1"), VI(1)},
      {F_OWNER, CELL("0"), VI(0)},
      {F_OWNER, CELL("18446744073709551615"), VS("18446744073709551615")},
      {F_QTY, CELL("4294967295"), VI(4294967295LL)},
      {F_FLAG, CELL("0"), VB(0)},
      {F_FLAG, CELL("1"), VB(1)},
      {F_RATIO, CELL("1e308"), VF(1e308)},
      {F_RATIO, CELL("-0"), VF(-0.0)},
      {F_RATIO, CELL("0"), VF(0.0)},
      {F_RATIO, CELL("2.2250738585072014e-308"), VF(DBL_MIN)},
      {F_RATIO, CELL("4.9406564584124654e-324"), VF(0x1p-1074)},
      {F_RATIO, CELL("1.7976931348623157e308"), VF(DBL_MAX)},
      {F_RATIO, CELL("-1.7976931348623157E+308"), VF(-DBL_MAX)},
      {F_RATIO, CELL("0.1"), VF(0.1)},
      {F_RATIO, CELL("-2.5"), VF(-2.5)},
      {F_RATIO, CELL("12345"), VF(12345.0)},
      {F_RATIO, CELL("1e-400"), VF(0.0)},
  };
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    bee_value_t out;
    memset(&out, 0x5a, sizeof out);
    int rc = bee__cell_value(&every_fields[good[i].field], good[i].cell, good[i].len, &out);
    if (rc != 0 || !same_value(&out, &good[i].want))
      fprintf(stderr, "  good cell %zu (\"%s\")\n", i, good[i].cell);
    ASSERT_EQ(rc, 0);
    ASSERT(same_value(&out, &good[i].want));
    /* Digits of a big unsigned value point into the cell. */
    if (out.kind == BEE_VALUE_STRING)
      ASSERT(out.str >= good[i].cell && out.str + out.len == good[i].cell + good[i].len);
  }
  return 0;
}

TEST_IMPL(cell_value_gives_text_types_the_cell_itself) {
  static const struct {
    int field;
    const char *cell;
    size_t len;
  } text[] = {
      {F_PRICE, CELL("-12.50")},  {F_NAME, CELL("h\xc3\xa9llo")}, {F_NAME, CELL("")},
      {F_BODY, CELL("a\0b")},     {F_BLOB, CELL("\xff\x00")},      {F_DAY, CELL("2024-02-29")},
      {F_AT, CELL("2024-02-29 23:59:59")}, {F_COLOR, CELL("red")},  {F_TAGS, CELL("new,sale")},
      {F_TAGS, CELL("")},
  };
  for (size_t i = 0; i < sizeof text / sizeof *text; i++) {
    bee_value_t out;
    ASSERT_EQ(bee__cell_value(&every_fields[text[i].field], text[i].cell, text[i].len, &out), 0);
    ASSERT_EQ(out.kind, BEE_VALUE_STRING);
    ASSERT(out.str == text[i].cell);
    ASSERT_EQ(out.len, text[i].len);
  }
  return 0;
}

TEST_IMPL(cell_value_null_is_nil_for_every_type) {
  for (int i = 0; i < NFIELDS; i++) {
    bee_value_t out;
    memset(&out, 0x5a, sizeof out);
    ASSERT_EQ(bee__cell_value(&every_fields[i], NULL, 0, &out), 0);
    ASSERT_EQ(out.kind, BEE_VALUE_NIL);
  }
  return 0;
}

TEST_IMPL(cell_value_reads_only_len_bytes) {
  /* Cells are not NUL-terminated: what follows them must not be read as digits. */
  const char row[] = "1291.5e3|1";
  bee_value_t out;
  ASSERT_EQ(bee__cell_value(&every_fields[F_I8], row, 2, &out), 0);
  ASSERT_EQ(out.kind, BEE_VALUE_INT);
  ASSERT_EQ(out.i, 12);
  ASSERT_EQ(bee__cell_value(&every_fields[F_RATIO], row + 3, 3, &out), 0);
  ASSERT(out.f == 1.5);
  ASSERT_EQ(bee__cell_value(&every_fields[F_FLAG], row + 3, 1, &out), 0);
  ASSERT_EQ(out.i, 1);
  /* A cell as long as a number can be, in an exactly sized heap block. */
  char *cell = malloc(20);
  ASSERT(cell);
  memcpy(cell, "18446744073709551615", 20);
  ASSERT_EQ(bee__cell_value(&every_fields[F_U64], cell, 20, &out), 0);
  ASSERT_EQ(out.kind, BEE_VALUE_STRING);
  memcpy(cell, "-1.7976931348623e308", 20);
  ASSERT_EQ(bee__cell_value(&every_fields[F_RATIO], cell, 20, &out), 0);
  ASSERT(out.f < -1.79e308);
  free(cell);
  return 0;
}

TEST_IMPL(cell_value_rejects_text_that_does_not_parse) {
  static char long_float[200];
  memset(long_float, '1', sizeof long_float);
  static const struct {
    int field;
    const char *cell;
    size_t len;
  } bad[] = {
      {F_I32, CELL("abc")},
      {F_I32, CELL("")},
      {F_I32, CELL("99999999999999999999")},
      {F_I32, CELL(" 1")},
      {F_I32, CELL("1 ")},
      {F_I32, CELL("+1")},
      {F_I32, CELL("-")},
      {F_I32, CELL("1.0")},
      {F_I32, CELL("0x10")},
      {F_I32, CELL("--1")},
      {F_I32, CELL("2147483648")},
      {F_I8, CELL("128")},
      {F_I8, CELL("-129")},
      {F_U8, CELL("256")},
      {F_U8, CELL("-1")},
      {F_U8, CELL("-0")},
      {F_I16, CELL("32768")},
      {F_U16, CELL("65536")},
      {F_I24, CELL("-8388609")},
      {F_U24, CELL("16777216")},
      {F_U32, CELL("4294967296")},
      {F_I64, CELL("9223372036854775808")},
      {F_I64, CELL("-9223372036854775809")},
      {F_I64, CELL("-99999999999999999999")},
      {F_U64, CELL("18446744073709551616")},
      {F_U64, CELL("99999999999999999999")},
      {F_U64, CELL("184467440737095516150")},
      {F_OWNER, CELL("-1")},
      {F_OWNER, CELL("x")},
      {F_FLAG, CELL("2")},
      {F_FLAG, CELL("")},
      {F_FLAG, CELL("true")},
      {F_FLAG, CELL("01")},
      {F_FLAG, CELL("-1")},
      {F_RATIO, CELL("abc")},
      {F_RATIO, CELL("")},
      {F_RATIO, CELL("1e309")},
      {F_RATIO, CELL("-1e309")},
      {F_RATIO, CELL("inf")},
      {F_RATIO, CELL("nan")},
      {F_RATIO, CELL("0x1p3")},
      {F_RATIO, CELL(" 1")},
      {F_RATIO, CELL("1 ")},
      {F_RATIO, CELL("1,5")},
      {F_RATIO, CELL("1e")},
      {F_RATIO, CELL("-")},
      {F_RATIO, CELL(".")},
      {F_RATIO, CELL("1.2.3")},
      {F_RATIO, CELL("1\0")},
      {F_RATIO, long_float, sizeof long_float},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bee_value_t out;
    memset(&out, 0x5a, sizeof out);
    int rc = bee__cell_value(&every_fields[bad[i].field], bad[i].cell, bad[i].len, &out);
    if (rc != BEE_EINVAL) fprintf(stderr, "  bad cell %zu (\"%.*s\")\n", i, (int)bad[i].len, bad[i].cell);
    ASSERT_EQ(rc, BEE_EINVAL);
    ASSERT(all_bytes_are(&out, sizeof out, 0x5a));
  }
  bee__field_t unknown = {.name = "u", .type = (bee_field_type_t)99};
  bee_value_t out;
  ASSERT_EQ(bee__cell_value(&unknown, "1", 1, &out), BEE_EINVAL);
  return 0;
}

TEST_IMPL(cell_values_encode_and_decode) {
  /* What MySQL returns is what the cache stores: every cell value fits its field. */
  static const char *cells[NFIELDS] = {
      "-128", "255", "-32768", "65535", "-8388608", "16777215", "-2147483648", "4294967295",
      "-9223372036854775808", "18446744073709551615", "1", "-0", "-12.50", "x", "", "b",
      "2024-01-01", "2024-01-01 00:00:00", "green", "hot", "18446744073709551615", NULL};
  bee_value_t values[NFIELDS], got[NFIELDS];
  for (int i = 0; i < NFIELDS; i++)
    ASSERT_EQ(bee__cell_value(&every_fields[i], cells[i], cells[i] ? strlen(cells[i]) : 0,
                              &values[i]), 0);
  bee__buf_t b = {0};
  ASSERT_EQ(bee__row_encode(&every, 3, values, &b), 0);
  uint64_t id;
  ASSERT_EQ(bee__row_decode(&every, b.data, b.len, &id, got), 0);
  for (int i = 0; i < NFIELDS; i++) ASSERT(same_value(&got[i], &values[i]));
  bee__buf_free(&b);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Ids                                                                      */

TEST_IMPL(id_parse_accepts_1_to_uint64_max) {
  static const struct {
    const char *s;
    uint64_t want;
  } good[] = {
      {"1", 1},
      {"9", 9},
      {"10", 10},
      {"9223372036854775807", INT64_MAX},
      {"9223372036854775808", 9223372036854775808ULL},
      {"18446744073709551615", UINT64_MAX},
      {"10000000000000000000", 10000000000000000000ULL},
  };
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    uint64_t v = 0;
    ASSERT_EQ(bee__id_parse(good[i].s, strlen(good[i].s), &v), 0);
    ASSERT(v == good[i].want);
  }
  uint64_t v = 0;
  ASSERT_EQ(bee__id_parse("123", 2, &v), 0);
  ASSERT_EQ(v, 12);
  return 0;
}

TEST_IMPL(id_parse_rejects_zero_signs_and_overflow) {
  static const char *bad[] = {"0", "", "00", "01", "-1", "+1", " 1", "1 ", "1a", "a",
                              "18446744073709551616", "99999999999999999999",
                              "100000000000000000000", "1.0", "1e3"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint64_t v = 77;
    if (bee__id_parse(bad[i], strlen(bad[i]), &v) != BEE_EINVAL)
      fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
    ASSERT_EQ(bee__id_parse(bad[i], strlen(bad[i]), &v), BEE_EINVAL);
    ASSERT_EQ(v, 77);
  }
  uint64_t v;
  ASSERT_EQ(bee__id_parse(NULL, 0, &v), BEE_EINVAL);
  ASSERT_EQ(bee__id_parse("1\0", 2, &v), BEE_EINVAL);
  return 0;
}

TEST_IMPL(id_format_round_trips_through_parse) {
  char buf[BEE__ID_BUF];
  ASSERT_EQ(bee__id_format(0, buf), 1);
  ASSERT_STR_EQ(buf, "0");
  ASSERT_EQ(bee__id_format(UINT64_MAX, buf), 20);
  ASSERT_STR_EQ(buf, "18446744073709551615");
  ASSERT_EQ(bee__id_format(9223372036854775808ULL, buf), 19);
  ASSERT_STR_EQ(buf, "9223372036854775808");
  uint64_t p = 1;
  for (int k = 0; k < 20; k++, p *= 10) {
    uint64_t ids[] = {p, p - 1 ? p - 1 : 1, p + 1};
    for (int j = 0; j < 3; j++) {
      char want[32];
      snprintf(want, sizeof want, "%llu", (unsigned long long)ids[j]);
      size_t n = bee__id_format(ids[j], buf);
      ASSERT_EQ(n, strlen(want));
      ASSERT_STR_EQ(buf, want);
      uint64_t back = 0;
      ASSERT_EQ(bee__id_parse(buf, n, &back), 0);
      ASSERT(back == ids[j]);
    }
  }
  return 0;
}
