/*
 * queues.h: the queues as operators see them (stats, error lists, retry and skip: the
 * bee_engine_queue_* functions of beeorm.h), and the bookkeeping of parked rows that
 * the consumer shares with them.
 *
 * Per queue, beside its stream "...:s" and error list "...:errors" (stream id -> error
 * record, record.h):
 *   "...:parked"  field "<table>:<id>", value the stream ids of parked entries (and of
 *                 retries not applied yet) changing that row, space-separated
 *   "...:stale"   field a parked stream id, value "<table>:<id> <newer entry id>": that
 *                 row got a newer change applied since it was parked (docs/guarantees.md G13)
 */
#ifndef BEE_QUEUES_H
#define BEE_QUEUES_H

#include "redis.h"

#include "internal.h"

typedef struct {
  bee__rconn_t *r;
  const char *parked_key, *id;
} bee__park_t;

/* Adds / removes parked id p->id on a row of "...:parked" (callbacks of bee__batch_rows; ud: bee__park_t). */
int bee__park_row(void *ud, const char *row);
int bee__unpark_row(void *ud, const char *row);

/*
 * The consumers' shared figures (one hash tag: one slot):
 *   BEE__WORKERS_KEY        sorted set: live worker token -> heartbeat deadline (ms)
 *   BEE__WORKER_INFO_KEY    hash: token -> "<host>\t<pid>\t<queues held>" of its last heartbeat
 *   BEE__COUNTERS_KEY       hash: "<queue>:applied" / "<queue>:failed" -> events / entries, ever
 *   BEE__RATE_KEY "<sec>"   events applied in that second (Unix time), expiring after 400 s
 *   BEE__FAILED_RATE_KEY "<sec>"  entries parked in that second, likewise
 */
#define BEE__WORKERS_KEY "beeorm:workers"
#define BEE__WORKER_INFO_KEY "beeorm:{stats}:workers"
#define BEE__COUNTERS_KEY "beeorm:{stats}:counters"
#define BEE__RATE_KEY "beeorm:{stats}:applied:"
#define BEE__FAILED_RATE_KEY "beeorm:{stats}:failed:"
#define BEE__RATE_KEEP_S "400"

/* Parses a stream id "<ms>-<seq>": 0, or -1 when it is not one. Pure. */
int bee__stream_id_parse(const char *s, uint64_t *ms, uint64_t *seq);

#endif
