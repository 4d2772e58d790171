/*
 * lru_bench.c: hit cost and memory of the entity cache (core/src/lru.c).
 *
 * Fills a 1,000,000-entry cache with 100-byte values under ids 1..1,000,000, then
 * times bee__lru_get hits on ids drawn uniformly at random (the worst case: nearly
 * every hit misses the CPU caches) and on a hot set of 10,000 ids, single-threaded and
 * with 2 threads sharing the cache. Prints ns per get and resident bytes per entry
 * (from /proc/self/statm before and after filling).
 *
 *   cc -O2 -Icore/include -Icore/src bench/lru_bench.c core/src/lru.c core/src/alloc.c \
 *      core/src/error.c -lpthread -o /tmp/lru_bench && /tmp/lru_bench
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "lru.h"

#define ENTRIES 1000000u
#define VALUE_LEN 100
#define GETS_PER_THREAD 10000000u
#define HOT_KEYS 10000u

typedef struct {
  bee__lru_t *lru;
  uint64_t seed;
  uint32_t keys; /* ids are drawn from 1..keys */
  uint64_t gets, hits, checksum;
} worker_t;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long resident_pages(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
  fclose(f);
  return resident;
}

static void *worker(void *p) {
  worker_t *w = p;
  bee__buf_t out = {0};
  uint64_t x = w->seed;
  for (uint64_t i = 0; i < w->gets; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t key = 1 + (((x >> 32) * w->keys) >> 32);
    out.len = 0;
    if (bee__lru_get(w->lru, key, &out) == 1) {
      w->hits++;
      w->checksum += (unsigned char)out.data[VALUE_LEN - 1];
    }
  }
  bee__buf_free(&out);
  return NULL;
}

/* Runs `threads` workers over ids 1..keys; prints and returns wall ns per get. */
static int run(bee__lru_t *lru, int threads, uint32_t keys, const char *label) {
  worker_t w[2];
  pthread_t th[2];
  for (int i = 0; i < threads; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].lru = lru;
    w[i].seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
    w[i].keys = keys;
    w[i].gets = GETS_PER_THREAD;
  }
  double t0 = now_ns();
  for (int i = 0; i < threads; i++)
    if (pthread_create(&th[i], NULL, worker, &w[i]) != 0) return -1;
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  double t = now_ns() - t0;
  uint64_t gets = 0, hits = 0, sum = 0;
  for (int i = 0; i < threads; i++) {
    gets += w[i].gets;
    hits += w[i].hits;
    sum += w[i].checksum;
  }
  if (hits != gets) {
    fprintf(stderr, "%s: %llu of %llu gets missed\n", label, (unsigned long long)(gets - hits),
            (unsigned long long)gets);
    return -1;
  }
  printf("%-38s %d thread%s: %7.1f ns/get per thread, %6.2f M hits/s total (checksum %llu)\n", label, threads,
         threads > 1 ? "s" : " ", t * threads / (double)gets, (double)gets / t * 1e3, (unsigned long long)sum);
  return 0;
}

int main(void) {
  long page = sysconf(_SC_PAGESIZE);
  long before = resident_pages();
  bee__lru_t *lru = bee__lru_new(ENTRIES);
  if (!lru) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  unsigned char value[VALUE_LEN];
  double t0 = now_ns();
  for (uint32_t id = 1; id <= ENTRIES; id++) {
    for (int i = 0; i < VALUE_LEN; i++) value[i] = (unsigned char)(id + i);
    if (bee__lru_put(lru, id, value, sizeof value, bee__lru_epoch(lru)) != 0) {
      fprintf(stderr, "put failed\n");
      return 1;
    }
  }
  double fill = now_ns() - t0;
  long after = resident_pages();
  bee__lru_stats_t st;
  bee__lru_stats(lru, &st);
  printf("filled %zu entries of %d bytes: %.1f ns/put (including the table's growth)\n", st.entries, VALUE_LEN,
         fill / ENTRIES);
  printf("resident: %.1f bytes/entry (stats.bytes counts %.1f: value + %zu header)\n",
         (double)(after - before) * page / st.entries, (double)st.bytes / st.entries,
         (size_t)BEE__LRU_ENTRY_OVERHEAD);

  int rc = 0;
  rc |= run(lru, 1, ENTRIES, "uniform over 1,000,000 ids");
  rc |= run(lru, 2, ENTRIES, "uniform over 1,000,000 ids");
  rc |= run(lru, 1, HOT_KEYS, "hot set of 10,000 ids");
  rc |= run(lru, 2, HOT_KEYS, "hot set of 10,000 ids");
  bee__lru_free(lru);
  return rc ? 1 : 0;
}
