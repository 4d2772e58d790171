/* redis.c: the Redis access layer (redis.h): connections, commands, replies, failures. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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
/* Topology                                                                 */

/* How long one sentinel may take to answer before the next is tried. */
#define BEE__SENTINEL_TIMEOUT_MS 500

struct bee__redis_topo_s {
  pthread_mutex_t lock;
  size_t count; /* sentinels, the one that answered last first; learned ones appended */
  bee_redis_node_t sentinels[BEE_REDIS_SENTINELS_MAX];
  char host[BEE_DSN_FIELD_MAX]; /* the master as last resolved; "" before */
  unsigned int port;
};

int bee__redis_pool_open(bee__redis_pool_t *pool) {
  pool->topo = NULL;
  if (!pool->settings.master_name[0]) return 0;
  bee__redis_topo_t *t = bee__calloc(1, sizeof *t);
  if (!t) return -1;
  pthread_mutex_init(&t->lock, NULL);
  t->count = pool->settings.sentinel_count;
  memcpy(t->sentinels, pool->settings.sentinels, t->count * sizeof *t->sentinels);
  pool->topo = t;
  return 0;
}

void bee__redis_pool_close(bee__redis_pool_t *pool) {
  if (!pool->topo) return;
  pthread_mutex_destroy(&pool->topo->lock);
  bee__free(pool->topo);
  pool->topo = NULL;
}

int bee__redis_current(const bee__redis_pool_t *pool, const bee__rconn_t *c) {
  bee__redis_topo_t *t = pool->topo;
  if (!t || !c) return 1;
  pthread_mutex_lock(&t->lock);
  int same = c->tcp.host && c->tcp.port == (int)t->port && !strcmp(c->tcp.host, t->host);
  pthread_mutex_unlock(&t->lock);
  return same;
}

void bee__redis_master(const bee__redis_pool_t *pool, char *buf, size_t size) {
  bee__redis_topo_t *t = pool->topo;
  if (!size) return;
  buf[0] = '\0';
  if (!t) return;
  pthread_mutex_lock(&t->lock);
  if (t->host[0]) snprintf(buf, size, strchr(t->host, ':') ? "[%s]:%u" : "%s:%u", t->host, t->port);
  pthread_mutex_unlock(&t->lock);
}

/* Records where the master is now; 1 when it moved. */
static int set_master(bee__redis_topo_t *t, const char *host, unsigned int port) {
  pthread_mutex_lock(&t->lock);
  int moved = t->port != port || strcmp(t->host, host) != 0;
  snprintf(t->host, sizeof t->host, "%s", host);
  t->port = port;
  pthread_mutex_unlock(&t->lock);
  return moved;
}

/* Puts sentinel `at` (host:port) first, and appends others not known yet. */
static void sentinel_answered(bee__redis_topo_t *t, const bee_redis_node_t *who, const bee_redis_node_t *learned,
                              size_t n) {
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->count; i++)
    if (t->sentinels[i].port == who->port && !strcmp(t->sentinels[i].host, who->host)) {
      bee_redis_node_t first = t->sentinels[i];
      memmove(&t->sentinels[1], &t->sentinels[0], i * sizeof first);
      t->sentinels[0] = first;
      break;
    }
  for (size_t k = 0; k < n; k++) {
    int known = 0;
    for (size_t i = 0; i < t->count && !known; i++)
      known = t->sentinels[i].port == learned[k].port && !strcmp(t->sentinels[i].host, learned[k].host);
    if (!known && t->count < BEE_REDIS_SENTINELS_MAX) t->sentinels[t->count++] = learned[k];
  }
  pthread_mutex_unlock(&t->lock);
}

static struct timeval ms_timeval(unsigned int ms) {
  return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* Opens a connection to host:port, or to the unix socket when socket is given (then host
   and port are not used): every reply waits at most io_ms. */
static redisContext *connect_to(const char *socket, const char *host, unsigned int port, unsigned int connect_ms,
                                unsigned int io_ms) {
  redisContext *c = socket ? redisConnectUnixWithTimeout(socket, ms_timeval(connect_ms))
                           : redisConnectWithTimeout(host, (int)port, ms_timeval(connect_ms));
  if (c && !c->err) {
    redisSetTimeout(c, ms_timeval(io_ms));
    /* A child process must not inherit our connections (a subscriber kept alive by a
       child would make every flush wait for its acknowledgement). */
    fcntl(c->fd, F_SETFD, fcntl(c->fd, F_GETFD) | FD_CLOEXEC);
  }
  return c;
}

static redisContext *connect_tcp(const char *host, unsigned int port, unsigned int connect_ms, unsigned int io_ms) {
  return connect_to(NULL, host, port, connect_ms, io_ms);
}

/* The sentinels to ask, in their current order (the settings' when the pool has no topology state). */
static size_t sentinel_list(const bee__redis_pool_t *pool, bee_redis_node_t list[BEE_REDIS_SENTINELS_MAX]) {
  bee__redis_topo_t *t = pool->topo;
  if (!t) {
    memcpy(list, pool->settings.sentinels, pool->settings.sentinel_count * sizeof *list);
    return pool->settings.sentinel_count;
  }
  pthread_mutex_lock(&t->lock);
  size_t n = t->count;
  memcpy(list, t->sentinels, n * sizeof *list);
  pthread_mutex_unlock(&t->lock);
  return n;
}

/* A field of a flat RESP2 map ("ip", "port" ... in SENTINEL sentinels). */
static const bee__reply_t *map_field(const bee__reply_t *m, const char *key) {
  for (size_t i = 0; m->type == BEE__REPLY_ARRAY && i + 1 < m->elements; i += 2)
    if (m->element[i]->type == BEE__REPLY_STRING && !strcmp(m->element[i]->str, key)) return m->element[i + 1];
  return NULL;
}

static int parse_port(const char *s, unsigned int *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v == 0 || v > 65535) return -1;
  *out = (unsigned int)v;
  return 0;
}

/* The sentinel's password, for its AUTH. */
static int sentinel_auth(redisContext *c, const bee_redis_settings_t *s) {
  if (!s->sentinel_password[0]) return 0;
  redisReply *r = redisCommand(c, "AUTH %s", s->sentinel_password);
  int ok = r && r->type != REDIS_REPLY_ERROR;
  if (r) freeReplyObject(r);
  return ok ? 0 : -1;
}

/*
 * Asks the sentinels, in their current order, where the master is (Redis's Sentinel
 * client guidelines). A sentinel that does not answer in BEE__SENTINEL_TIMEOUT_MS, or
 * does not know the master, is skipped.
 */
static int sentinel_resolve(const bee__redis_pool_t *pool, char *host, size_t host_size, unsigned int *port,
                            bee_error_t *err) {
  const bee_redis_settings_t *s = &pool->settings;
  bee__redis_topo_t *t = pool->topo;
  bee_redis_node_t list[BEE_REDIS_SENTINELS_MAX];
  size_t n = sentinel_list(pool, list);
  unsigned int cms = s->connect_timeout_ms ? s->connect_timeout_ms : BEE_REDIS_CONNECT_TIMEOUT_MS;
  if (cms > BEE__SENTINEL_TIMEOUT_MS) cms = BEE__SENTINEL_TIMEOUT_MS;
  size_t unknown = 0, refused = 0;
  char last[200] = "";
  for (size_t i = 0; i < n; i++) {
    redisContext *c = connect_tcp(list[i].host, list[i].port, cms, BEE__SENTINEL_TIMEOUT_MS);
    if (!c || c->err) {
      snprintf(last, sizeof last, "%.100s:%u: %.80s", list[i].host, list[i].port, c ? c->errstr : "out of memory");
      if (c) redisFree(c);
      continue;
    }
    if (sentinel_auth(c, s) != 0) {
      snprintf(last, sizeof last, "%.100s:%u: AUTH refused (sentinel_password)", list[i].host, list[i].port);
      refused++;
      redisFree(c);
      continue;
    }
    redisAppendCommand(c, "SENTINEL get-master-addr-by-name %s", s->master_name);
    redisAppendCommand(c, "SENTINEL sentinels %s", s->master_name);
    redisReply *addr = NULL, *others = NULL;
    if (redisGetReply(c, (void **)&addr) != REDIS_OK || redisGetReply(c, (void **)&others) != REDIS_OK) {
      snprintf(last, sizeof last, "%.100s:%u: %.80s", list[i].host, list[i].port, c->errstr[0] ? c->errstr : "no answer");
      if (addr) freeReplyObject(addr);
      redisFree(c);
      continue;
    }
    redisFree(c);
    int ok = addr->type == REDIS_REPLY_ARRAY && addr->elements == 2 && addr->element[0]->type == REDIS_REPLY_STRING &&
             addr->element[1]->type == REDIS_REPLY_STRING && strlen(addr->element[0]->str) < host_size &&
             parse_port(addr->element[1]->str, port) == 0;
    if (ok) snprintf(host, host_size, "%s", addr->element[0]->str);
    else if (addr->type == REDIS_REPLY_NIL) unknown++;
    else
      snprintf(last, sizeof last, "%.100s:%u: %.80s", list[i].host, list[i].port,
               addr->type == REDIS_REPLY_ERROR ? addr->str : "an unexpected answer");
    if (ok && t) {
      bee_redis_node_t learned[BEE_REDIS_SENTINELS_MAX];
      size_t nl = 0;
      for (size_t k = 0; others->type == REDIS_REPLY_ARRAY && k < others->elements && nl < BEE_REDIS_SENTINELS_MAX; k++) {
        const bee__reply_t *m = (const bee__reply_t *)others->element[k];
        const bee__reply_t *ip = map_field(m, "ip"), *pt = map_field(m, "port");
        if (ip && pt && ip->type == BEE__REPLY_STRING && pt->type == BEE__REPLY_STRING &&
            ip->len < sizeof learned[nl].host && parse_port(pt->str, &learned[nl].port) == 0) {
          snprintf(learned[nl].host, sizeof learned[nl].host, "%s", ip->str);
          nl++;
        }
      }
      sentinel_answered(t, &list[i], learned, nl);
    }
    freeReplyObject(addr);
    freeReplyObject(others);
    if (ok) return 0;
  }
  int rc;
  if (unknown && unknown + refused == n)
    rc = bee__error(err, BEE_EREDIS, 0, "no sentinel knows a master named '%s' (asked %zu)", s->master_name, n);
  else
    rc = bee__error(err, BEE_EREDIS, 1, "no sentinel told where master '%s' is (asked %zu; last: %s)",
                    s->master_name, n, last[0] ? last : "no answer");
  bee__error_pool(err, pool->name);
  bee__error_scrub(err, s->password);
  bee__error_scrub(err, s->sentinel_password);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */

static int connect_error(bee_error_t *err, redisContext *c, const bee__redis_pool_t *pool, const char *where) {
  int timeout = c && c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == ETIMEDOUT);
  int rc = bee__error(err, timeout ? BEE_ETIMEOUT : BEE_EREDIS, 1, "cannot connect to %s: %s", where,
                      c ? c->errstr : "out of memory");
  bee__error_pool(err, pool->name);
  bee__error_scrub(err, pool->settings.password);
  return rc;
}

/* Runs one command during the handshake; an error reply is a permanent failure. */
static int handshake(redisContext *c, const bee__redis_pool_t *pool, const char *where, bee_error_t *err,
                     const char *what, int argc, const char **argv) {
  redisReply *r = redisCommandArgv(c, argc, argv, NULL);
  if (!r) return connect_error(err, c, pool, where);
  int rc = 0;
  if (r->type == REDIS_REPLY_ERROR) {
    rc = bee__error(err, BEE_EREDIS, bee__redis_reply_temporary(r->str), "%s failed on %s: %.200s", what, where,
                    r->str);
    bee__error_pool(err, pool->name);
    bee__error_scrub(err, pool->settings.password);
  } else if (!strcmp(what, "ROLE")) { /* behind Sentinel: only a master will do */
    const char *role = r->type == REDIS_REPLY_ARRAY && r->elements && r->element[0]->type == REDIS_REPLY_STRING
                           ? r->element[0]->str
                           : "unknown";
    if (strcmp(role, "master") != 0) {
      rc = bee__error(err, BEE_EREDIS, 1, "the sentinels gave %s as master '%s', but its role is '%.32s' (a failover "
                      "may be under way)", where, pool->settings.master_name, role);
      bee__error_pool(err, pool->name);
    }
  }
  freeReplyObject(r);
  return rc;
}

int bee__redis_connect(const bee__redis_pool_t *pool, bee__rconn_t **out, bee_error_t *err) {
  const bee_redis_settings_t *s = &pool->settings;
  unsigned int cms = s->connect_timeout_ms ? s->connect_timeout_ms : BEE_REDIS_CONNECT_TIMEOUT_MS;
  unsigned int ims = s->timeout_ms ? s->timeout_ms : BEE_REDIS_TIMEOUT_MS;
  int sentinel = s->master_name[0] != '\0';
  char host[BEE_DSN_FIELD_MAX];
  unsigned int port = s->port;
  char where[BEE_DSN_FIELD_MAX * 2 + 64];
  snprintf(where, sizeof where, "%s", pool->address);
  snprintf(host, sizeof host, "%s", s->host);
  if (sentinel) {
    int rc = sentinel_resolve(pool, host, sizeof host, &port, err);
    if (rc) return rc;
    snprintf(where, sizeof where, strchr(host, ':') ? "master '%s' at [%s]:%u" : "master '%s' at %s:%u",
             s->master_name, host, port);
  }
  redisContext *c = connect_to(s->socket[0] ? s->socket : NULL, host, port, cms, ims);
  if (!c || c->err) {
    int rc = connect_error(err, c, pool, where);
    if (c) redisFree(c);
    return rc;
  }
  int rc = 0;
  char db[16];
  snprintf(db, sizeof db, "%d", s->db);
  if (s->password[0]) {
    const char *argv_user[] = {"AUTH", s->user, s->password};
    const char *argv_pass[] = {"AUTH", s->password};
    rc = s->user[0] ? handshake(c, pool, where, err, "AUTH", 3, argv_user)
                    : handshake(c, pool, where, err, "AUTH", 2, argv_pass);
  }
  const char *argv_select[] = {"SELECT", db};
  const char *argv_ping[] = {sentinel ? "ROLE" : "PING"};
  if (!rc) rc = handshake(c, pool, where, err, "SELECT", 2, argv_select);
  if (!rc) rc = handshake(c, pool, where, err, argv_ping[0], 1, argv_ping);
  if (rc) {
    redisFree(c);
    return rc;
  }
  if (sentinel && pool->topo) set_master(pool->topo, host, port);
  *out = c;
  return 0;
}

void bee__redis_free(bee__rconn_t *c) {
  if (c) redisFree(c);
}

int bee__redis_failed(const bee__rconn_t *c) { return !c || c->err != 0; }

int bee__redis_fd(const bee__rconn_t *c) { return c ? c->fd : -1; }

void bee__redis_retire(bee__rconn_t *c, const char *why) {
  if (!c || c->err) return;
  c->err = REDIS_ERR_OTHER;
  snprintf(c->errstr, sizeof c->errstr, "%s", why);
}

/* ------------------------------------------------------------------------ */
/* Following Sentinel's announcements                                       */

/* A connection to one of the pool's sentinels, subscribed to +switch-master; NULL when none answers. */
static redisContext *sentinel_watch(const bee__redis_pool_t *pool) {
  const bee_redis_settings_t *s = &pool->settings;
  bee_redis_node_t list[BEE_REDIS_SENTINELS_MAX];
  size_t n = sentinel_list(pool, list);
  for (size_t i = 0; i < n; i++) {
    redisContext *c = connect_tcp(list[i].host, list[i].port, BEE__SENTINEL_TIMEOUT_MS, BEE__SENTINEL_TIMEOUT_MS);
    if (!c || c->err || sentinel_auth(c, s) != 0) {
      if (c) redisFree(c);
      continue;
    }
    redisReply *r = redisCommand(c, "SUBSCRIBE +switch-master");
    int ok = r && r->type == REDIS_REPLY_ARRAY;
    if (r) freeReplyObject(r);
    if (ok) return c;
    redisFree(c);
  }
  return NULL;
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>": the pool's master moved. */
static void switch_master(const bee__redis_pool_t *pool, const redisReply *msg) {
  if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 || msg->element[2]->type != REDIS_REPLY_STRING) return;
  char name[BEE_NAME_MAX], old_host[BEE_DSN_FIELD_MAX], new_host[BEE_DSN_FIELD_MAX];
  unsigned int old_port, new_port;
  if (sscanf(msg->element[2]->str, "%71s %255s %u %255s %u", name, old_host, &old_port, new_host, &new_port) != 5)
    return;
  if (strcmp(name, pool->settings.master_name) != 0 || !new_port || new_port > 65535) return;
  set_master(pool->topo, new_host, new_port);
}

struct bee__redis_watcher_s {
  const bee__redis_pool_t *pools;
  size_t count;
  redisContext **conns; /* per pool; NULL: not behind Sentinel, or not connected now */
  int wake[2];
  atomic_int stop;
  pthread_t thread;
};

static void *watcher_main(void *arg) {
  bee__redis_watcher_t *w = arg;
  struct pollfd *p = bee__calloc(w->count + 1, sizeof *p);
  int64_t retry_at = 0;
  while (p && !atomic_load(&w->stop)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now >= retry_at) { /* (re)connect the watches that are down, at most once a second */
      for (size_t i = 0; i < w->count && !atomic_load(&w->stop); i++)
        if (w->pools[i].topo && !w->conns[i]) w->conns[i] = sentinel_watch(&w->pools[i]);
      retry_at = now + 1000;
    }
    for (size_t i = 0; i < w->count; i++) p[i] = (struct pollfd){w->conns[i] ? w->conns[i]->fd : -1, POLLIN, 0};
    p[w->count] = (struct pollfd){w->wake[0], POLLIN, 0};
    if (poll(p, (nfds_t)w->count + 1, 1000) < 0 && errno != EINTR) break;
    if (p[w->count].revents) break;
    for (size_t i = 0; i < w->count; i++) {
      if (!w->conns[i] || !p[i].revents) continue;
      void *msg = NULL;
      int ok = redisBufferRead(w->conns[i]) == REDIS_OK;
      while (ok && redisGetReplyFromReader(w->conns[i], &msg) == REDIS_OK && msg) {
        switch_master(&w->pools[i], msg);
        freeReplyObject(msg);
        msg = NULL;
      }
      if (!ok) {
        redisFree(w->conns[i]);
        w->conns[i] = NULL;
      }
    }
  }
  bee__free(p);
  return NULL;
}

bee__redis_watcher_t *bee__redis_watcher_start(const bee__redis_pool_t *pools, size_t count) {
  size_t any = 0;
  for (size_t i = 0; i < count; i++) any += pools[i].topo != NULL;
  if (!any) return NULL;
  bee__redis_watcher_t *w = bee__calloc(1, sizeof *w);
  if (!w) return NULL;
  w->pools = pools;
  w->count = count;
  w->conns = bee__calloc(count, sizeof *w->conns);
  if (!w->conns || pipe(w->wake) != 0) {
    bee__free(w->conns);
    bee__free(w);
    return NULL;
  }
  fcntl(w->wake[0], F_SETFD, FD_CLOEXEC);
  fcntl(w->wake[1], F_SETFD, FD_CLOEXEC);
  if (pthread_create(&w->thread, NULL, watcher_main, w) != 0) {
    close(w->wake[0]);
    close(w->wake[1]);
    bee__free(w->conns);
    bee__free(w);
    return NULL;
  }
  return w;
}

void bee__redis_watcher_stop(bee__redis_watcher_t *w) {
  if (!w) return;
  atomic_store(&w->stop, 1);
  ssize_t n = write(w->wake[1], "x", 1);
  (void)n;
  pthread_join(w->thread, NULL);
  for (size_t i = 0; i < w->count; i++)
    if (w->conns[i]) redisFree(w->conns[i]);
  close(w->wake[0]);
  close(w->wake[1]);
  bee__free(w->conns);
  bee__free(w);
}

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
  else if (r && r->type == BEE__REPLY_ERROR) {
    rc = bee__error(err, BEE_EREDIS, bee__redis_reply_temporary(r->str), "%s on %s: %.300s", doing, pool->address,
                    r->str);
    /* The server is no longer (or not yet) the master: this connection is not used
       again, and the next one asks the sentinels where the master is now. */
    if (!strncmp(r->str, "READONLY ", 9) || !strncmp(r->str, "UNBLOCKED ", 10) ||
        !strncmp(r->str, "MASTERDOWN ", 11) || !strncmp(r->str, "LOADING ", 8))
      bee__redis_retire(c, "the server is not the master");
  }
  else if (c && c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == ETIMEDOUT))
    rc = bee__error(err, BEE_ETIMEOUT, 1, "%s on %s: timed out", doing, pool->address);
  else
    rc = bee__error(err, BEE_EREDIS, 1, "%s on %s: %s", doing, pool->address,
                    c && c->err ? c->errstr : "connection lost");
  bee__error_pool(err, pool->name);
  bee__error_scrub(err, pool->settings.password);
  return rc;
}
