/*
 * lru.h: the process-local entity cache, one bounded LRU per entity.
 *
 * Keys are uint64 ids, values are byte strings (encoded rows; a zero-length value is
 * a valid value, e.g. for a cached "not found"). Every function but bee__lru_free may
 * be called from several threads at once on the same cache: each cache has one mutex,
 * held only for the table and list update and the copy of one value. Memory is bounded
 * by `capacity` entries: the least recently used entry goes when a new key would pass
 * it, and its memory is freed at once.
 *
 * Invalidation without races (docs/guarantees.md G8): every bee__lru_remove and bee__lru_clear
 * moves an epoch counter forward. A reader takes bee__lru_epoch() BEFORE it fetches a
 * value from Redis or MySQL and passes it to bee__lru_put, which stores nothing when the
 * epoch moved meanwhile; so a value read before an invalidation is never cached after
 * it. The epoch is per cache, so an invalidation of any id skips concurrent puts of
 * every id of the same cache (they are simply not cached this time).
 *
 * Preconditions (not checked): `lru` is a cache from bee__lru_new and not yet freed;
 * `out` and `stats` point to valid objects.
 */
#ifndef BEE_LRU_H
#define BEE_LRU_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct bee__lru_s bee__lru_t;

/*
 * A snapshot taken under the cache's lock, so the fields agree with each other.
 * hits/misses: bee__lru_get calls that found / did not find the key (a get that ended
 *   in BEE_ENOMEM counts as neither).
 * evictions: entries dropped to stay within capacity (not remove, clear or replace).
 * inserts: puts that stored a value, a new key or a replacement.
 * stale_skips: puts that stored nothing because the epoch had moved.
 * entries: keys held now (always <= capacity). capacity: as given to bee__lru_new.
 * bytes: for every entry, its value length plus BEE__LRU_ENTRY_OVERHEAD (the node
 *   header: recency links, key, length). Not counted: the hash table (16 bytes per
 *   slot; it grows with the entries up to the smallest power of two >= 4/3 x capacity,
 *   at least 16 slots, and never shrinks before bee__lru_free), malloc's chunk headers
 *   and rounding, and the fixed-size cache object. Measured resident memory for 100-byte
 *   values in a full 1,000,000-entry cache: about 178 bytes per entry.
 */
typedef struct bee__lru_stats_s {
  uint64_t hits, misses, evictions, inserts, stale_skips;
  size_t entries, capacity, bytes;
} bee__lru_stats_t;

/* Bytes counted in bee__lru_stats_t.bytes per entry on top of its value length. */
#define BEE__LRU_ENTRY_OVERHEAD (2 * sizeof(void *) + sizeof(uint64_t) + sizeof(size_t))

/*
 * A new empty cache holding at most `capacity` entries, owned by the caller (free with
 * bee__lru_free). The hash table starts small and grows with the entries, never past
 * what `capacity` needs. Returns NULL when capacity is 0 or out of memory.
 */
bee__lru_t *bee__lru_new(size_t capacity);

/*
 * Frees the cache, every entry and its values. NULL is accepted. No other call on the
 * same cache may be running or follow; buffers filled by bee__lru_get stay valid (they
 * hold copies).
 */
void bee__lru_free(bee__lru_t *lru);

/*
 * Looks key up. On a hit appends a copy of the value to out (the caller keeps owning
 * out; out->data stays NUL-terminated as with bee__buf_append), marks the entry most
 * recently used and returns 1. On a miss returns 0 and leaves out untouched. When out
 * cannot grow to hold the value (or out->failed was already set) returns BEE_ENOMEM:
 * out->failed is set, the cache and its recency order are unchanged, and the call
 * counts as neither hit nor miss. The cache itself allocates nothing here; out is grown,
 * when needed, outside the lock. Thread-safe.
 */
int bee__lru_get(bee__lru_t *lru, uint64_t key, bee__buf_t *out);

/*
 * The current invalidation epoch (lock-free). Take it before fetching a value from its
 * source and hand it to bee__lru_put. Thread-safe.
 */
uint64_t bee__lru_epoch(bee__lru_t *lru);

/*
 * Stores a copy of value[0..len) under key, replacing any previous value and making it
 * the most recently used, but ONLY when epoch equals the current epoch. When a new key
 * would pass capacity the least recently used entry is evicted and freed.
 * Returns 0 when stored; 1 when skipped because the epoch moved (stale: nothing
 * changed, the skip is counted); BEE_ENOMEM when out of memory (nothing changed, a
 * previous value of key is still there); BEE_EINVAL when value is NULL and len > 0.
 * The caller keeps owning value. The copy is made before taking the lock. Thread-safe.
 */
int bee__lru_put(bee__lru_t *lru, uint64_t key, const void *value, size_t len, uint64_t epoch);

/*
 * Removes key if present (freeing its value) and ALWAYS moves the epoch forward, so a
 * put holding an older epoch is skipped even when key was not cached. Thread-safe.
 */
void bee__lru_remove(bee__lru_t *lru, uint64_t key);

/*
 * Removes every entry (their memory is freed) and moves the epoch forward. Counters
 * and the hash table's size are kept. Thread-safe.
 */
void bee__lru_clear(bee__lru_t *lru);

/* Fills *out with a consistent snapshot of the counters. Thread-safe. */
void bee__lru_stats(bee__lru_t *lru, bee__lru_stats_t *out);

#endif
