/* test_lru.c: the process-local entity cache (core/src/lru.c). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "lru.h"
#include "task.h"

#define OVERHEAD ((long long)BEE__LRU_ENTRY_OVERHEAD)

/* Puts a NUL-terminated string with the current epoch; returns put's result. */
static int put_str(bee__lru_t *lru, uint64_t key, const char *s) {
  return bee__lru_put(lru, key, s, strlen(s), bee__lru_epoch(lru));
}

/*
 * Gets key into a fresh buffer and compares it with want (NULL: expect a miss).
 * Returns 1 on a match so tests can ASSERT(has(...)).
 */
static int has(bee__lru_t *lru, uint64_t key, const char *want) {
  bee__buf_t out = {0};
  int rc = bee__lru_get(lru, key, &out);
  int ok = want ? rc == 1 && out.len == strlen(want) && memcmp(out.data, want, out.len) == 0 : rc == 0 && out.len == 0;
  if (!ok) fprintf(stderr, "  key %llu: rc %d, got \"%.*s\", expected %s\n", (unsigned long long)key, rc,
                   (int)out.len, out.data ? out.data : "", want ? want : "a miss");
  bee__buf_free(&out);
  return ok;
}

/* A value that names its key: 8 bytes of the key, repeated n times. */
static void key_value(uint64_t key, size_t n, unsigned char *buf) {
  for (size_t i = 0; i < n; i++) memcpy(buf + 8 * i, &key, 8);
}

static int is_key_value(uint64_t key, const char *data, size_t len) {
  if (len % 8) return 0;
  for (size_t i = 0; i < len; i += 8)
    if (memcmp(data + i, &key, 8) != 0) return 0;
  return 1;
}

TEST_IMPL(lru_get_hits_and_misses) {
  bee__lru_t *lru = bee__lru_new(10);
  ASSERT(lru);
  ASSERT(has(lru, 1, NULL));
  ASSERT_EQ(put_str(lru, 1, "one"), 0);
  ASSERT_EQ(put_str(lru, 0, "zero"), 0);
  ASSERT_EQ(put_str(lru, UINT64_MAX, "max"), 0);
  ASSERT(has(lru, 1, "one"));
  ASSERT(has(lru, 0, "zero"));
  ASSERT(has(lru, UINT64_MAX, "max"));
  ASSERT(has(lru, 2, NULL));

  /* A hit appends to what out already holds and keeps it NUL-terminated. */
  bee__buf_t out = {0};
  bee__buf_puts(&out, "id=");
  ASSERT_EQ(bee__lru_get(lru, 1, &out), 1);
  ASSERT_STR_EQ(out.data, "id=one");
  ASSERT_EQ(bee__lru_get(lru, 3, &out), 0);
  ASSERT_STR_EQ(out.data, "id=one");
  bee__buf_free(&out);
  bee__lru_free(lru);
  bee__lru_free(NULL);
  return 0;
}

TEST_IMPL(lru_new_rejects_zero_capacity_and_put_rejects_null_value) {
  ASSERT(bee__lru_new(0) == NULL);
  bee__lru_t *lru = bee__lru_new(1);
  ASSERT(lru);
  ASSERT_EQ(bee__lru_put(lru, 1, NULL, 1, bee__lru_epoch(lru)), BEE_EINVAL);
  ASSERT_EQ(bee__lru_put(lru, 1, NULL, 0, bee__lru_epoch(lru)), 0);
  ASSERT(has(lru, 1, ""));
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_put_replaces_the_value_of_a_key) {
  bee__lru_t *lru = bee__lru_new(4);
  ASSERT_EQ(put_str(lru, 7, "first"), 0);
  ASSERT_EQ(put_str(lru, 7, "a longer second value"), 0);
  ASSERT(has(lru, 7, "a longer second value"));
  ASSERT_EQ(put_str(lru, 7, "3"), 0);
  ASSERT(has(lru, 7, "3"));
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, 1);
  ASSERT_EQ(st.inserts, 3);
  ASSERT_EQ(st.evictions, 0);
  ASSERT_EQ(st.bytes, OVERHEAD + 1);
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_capacity_one_keeps_only_the_latest_key) {
  bee__lru_t *lru = bee__lru_new(1);
  ASSERT_EQ(put_str(lru, 1, "a"), 0);
  ASSERT_EQ(put_str(lru, 2, "b"), 0);
  ASSERT(has(lru, 1, NULL));
  ASSERT(has(lru, 2, "b"));
  ASSERT_EQ(put_str(lru, 2, "bb"), 0); /* a replacement evicts nothing */
  ASSERT(has(lru, 2, "bb"));
  ASSERT_EQ(put_str(lru, 3, "c"), 0);
  ASSERT(has(lru, 2, NULL));
  ASSERT(has(lru, 3, "c"));
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, 1);
  ASSERT_EQ(st.capacity, 1);
  ASSERT_EQ(st.evictions, 2);
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_capacity_three_evicts_the_least_recently_used) {
  bee__lru_t *lru = bee__lru_new(3);
  ASSERT_EQ(put_str(lru, 1, "a"), 0);
  ASSERT_EQ(put_str(lru, 2, "b"), 0);
  ASSERT_EQ(put_str(lru, 3, "c"), 0);
  /* Order (oldest first): 1 2 3. A get of 1 makes it the newest: 2 3 1. */
  ASSERT(has(lru, 1, "a"));
  ASSERT_EQ(put_str(lru, 4, "d"), 0); /* evicts 2: 3 1 4 */
  ASSERT(has(lru, 2, NULL));
  /* A miss does not touch the order; a replacement refreshes: 1 4 3. */
  ASSERT_EQ(put_str(lru, 3, "C"), 0);
  ASSERT_EQ(put_str(lru, 5, "e"), 0); /* evicts 1: 4 3 5 */
  ASSERT(has(lru, 1, NULL));
  ASSERT_EQ(put_str(lru, 6, "f"), 0); /* evicts 4: 3 5 6 */
  ASSERT(has(lru, 4, NULL));
  ASSERT(has(lru, 3, "C"));
  ASSERT(has(lru, 5, "e"));
  ASSERT(has(lru, 6, "f"));
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, 3);
  ASSERT_EQ(st.evictions, 3);
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_remove_bumps_the_epoch_so_a_stale_put_is_skipped) {
  bee__lru_t *lru = bee__lru_new(8);
  ASSERT_EQ(put_str(lru, 1, "v1"), 0);
  uint64_t before = bee__lru_epoch(lru); /* a reader starts fetching key 1 */
  bee__lru_remove(lru, 1);               /* a writer invalidates it meanwhile */
  ASSERT(has(lru, 1, NULL));
  uint64_t after = bee__lru_epoch(lru);
  ASSERT(after != before);
  ASSERT_EQ(bee__lru_put(lru, 1, "old", 3, before), 1);
  ASSERT(has(lru, 1, NULL));
  /* Removing an absent key still moves the epoch. */
  bee__lru_remove(lru, 42);
  ASSERT(bee__lru_epoch(lru) != after);
  ASSERT_EQ(bee__lru_put(lru, 1, "new", 3, after), 1);
  ASSERT_EQ(bee__lru_put(lru, 1, "new", 3, bee__lru_epoch(lru)), 0);
  ASSERT(has(lru, 1, "new"));
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.stale_skips, 2);
  ASSERT_EQ(st.inserts, 2);
  ASSERT_EQ(st.entries, 1);
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_clear_empties_and_bumps_the_epoch) {
  bee__lru_t *lru = bee__lru_new(100);
  for (uint64_t k = 0; k < 50; k++) ASSERT_EQ(put_str(lru, k, "value"), 0);
  uint64_t before = bee__lru_epoch(lru);
  bee__lru_clear(lru);
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, 0);
  ASSERT_EQ(st.bytes, 0);
  ASSERT_EQ(st.inserts, 50);
  for (uint64_t k = 0; k < 50; k++) ASSERT(has(lru, k, NULL));
  ASSERT_EQ(bee__lru_put(lru, 3, "stale", 5, before), 1);
  ASSERT(has(lru, 3, NULL));
  ASSERT_EQ(put_str(lru, 3, "fresh"), 0);
  ASSERT(has(lru, 3, "fresh"));
  bee__lru_clear(lru);
  bee__lru_clear(lru);
  ASSERT(has(lru, 3, NULL));
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_stats_count_every_outcome) {
  bee__lru_t *lru = bee__lru_new(2);
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.hits + st.misses + st.evictions + st.inserts + st.stale_skips, 0);
  ASSERT_EQ(st.entries, 0);
  ASSERT_EQ(st.capacity, 2);
  ASSERT_EQ(st.bytes, 0);

  ASSERT(has(lru, 1, NULL));                /* miss 1 */
  ASSERT_EQ(put_str(lru, 1, "aaaa"), 0);    /* insert 1 */
  ASSERT(has(lru, 1, "aaaa"));              /* hit 1 */
  ASSERT_EQ(put_str(lru, 2, "bb"), 0);      /* insert 2 */
  ASSERT_EQ(put_str(lru, 3, "c"), 0);       /* insert 3, evicts 1 */
  ASSERT(has(lru, 1, NULL));                /* miss 2 */
  ASSERT(has(lru, 3, "c"));                 /* hit 2 */
  uint64_t e = bee__lru_epoch(lru);
  bee__lru_remove(lru, 2);
  ASSERT_EQ(bee__lru_put(lru, 2, "x", 1, e), 1); /* stale 1 */
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.hits, 2);
  ASSERT_EQ(st.misses, 2);
  ASSERT_EQ(st.inserts, 3);
  ASSERT_EQ(st.evictions, 1);
  ASSERT_EQ(st.stale_skips, 1);
  ASSERT_EQ(st.entries, 1);
  ASSERT_EQ(st.bytes, OVERHEAD + 1);
  ASSERT_EQ(put_str(lru, 4, "dddddddd"), 0);
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, 2);
  ASSERT_EQ(st.bytes, 2 * OVERHEAD + 1 + 8);
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_a_million_inserts_stay_within_capacity) {
  bee__lru_t *lru = bee__lru_new(1000);
  unsigned char v[24];
  for (uint64_t k = 0; k < 1000000; k++) {
    key_value(k, 3, v);
    ASSERT_EQ(bee__lru_put(lru, k, v, sizeof v, bee__lru_epoch(lru)), 0);
  }
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, 1000);
  ASSERT_EQ(st.inserts, 1000000);
  ASSERT_EQ(st.evictions, 999000);
  ASSERT_EQ(st.bytes, 1000 * (OVERHEAD + 24));
  /* The newest thousand are there, the one before them is not. */
  bee__buf_t out = {0};
  for (uint64_t k = 999000; k < 1000000; k++) {
    out.len = 0;
    ASSERT_EQ(bee__lru_get(lru, k, &out), 1);
    ASSERT(is_key_value(k, out.data, out.len) && out.len == 24);
  }
  ASSERT_EQ(bee__lru_get(lru, 998999, &out), 0);
  bee__buf_free(&out);
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_zero_length_values_are_hits) {
  bee__lru_t *lru = bee__lru_new(4);
  ASSERT_EQ(bee__lru_put(lru, 5, "", 0, bee__lru_epoch(lru)), 0);
  bee__buf_t out = {0};
  ASSERT_EQ(bee__lru_get(lru, 5, &out), 1);
  ASSERT_EQ(out.len, 0);
  ASSERT(out.data && out.data[0] == '\0');
  ASSERT_EQ(bee__lru_get(lru, 6, &out), 0);
  bee__buf_free(&out);
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.hits, 1);
  ASSERT_EQ(st.bytes, OVERHEAD);
  ASSERT_EQ(put_str(lru, 5, "now set"), 0);
  ASSERT(has(lru, 5, "now set"));
  ASSERT_EQ(bee__lru_put(lru, 5, "x", 0, bee__lru_epoch(lru)), 0);
  ASSERT(has(lru, 5, ""));
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_holds_a_one_mib_value) {
  size_t n = (size_t)1 << 20;
  unsigned char *v = malloc(n);
  ASSERT(v);
  for (size_t i = 0; i < n; i++) v[i] = (unsigned char)(i * 7 + (i >> 11));
  bee__lru_t *lru = bee__lru_new(2);
  ASSERT_EQ(bee__lru_put(lru, 9, v, n, bee__lru_epoch(lru)), 0);
  bee__buf_t out = {0};
  bee__buf_puts(&out, "p");
  ASSERT_EQ(bee__lru_get(lru, 9, &out), 1);
  ASSERT_EQ(out.len, n + 1);
  ASSERT(out.data[0] == 'p' && memcmp(out.data + 1, v, n) == 0 && out.data[n + 1] == '\0');
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.bytes, OVERHEAD + (long long)n);
  bee__buf_free(&out);
  bee__lru_free(lru);
  free(v);
  return 0;
}

TEST_IMPL(lru_put_survives_every_allocation_failure) {
  /* 12 keys fill the first table to 3/4, so a 13th needs a node and a bigger table. */
  bee__lru_t *lru = bee__lru_new(64);
  for (uint64_t k = 0; k < 12; k++) ASSERT_EQ(put_str(lru, k, "old"), 0);
  long n;
  for (n = 1; n < 10; n++) {
    bee_test_fail_alloc_at(n);
    int rc_new = put_str(lru, 100, "new key");
    int rc_replace = rc_new == 0 ? put_str(lru, 5, "replaced with a longer value") : BEE_ENOMEM;
    bee_test_fail_alloc_at(0);
    bee__lru_stats_t st;
    bee__lru_stats(lru, &st);
    if (rc_new == 0 && rc_replace == 0) break;
    ASSERT_EQ(rc_replace, BEE_ENOMEM);
    ASSERT(rc_new == 0 || rc_new == BEE_ENOMEM);
    ASSERT_EQ(st.entries, rc_new == 0 ? 13 : 12);
    ASSERT_EQ(st.bytes, st.entries * (OVERHEAD + 3) + (rc_new == 0 ? 4 : 0));
    ASSERT_EQ(st.evictions, 0);
    ASSERT(has(lru, 100, rc_new == 0 ? "new key" : NULL));
    ASSERT(has(lru, 5, "old"));
    for (uint64_t k = 0; k < 12; k++)
      if (k != 5) ASSERT(has(lru, k, "old"));
    if (rc_new == 0) bee__lru_remove(lru, 100); /* start the next round from 12 keys */
  }
  ASSERT_EQ(n, 4); /* 1: node of 100, 2: the table, 3: node of the replacement */
  ASSERT(has(lru, 100, "new key"));
  ASSERT(has(lru, 5, "replaced with a longer value"));
  for (uint64_t k = 0; k < 12; k++)
    if (k != 5) ASSERT(has(lru, k, "old"));
  bee__lru_free(lru);
  return 0;
}

TEST_IMPL(lru_get_that_cannot_grow_out_is_enomem_and_changes_nothing) {
  bee__lru_t *lru = bee__lru_new(2);
  ASSERT_EQ(put_str(lru, 1, "a"), 0);
  ASSERT_EQ(put_str(lru, 2, "b"), 0);
  bee__buf_t out = {0};
  bee_test_fail_alloc_at(1);
  ASSERT_EQ(bee__lru_get(lru, 1, &out), BEE_ENOMEM);
  bee_test_fail_alloc_at(0);
  ASSERT(out.failed);
  ASSERT_EQ(bee__lru_get(lru, 1, &out), BEE_ENOMEM); /* a failed buffer stays failed */
  ASSERT_EQ(bee__lru_get(lru, 3, &out), 0);          /* a miss is still a miss */
  bee__buf_free(&out);
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.hits, 0);
  ASSERT_EQ(st.misses, 1);
  /* Key 1 was not refreshed: it is still the least recently used. */
  ASSERT_EQ(put_str(lru, 3, "c"), 0);
  ASSERT(has(lru, 1, NULL));
  ASSERT(has(lru, 2, "b"));
  bee__lru_free(lru);
  return 0;
}

/* A xorshift generator: tests must not share rand()'s state between threads. */
static uint64_t next_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

TEST_IMPL(lru_matches_a_reference_model_under_random_operations) {
  enum { KEYS = 300, CAP = 64, OPS = 200000 };
  static struct {
    int present;
    size_t len;
    unsigned char fill;
    uint64_t used;
  } model[KEYS];
  memset(model, 0, sizeof model);
  bee__lru_t *lru = bee__lru_new(CAP);
  uint64_t seed = 0x9e3779b97f4a7c15u, tick = 0, stale = 0;
  size_t entries = 0;
  unsigned char v[64];
  bee__buf_t out = {0};
  for (int op = 0; op < OPS; op++) {
    uint64_t r = next_rand(&seed), r2 = next_rand(&seed);
    uint64_t k = (r >> 16) % KEYS;
    unsigned what = (unsigned)(r & 0xffff);
    if (what < 30000) { /* get */
      out.len = 0;
      int rc = bee__lru_get(lru, k, &out);
      ASSERT_EQ(rc, model[k].present);
      if (rc) {
        ASSERT_EQ(out.len, model[k].len);
        for (size_t i = 0; i < out.len; i++) ASSERT_EQ((unsigned char)out.data[i], model[k].fill);
        model[k].used = ++tick;
      }
    } else if (what < 58000) { /* put */
      size_t len = (size_t)(r2 >> 8) % sizeof v;
      unsigned char fill = (unsigned char)r2;
      memset(v, fill, len);
      if (!model[k].present && entries == CAP) {
        size_t oldest = KEYS;
        for (size_t j = 0; j < KEYS; j++)
          if (model[j].present && (oldest == KEYS || model[j].used < model[oldest].used)) oldest = j;
        model[oldest].present = 0;
        entries--;
      }
      ASSERT_EQ(bee__lru_put(lru, k, v, len, bee__lru_epoch(lru)), 0);
      if (!model[k].present) entries++;
      model[k].present = 1;
      model[k].len = len;
      model[k].fill = fill;
      model[k].used = ++tick;
    } else if (what < 65530) { /* remove, then a put with the epoch from before is stale */
      uint64_t e = bee__lru_epoch(lru);
      bee__lru_remove(lru, k);
      if (model[k].present) entries--;
      model[k].present = 0;
      ASSERT_EQ(bee__lru_put(lru, k, "x", 1, e), 1);
      stale++;
    } else {
      bee__lru_clear(lru);
      for (size_t j = 0; j < KEYS; j++) model[j].present = 0;
      entries = 0;
    }
  }
  bee__buf_free(&out);
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT_EQ(st.entries, entries);
  ASSERT_EQ(st.stale_skips, stale);
  size_t bytes = 0;
  for (size_t j = 0; j < KEYS; j++)
    if (model[j].present) bytes += BEE__LRU_ENTRY_OVERHEAD + model[j].len;
  ASSERT_EQ(st.bytes, bytes);
  bee__lru_free(lru);
  return 0;
}

enum { MT_THREADS = 4, MT_OPS = 200000, MT_KEYS = 5000, MT_CAP = 1000 };

typedef struct {
  bee__lru_t *lru;
  uint64_t seed;
  uint64_t gets, hits, misses, puts, bad, errors;
} mt_arg_t;

/* The length of key's value: 8 to 96 bytes, so replacements change sizes. */
static size_t mt_len(uint64_t key) { return 8 * (1 + key % 12); }

static void *mt_worker(void *p) {
  mt_arg_t *a = p;
  unsigned char v[96];
  bee__buf_t out = {0};
  for (int op = 0; op < MT_OPS; op++) {
    uint64_t r = next_rand(&a->seed);
    uint64_t key = (r >> 16) % MT_KEYS;
    unsigned what = (unsigned)(r & 0xffff);
    if (what < 6000) { /* an invalidation */
      bee__lru_remove(a->lru, key);
    } else if (what < 6003) {
      bee__lru_clear(a->lru);
    } else { /* a read-through: epoch, get, and on a miss "fetch" and put */
      uint64_t epoch = bee__lru_epoch(a->lru);
      out.len = 0;
      int rc = bee__lru_get(a->lru, key, &out);
      a->gets++;
      if (rc == 1) {
        a->hits++;
        if (out.len != mt_len(key) || !is_key_value(key, out.data, out.len)) a->bad++;
      } else if (rc == 0) {
        a->misses++;
        key_value(key, mt_len(key) / 8, v);
        rc = bee__lru_put(a->lru, key, v, mt_len(key), epoch);
        a->puts++;
        if (rc != 0 && rc != 1) a->errors++;
      } else {
        a->errors++;
      }
    }
  }
  bee__buf_free(&out);
  return NULL;
}

TEST_IMPL(lru_threads_only_ever_see_values_of_their_key) {
  bee__lru_t *lru = bee__lru_new(MT_CAP);
  ASSERT(lru);
  pthread_t th[MT_THREADS];
  mt_arg_t args[MT_THREADS];
  for (int i = 0; i < MT_THREADS; i++) {
    memset(&args[i], 0, sizeof args[i]);
    args[i].lru = lru;
    args[i].seed = 0x2545f4914f6cdd1dULL * (uint64_t)(i + 1);
    ASSERT_EQ(pthread_create(&th[i], NULL, mt_worker, &args[i]), 0);
  }
  uint64_t gets = 0, hits = 0, misses = 0, puts = 0;
  for (int i = 0; i < MT_THREADS; i++) {
    ASSERT_EQ(pthread_join(th[i], NULL), 0);
    ASSERT_EQ(args[i].bad, 0);
    ASSERT_EQ(args[i].errors, 0);
    gets += args[i].gets;
    hits += args[i].hits;
    misses += args[i].misses;
    puts += args[i].puts;
  }
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  ASSERT(hits > 0 && misses > 0);
  ASSERT_EQ(st.hits, hits);
  ASSERT_EQ(st.misses, misses);
  ASSERT_EQ(st.hits + st.misses, gets);
  ASSERT_EQ(st.inserts + st.stale_skips, puts);
  ASSERT(st.stale_skips > 0);
  ASSERT(st.entries <= MT_CAP);
  ASSERT_EQ(st.capacity, MT_CAP);

  /* Every cached key is findable, holds its own value, and bytes adds up. */
  size_t found = 0, bytes = 0;
  bee__buf_t out = {0};
  for (uint64_t k = 0; k < MT_KEYS; k++) {
    out.len = 0;
    int rc = bee__lru_get(lru, k, &out);
    ASSERT(rc == 0 || rc == 1);
    if (rc == 1) {
      ASSERT(out.len == mt_len(k) && is_key_value(k, out.data, out.len));
      found++;
      bytes += BEE__LRU_ENTRY_OVERHEAD + out.len;
    }
  }
  bee__buf_free(&out);
  ASSERT_EQ(found, st.entries);
  ASSERT_EQ(bytes, st.bytes);
  bee__lru_free(lru);
  return 0;
}
