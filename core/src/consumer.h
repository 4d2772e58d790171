/*
 * consumer.h: what the parts of the consumer (internal) share: a worker's state, the
 * queue entries it holds, and the functions one part calls in another.
 *
 *   consumer.c        the worker loop: drain, the workers, bee_engine_consume; helpers
 *   consumer_apply.c  applying entries to MySQL in one transaction: statements, the
 *                     applied mark, flush tokens
 *   consumer_queue.c  reading and trimming a queue's stream; the caches dropped after a batch
 *   consumer_lease.c  the queues' leases and the workers' heartbeats
 *   consumer_fail.c   failed entries: the resolver, error records, parked and stale retries
 */
#ifndef BEE_CONSUMER_H
#define BEE_CONSUMER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "orm.h"
#include "redis.h"
#include "sql.h"

#define CONFLICT 1
#define MAX_ATTEMPTS 3

#define LEASE_MS "3000" /* LEASE_MS_INT as text */
#define LEASE_MS_INT 3000

typedef struct {
  char id[48];
  uint64_t ms, seq;
  char *payload;
  size_t len;
  int retried; /* came back from the error list: its keys were invalidated on failure */
  char retried_of[48]; /* the parked entry it retries (its stream id), "" when forced or not a retry */
  int stale;    /* a retry whose rows got newer changes since it was parked: parked again, not applied */
  uint64_t token; /* its flush's token (G11); 0 for a malformed entry, which is never anyone's duplicate */
  int dup;     /* its flush's token was applied already in this queue: not applied again (G11) */
  int bad;      /* malformed (BEE__BATCH_*): checked whole when read, so nothing of it is ever applied */
  size_t bad_event, trailing; /* BEE__BATCH_BAD_EVENT: which event (0-based); BEE__BATCH_TRAILING: how many bytes */
} entry_t;

typedef struct {
  bee_engine_t *engine;
  atomic_int *run_stop; /* this bee_engine_consume call stops (a worker failed while draining) */
  bee_consume_options_t opts;
  bee_consume_stats_t stats;
  char token[64]; /* this worker's lease token */
  char mark[160];  /* the current queue's row in _beeorm_applied: "<pool>:<shard>@<queue id>" */
  MYSQL **mysql;        /* per pool, this consumer's own */
  bee__rconn_t **redis; /* per Redis pool, this consumer's own */
  unsigned char *mark_table_ok;
  bee__event_t *ev;
  bee__buf_t sql;
} consumer_t;

/* consumer.c: helpers */
int64_t bee__c_now_ms(void);
/* The events of entries [a, b), duplicates left out (they are not applied). */
size_t bee__c_events(const entry_t *entries, size_t a, size_t b);
void bee__c_count_applied(consumer_t *c, const entry_t *entries, size_t a, size_t b);
void bee__c_drop_mysql(consumer_t *c, size_t pool);
int bee__c_get_redis(consumer_t *c, size_t pool, bee__rconn_t **out, bee_error_t *err);
int bee__c_mysql_fail(consumer_t *c, size_t pool, MYSQL *conn, const char *doing, bee_error_t *err);
int bee__c_query(consumer_t *c, size_t pool, MYSQL *conn, const char *sql, size_t len, bee_error_t *err);
void bee__c_entries_free(entry_t *e, size_t n);

/* consumer_apply.c: statements, the applied mark, applying */
void bee__c_event_sql(MYSQL *conn, const bee__event_t *ev, bee__buf_t *b);
int bee__c_ensure_mark_table(consumer_t *c, size_t pool, MYSQL *conn, bee_error_t *err);
int bee__c_read_mark(consumer_t *c, size_t pool, MYSQL *conn, int lock, uint64_t *ms, uint64_t *seq,
                     bee_error_t *err);
int bee__c_apply(consumer_t *c, size_t pool, MYSQL *conn, const char *queue, entry_t *entries, size_t a, size_t b,
                 int run, int per_event, uint64_t mark_ms, uint64_t mark_seq, size_t *failed_event, bee_error_t *err);
int bee__c_apply_batch(consumer_t *c, size_t pool, size_t qp, MYSQL *conn, const char *queue, const char *key,
                       entry_t *entries, size_t n, uint64_t ms, uint64_t seq, bee_error_t *err);

/* consumer_queue.c: reading and trimming a queue, the caches dropped after a batch */
int bee__c_fetch(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq, size_t max, entry_t **out,
                 size_t *n, bee_error_t *err);
void bee__c_invalidate(consumer_t *c, entry_t *entries, size_t a, size_t b, int failed_all);
void bee__c_trim(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq);
void bee__c_forget_retried(consumer_t *c, bee__rconn_t *r, const char *parked_key, const char *stale_key,
                           const entry_t *e);
void bee__c_trim_applied(consumer_t *c, size_t qp, const char *queue, const char *key, const entry_t *entries, size_t a,
                         size_t b);
/* Appends to r's pipeline n more `what` ("applied" events, "failed" entries) of queue,
   ever and in this second (rate_prefix: BEE__RATE_KEY or BEE__FAILED_RATE_KEY), the
   figures every process adds to (bee_engine_consumers). Returns the commands appended. */
size_t bee__c_append_figures(bee__rconn_t *r, const char *queue, const char *what, const char *rate_prefix, size_t n);
void bee__c_set_pending(consumer_t *c, size_t qp, const char *pending_key, size_t n);

/* consumer_lease.c: leases and heartbeats */
extern const char *const bee__c_lease_script;
extern const char *const bee__c_release_script;
int bee__c_queue_identity(consumer_t *c, size_t qp, const char *id_key, char *out, size_t size, bee_error_t *err);
int bee__c_lease(consumer_t *c, size_t qp, const char *key, const char *script);
size_t bee__c_heartbeat(consumer_t *c, size_t mine, const char *held);
void bee__c_leave(consumer_t *c);

/* consumer_fail.c: failed entries */
int bee__c_permanent(const bee_error_t *err);
int bee__c_handle_failure(consumer_t *c, size_t pool, size_t qp, MYSQL *conn, const char *queue, entry_t *e,
                          size_t failed_event, uint64_t mark_ms, uint64_t mark_seq, bee_error_t *first,
                          bee_error_t *err);
int bee__c_retry_is_stale(consumer_t *c, size_t qp, const char *key, entry_t *e, bee_error_t *why, bee_error_t *err);

#endif
