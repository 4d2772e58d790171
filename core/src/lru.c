/*
 * lru.c: the process-local entity cache (see lru.h for the contract).
 *
 * An open-addressing hash table (linear probing, backward-shift deletion, no
 * tombstones) maps key -> node; each slot holds the key too, so a probe reads one
 * cache line and touches a node only for the key it wants. Nodes sit on an intrusive
 * circular doubly linked recency list (most recent at list.next). A node and its value
 * bytes are one allocation. Allocation, copying in and freeing happen outside the lock;
 * only the table/list update and the copy out of a hit happen under it.
 *
 * Where glibc offers it the mutex is PTHREAD_MUTEX_ADAPTIVE_NP: critical sections are
 * short (a lookup, a list update and a copy of a typical row take well under a
 * microsecond), so a waiter spinning briefly beats sleeping in the kernel; measured
 * with 2 threads on one cache in bench/lru_bench.c.
 */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lru.h"

typedef struct lru_link_s {
  struct lru_link_s *prev, *next;
} lru_link_t;

typedef struct lru_node_s {
  lru_link_t link; /* first: the list holds links, a link is its node */
  uint64_t key;
  size_t len;
  unsigned char data[];
} lru_node_t;

_Static_assert(offsetof(lru_node_t, data) == BEE__LRU_ENTRY_OVERHEAD, "BEE__LRU_ENTRY_OVERHEAD is the node header");

typedef struct lru_slot_s {
  uint64_t key;
  lru_node_t *node; /* NULL: empty slot */
} lru_slot_t;

/* The table starts with this many slots and doubles while entries pass 3/4 of it. */
#define LRU_MIN_SLOTS 16
#define LRU_NOT_FOUND ((size_t)-1)

struct bee__lru_s {
  pthread_mutex_t mu;
  lru_link_t list; /* sentinel: list.next most recent, list.prev least recent */
  /* slots and mask change under mu, through __atomic_store_n because lru_get reads
   * them unlocked (only to prefetch). */
  lru_slot_t *slots;
  size_t mask;      /* slot count - 1 (a power of two minus one) */
  size_t max_slots; /* the smallest power of two holding capacity at load <= 3/4 */
  size_t entries, capacity, bytes;
  uint64_t hits, misses, evictions, inserts, stale_skips;
  /* Read without the lock by every reader: kept off the line the lock writes. */
  char pad[64];
  _Atomic uint64_t epoch; /* written under mu only */
};

/* The murmur3 finalizer: ids are often sequential, so every bit must move. */
static inline size_t lru_hash(uint64_t k) {
  k ^= k >> 33;
  k *= UINT64_C(0xff51afd7ed558ccd);
  k ^= k >> 33;
  k *= UINT64_C(0xc4ceb9fe1a85ec53);
  k ^= k >> 33;
  return (size_t)k;
}

/* The slot index holding key, or LRU_NOT_FOUND. The table always has an empty slot. */
static inline size_t lru_find(const bee__lru_t *lru, uint64_t key, size_t hash) {
  size_t i = hash & lru->mask;
  for (;;) {
    const lru_slot_t *s = &lru->slots[i];
    if (!s->node) return LRU_NOT_FOUND;
    if (s->key == key) return i;
    i = (i + 1) & lru->mask;
  }
}

static void lru_slot_insert(lru_slot_t *slots, size_t mask, uint64_t key, lru_node_t *node) {
  size_t i = lru_hash(key) & mask;
  while (slots[i].node) i = (i + 1) & mask;
  slots[i].key = key;
  slots[i].node = node;
}

/* Empties slot i, moving later entries of its probe run back so lookups still find them. */
static void lru_slot_delete(bee__lru_t *lru, size_t i) {
  lru_slot_t *slots = lru->slots;
  size_t mask = lru->mask, j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!slots[j].node) break;
    size_t home = lru_hash(slots[j].key) & mask;
    /* The entry at j may fill hole i when i lies on its probe path home..j. */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      slots[i] = slots[j];
      i = j;
    }
  }
  slots[i].node = NULL;
}

/* Doubles the table; 0, or -1 when out of memory (the table is unchanged). */
static int lru_grow(bee__lru_t *lru) {
  size_t n = (lru->mask + 1) * 2;
  lru_slot_t *slots = bee__calloc(n, sizeof *slots);
  if (!slots) return -1;
  for (size_t i = 0; i <= lru->mask; i++)
    if (lru->slots[i].node) lru_slot_insert(slots, n - 1, lru->slots[i].key, lru->slots[i].node);
  bee__free(lru->slots);
  __atomic_store_n(&lru->slots, slots, __ATOMIC_RELAXED);
  __atomic_store_n(&lru->mask, n - 1, __ATOMIC_RELAXED);
  return 0;
}

static inline void lru_unlink(lru_link_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
}

static inline void lru_push_front(bee__lru_t *lru, lru_link_t *l) {
  l->prev = &lru->list;
  l->next = lru->list.next;
  lru->list.next->prev = l;
  lru->list.next = l;
}

static int lru_mutex_init(pthread_mutex_t *mu) {
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
  pthread_mutexattr_t attr;
  if (pthread_mutexattr_init(&attr) != 0) return -1;
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
  int rc = pthread_mutex_init(mu, &attr);
  pthread_mutexattr_destroy(&attr);
  return rc;
#else
  return pthread_mutex_init(mu, NULL);
#endif
}

bee__lru_t *bee__lru_new(size_t capacity) {
  if (capacity == 0) return NULL;
  /* Bound the table so that slot counts and (entries + 1) * 4 cannot overflow. */
  size_t max_slots = LRU_MIN_SLOTS;
  while (max_slots / 4 * 3 < capacity) {
    if (max_slots > SIZE_MAX / 8 / sizeof(lru_slot_t)) return NULL;
    max_slots *= 2;
  }
  bee__lru_t *lru = bee__calloc(1, sizeof *lru);
  if (!lru) return NULL;
  lru->slots = bee__calloc(LRU_MIN_SLOTS, sizeof *lru->slots);
  if (!lru->slots || lru_mutex_init(&lru->mu) != 0) {
    bee__free(lru->slots);
    bee__free(lru);
    return NULL;
  }
  lru->mask = LRU_MIN_SLOTS - 1;
  lru->max_slots = max_slots;
  lru->capacity = capacity;
  lru->list.next = lru->list.prev = &lru->list;
  atomic_init(&lru->epoch, 1);
  return lru;
}

void bee__lru_free(bee__lru_t *lru) {
  if (!lru) return;
  lru_link_t *l = lru->list.next;
  while (l != &lru->list) {
    lru_link_t *next = l->next;
    bee__free(l);
    l = next;
  }
  bee__free(lru->slots);
  pthread_mutex_destroy(&lru->mu);
  bee__free(lru);
}

/* Grows out as bee__buf_append would (doubling from 64); 0, or -1 with out->failed set. */
static int lru_buf_reserve(bee__buf_t *out, size_t extra) {
  if (out->failed) return -1;
  if (extra > SIZE_MAX - 1 - out->len) {
    out->failed = 1;
    return -1;
  }
  size_t want = out->len + extra + 1;
  if (want <= out->cap) return 0;
  size_t cap = out->cap ? out->cap : 64;
  while (cap < want) cap = cap > SIZE_MAX / 2 ? want : cap * 2;
  char *p = bee__realloc(out->data, cap);
  if (!p) {
    out->failed = 1;
    return -1;
  }
  out->data = p;
  out->cap = cap;
  return 0;
}

int bee__lru_get(bee__lru_t *lru, uint64_t key, bee__buf_t *out) {
  size_t hash = lru_hash(key);
  /* Copies under the lock when out has room; otherwise grows out unlocked and retries
   * (the value may have changed meanwhile, hence the loop). */
  for (;;) {
    /* Start loading the key's slot while the lock is being taken. A concurrent grow
     * may make slots/mask stale (the old table even freed): harmless, a prefetch
     * reads nothing and never faults. */
    uintptr_t slots = (uintptr_t)__atomic_load_n(&lru->slots, __ATOMIC_RELAXED);
    size_t mask = __atomic_load_n(&lru->mask, __ATOMIC_RELAXED);
    __builtin_prefetch((const void *)(slots + (hash & mask) * sizeof(lru_slot_t)));
    pthread_mutex_lock(&lru->mu);
    size_t i = lru_find(lru, key, hash);
    if (i == LRU_NOT_FOUND) {
      lru->misses++;
      pthread_mutex_unlock(&lru->mu);
      return 0;
    }
    lru_node_t *node = lru->slots[i].node;
    size_t need = node->len;
    if (!out->failed && out->cap > out->len && out->cap - out->len > need) {
      if (need) memcpy(out->data + out->len, node->data, need);
      out->len += need;
      out->data[out->len] = '\0';
      if (lru->list.next != &node->link) {
        lru_unlink(&node->link);
        lru_push_front(lru, &node->link);
      }
      lru->hits++;
      pthread_mutex_unlock(&lru->mu);
      return 1;
    }
    pthread_mutex_unlock(&lru->mu);
    if (lru_buf_reserve(out, need) != 0) return BEE_ENOMEM;
  }
}

uint64_t bee__lru_epoch(bee__lru_t *lru) { return atomic_load(&lru->epoch); }

int bee__lru_put(bee__lru_t *lru, uint64_t key, const void *value, size_t len, uint64_t epoch) {
  if (!value && len) return BEE_EINVAL;
  if (atomic_load_explicit(&lru->epoch, memory_order_relaxed) != epoch) {
    /* Already stale: skip without allocating (the lock is for the counter). */
    pthread_mutex_lock(&lru->mu);
    lru->stale_skips++;
    pthread_mutex_unlock(&lru->mu);
    return 1;
  }
  if (len > SIZE_MAX - BEE__LRU_ENTRY_OVERHEAD) return BEE_ENOMEM;
  lru_node_t *node = bee__malloc(BEE__LRU_ENTRY_OVERHEAD + len);
  if (!node) return BEE_ENOMEM;
  node->key = key;
  node->len = len;
  if (len) memcpy(node->data, value, len);

  lru_node_t *garbage = NULL; /* freed after unlocking */
  int rc = 0;
  pthread_mutex_lock(&lru->mu);
  /* Compared under the lock: remove/clear bump the epoch under it too, so a value
   * fetched before an invalidation cannot slip in after it. */
  if (atomic_load_explicit(&lru->epoch, memory_order_relaxed) != epoch) {
    lru->stale_skips++;
    garbage = node;
    rc = 1;
    goto done;
  }
  size_t i = lru_find(lru, key, lru_hash(key));
  if (i != LRU_NOT_FOUND) {
    garbage = lru->slots[i].node;
    lru->slots[i].node = node;
    lru_unlink(&garbage->link);
    lru->bytes -= BEE__LRU_ENTRY_OVERHEAD + garbage->len;
  } else {
    if (lru->entries == lru->capacity) {
      lru_node_t *victim = (lru_node_t *)lru->list.prev;
      lru_slot_delete(lru, lru_find(lru, victim->key, lru_hash(victim->key)));
      lru_unlink(&victim->link);
      lru->entries--;
      lru->bytes -= BEE__LRU_ENTRY_OVERHEAD + victim->len;
      lru->evictions++;
      garbage = victim;
    } else if ((lru->entries + 1) * 4 > (lru->mask + 1) * 3 && lru->mask + 1 < lru->max_slots &&
               lru_grow(lru) != 0) {
      garbage = node;
      rc = BEE_ENOMEM;
      goto done;
    }
    lru_slot_insert(lru->slots, lru->mask, key, node);
    lru->entries++;
  }
  lru_push_front(lru, &node->link);
  lru->bytes += BEE__LRU_ENTRY_OVERHEAD + len;
  lru->inserts++;
done:
  pthread_mutex_unlock(&lru->mu);
  bee__free(garbage);
  return rc;
}

void bee__lru_remove(bee__lru_t *lru, uint64_t key) {
  lru_node_t *node = NULL;
  pthread_mutex_lock(&lru->mu);
  size_t i = lru_find(lru, key, lru_hash(key));
  if (i != LRU_NOT_FOUND) {
    node = lru->slots[i].node;
    lru_slot_delete(lru, i);
    lru_unlink(&node->link);
    lru->entries--;
    lru->bytes -= BEE__LRU_ENTRY_OVERHEAD + node->len;
  }
  atomic_fetch_add(&lru->epoch, 1);
  pthread_mutex_unlock(&lru->mu);
  bee__free(node);
}

void bee__lru_clear(bee__lru_t *lru) {
  pthread_mutex_lock(&lru->mu);
  lru_link_t *l = lru->list.next; /* the detached chain still ends at &lru->list */
  lru->list.next = lru->list.prev = &lru->list;
  memset(lru->slots, 0, (lru->mask + 1) * sizeof *lru->slots);
  lru->entries = 0;
  lru->bytes = 0;
  atomic_fetch_add(&lru->epoch, 1);
  pthread_mutex_unlock(&lru->mu);
  while (l != &lru->list) {
    lru_link_t *next = l->next;
    bee__free(l);
    l = next;
  }
}

void bee__lru_stats(bee__lru_t *lru, bee__lru_stats_t *out) {
  pthread_mutex_lock(&lru->mu);
  out->hits = lru->hits;
  out->misses = lru->misses;
  out->evictions = lru->evictions;
  out->inserts = lru->inserts;
  out->stale_skips = lru->stale_skips;
  out->entries = lru->entries;
  out->capacity = lru->capacity;
  out->bytes = lru->bytes;
  pthread_mutex_unlock(&lru->mu);
}
