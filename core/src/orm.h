/*
 * orm.h: contexts, tracked changes, ids, caches and loaders (README, Lua API, G6-G9).
 *
 * Redis keys of an entity are named in keys.h (one hash tag per table, no definition
 * hash: every definition of a table shares them); a cached row is a hash of named
 * columns (rowhash.h). Readers fill Redis only through scripts that check a version (or
 * a unique index's generation) they read before asking MySQL, and never overwrite what
 * a flush wrote, so a reader can never put back a value older than a committed write.
 */
#ifndef BEE_ORM_H
#define BEE_ORM_H

#include <pthread.h>
#include <stdatomic.h>

#include "codec.h"
#include "engine.h"
#include "keys.h"
#include "lru.h"

#define BEE__CHANNEL "beeorm:invalidate:" /* + a table's key prefix: one channel per table */
#define BEE__ACK_KEY 96 /* "beeorm:ack:<nonce>:<seq>" */

typedef struct bee__entity_rt_s {
  uint32_t hash;                       /* layout hash: local cache rows are encoded with it */
  char prefix[BEE__KEY_PREFIX_MAX];    /* "bee:{db.t}:", the start of every cache key (keys.h) */
  size_t mysql;  /* MySQL pool index */
  int redis;     /* Redis pool of redis_cache, or -1 */
  int id_redis;  /* Redis pool holding the id counter, or -1 (ranges straight from MySQL) */
  bee__lru_t *lru; /* local cache, or NULL */
  pthread_mutex_t id_lock;
  uint64_t id_next, id_end; /* this process's range: next <= id < end */
  uint32_t id_batch;
  pthread_mutex_t collation_lock;
  char (*collation)[2][BEE__IDENT_MAX]; /* per field: charset and collation of its column, read when first
                                           needed (loader.c); NULL until then */
} bee__entity_rt_t;

typedef struct bee__subscriber_s {
  bee_engine_t *engine;
  pthread_t thread;
  int wake[2];         /* a byte written here stops the thread */
  atomic_int healthy;  /* subscribed: local caches may be used */
  atomic_int stop;
  atomic_int fd;       /* the subscribed socket, -1 when none */
  atomic_int busy;     /* set before reading the socket, cleared after applying */
  _Atomic int64_t clear_until_ns; /* the socket was seen empty: no need to look again before this */
  char nonce[17];      /* this engine's messages carry it and are skipped */
} bee__subscriber_t;

enum { BEE__OP_INSERT = 1, BEE__OP_UPDATE, BEE__OP_DELETE };

typedef struct bee__op_s {
  int kind;
  size_t entity; /* index in engine->entities */
  uint64_t id;
  bee_value_t *values;    /* insert: all fields; update: fields flagged in changed */
  unsigned char *changed; /* update: one flag per field */
  char *blob;             /* owns the strings of values */
  size_t state;           /* during a flush: the index of its row's state (flush.h) */
} bee__op_t;

struct bee_context_s {
  bee_engine_t *engine;
  MYSQL **mysql;        /* per MySQL pool, borrowed lazily */
  bee__rconn_t **redis; /* per Redis pool, borrowed lazily */
  bee__op_t *ops;
  size_t op_count, op_cap;
  bee__buf_t scratch; /* reused by loaders: no allocation per cache hit */
  /* A flush_async whose outcome is unknown (docs/guarantees.md G11): the token it was sent with and a
     digest of its changes; flushing the same changes again reuses the token, so the
     consumer applies them once however often they were queued. */
  int unknown_outcome;
  uint64_t unknown_token, unknown_digest;
};

/* The context's connection to MySQL/Redis pool i (borrowed on first use). */
int bee__ctx_mysql(bee_context_t *ctx, size_t pool, MYSQL **out, bee_error_t *err);
int bee__ctx_redis(bee_context_t *ctx, size_t pool, bee__rconn_t **out, bee_error_t *err);
/* Drops a broken connection so the next use opens a new one. */
void bee__ctx_redis_broken(bee_context_t *ctx, size_t pool);
void bee__ctx_mysql_broken(bee_context_t *ctx, size_t pool);

/*
 * Reads count pipelined replies on the context's connection c of Redis pool `pool`:
 * 0, or the first failure (an error reply, an error inside a last EXEC's reply; a lost
 * connection, which is then dropped). Every reply is read either way.
 */
int bee__ctx_redis_replies(bee_context_t *ctx, size_t pool, bee__rconn_t *c, size_t count, const char *doing,
                           bee_error_t *err);

/* 1 when local caches may be read and filled now (the subscriber is connected). */
int bee__local_cache_ok(const bee_engine_t *engine);

/* A number no other flush (of any process) is likely to draw: random seed + counter (flush_async.c). */
uint64_t bee__flush_token(void);

/* The invalidation channel of a table: BEE__CHANNEL followed by its key prefix (out reset). */
void bee__invalidation_channel(const char *prefix, size_t len, bee__buf_t *out);

/*
 * The invalidation message of ids of entity (ids NULL: all of them) for its channel, and
 * the key its receivers acknowledge on (ack). 0 or BEE_ENOMEM.
 */
int bee__invalidation_message(const bee_engine_t *engine, size_t entity, const uint64_t *ids, size_t n,
                              char ack[BEE__ACK_KEY], bee__buf_t *msg);
/*
 * Waits until the receivers of a published invalidation of entity (but this engine's
 * own subscriber) acknowledged it, at most 20 ms.
 */
int bee__invalidation_wait(bee_context_t *ctx, size_t entity, const char *ack, long long receivers, bee_error_t *err);

/* Tells other processes to drop ids of entity (of its table, under any definition) from their local caches. */
int bee__publish_invalidation(bee_context_t *ctx, size_t entity, const uint64_t *ids, size_t n, bee_error_t *err);

/*
 * Loads rows by id through local cache, Redis and MySQL, filling the caches on the
 * way. fn sees each index of ids once (row NULL when not found). Returns 0 or the
 * first error (fn's non-zero stops early and is returned).
 */
int bee__load_by_ids(bee_context_t *ctx, size_t entity, const uint64_t *ids, size_t n, bee_row_fn fn, void *ud,
                     bee_error_t *err);

/* "beeorm:{q:<pool>:<shard>}:<suffix>" (see event.h) into buf. */
size_t bee__queue_key(const bee_engine_t *engine, size_t pool, size_t shard, const char *suffix, char *buf,
                      size_t size);

/* Ids of rows matching a SQL condition (trusted text with ? args), ordered by id. */
int bee__select_ids(bee_context_t *ctx, size_t entity, const char *where, const bee_value_t *args, size_t nargs,
                    uint64_t **ids, size_t *n, bee_error_t *err);

#endif
