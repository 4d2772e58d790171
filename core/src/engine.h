/* engine.h: the engine's insides, shared by registry.c (building it) and its users. */
#ifndef BEE_ENGINE_H
#define BEE_ENGINE_H

#include <pthread.h>

#include "pool.h"
#include "schema.h"

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
  pthread_mutex_t idle_lock; /* guards idle_mysql */
  MYSQL **idle_mysql;        /* one idle connection per MySQL pool, or NULL */
};

/*
 * A MySQL connection to pool (an idle one when there is, else a new one). Give it back
 * with bee__engine_mysql_release; broken != 0 closes it instead of keeping it.
 */
int bee__engine_mysql_acquire(bee_engine_t *engine, const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err);
void bee__engine_mysql_release(bee_engine_t *engine, const bee__mysql_pool_t *pool, MYSQL *conn, int broken);

/* The MySQL pool named name, or NULL. */
const bee__mysql_pool_t *bee__engine_mysql(const bee_engine_t *engine, const char *name);

#endif
