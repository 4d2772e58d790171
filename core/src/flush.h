/*
 * flush.h: what the synchronous flush (flush.c), flush_async (flush_async.c) and the
 * cache writes after both (cache_write.c) share: the rows a flush touches, as they were
 * before it and as they are after it, and what it does to each column.
 */
#ifndef BEE_FLUSH_H
#define BEE_FLUSH_H

#include "event.h"
#include "orm.h"

#define BEE__INSERT_ROWS 1000
#define BEE__SQL_MAX (4u << 20)

/* What a flush does to one column of a row (bee__op_t.changed and bee__state_t.cols). */
enum { BEE__COL_NONE = 0, BEE__COL_SET = 1, BEE__COL_ADD = 2 };

/* Room for the text of a sum of increments (a decimal(65,30), its sign and point). */
#define BEE__DELTA_TEXT 80

typedef struct {
  size_t entity;
  uint64_t id;
  int had_before, has_after; /* the row existed before the flush / exists after it */
  bee__buf_t before, after;  /* encoded rows (codec.h) */
  unsigned char *cols;       /* per field: SET when an op of the flush set it, ADD when ops only added to it */
  char *deltas;              /* per field with cols ADD: the sum of the increments, as text
                                (BEE__DELTA_TEXT bytes a field; NULL when there is none) */
} bee__state_t;

/* An invalidation published in the cache MULTI of a flush: its receivers are waited for after. */
typedef struct {
  size_t entity;
  long long receivers;
  char ack[BEE__ACK_KEY];
} bee__published_t;

typedef struct {
  bee__state_t *items; /* sorted by (entity, id) */
  size_t count;
  bee__published_t *published; /* entities whose invalidation went with the cache writes */
  size_t npublished;
  unsigned char *cols_block;   /* every state's cols */
} bee__states_t;

/* One state per (entity, id) of the context's ops, with cols and deltas; each op's state set. 0 or BEE_ENOMEM. */
int bee__states_build(bee_context_t *ctx, bee__states_t *s);
bee__state_t *bee__state_find(bee__states_t *s, size_t entity, uint64_t id);
void bee__states_free(bee__states_t *s);

/*
 * Applies the ops in order to the before-rows, giving each state's after-row (values is
 * scratch of the largest field count). 0 or BEE_ENOMEM.
 */
int bee__compute_after(bee_context_t *ctx, bee__states_t *s, bee_value_t *values);

/* The largest field count of the engine's entities (at least 1): the size of a values scratch. */
size_t bee__max_fields(const bee_engine_t *engine);

/*
 * The Redis script adding increments to a row hash (cache_write.c): KEYS[1] the row,
 * ARGV[1] the flush's token (a token adds once), then triples (column, delta, the
 * column's cache text before the flush as the writer read it, used when the hash lacks
 * the column). Exact text arithmetic; NULL stays NULL.
 */
extern const char *const bee__incr_script;

/* A stream entry to add in the same MULTI/EXEC as the cache writes (flush_async). */
typedef struct {
  char key[128];
  bee__buf_t payload;
  bee__batch_t w;
  size_t pool, shard;
} bee__qentry_t;

/*
 * The Redis caches of pool rp after a flush, and the stream entries q (flush_async),
 * in one MULTI/EXEC: all of it or nothing (G1). token: the flush_async's token text
 * (the rows' pending marks and the unique indexes' generations), NULL for a sync flush.
 * A sync flush drops the columns it changed (MySQL has them) and a flush_async writes
 * them (MySQL does not have them yet); both write new rows whole. A sync flush whose
 * MULTI fails deletes every key it could not update (Redis still takes DEL when it is
 * out of memory) and returns 0 when that worked. Returns 0 or the error.
 */
int bee__cache_write_redis(bee_context_t *ctx, size_t rp, bee__states_t *s, bee_value_t *values, const bee__qentry_t *q,
                           size_t nq, const char *token, bee_error_t *err);

/*
 * After the writes are durable (committed or queued): the Redis caches of every pool but
 * skip_pool, then local caches here and in other processes. token: the flush_async's
 * (the same as its events carry, so the consumer clears its pending marks on every
 * pool), NULL for a sync flush. Returns 0 or the first failure, its message prefixed
 * with `what` (the writes stand; only caches may lag).
 */
int bee__cache_write(bee_context_t *ctx, bee__states_t *s, bee_value_t *values, int skip_pool, const char *token,
                     const char *what, bee_error_t *err);

/*
 * The cache keys a consumer handles for one event of state st (flush_async): the unique
 * keys of the row before and after ('F'), the unique indexes' generations ('A') and
 * pending marks ('P'), the lists the row leaves or joins ('F') and their pending marks ('P').
 */
void bee__event_cache_keys(bee__batch_t *w, const bee__entity_rt_t *rt, const bee__entity_t *e, const bee__state_t *st,
                           bee_value_t *values);

#endif
