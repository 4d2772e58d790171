/* test_record.c: error records of parked entries (record.h). */
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "task.h"

static const char BATCH[] = "B\x03\x01\0\0\0batch\0bytes";

static void encode(bee__buf_t *b, const char *resolver_error) {
  bee__buf_t sql = {0};
  bee__buf_puts(&sql, "INSERT INTO `t` VALUES (1)");
  bee__record_encode(b, 1062, 3, 1796314246251, 2, "Duplicate entry '1'", &sql, BATCH, sizeof BATCH - 1,
                     resolver_error);
  bee__buf_free(&sql);
}

static int str_is(bee__str_t s, const char *want, size_t n) { return s.n == n && memcmp(s.p, want, n) == 0; }

TEST_IMPL(record_round_trips_every_field) {
  bee__buf_t b = {0};
  encode(&b, "resolver.lua:3: boom");
  ASSERT(!b.failed);
  bee__record_t r;
  ASSERT_EQ(bee__record_decode(b.data, b.len, &r), 0);
  ASSERT_EQ(r.code, 1062);
  ASSERT_EQ(r.attempts, 3);
  ASSERT(r.at == 1796314246251);
  ASSERT_EQ(r.index, 2);
  ASSERT(str_is(r.message, "Duplicate entry '1'", 19));
  ASSERT(str_is(r.sql, "INSERT INTO `t` VALUES (1)", 26));
  ASSERT(str_is(r.batch, BATCH, sizeof BATCH - 1)); /* NUL bytes kept */
  ASSERT(str_is(r.resolver_error, "resolver.lua:3: boom", 20));
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(record_keeps_negative_codes_and_no_resolver_error) {
  bee__buf_t b = {0}, sql = {0};
  bee__record_encode(&b, BEE_EMALFORMED, 1, 5, 0, "not a batch", &sql, "junk", 4, NULL);
  bee__record_t r;
  ASSERT_EQ(bee__record_decode(b.data, b.len, &r), 0);
  ASSERT_EQ(r.code, BEE_EMALFORMED);
  ASSERT_EQ(r.resolver_error.n, 0);
  ASSERT_EQ(r.sql.n, 0);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(record_reads_version_1) {
  /* version 1: the same without the resolver error */
  bee__buf_t b = {0};
  encode(&b, "");
  b.len -= 4; /* the empty resolver error's length */
  b.data[1] = 1;
  bee__record_t r;
  ASSERT_EQ(bee__record_decode(b.data, b.len, &r), 0);
  ASSERT_EQ(r.code, 1062);
  ASSERT(str_is(r.batch, BATCH, sizeof BATCH - 1));
  ASSERT_EQ(r.resolver_error.n, 0);
  ASSERT(r.resolver_error.p != NULL);
  b.data[1] = 3; /* an unknown version */
  ASSERT(bee__record_decode(b.data, b.len, &r) != 0);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(record_rejects_every_truncation_and_trailing_bytes) {
  bee__buf_t b = {0};
  encode(&b, "boom");
  bee__record_t r;
  for (size_t n = 0; n < b.len; n++) {
    char *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
    memcpy(copy, b.data, n);
    ASSERT(bee__record_decode(copy, n, &r) != 0);
    free(copy);
  }
  bee__buf_append(&b, "x", 1);
  ASSERT(bee__record_decode(b.data, b.len, &r) != 0);
  b.len--;
  b.data[0] = 'B';
  ASSERT(bee__record_decode(b.data, b.len, &r) != 0);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(record_with_a_huge_length_is_rejected) {
  bee__buf_t b = {0};
  encode(&b, "");
  memset(b.data + 22, 0xff, 4); /* the message's length: after E, version, code, attempts, at, index */
  bee__record_t r;
  ASSERT(bee__record_decode(b.data, b.len, &r) != 0);
  bee__buf_free(&b);
  return 0;
}
