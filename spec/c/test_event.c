#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>

#include "event.h"
#include "task.h"

static int build(bee__buf_t *b) {
  bee__batch_t w;
  bee__batch_begin(&w, b, 0x0102030405060708ull);
  bee_value_t v[5] = {{.kind = BEE_VALUE_INT, .i = -42},
                      {.kind = BEE_VALUE_STRING, .str = "it's \0 ok", .len = 9},
                      {.kind = BEE_VALUE_NIL},
                      {.kind = BEE_VALUE_FLOAT, .f = 2.5},
                      {.kind = BEE_VALUE_BOOL, .i = 1}};
  bee__batch_event(&w, 'I', "item", "item", "default", "bee:{db.item}:0000abcd:", 7);
  const char *cols[5] = {"n", "s", "z", "f", "b"};
  for (int i = 0; i < 5; i++) bee__batch_col(&w, cols[i], &v[i], 0);
  bee__batch_keys_begin(&w);
  bee__batch_key(&w, 'F', "k:row", 5);
  bee__batch_key(&w, 'A', "k:list", 6);
  bee__batch_key(&w, 'P', "k:pending", 9);
  bee__batch_event(&w, 'U', "item", "item", "", "", 8);
  bee__batch_col(&w, "n", &v[0], 0);
  bee__batch_keys_begin(&w);
  bee__batch_event(&w, 'D', "other", "other", "", "", UINT64_MAX);
  bee__batch_keys_begin(&w);
  return bee__batch_end(&w);
}

TEST_IMPL(event_batch_round_trips_every_kind) {
  bee__buf_t b = {0};
  ASSERT_EQ(build(&b), 0);
  size_t count, pos;
  ASSERT_EQ(bee__batch_open(b.data, b.len, &count, &pos), 0);
  ASSERT_EQ(count, 3);
  ASSERT(bee__batch_token(b.data, b.len) == 0x0102030405060708ull);
  bee__event_t *ev = malloc(sizeof *ev);
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), 0);
  ASSERT_EQ(ev->kind, 'I');
  ASSERT_EQ(ev->id, 7);
  ASSERT_EQ(ev->ncols, 5);
  ASSERT_EQ(ev->values[0].i, -42);
  ASSERT_EQ(ev->values[1].len, 9);
  ASSERT(memcmp(ev->values[1].str, "it's \0 ok", 9) == 0);
  ASSERT_EQ(ev->values[2].kind, BEE_VALUE_NIL);
  ASSERT(ev->values[3].f == 2.5);
  ASSERT_EQ(ev->values[4].kind, BEE_VALUE_BOOL);
  ASSERT_EQ(ev->cache_pool.n, 7);
  ASSERT_EQ(ev->nkeys, 3);
  char when;
  bee__str_t key;
  ASSERT_EQ(bee__event_key(ev, 1, &when, &key), 0);
  ASSERT_EQ(when, 'A');
  ASSERT(key.n == 6 && memcmp(key.p, "k:list", 6) == 0);
  ASSERT_EQ(bee__event_key(ev, 2, &when, &key), 0);
  ASSERT_EQ(when, 'P');
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), 0);
  ASSERT_EQ(ev->kind, 'U');
  ASSERT_EQ(ev->nkeys, 0);
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), 0);
  ASSERT_EQ(ev->kind, 'D');
  ASSERT(ev->id == UINT64_MAX);
  ASSERT_EQ(pos, b.len);
  free(ev);
  bee__buf_free(&b);
  return 0;
}

/* Decodes a whole batch; 0 when every event decodes. */
static int decode_all(const char *p, size_t n, bee__event_t *ev) {
  size_t count, pos;
  if (bee__batch_open(p, n, &count, &pos)) return -1;
  for (size_t k = 0; k < count; k++)
    if (bee__batch_next(p, n, &pos, ev)) return -1;
  return 0;
}

TEST_IMPL(event_batch_rejects_every_truncation) {
  bee__buf_t b = {0};
  ASSERT_EQ(build(&b), 0);
  bee__event_t *ev = malloc(sizeof *ev);
  for (size_t n = 0; n < b.len; n++) {
    char *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
    memcpy(copy, b.data, n);
    ASSERT(decode_all(copy, n, ev) != 0);
    free(copy);
  }
  free(ev);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(event_batch_rejects_bad_headers_and_tags) {
  bee__buf_t b = {0};
  ASSERT_EQ(build(&b), 0);
  bee__event_t *ev = malloc(sizeof *ev);
  b.data[0] = 'X';
  ASSERT(decode_all(b.data, b.len, ev) != 0);
  b.data[0] = 'B';
  b.data[1] = 9; /* version */
  ASSERT(decode_all(b.data, b.len, ev) != 0);
  b.data[1] = 1; /* the version before tokens */
  ASSERT(decode_all(b.data, b.len, ev) != 0);
  b.data[1] = BEE__EVENT_VERSION;
  b.data[14] = 'Q'; /* the first event's kind */
  ASSERT(decode_all(b.data, b.len, ev) != 0);
  b.data[14] = 'I';
  ASSERT_EQ(decode_all(b.data, b.len, ev), 0);
  free(ev);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(event_batch_fuzz_never_reads_out_of_bounds) {
  bee__buf_t b = {0};
  ASSERT_EQ(build(&b), 0);
  bee__event_t *ev = malloc(sizeof *ev);
  uint64_t x = 88172645463325252ULL;
  for (int round = 0; round < 20000; round++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t n = b.len;
    char *copy = malloc(n);
    memcpy(copy, b.data, n);
    for (int k = 0; k < 3; k++) copy[(x >> (8 * k)) % n] = (char)(x >> (24 + 8 * k));
    decode_all(copy, n, ev); /* any result, never a crash or overread */
    free(copy);
  }
  free(ev);
  bee__buf_free(&b);
  return 0;
}

/* A run of inserts on one entity: names and header once, then ids and values. */
static int build_run(bee__buf_t *b, size_t n, int renamed_at) {
  bee__batch_t w;
  bee__batch_begin(&w, b, 7);
  for (size_t i = 0; i < n; i++) {
    bee_value_t v[2] = {{.kind = BEE_VALUE_INT, .i = (int64_t)i}, {.kind = BEE_VALUE_STRING, .str = "x", .len = 1}};
    bee__batch_event(&w, 'I', "item", "item", "default", "bee:{db.item}:0000abcd:", 100 + i);
    bee__batch_col(&w, "n", &v[0], 0);
    bee__batch_col(&w, (int)i == renamed_at ? "other" : "s", &v[1], 0);
    bee__batch_keys_begin(&w);
  }
  return bee__batch_end(&w);
}

TEST_IMPL(event_batch_writes_repeats_once) {
  bee__buf_t one = {0}, many = {0};
  ASSERT_EQ(build_run(&one, 1, -1), 0);
  ASSERT_EQ(build_run(&many, 101, 50), 0);
  /* every event after the first: kind, flags, id, ncols, 2 x (mark, tag, payload), nkeys */
  size_t first = one.len - 14, later = 2 + 8 + 2 + (1 + 1 + 8) + (1 + 1 + 4 + 1) + 2;
  /* event 50 names "other" (4 + 5 more bytes), so event 51 names "s" again (4 + 1 more) */
  ASSERT_EQ(many.len, 14 + first + 100 * later + (4 + 5) + (4 + 1));
  size_t count, pos;
  bee__event_t *ev = malloc(sizeof *ev);
  ASSERT_EQ(bee__batch_open(many.data, many.len, &count, &pos), 0);
  ASSERT_EQ(count, 101);
  for (size_t i = 0; i < count; i++) {
    ASSERT_EQ(bee__batch_next(many.data, many.len, &pos, ev), 0);
    ASSERT_EQ(ev->id, 100 + i);
    ASSERT(ev->table.n == 4 && memcmp(ev->table.p, "item", 4) == 0);
    ASSERT(ev->prefix.n == 23 && memcmp(ev->prefix.p, "bee:{db.item}:0000abcd:", 23) == 0);
    ASSERT_EQ(ev->ncols, 2);
    ASSERT(ev->cols[0].n == 1 && ev->cols[0].p[0] == 'n');
    const char *want = i == 50 ? "other" : "s";
    ASSERT(ev->cols[1].n == strlen(want) && memcmp(ev->cols[1].p, want, ev->cols[1].n) == 0);
    ASSERT_EQ(ev->values[0].i, (int64_t)i);
  }
  ASSERT_EQ(pos, many.len);
  free(ev);
  bee__buf_free(&one);
  bee__buf_free(&many);
  return 0;
}

TEST_IMPL(event_batch_rejects_repeats_with_nothing_before) {
  bee__buf_t b = {0};
  ASSERT_EQ(build_run(&b, 2, -1), 0);
  bee__event_t *ev = malloc(sizeof *ev);
  ASSERT_EQ(decode_all(b.data, b.len, ev), 0);
  b.data[15] = 1; /* the first event says "same header as before" */
  ASSERT(decode_all(b.data, b.len, ev) != 0);
  b.data[15] = 0;
  /* the second event has 3 columns, the third of them "same as before": there is none */
  bee__buf_t c = {0};
  bee__batch_t w;
  bee__batch_begin(&w, &c, 1);
  bee_value_t v = {.kind = BEE_VALUE_INT, .i = 1};
  bee__batch_event(&w, 'U', "t", "t", "", "", 1);
  bee__batch_col(&w, "a", &v, 0);
  bee__batch_keys_begin(&w);
  bee__batch_event(&w, 'U', "t", "t", "", "", 2);
  bee__batch_col(&w, "a", &v, 0);
  bee__batch_col(&w, "b", &v, 0);
  bee__batch_keys_begin(&w);
  ASSERT_EQ(bee__batch_end(&w), 0);
  ASSERT_EQ(decode_all(c.data, c.len, ev), 0);
  /* column b of event 2 is named: mark it "same" and the decoder must refuse */
  char *mark = memmem(c.data + 20, c.len - 20, "\0\1\0\0\0b", 6);
  ASSERT(mark != NULL);
  mark[0] = 1;
  ASSERT(decode_all(c.data, c.len, ev) != 0);
  free(ev);
  bee__buf_free(&b);
  bee__buf_free(&c);
  return 0;
}

TEST_IMPL(event_batch_with_count_zero_is_not_a_batch) {
  bee__buf_t b = {0};
  ASSERT_EQ(build(&b), 0);
  size_t count, pos;
  memset(b.data + 2, 0, 4);
  ASSERT_EQ(bee__batch_open(b.data, b.len, &count, &pos), BEE_EINVAL);
  bee__buf_free(&b);
  return 0;
}

/* The ids of a batch's events, in order, as "7,8,..."; "" when it does not decode whole. */
static void ids_of(const char *p, size_t n, char *out, size_t size) {
  size_t count, pos, o = 0;
  bee__event_t *ev = malloc(sizeof *ev);
  out[0] = '\0';
  if (bee__batch_open(p, n, &count, &pos) == 0) {
    for (size_t k = 0; k < count; k++) {
      if (bee__batch_next(p, n, &pos, ev)) {
        out[0] = '\0';
        break;
      }
      o += (size_t)snprintf(out + o, size - o, "%s%llu", k ? "," : "", (unsigned long long)ev->id);
    }
    if (pos != n) out[0] = '\0';
  }
  free(ev);
}

TEST_IMPL(event_batch_rewrite_drops_or_replaces_one_event) {
  bee__buf_t b = {0}, out = {0};
  char ids[64];
  ASSERT_EQ(build(&b), 0); /* ids 7, 8, UINT64_MAX */
  ASSERT_EQ(bee__batch_rewrite(b.data, b.len, 1, NULL, &out), 0);
  ids_of(out.data, out.len, ids, sizeof ids);
  ASSERT_STR_EQ(ids, "7,18446744073709551615");
  ASSERT(bee__batch_token(out.data, out.len) == 0x0102030405060708ull); /* the same flush: the same token */
  /* the first event dropped: the next one (which said "same header") is written whole */
  ASSERT_EQ(bee__batch_rewrite(b.data, b.len, 0, NULL, &out), 0);
  ids_of(out.data, out.len, ids, sizeof ids);
  ASSERT_STR_EQ(ids, "8,18446744073709551615");
  /* replaced: event 0 with a copy of itself whose first value is edited; keys kept */
  bee__event_t *ev = malloc(sizeof *ev);
  size_t count, pos;
  ASSERT_EQ(bee__batch_open(b.data, b.len, &count, &pos), 0);
  ASSERT_EQ(bee__batch_next(b.data, b.len, &pos, ev), 0);
  ev->values[0].i = 99;
  ASSERT_EQ(bee__batch_rewrite(b.data, b.len, 0, ev, &out), 0);
  ids_of(out.data, out.len, ids, sizeof ids);
  ASSERT_STR_EQ(ids, "7,8,18446744073709551615");
  ASSERT_EQ(bee__batch_open(out.data, out.len, &count, &pos), 0);
  ASSERT_EQ(bee__batch_next(out.data, out.len, &pos, ev), 0);
  ASSERT_EQ(ev->values[0].i, 99);
  ASSERT_EQ(ev->nkeys, 3);
  ASSERT_EQ(ev->values[1].len, 9);
  /* out of range, and junk: refused */
  ASSERT_EQ(bee__batch_rewrite(b.data, b.len, 3, NULL, &out), BEE_EINVAL);
  ASSERT_EQ(bee__batch_rewrite("junk", 4, 0, NULL, &out), BEE_EINVAL);
  /* a huge count with one event: the missing events are junk, not a reason to allocate */
  bee__buf_t one = {0};
  ASSERT_EQ(build_run(&one, 1, -1), 0);
  memset(one.data + 2, 0xff, 3);
  ASSERT_EQ(bee__batch_rewrite(one.data, one.len, 0, NULL, &out), BEE_EINVAL);
  free(ev);
  bee__buf_free(&one);
  bee__buf_free(&out);
  bee__buf_free(&b);
  return 0;
}

TEST_IMPL(event_row_key_matches_the_cache) {
  bee__event_t *ev = malloc(sizeof *ev);
  ev->prefix.p = "bee:{db.item}:0000abcd:";
  ev->prefix.n = strlen(ev->prefix.p);
  ev->id = 18446744073709551615ull;
  char key[128];
  size_t n = bee__event_row_key(ev, key, sizeof key);
  ASSERT_STR_EQ(key, "bee:{db.item}:0000abcd:r:18446744073709551615");
  ASSERT_EQ(n, strlen(key));
  ASSERT_EQ(bee__event_row_key(ev, key, 10), 0); /* does not fit: nothing */
  free(ev);
  return 0;
}
