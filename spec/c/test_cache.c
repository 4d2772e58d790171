/*
 * test_cache.c: the pure parts of the caches of issue 11: key names (keys.c), the row
 * hash (rowhash.c), increments' arithmetic (bee__value_add), commands in Redis's
 * protocol (rcmd.c), increment columns in events and the number check of SQL.
 */
#include <stdlib.h>

#include "event.h"
#include "keys.h"
#include "rcmd.h"
#include "rowhash.h"
#include "sql.h"
#include "task.h"

static char *members[] = {"a", "b"};
static bee__field_t fields[] = {
    {.name = "name", .type = BEE_FIELD_STRING, .length = 50},
    {.name = "n", .type = BEE_FIELD_INT, .bits = 32},
    {.name = "price", .type = BEE_FIELD_DECIMAL, .precision = 6, .scale = 2},
    {.name = "ok", .type = BEE_FIELD_BOOL},
    {.name = "kind", .type = BEE_FIELD_ENUM, .values = members, .value_count = 2},
    {.name = "big", .type = BEE_FIELD_INT, .bits = 64, .is_unsigned = 1},
};
static size_t name_parent[] = {0, 1}, only_kind[] = {4};
static bee__index_t indexes[] = {
    {.name = "by_name", .unique = 1, .fields = name_parent, .field_count = 2},
    {.name = "by_kind", .cached = 1, .fields = only_kind, .field_count = 1},
};
static const bee__entity_t thing = {.name = "thing", .table = "thing", .fields = fields, .field_count = 6,
                                    .indexes = indexes, .index_count = 2};
#define P "bee:{db.thing}:"

TEST_IMPL(cache_keys_name_columns_not_definitions) {
  char buf[BEE__KEY_ROW_MAX];
  ASSERT_EQ(bee__key_row(P, 18446744073709551615ull, buf, sizeof buf), strlen(P "r:18446744073709551615"));
  ASSERT_STR_EQ(buf, P "r:18446744073709551615");
  bee__key_version(P, buf, sizeof buf);
  ASSERT_STR_EQ(buf, P "v");
  bee_value_t row[6] = {{.kind = BEE_VALUE_STRING, .str = "Al\x1f", .len = 3}, {.kind = BEE_VALUE_INT, .i = -7}};
  bee__buf_t k = {0};
  ASSERT_EQ(bee__key_unique(P, &thing, &indexes[0], row, &k), 0);
  ASSERT(k.len == strlen(P "u:name,n:Al\x1f\x1f-7") && !memcmp(k.data, P "u:name,n:Al\x1f\x1f-7", k.len));
  ASSERT_EQ(bee__key_unique_gen(P, &thing, &indexes[0], &k), 0);
  ASSERT_STR_EQ(k.data, P "g:name,n");
  ASSERT_EQ(bee__key_unique_pending(P, &thing, &indexes[0], &k), 0);
  ASSERT_STR_EQ(k.data, P "p:u:name,n");
  row[1].kind = BEE_VALUE_NIL; /* NULLs are never unique */
  ASSERT_EQ(bee__key_unique(P, &thing, &indexes[0], row, &k), 1);
  ASSERT_EQ(bee__key_list(P, &thing, only_kind, 1, row, &k), 0); /* a NULL has its own list */
  ASSERT(k.len == strlen(P "l:c:kind:\x1e") && !memcmp(k.data, P "l:c:kind:\x1e", k.len));
  bee__key_list_pending(P, &k);
  ASSERT(!memcmp(k.data, P "p:c:kind:\x1e", k.len));
  ASSERT_EQ(bee__key_list(P, &thing, NULL, 0, NULL, &k), 0);
  ASSERT_STR_EQ(k.data, P "l:a");
  bee__buf_free(&k);
  return 0;
}

/* Feeds field/value pairs (NULL-terminated list of strings) to a row hash reader. */
static void read_pairs(const char *const *pairs, bee_value_t *v, unsigned char *present, bee__rowhash_info_t *info) {
  bee__rowhash_begin(info, present, thing.field_count);
  for (size_t i = 0; pairs[i]; i += 2)
    bee__rowhash_pair(&thing, pairs[i], strlen(pairs[i]), pairs[i + 1], strlen(pairs[i + 1]), v, present, info);
}

TEST_IMPL(cache_row_hash_reads_columns_by_name_in_any_order) {
  bee_value_t v[6];
  unsigned char present[6];
  bee__rowhash_info_t info;
  const char *const whole[] = {"!", "R", "big", "=18446744073709551615", "kind", "=b", "ok", "=1", "price",
                               "=12.50", "n", "=-3", "name", "", NULL};
  read_pairs(whole, v, present, &info);
  ASSERT(bee__rowhash_complete(&thing, &info));
  ASSERT_EQ(v[0].kind, BEE_VALUE_NIL);
  ASSERT(v[1].kind == BEE_VALUE_INT && v[1].i == -3);
  ASSERT(v[2].kind == BEE_VALUE_STRING && v[2].len == 5 && !memcmp(v[2].str, "12.50", 5));
  ASSERT(v[3].kind == BEE_VALUE_BOOL && v[3].i == 1);
  ASSERT(v[5].kind == BEE_VALUE_STRING && v[5].len == 20); /* above INT64_MAX: digits */
  /* another definition's column, a bad value, a repeat and a missing column: skipped */
  const char *const partial[] = {"extra", "=x", "n", "=99999999999", "ok", "=1", "ok", "=0", "kind", "=a", NULL};
  read_pairs(partial, v, present, &info);
  ASSERT_EQ(info.mark, 0);
  ASSERT_EQ(info.found, 2);
  ASSERT(!present[1] && present[3] && present[4] && !present[0]);
  ASSERT(v[3].i == 1); /* the first of a repeated column */
  ASSERT(!bee__rowhash_complete(&thing, &info));
  const char *const gone[] = {"name", "=x", "!", "N", NULL};
  read_pairs(gone, v, present, &info);
  ASSERT_EQ(info.mark, 'N');
  const char *const junk[] = {"!", "X", "name", "no equals sign", NULL};
  read_pairs(junk, v, present, &info);
  ASSERT(info.mark == 0 && info.found == 0);
  bee__buf_t t = {0};
  bee_value_t nil = {.kind = BEE_VALUE_NIL}, f = {.kind = BEE_VALUE_FLOAT, .f = 0.1};
  bee__rowhash_text(&nil, &t);
  ASSERT_EQ(t.len, 0);
  bee__rowhash_text(&f, &t);
  ASSERT_STR_EQ(t.data, "=0.10000000000000001");
  bee__buf_free(&t);
  return 0;
}

static int add_text(const bee__field_t *f, const char *base, const char *delta, const char *want) {
  bee_value_t b = {.kind = BEE_VALUE_STRING, .str = base, .len = strlen(base)};
  bee_value_t d = {.kind = BEE_VALUE_STRING, .str = delta, .len = strlen(delta)};
  bee_value_t out;
  char buf[80];
  int rc = bee__value_add(f, &b, &d, &out, buf, sizeof buf);
  if (!want) return rc == BEE_EINVAL ? 0 : 1;
  return rc == 0 && out.kind == BEE_VALUE_STRING && out.len == strlen(want) && !memcmp(out.str, want, out.len) ? 0 : 1;
}

static int add_int(const bee__field_t *f, int64_t base, int64_t delta, int ok, int64_t want) {
  bee_value_t b = {.kind = BEE_VALUE_INT, .i = base}, d = {.kind = BEE_VALUE_INT, .i = delta}, out;
  char buf[80];
  int rc = bee__value_add(f, &b, &d, &out, buf, sizeof buf);
  if (!ok) return rc == BEE_EINVAL ? 0 : 1;
  return rc == 0 && out.kind == BEE_VALUE_INT && out.i == want ? 0 : 1;
}

TEST_IMPL(cache_increments_add_exactly_and_refuse_what_does_not_fit) {
  const bee__field_t *price = &fields[2];
  ASSERT_EQ(add_text(price, "0.75", "0.25", "1.00"), 0);
  ASSERT_EQ(add_text(price, "1.00", "-1.25", "-0.25"), 0);
  ASSERT_EQ(add_text(price, "-0.25", "0.25", "0.00"), 0); /* no "-0.00" */
  ASSERT_EQ(add_text(price, "9999.99", "0.01", NULL), 0); /* decimal(6,2): 10000.00 does not fit */
  ASSERT_EQ(add_text(price, "-9999.99", "-0.01", NULL), 0);
  ASSERT_EQ(add_text(price, "12.5x", "1", NULL), 0);
  bee__field_t u8 = {.name = "u8", .type = BEE_FIELD_INT, .bits = 8, .is_unsigned = 1};
  ASSERT_EQ(add_int(&u8, 254, 1, 1, 255), 0);
  ASSERT_EQ(add_int(&u8, 255, 1, 0, 0), 0);
  ASSERT_EQ(add_int(&u8, 0, -1, 0, 0), 0);
  ASSERT_EQ(add_int(&fields[1], -2147483648LL, -1, 0, 0), 0);
  bee__field_t i64 = {.name = "i64", .type = BEE_FIELD_INT, .bits = 64};
  ASSERT_EQ(add_int(&i64, INT64_MAX, 1, 0, 0), 0);
  ASSERT_EQ(add_int(&i64, INT64_MIN, -1, 0, 0), 0);
  ASSERT_EQ(add_int(&i64, INT64_MIN, INT64_MAX, 1, -1), 0);
  /* unsigned 64-bit: past INT64_MAX as digits, up to UINT64_MAX */
  bee_value_t b = {.kind = BEE_VALUE_INT, .i = INT64_MAX}, d = {.kind = BEE_VALUE_INT, .i = 1}, out;
  char buf[80];
  ASSERT_EQ(bee__value_add(&fields[5], &b, &d, &out, buf, sizeof buf), 0);
  ASSERT(out.kind == BEE_VALUE_STRING && out.len == 19 && !memcmp(out.str, "9223372036854775808", 19));
  bee_value_t top = {.kind = BEE_VALUE_STRING, .str = "18446744073709551615", .len = 20};
  ASSERT_EQ(bee__value_add(&fields[5], &top, &d, &out, buf, sizeof buf), BEE_EINVAL);
  d.i = -18446744073709551;
  ASSERT_EQ(bee__value_add(&fields[5], &top, &d, &out, buf, sizeof buf), 0);
  ASSERT(out.kind == BEE_VALUE_STRING && !memcmp(out.str, "18428297329635842064", 20));
  bee_value_t nil = {.kind = BEE_VALUE_NIL}; /* NULL + x is NULL */
  ASSERT_EQ(bee__value_add(&fields[1], &nil, &d, &out, buf, sizeof buf), 0);
  ASSERT_EQ(out.kind, BEE_VALUE_NIL);
  ASSERT_EQ(bee__value_add(&fields[0], &top, &d, &out, buf, sizeof buf), BEE_EINVAL); /* a string field */
  return 0;
}

TEST_IMPL(cache_commands_are_written_in_redis_protocol) {
  bee__rcmd_t c = {0};
  bee__buf_t out = {0};
  bee__rcmd_begin(&c, "HSET");
  bee__rcmd_arg(&c, "k\r\n", 3); /* binary safe */
  bee__rcmd_open(&c);
  bee__buf_puts(&c.text, "=built");
  bee__buf_puts(&c.text, " in two");
  bee__rcmd_close(&c);
  bee__rcmd_arg(&c, "", 0);
  bee__rcmd_format(&c, &out);
  const char want[] = "*4\r\n$4\r\nHSET\r\n$3\r\nk\r\n\r\n$13\r\n=built in two\r\n$0\r\n\r\n";
  ASSERT_EQ(out.len, sizeof want - 1);
  ASSERT(!memcmp(out.data, want, out.len));
  ASSERT(c.n == 4 && c.spans[2][1] == 13 && !memcmp(c.text.data + c.spans[2][0], "=built in two", 13));
  bee__rcmd_begin(&c, "DEL"); /* reused: starts over */
  for (int i = 0; i < 12; i++) bee__rcmd_str(&c, "x");
  bee__rcmd_format(&c, &out);
  ASSERT(!memcmp(out.data, "*13\r\n$3\r\nDEL\r\n$1\r\nx\r\n", 19));
  bee__rcmd_free(&c);
  bee__buf_free(&out);
  return 0;
}

TEST_IMPL(cache_increment_columns_round_trip_in_events) {
  bee__buf_t b = {0};
  bee__batch_t w;
  bee__batch_begin(&w, &b, 9);
  bee_value_t one = {.kind = BEE_VALUE_INT, .i = 1}, cents = {.kind = BEE_VALUE_STRING, .str = "0.25", .len = 4};
  bee__batch_event(&w, 'U', "thing", "thing", "default", P, 5);
  bee__batch_col(&w, "n", &one, 1);
  bee__batch_col(&w, "name", &cents, 0);
  bee__batch_keys_begin(&w);
  bee__batch_event(&w, 'U', "thing", "thing", "default", P, 6);
  bee__batch_col(&w, "n", &one, 1); /* the same name: written once, still an increment */
  bee__batch_col(&w, "price", &cents, 1);
  bee__batch_keys_begin(&w);
  ASSERT_EQ(bee__batch_end(&w), 0);
  size_t count, pos;
  bee__event_t *ev = malloc(sizeof *ev);
  ASSERT_EQ(bee__batch_open(b.data, b.len, &count, &pos), 0);
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), 0);
  ASSERT(ev->ncols == 2 && ev->add[0] == 1 && ev->add[1] == 0);
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), 0);
  ASSERT(ev->ncols == 2 && ev->add[0] == 1 && ev->add[1] == 1);
  ASSERT(ev->cols[0].n == 1 && ev->cols[0].p[0] == 'n');
  /* version 2 (before increments) is read, but an increment in it is malformed */
  b.data[1] = 2;
  ASSERT_EQ(bee__batch_open(b.data, b.len, &count, &pos), 0);
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), BEE_EINVAL);
  free(ev);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(cache_increments_reach_sql_only_as_numbers) {
  static const char *const ok[] = {"1", "-12.50", "0.25", "123456789012345678901234567890"};
  static const char *const bad[] = {"", "-", "1.", ".5", "1..2", "1.2.3", "1e5", "0x10", "1 OR 1=1", "1)", "--1"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    bee_value_t v = {.kind = BEE_VALUE_STRING, .str = ok[i], .len = strlen(ok[i])};
    ASSERT(bee__sql_number_ok(&v));
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    bee_value_t v = {.kind = BEE_VALUE_STRING, .str = bad[i], .len = strlen(bad[i])};
    ASSERT(!bee__sql_number_ok(&v));
  }
  bee_value_t i = {.kind = BEE_VALUE_INT, .i = -5}, f = {.kind = BEE_VALUE_FLOAT, .f = 1.5};
  ASSERT(bee__sql_number_ok(&i) && !bee__sql_number_ok(&f));
  bee__buf_t out = {0};
  bee__buf_puts(&out, "SET ");
  ASSERT_EQ(bee__sql_add("n", 1, &i, &out), 0);
  bee_value_t junk = {.kind = BEE_VALUE_STRING, .str = "1;DROP", .len = 6};
  ASSERT_EQ(bee__sql_add("n", 1, &junk, &out), -1);
  ASSERT_STR_EQ(out.data, "SET `n`+(-5)");
  bee__buf_free(&out);
  return 0;
}
