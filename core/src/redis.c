/* redis.c: the Redis access layer (redis.h): connections, commands, replies, failures. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis.h>

#include "redis.h"

/* bee__reply_t is hiredis's reply seen under our name: the same fields at the same places. */
_Static_assert(sizeof(bee__reply_t) == sizeof(redisReply), "bee__reply_t must mirror redisReply");
_Static_assert(offsetof(bee__reply_t, type) == offsetof(redisReply, type), "type");
_Static_assert(offsetof(bee__reply_t, integer) == offsetof(redisReply, integer), "integer");
_Static_assert(offsetof(bee__reply_t, len) == offsetof(redisReply, len), "len");
_Static_assert(offsetof(bee__reply_t, str) == offsetof(redisReply, str), "str");
_Static_assert(offsetof(bee__reply_t, elements) == offsetof(redisReply, elements), "elements");
_Static_assert(offsetof(bee__reply_t, element) == offsetof(redisReply, element), "element");
_Static_assert(BEE__REPLY_STRING == REDIS_REPLY_STRING && BEE__REPLY_ARRAY == REDIS_REPLY_ARRAY &&
                   BEE__REPLY_INTEGER == REDIS_REPLY_INTEGER && BEE__REPLY_NIL == REDIS_REPLY_NIL &&
                   BEE__REPLY_STATUS == REDIS_REPLY_STATUS && BEE__REPLY_ERROR == REDIS_REPLY_ERROR,
               "reply types");

/* ------------------------------------------------------------------------ */
/* Connections                                                              */

static int connect_error(bee_error_t *err, redisContext *c, const bee__redis_pool_t *pool) {
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
  if (!r) return connect_error(err, c, pool);
  int rc = 0;
  if (r->type == REDIS_REPLY_ERROR) {
    rc = bee__error(err, BEE_EREDIS, 0, "%s failed on %s: %.200s", what, pool->address, r->str);
    bee__error_pool(err, pool->name);
    bee__error_scrub(err, pool->settings.password);
  }
  freeReplyObject(r);
  return rc;
}

int bee__redis_connect(const bee__redis_pool_t *pool, bee__rconn_t **out, bee_error_t *err) {
  const bee_redis_settings_t *s = &pool->settings;
  unsigned int cms = s->connect_timeout_ms ? s->connect_timeout_ms : BEE_REDIS_CONNECT_TIMEOUT_MS;
  unsigned int ims = s->timeout_ms ? s->timeout_ms : BEE_REDIS_TIMEOUT_MS;
  struct timeval tv = {(time_t)(cms / 1000), (suseconds_t)(cms % 1000) * 1000};
  redisContext *c = s->socket[0] ? redisConnectUnixWithTimeout(s->socket, tv)
                                 : redisConnectWithTimeout(s->host, (int)s->port, tv);
  if (!c || c->err) {
    int rc = connect_error(err, c, pool);
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

void bee__redis_free(bee__rconn_t *c) {
  if (c) redisFree(c);
}

int bee__redis_failed(const bee__rconn_t *c) { return !c || c->err != 0; }

int bee__redis_fd(const bee__rconn_t *c) { return c ? c->fd : -1; }

/* ------------------------------------------------------------------------ */
/* Commands and replies                                                     */

bee__reply_t *bee__redis_command(bee__rconn_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  void *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  return r;
}

bee__reply_t *bee__redis_command_argv(bee__rconn_t *c, int argc, const char **argv, const size_t *lens) {
  return redisCommandArgv(c, argc, argv, lens);
}

int bee__redis_append(bee__rconn_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = redisvAppendCommand(c, fmt, ap);
  va_end(ap);
  return rc == REDIS_OK ? 0 : -1;
}

int bee__redis_append_argv(bee__rconn_t *c, int argc, const char **argv, const size_t *lens) {
  return redisAppendCommandArgv(c, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

int bee__redis_append_formatted(bee__rconn_t *c, const char *cmd, size_t len) {
  return redisAppendFormattedCommand(c, cmd, len) == REDIS_OK ? 0 : -1;
}

int bee__redis_get_reply(bee__rconn_t *c, bee__reply_t **out) {
  void *r = NULL;
  int rc = redisGetReply(c, &r);
  *out = r;
  return rc == REDIS_OK ? 0 : -1;
}

int bee__redis_replies(bee__rconn_t *c, const bee__redis_pool_t *pool, size_t count, const char *doing,
                       bee_error_t *err) {
  int rc = 0;
  for (size_t i = 0; i < count; i++) {
    bee__reply_t *r = NULL;
    if (bee__redis_get_reply(c, &r) != 0) return bee__redis_error(err, pool, c, NULL, doing);
    if (!rc && r->type == BEE__REPLY_ERROR) rc = bee__redis_error(err, pool, c, r, doing);
    if (!rc && i == count - 1 && r->type == BEE__REPLY_ARRAY) /* an EXEC: its commands' errors */
      for (size_t k = 0; !rc && k < r->elements; k++)
        if (r->element[k]->type == BEE__REPLY_ERROR) rc = bee__redis_error(err, pool, c, r->element[k], doing);
    if (!rc && i == count - 1 && r->type == BEE__REPLY_NIL)
      rc = bee__error(err, BEE_EREDIS, 1, "%s: the transaction was aborted", doing);
    bee__reply_free(r);
  }
  return rc;
}

int bee__redis_read_input(bee__rconn_t *c) { return redisBufferRead(c) == REDIS_OK ? 0 : -1; }

int bee__redis_buffered_reply(bee__rconn_t *c, bee__reply_t **out) {
  void *r = NULL;
  int rc = redisGetReplyFromReader(c, &r);
  *out = r;
  return rc == REDIS_OK ? 0 : -1;
}

void bee__reply_free(bee__reply_t *r) {
  if (r) freeReplyObject(r);
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */

int bee__redis_error(bee_error_t *err, const bee__redis_pool_t *pool, bee__rconn_t *c, const bee__reply_t *r,
                     const char *doing) {
  int rc;
  if (r && r->type == BEE__REPLY_ERROR && !strncmp(r->str, "OOM ", 4))
    rc = bee__error(err, BEE_EREDIS, 1, "%s on %s: Redis is out of memory (maxmemory reached; it refuses writes "
                    "until memory is freed): %.300s", doing, pool->address, r->str);
  else if (r && r->type == BEE__REPLY_ERROR)
    rc = bee__error(err, BEE_EREDIS, bee__redis_reply_temporary(r->str), "%s on %s: %.300s", doing, pool->address,
                    r->str);
  else if (c && c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == ETIMEDOUT))
    rc = bee__error(err, BEE_ETIMEOUT, 1, "%s on %s: timed out", doing, pool->address);
  else
    rc = bee__error(err, BEE_EREDIS, 1, "%s on %s: %s", doing, pool->address,
                    c && c->err ? c->errstr : "connection lost");
  bee__error_pool(err, pool->name);
  bee__error_scrub(err, pool->settings.password);
  return rc;
}
