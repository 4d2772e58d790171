/*
 * pool.h: connecting to MySQL pools (Redis: redis.h). The connection helpers turn every
 * client-library failure into a bee_error_t with the pool name, the server errno,
 * the temporary flag of the classification, and the password scrubbed.
 */
#ifndef BEE_POOL_H
#define BEE_POOL_H

#include <mysql.h>

#include "internal.h"
#include "redis.h"

typedef struct bee__mysql_pool_s {
  char name[BEE_NAME_MAX];
  bee_mysql_settings_t settings;
  char address[BEE_DSN_FIELD_MAX * 2];
} bee__mysql_pool_t;

/*
 * Opens a new MySQL connection for pool. Returns 0 and *out (close with mysql_close),
 * or an error: BEE_EMYSQL with err->server_code, BEE_ENOMEM.
 */
int bee__mysql_connect(const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err);

/* Fills err from a failed MySQL call on conn (errno, message, classification). */
int bee__mysql_error(bee_error_t *err, MYSQL *conn, const bee__mysql_pool_t *pool, const char *doing);

#endif
