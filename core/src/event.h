/*
 * event.h: what flush_async queues (docs/guarantees.md, the queue), as pure encode/decode functions.
 *
 * Queues: one Redis stream per (MySQL pool, shard), shard = bee__shard(id), on the
 * engine's queue Redis pool. All keys of one shard share the hash tag {q:<pool>:<shard>}:
 *   beeorm:{q:<pool>:<n>}:s        the stream; one entry = the events of one flush_async
 *                                  for that shard (applied atomically, G3)
 *   beeorm:{q:<pool>:<n>}:errors   hash: stream id -> error record of a failed entry
 *   beeorm:{q:<pool>:<n>}:lease    the consumer that owns the shard now
 * MySQL table _beeorm_applied(queue, ms, seq) holds, per queue, the last stream id
 * applied, written in the same transaction as the batch (G2).
 *
 * An entry ("batch") is self-contained: a consumer needs no application code. Events
 * repeat little: a header or a column name equal to the previous event's is not written
 * again, so a run of events on one entity costs its ids and values, not its names.
 *   batch := 'B' u8 version=3 u32 count u64 token event*   (version 2, without increments, is read too)
 *            token: one random number per flush_async, shared by its entries
 *   event := u8 kind ('I' insert, 'U' update, 'D' delete), u8 flags
 *            [str table, str entity, str cache_pool, str cache_prefix]
 *                 ("" without a Redis cache); absent when flags & 1: the previous
 *                 event's (never on the first event)
 *            u64 id
 *            u16 ncols (col)*            insert: every field; update: changed ones
 *                                       (an increment `c = c + value` is a col too)
 *            u16 nkeys (u8 when, str key)*  cache keys the consumer handles:
 *                                           'A' deleted after applying and on failure
 *                                               (a unique index's generation),
 *                                           'F' deleted only when the event fails,
 *                                           'P' a pending-list hash: its field <id>
 *                                           is removed if it still holds this
 *                                           batch's token (after applying or failing)
 *            The row's own key (cache_prefix "r:" id, see bee__event_row_key) is not
 *            listed: it is always an 'F' key when cache_prefix is not "".
 *   col   := u8 0, str name, value      (tag + payload as in codec.h)
 *          | u8 1, value                the name of the previous event's column at the
 *                                       same position
 *          | u8 2, str name, value      an increment: the column plus value (an int, or a
 *          | u8 3, value                decimal's text), named as in 0 and 1 (version 3)
 *   str   := u32 length, bytes
 * All integers little-endian.
 */
#ifndef BEE_EVENT_H
#define BEE_EVENT_H

#include "codec.h"

#define BEE__SHARDS 8
/*
 * The shard of a row: runs of 64 consecutive ids share one, so the events of a bulk
 * insert land in few entries and a consumer inserts id runs, not every 8th id.
 */
#define bee__shard(id) ((size_t)(((id) >> 6) % BEE__SHARDS))
#define BEE__EVENT_VERSION 3

typedef struct bee__str_s {
  const char *p;
  size_t n;
} bee__str_t;

/* One decoded event; strings and values point into the batch bytes. */
typedef struct bee__event_s {
  char kind;
  bee__str_t table, entity, cache_pool, prefix;
  uint64_t id;
  size_t ncols;
  bee__str_t cols[1024]; /* an entity has at most 1000 fields */
  bee_value_t values[1024];
  unsigned char add[1024]; /* 1: the column is an increment, `col = col + value` */
  size_t nkeys;
  const char *keys_at; /* raw key list, walk it with bee__event_key */
  size_t keys_len;
} bee__event_t;

/*
 * Writing: begin, then per event: event, its cols, keys_begin, its keys; end patches
 * the counts. Errors (memory) show in b->failed; bee__batch_end returns BEE_ENOMEM then.
 */
typedef struct bee__batch_s {
  bee__buf_t *b;
  size_t count_at, ncols_at, nkeys_at;
  uint32_t count;
  uint16_t ncols, nkeys;
  size_t head[4][2];      /* offset and length in b of the last written header strings */
  size_t (*names)[2];     /* offsets and lengths of column names: previous event, then current */
  size_t prev_ncols, names_cap;
  int bad;                /* a malformed call sequence (more than 1024 columns) */
} bee__batch_t;

void bee__batch_begin(bee__batch_t *w, bee__buf_t *b, uint64_t token);
void bee__batch_event(bee__batch_t *w, char kind, const char *table, const char *entity, const char *cache_pool,
                      const char *prefix, uint64_t id);
/* A column of the event: its value, or with add != 0 an increment by it. */
void bee__batch_col(bee__batch_t *w, const char *name, const bee_value_t *v, int add);
void bee__batch_keys_begin(bee__batch_t *w);
void bee__batch_key(bee__batch_t *w, char when, const char *key, size_t len);
/* Finishes the batch and frees the writer's scratch: 0, BEE_ENOMEM or BEE_EINVAL. */
int bee__batch_end(bee__batch_t *w);

/*
 * Reading: bee__batch_open checks the header and gives the count; bee__batch_next
 * decodes the event at *pos and advances it. Both return 0 or BEE_EINVAL (malformed:
 * never reads out of bounds). Events are decoded in order into the same ev: an event
 * takes what it does not repeat from the previous one, still in ev.
 */
int bee__batch_open(const char *data, size_t len, size_t *count, size_t *pos);
/* The batch's token (0 when the header is malformed); as text, 16 hex digits. */
uint64_t bee__batch_token(const char *data, size_t len);
void bee__token_format(uint64_t token, char out[17]);
int bee__batch_next(const char *data, size_t len, size_t *pos, bee__event_t *ev);
/*
 * A batch written again into out (reset): event `index` replaced by ev, or dropped when
 * ev is NULL; the token and every other event are kept. Returns 0, BEE_EINVAL (data is
 * not a batch or has no event `index`) or BEE_ENOMEM.
 */
int bee__batch_rewrite(const char *data, size_t len, size_t index, const bee__event_t *ev, bee__buf_t *out);

/*
 * Checking a queued batch whole, before anything of it is applied: the header, every
 * event (decodable; identifiers plain SQL identifiers, increments numbers), and no bytes
 * after the last event. Returns BEE__BATCH_OK or what is wrong; *bad is the failing
 * event (0-based), *trailing the extra bytes. ev is scratch.
 */
enum { BEE__BATCH_OK, BEE__BATCH_NOT, BEE__BATCH_BAD_EVENT, BEE__BATCH_TRAILING };
int bee__batch_check(const char *data, size_t len, bee__event_t *ev, size_t *bad, size_t *trailing);
/* 1 when a decoded event's identifiers and increments are sound (see bee__batch_check). */
int bee__event_ok(const bee__event_t *ev);
/* Calls fn(ud, "<table>:<id>") for each event's row, while fn returns 0; stops at junk. */
void bee__batch_rows(const char *data, size_t len, bee__event_t *ev, int (*fn)(void *ud, const char *row), void *ud);

/* The row's own cache key, cache_prefix "r:" id, into buf (as bee__row_key makes it). */
size_t bee__event_row_key(const bee__event_t *ev, char *buf, size_t size);
/* The i-th key of ev (0 <= i < ev->nkeys). */
int bee__event_key(const bee__event_t *ev, size_t i, char *when, bee__str_t *key);

#endif
