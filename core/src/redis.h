/*
 * redis.h: the one Redis access layer of the core. Every Redis command of the engine
 * goes through here: opening connections to a pool (timeouts, AUTH,
 * SELECT), commands and pipelines, replies, the subscriber's buffered reads, and one
 * classification of Redis failures into bee_error_t (temporary or not, timeouts). No
 * other file includes the client library's header.
 *
 * Connections and replies are the client library's own objects, seen through these
 * types: a reply's fields are read directly (its layout is checked against the
 * library's at build time in redis.c).
 */
#ifndef BEE_REDIS_H
#define BEE_REDIS_H

#include "internal.h"

typedef struct redisContext bee__rconn_t;

typedef struct bee__reply_s {
  int type; /* BEE__REPLY_* */
  long long integer;
  size_t len;
  char *str; /* STRING, STATUS and ERROR replies; NUL-terminated */
  size_t elements;
  struct bee__reply_s **element;
} bee__reply_t;

enum {
  BEE__REPLY_STRING = 1,
  BEE__REPLY_ARRAY = 2,
  BEE__REPLY_INTEGER = 3,
  BEE__REPLY_NIL = 4,
  BEE__REPLY_STATUS = 5,
  BEE__REPLY_ERROR = 6
};

/* Where a pool's server is now: the master a Sentinel pool last resolved (redis.c). */
typedef struct bee__redis_topo_s bee__redis_topo_t;

typedef struct bee__redis_pool_s {
  char name[BEE_NAME_MAX];
  bee_redis_settings_t settings;
  char address[BEE_DSN_FIELD_MAX * 2];
  bee__redis_topo_t *topo; /* an engine's pools only (bee__redis_pool_open); NULL in a registry */
} bee__redis_pool_t;

/* An engine's copy of a pool gets its own topology state; 0 or -1 (out of memory). */
int bee__redis_pool_open(bee__redis_pool_t *pool);
void bee__redis_pool_close(bee__redis_pool_t *pool);
/* 1 when c is connected to where the pool's server is now (always, for a single server). */
int bee__redis_current(const bee__redis_pool_t *pool, const bee__rconn_t *c);
/* The current master's "host:port" of a Sentinel pool ("" before any, or for a single server). */
void bee__redis_master(const bee__redis_pool_t *pool, char *buf, size_t size);

/*
 * Sentinel's announcements: one thread per engine follows +switch-master on a sentinel
 * of each Sentinel pool and records the new master at once, so that connections to the
 * old one are dropped before they are used again, even in a process that sees no error
 * (the old master may live on as a replica). NULL when no pool is behind Sentinel (or
 * the thread could not start: errors still make connections ask the sentinels).
 */
typedef struct bee__redis_watcher_s bee__redis_watcher_t;
bee__redis_watcher_t *bee__redis_watcher_start(const bee__redis_pool_t *pools, size_t count);
void bee__redis_watcher_stop(bee__redis_watcher_t *w);

/*
 * Opens a new connection to pool: connect (connect_timeout_ms), reply timeout
 * (timeout_ms), AUTH when a password is set, SELECT db, PING. Behind Sentinel, the
 * master's address is asked of the sentinels first (each tried in turn with a short
 * timeout; the one that answered is asked first next time, and the others it knows
 * are learned), and ROLE replaces PING: an address that is not a master is refused.
 * Returns 0 and *out (bee__redis_free), or BEE_EREDIS / BEE_ETIMEOUT / BEE_ENOMEM.
 */
int bee__redis_connect(const bee__redis_pool_t *pool, bee__rconn_t **out, bee_error_t *err);
void bee__redis_free(bee__rconn_t *c);
/* 1 when c can no longer be used (an I/O or protocol error happened on it). */
int bee__redis_failed(const bee__rconn_t *c);
/* Marks c failed (why: its error text), so that it is freed instead of used again. */
void bee__redis_retire(bee__rconn_t *c, const char *why);
/* The socket of c (for poll), or -1. */
int bee__redis_fd(const bee__rconn_t *c);

/* One command, one round trip: the reply (free with bee__reply_free), or NULL when the
   exchange failed (c is then failed; see bee__redis_error). Formats as hiredis's
   redisCommand: %s a C string, %b a pointer and a size_t length. */
bee__reply_t *bee__redis_command(bee__rconn_t *c, const char *fmt, ...);
bee__reply_t *bee__redis_command_argv(bee__rconn_t *c, int argc, const char **argv, const size_t *lens);

/* Pipelines: commands appended to c's output buffer (0, or -1 out of memory), then
   their replies read in order with bee__redis_get_reply (0 and *out, or -1 when the
   exchange failed). The first read sends everything appended. */
int bee__redis_append(bee__rconn_t *c, const char *fmt, ...);
int bee__redis_append_argv(bee__rconn_t *c, int argc, const char **argv, const size_t *lens);
/* A command already in Redis's protocol (rcmd.h). */
int bee__redis_append_formatted(bee__rconn_t *c, const char *cmd, size_t len);
int bee__redis_get_reply(bee__rconn_t *c, bee__reply_t **out);

/*
 * Reads count pipelined replies: 0, or the first failure (an error reply; when the last
 * reply is an EXEC's, an error of one of its commands, or nil: aborted) with err filled
 * as bee__redis_error does. Every reply is read, unless the exchange failed (then c is
 * failed: bee__redis_failed).
 */
int bee__redis_replies(bee__rconn_t *c, const bee__redis_pool_t *pool, size_t count, const char *doing,
                       bee_error_t *err);

/* Subscriber reads: take what the socket holds into c's buffer (0, or -1 when the
   connection failed), then the buffered replies one by one (0 with *out NULL when none
   is complete yet). */
int bee__redis_read_input(bee__rconn_t *c);
int bee__redis_buffered_reply(bee__rconn_t *c, bee__reply_t **out);

void bee__reply_free(bee__reply_t *r);

/*
 * Fills err from a failed exchange on c (r NULL) or an error reply r, naming what was
 * being done and the pool (never its password): a timeout is BEE_ETIMEOUT, a lost
 * connection and refusals that pass (OOM, LOADING, BUSY, READONLY, MASTERDOWN, ...) are
 * temporary BEE_EREDIS, other error replies permanent. Returns the code.
 */
int bee__redis_error(bee_error_t *err, const bee__redis_pool_t *pool, bee__rconn_t *c, const bee__reply_t *r,
                     const char *doing);

#endif
