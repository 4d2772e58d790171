/* pool.c: opening MySQL and Redis connections with errors that follow DESIGN §2. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>

#include "pool.h"

static pthread_once_t bee__mysql_once = PTHREAD_ONCE_INIT;
static int bee__mysql_inited;

static void mysql_init_once(void) {
  bee__mysql_inited = mysql_library_init(0, NULL, NULL) == 0;
}

void bee__mysql_library_init(void) { pthread_once(&bee__mysql_once, mysql_init_once); }

void bee_library_end(void) {
  if (bee__mysql_inited) {
    mysql_library_end();
    bee__mysql_inited = 0;
  }
}

int bee__mysql_error(bee_error_t *err, MYSQL *conn, const bee__mysql_pool_t *pool, const char *doing) {
  unsigned int e = mysql_errno(conn);
  int rc = bee__error(err, BEE_EMYSQL, bee_mysql_errno_is_temporary(e), "%s %s: %s", doing,
                      pool->address, mysql_error(conn));
  if (err) {
    err->server_code = (int)e;
    bee__error_pool(err, pool->name);
    bee__error_scrub(err, pool->settings.password);
  }
  return rc;
}

int bee__mysql_connect(const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err) {
  const bee_mysql_settings_t *s = &pool->settings;
  bee__mysql_library_init();
  MYSQL *conn = mysql_init(NULL);
  if (!conn) return bee__error(err, BEE_ENOMEM, 0, "out of memory creating a MySQL connection");
  unsigned int ct = (s->connect_timeout_ms + 999) / 1000, rt = (s->read_timeout_ms + 999) / 1000,
               wt = (s->write_timeout_ms + 999) / 1000;
  mysql_options(conn, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
  mysql_options(conn, MYSQL_OPT_READ_TIMEOUT, &rt);
  mysql_options(conn, MYSQL_OPT_WRITE_TIMEOUT, &wt);
  mysql_options(conn, MYSQL_SET_CHARSET_NAME, s->charset);
  /* "tcp(localhost:3306)" means TCP: without this libmariadb would pick a socket. */
  unsigned int proto = s->socket[0] ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
  mysql_options(conn, MYSQL_OPT_PROTOCOL, &proto);
  if (!mysql_real_connect(conn, s->socket[0] ? NULL : s->host, s->user, s->password, s->database,
                          s->port, s->socket[0] ? s->socket : NULL, CLIENT_FOUND_ROWS)) {
    int rc = bee__mysql_error(err, conn, pool, "cannot connect to");
    mysql_close(conn);
    return rc;
  }
  /* A child process must not inherit (and keep alive) our connections. */
  int fd = (int)mysql_get_socket(conn);
  if (fd >= 0) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  /* Values are UTC strings (DESIGN §2): never let the server zone shift them. */
  if (mysql_query(conn, "SET time_zone = '+00:00'") != 0) {
    int rc = bee__mysql_error(err, conn, pool, "cannot set the session time zone on");
    mysql_close(conn);
    return rc;
  }
  *out = conn;
  return 0;
}

static int redis_context_error(bee_error_t *err, redisContext *c, const bee__redis_pool_t *pool) {
  int timeout = c && c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == ETIMEDOUT);
  int rc = bee__error(err, timeout ? BEE_ETIMEOUT : BEE_EREDIS, 1, "cannot connect to %s: %s",
                      pool->address, c ? c->errstr : "out of memory");
  bee__error_pool(err, pool->name);
  bee__error_scrub(err, pool->settings.password);
  return rc;
}

/* Runs one command during the handshake; an error reply is a permanent failure. */
static int handshake(redisContext *c, const bee__redis_pool_t *pool, bee_error_t *err, const char *what,
                     int argc, const char **argv) {
  redisReply *r = redisCommandArgv(c, argc, argv, NULL);
  if (!r) return redis_context_error(err, c, pool);
  int rc = 0;
  if (r->type == REDIS_REPLY_ERROR) {
    rc = bee__error(err, BEE_EREDIS, 0, "%s failed on %s: %.200s", what, pool->address, r->str);
    bee__error_pool(err, pool->name);
    bee__error_scrub(err, pool->settings.password);
  }
  freeReplyObject(r);
  return rc;
}

int bee__redis_connect(const bee__redis_pool_t *pool, redisContext **out, bee_error_t *err) {
  const bee_redis_settings_t *s = &pool->settings;
  unsigned int cms = s->connect_timeout_ms ? s->connect_timeout_ms : BEE_REDIS_CONNECT_TIMEOUT_MS;
  unsigned int ims = s->timeout_ms ? s->timeout_ms : BEE_REDIS_TIMEOUT_MS;
  struct timeval tv = {(time_t)(cms / 1000), (suseconds_t)(cms % 1000) * 1000};
  redisContext *c = s->socket[0] ? redisConnectUnixWithTimeout(s->socket, tv)
                                 : redisConnectWithTimeout(s->host, (int)s->port, tv);
  if (!c || c->err) {
    int rc = redis_context_error(err, c, pool);
    if (c) redisFree(c);
    return rc;
  }
  struct timeval io = {(time_t)(ims / 1000), (suseconds_t)(ims % 1000) * 1000};
  redisSetTimeout(c, io);
  /* A child process must not inherit our connections (a subscriber kept alive by a
     child would make every flush wait for its acknowledgement). */
  fcntl(c->fd, F_SETFD, fcntl(c->fd, F_GETFD) | FD_CLOEXEC);
  int rc = 0;
  char db[16];
  snprintf(db, sizeof db, "%d", s->db);
  if (s->password[0]) {
    const char *argv_user[] = {"AUTH", s->user, s->password};
    const char *argv_pass[] = {"AUTH", s->password};
    rc = s->user[0] ? handshake(c, pool, err, "AUTH", 3, argv_user)
                    : handshake(c, pool, err, "AUTH", 2, argv_pass);
  }
  const char *argv_select[] = {"SELECT", db};
  const char *argv_ping[] = {"PING"};
  if (!rc) rc = handshake(c, pool, err, "SELECT", 2, argv_select);
  if (!rc) rc = handshake(c, pool, err, "PING", 1, argv_ping);
  if (rc) {
    redisFree(c);
    return rc;
  }
  *out = c;
  return 0;
}
