/*
 * pool.h: connecting to MySQL and Redis pools. The connection helpers turn every
 * client-library failure into a bee_error_t with the pool name, the server errno,
 * the temporary flag of the classification, and the password scrubbed.
 */
#ifndef BEE_POOL_H
#define BEE_POOL_H

#include <hiredis.h>
#include <mysql.h>

#include "internal.h"

typedef struct bee__mysql_pool_s {
  char name[BEE_NAME_MAX];
  bee_mysql_settings_t settings;
  char address[BEE_DSN_FIELD_MAX * 2];
} bee__mysql_pool_t;

typedef struct bee__redis_pool_s {
  char name[BEE_NAME_MAX];
  bee_redis_settings_t settings;
  char address[BEE_DSN_FIELD_MAX * 2];
} bee__redis_pool_t;

/*
 * Opens a new MySQL connection for pool. Returns 0 and *out (close with mysql_close),
 * or an error: BEE_EMYSQL with err->server_code, BEE_ENOMEM.
 */
int bee__mysql_connect(const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err);

/*
 * Opens a new Redis connection for pool: connect, AUTH when a password is set,
 * SELECT db, PING. Returns 0 and *out (free with redisFree), or BEE_EREDIS /
 * BEE_ETIMEOUT / BEE_ENOMEM.
 */
int bee__redis_connect(const bee__redis_pool_t *pool, redisContext **out, bee_error_t *err);

/* Fills err from a failed MySQL call on conn (errno, message, classification). */
int bee__mysql_error(bee_error_t *err, MYSQL *conn, const bee__mysql_pool_t *pool, const char *doing);

#endif
