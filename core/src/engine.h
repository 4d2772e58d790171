/* engine.h: the engine's insides, shared by registry.c (building it) and its users. */
#ifndef BEE_ENGINE_H
#define BEE_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "pool.h"
#include "schema.h"

#define BEE__IDLE_MAX 16

/* Idle connections of one pool, kept for reuse (at most BEE__IDLE_MAX). */
typedef struct bee__idle_s {
  void *conns[BEE__IDLE_MAX]; /* MYSQL * or bee__rconn_t * */
  size_t count;
} bee__idle_t;

typedef struct bee__engine_pool_s {
  char name[BEE_NAME_MAX];
  bee_pool_kind_t kind;
  char address[BEE_DSN_FIELD_MAX * 2];
  char version[64];
} bee__engine_pool_t;

struct bee_engine_s {
  bee__mysql_pool_t *mysql;
  size_t mysql_count;
  bee__redis_pool_t *redis;
  size_t redis_count;
  bee__engine_pool_t *pools; /* mysql_count + redis_count, MySQL first */
  bee__entity_t *entities;
  size_t entity_count;
  pthread_mutex_t idle_lock; /* guards the idle connection stacks */
  bee__idle_t *idle_mysql;   /* per MySQL pool */
  bee__idle_t *idle_redis;   /* per Redis pool */
  struct bee__entity_rt_s *rt; /* per entity: caches, keys, id ranges (orm.h) */
  struct bee__subscriber_s *subscriber; /* local cache invalidation (NULL: none) */
  struct bee__redis_watcher_s *watcher; /* follows Sentinel's +switch-master (NULL: no Sentinel pool) */
  int inval_redis;           /* Redis pool carrying invalidations, or -1 */
  atomic_int consume_stop;   /* bee_engine_consume_stop was called (reset when a consumer starts) */
};

/*
 * A MySQL connection to pool (an idle one when there is, else a new one). Give it back
 * with bee__engine_mysql_release; broken != 0 closes it instead of keeping it.
 */
int bee__engine_mysql_acquire(bee_engine_t *engine, const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err);
void bee__engine_mysql_release(bee_engine_t *engine, const bee__mysql_pool_t *pool, MYSQL *conn, int broken);

/* Redis counterparts of the two functions above. */
int bee__engine_redis_acquire(bee_engine_t *engine, const bee__redis_pool_t *pool, bee__rconn_t **out, bee_error_t *err);
void bee__engine_redis_release(bee_engine_t *engine, const bee__redis_pool_t *pool, bee__rconn_t *conn, int broken);

/* The MySQL pool named name, or NULL. */
const bee__mysql_pool_t *bee__engine_mysql(const bee_engine_t *engine, const char *name);
/* The index of the Redis pool named name, or -1. */
int bee__engine_redis_index(const bee_engine_t *engine, const char *name);

/* Builds per-entity runtime state and starts the invalidation subscriber (orm.c). */
int bee__engine_orm_init(bee_engine_t *engine, bee_error_t *err);
/* Stops the subscriber and frees per-entity runtime state (orm.c). NULL-safe fields. */
void bee__engine_orm_free(bee_engine_t *engine);

#endif
