/*
 * orm.h: contexts, tracked changes, ids, caches and loaders (DESIGN §2, G6-G9).
 *
 * Redis keys of an entity all share the hash tag {<database>.<table>} (one Cluster slot
 * per entity) and, except the id keys, carry the schema hash so that a changed
 * definition never reads entries written for the old one:
 *   bee:{db.t}:<hash>:r:<id>             encoded row, or the not-found marker
 *   bee:{db.t}:<hash>:u:<index>:<key>    id of the row with that unique key, or not-found
 *   bee:{db.t}:<hash>:l:<list key>       sorted id list (reference, cached index, all)
 *   bee:{db.t}:<hash>:v                  version, bumped by every write of the entity
 *   bee:{db.t}:ids, bee:{db.t}:idmax     id counter and the limit reserved in MySQL
 * Readers fill Redis only through a script that checks the version they read before
 * asking MySQL, so a reader can never put back a value older than a committed write.
 */
#ifndef BEE_ORM_H
#define BEE_ORM_H

#include <pthread.h>
#include <stdatomic.h>

#include "codec.h"
#include "engine.h"
#include "lru.h"

#define BEE__CHANNEL "beeorm:invalidate"
#define BEE__ACK_KEY 96 /* "beeorm:ack:<nonce>:<seq>" */

typedef struct bee__entity_rt_s {
  uint32_t hash;
  char prefix[BEE_DSN_FIELD_MAX + 2 * BEE__IDENT_MAX + 16]; /* "bee:{db.t}:<hash>:" */
  size_t prefix_len;
  char tag[BEE_DSN_FIELD_MAX + 2 * BEE__IDENT_MAX]; /* "bee:{db.t}:" */
  size_t mysql;  /* MySQL pool index */
  int redis;     /* Redis pool of redis_cache, or -1 */
  int id_redis;  /* Redis pool holding the id counter, or -1 (ranges straight from MySQL) */
  bee__lru_t *lru; /* local cache, or NULL */
  pthread_mutex_t id_lock;
  uint64_t id_next, id_end; /* this process's range: next <= id < end */
  uint32_t id_batch;
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
} bee__op_t;

struct bee_context_s {
  bee_engine_t *engine;
  MYSQL **mysql;        /* per MySQL pool, borrowed lazily */
  redisContext **redis; /* per Redis pool, borrowed lazily */
  bee__op_t *ops;
  size_t op_count, op_cap;
  bee__buf_t scratch; /* reused by loaders: no allocation per cache hit */
};

/* The context's connection to MySQL/Redis pool i (borrowed on first use). */
int bee__ctx_mysql(bee_context_t *ctx, size_t pool, MYSQL **out, bee_error_t *err);
int bee__ctx_redis(bee_context_t *ctx, size_t pool, redisContext **out, bee_error_t *err);
/* Drops a broken connection so the next use opens a new one. */
void bee__ctx_redis_broken(bee_context_t *ctx, size_t pool);
void bee__ctx_mysql_broken(bee_context_t *ctx, size_t pool);

/* Fills err from a failed Redis exchange on c (NULL reply) or an error reply r. */
int bee__redis_error(bee_error_t *err, const bee__redis_pool_t *pool, redisContext *c, const redisReply *r,
                     const char *doing);

/* 1 when local caches may be read and filled now (the subscriber is connected). */
int bee__local_cache_ok(const bee_engine_t *engine);

/* Tells other processes to drop ids of entity from their local caches. */
int bee__publish_invalidation(bee_context_t *ctx, size_t entity, const uint64_t *ids, size_t n, bee_error_t *err);

/* Row key "bee:{db.t}:<hash>:r:<id>" into buf (size >= sizeof rt->prefix + 24). */
size_t bee__row_key(const bee__entity_rt_t *rt, uint64_t id, char *buf, size_t size);

/*
 * Loads rows by id through local cache, Redis and MySQL, filling the caches on the
 * way. fn sees each index of ids once (row NULL when not found). Returns 0 or the
 * first error (fn's non-zero stops early and is returned).
 */
int bee__load_by_ids(bee_context_t *ctx, size_t entity, const uint64_t *ids, size_t n, bee_row_fn fn, void *ud,
                     bee_error_t *err);

/*
 * Cache key of a unique index for a row's values ("...u:<index>:<v1>\x1f<v2>"); returns 1
 * (no key) when a value is NULL, since NULLs are not unique. List keys hold sorted ids:
 * kind 'f' (reference field), 'i' (cached index), 'a' (all). 0, 1 or BEE_ENOMEM.
 */
int bee__unique_key(const bee__entity_rt_t *rt, const bee__entity_t *e, const bee__index_t *ix,
                    const bee_value_t *values, bee__buf_t *out);
int bee__list_key(const bee__entity_rt_t *rt, const bee__entity_t *e, char kind, const char *name,
                  const size_t *fields, size_t n, const bee_value_t *values, bee__buf_t *out);
/* The pending-ids hash of a cached list: rewrites list_key ("<prefix>l:...") in place. */
void bee__pending_key(const bee__entity_rt_t *rt, bee__buf_t *list_key);

/* "beeorm:{q:<pool>:<shard>}:<suffix>" (see event.h) into buf. */
size_t bee__queue_key(const bee_engine_t *engine, size_t pool, size_t shard, const char *suffix, char *buf,
                      size_t size);

/* Ids of rows matching a SQL condition (trusted text with ? args), ordered by id. */
int bee__select_ids(bee_context_t *ctx, size_t entity, const char *where, const bee_value_t *args, size_t nargs,
                    uint64_t **ids, size_t *n, bee_error_t *err);

#endif
