/*
 * orm.c: per-entity runtime state, the local cache invalidation subscriber, contexts
 * and the connections they borrow.
 *
 * Local caches (G8): every process that has local caches subscribes, on one Redis pool,
 * to the invalidation channel of each table it caches locally (BEE__CHANNEL and the
 * table's key prefix: whatever definition a writer has, and a write of a table nobody
 * caches locally wakes nobody); a flush publishes the ids it changed there and waits
 * until every subscriber acknowledged having dropped them (bounded by BEE__ACK_WAIT_MS). While the
 * subscriber is not connected (start-up, Redis restart) local caches are neither read
 * nor filled, and when it (re)connects they are cleared, so a lost message can never
 * leave a stale entry behind.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orm.h"

/* ------------------------------------------------------------------------ */
/* Subscriber                                                               */

/* How long a flush waits for other processes to apply its invalidations. */
#define BEE__ACK_WAIT_MS 20

/* A cache read may trust an empty-socket check this recent (see bee__local_cache_ok). */
#define BEE__SOCKET_CHECK_NS 20000

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;
static char nonce_text[17];

/* 16 random hex digits. */
static void random_hex(char out[17]) {
  unsigned char r[8] = {0};
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(r, 1, sizeof r, f) != sizeof r) {
    uint64_t x = (uint64_t)(uintptr_t)out ^ ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uint64_t)now_ns();
    memcpy(r, &x, sizeof r);
  }
  if (f) fclose(f);
  for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static void make_nonce(void) { random_hex(nonce_text); }

/* This process's nonce: ack keys of different processes never collide. */
static const char *process_nonce(void) {
  pthread_once(&nonce_once, make_nonce);
  return nonce_text;
}

/*
 * Local caches may be read only when no invalidation can be pending: the subscriber
 * is connected, nothing is waiting in its socket, and it is not between reading and
 * applying messages. The socket is checked before `busy`: the subscriber sets busy
 * before it reads, so a message already taken out of the socket shows as busy until
 * it is applied. When a flush elsewhere has returned, its message is already in this
 * socket (the publisher's reply and the subscribers' messages leave Redis in the same
 * event-loop pass, though the kernel may hand it over a little later). Looking at the
 * socket is a system call (about 1 us here), so an empty socket is trusted for
 * BEE__SOCKET_CHECK_NS. Measured on loopback, the message is applied 20-250 us after
 * the publisher's flush returned; a read in that window may still serve the old row.
 */
int bee__local_cache_ok(const bee_engine_t *engine) {
  bee__subscriber_t *s = engine->subscriber;
  if (!s) return 1;
  if (!atomic_load(&s->healthy)) return 0;
  int64_t now = now_ns();
  if (now >= atomic_load(&s->clear_until_ns)) {
    struct pollfd p = {atomic_load(&s->fd), POLLIN, 0};
    if (p.fd < 0 || poll(&p, 1, 0) != 0) return 0;
    atomic_store(&s->clear_until_ns, now + BEE__SOCKET_CHECK_NS);
  }
  return !atomic_load(&s->busy);
}

static void clear_local_caches(bee_engine_t *engine) {
  for (size_t i = 0; i < engine->entity_count; i++)
    if (engine->rt[i].lru) bee__lru_clear(engine->rt[i].lru);
}

/*
 * "<nonce>\n<ack key>\n<table prefix>\n<id> <id> ..." (or "*" for everything). Drops the
 * ids from the local cache of the entity on that table, whatever definition the writer
 * had (unless the message is this engine's own: its flush already updated the cache),
 * and copies the ack key into ack (size BEE__ACK_KEY) for the ack.
 */
static void handle_message(bee_engine_t *engine, const char *msg, size_t len, char *ack) {
  const char *end = msg + len;
  const char *nl = memchr(msg, '\n', len);
  if (!nl) return;
  int own = (size_t)(nl - msg) == strlen(engine->subscriber->nonce) &&
            !memcmp(msg, engine->subscriber->nonce, (size_t)(nl - msg));
  if (own) return; /* its flush updated this cache already, and does not wait for this ack */
  msg = nl + 1;
  if (!(nl = memchr(msg, '\n', (size_t)(end - msg)))) return;
  if ((size_t)(nl - msg) < BEE__ACK_KEY) snprintf(ack, BEE__ACK_KEY, "%.*s", (int)(nl - msg), msg);
  msg = nl + 1;
  if (!(nl = memchr(msg, '\n', (size_t)(end - msg)))) return;
  size_t name_len = (size_t)(nl - msg);
  for (size_t i = 0; i < engine->entity_count; i++) {
    const char *name = engine->rt[i].prefix;
    if (!engine->rt[i].lru || strlen(name) != name_len || memcmp(name, msg, name_len)) continue;
    const char *p = nl + 1;
    while (p < end) {
      const char *sp = memchr(p, ' ', (size_t)(end - p));
      size_t n = sp ? (size_t)(sp - p) : (size_t)(end - p);
      uint64_t id;
      if (n == 1 && *p == '*') bee__lru_clear(engine->rt[i].lru);
      else if (bee__id_parse(p, n, &id) == 0) bee__lru_remove(engine->rt[i].lru, id);
      p += n + 1;
    }
  }
}

/* Waits up to ms for the wake pipe; returns 1 when asked to stop. */
static int sub_sleep(bee__subscriber_t *s, int ms) {
  struct pollfd p = {s->wake[0], POLLIN, 0};
  poll(&p, 1, ms);
  return atomic_load(&s->stop);
}

void bee__invalidation_channel(const char *prefix, size_t len, bee__buf_t *out) {
  out->len = 0;
  bee__buf_puts(out, BEE__CHANNEL);
  bee__buf_append(out, prefix, len);
}

/* Subscribes c to the channel of every table with a local cache; 1 when confirmed. */
static int subscribe(bee_engine_t *engine, bee__rconn_t *c) {
  size_t n = 0;
  const char **argv = bee__calloc(engine->entity_count + 1, sizeof *argv);
  size_t *lens = bee__calloc(engine->entity_count + 1, sizeof *lens);
  bee__buf_t *names = bee__calloc(engine->entity_count + 1, sizeof *names);
  int ok = argv && lens && names;
  if (ok) {
    argv[n] = "SUBSCRIBE";
    lens[n++] = 9;
    for (size_t i = 0; i < engine->entity_count; i++) {
      if (!engine->rt[i].lru) continue;
      bee__invalidation_channel(engine->rt[i].prefix, strlen(engine->rt[i].prefix), &names[n]);
      ok &= !names[n].failed;
      argv[n] = names[n].data;
      lens[n] = names[n].len;
      n++;
    }
  }
  if (ok) ok = bee__redis_append_argv(c, (int)n, argv, lens) == 0;
  for (size_t i = 1; ok && i < n; i++) { /* one confirmation per channel */
    bee__reply_t *reply = NULL;
    ok = bee__redis_get_reply(c, &reply) == 0 && reply->type == BEE__REPLY_ARRAY;
    if (reply) bee__reply_free(reply);
  }
  for (size_t i = 0; names && i < n; i++) bee__buf_free(&names[i]);
  bee__free(argv);
  bee__free(lens);
  bee__free(names);
  return ok;
}

static void *subscriber_main(void *arg) {
  bee__subscriber_t *s = arg;
  bee_engine_t *engine = s->engine;
  const bee__redis_pool_t *pool = &engine->redis[engine->inval_redis];
  int backoff = 50;
  while (!atomic_load(&s->stop)) {
    bee__rconn_t *c = NULL, *ack = NULL;
    bee_error_t err;
    /* Two connections: one subscribed, one to acknowledge applied messages on. */
    if (bee__redis_connect(pool, &c, &err) != 0 || bee__redis_connect(pool, &ack, &err) != 0) {
      if (c) bee__redis_free(c);
      if (sub_sleep(s, backoff)) break;
      backoff = backoff < 2000 ? backoff * 2 : 2000;
      continue;
    }
    int ok = subscribe(engine, c);
    if (ok) {
      /* Anything cached before this point may have missed a message. */
      clear_local_caches(engine);
      atomic_store(&s->fd, bee__redis_fd(c));
      atomic_store(&s->healthy, 1);
      backoff = 50;
    }
    /* Behind Sentinel, a look once a second at where the master is now (the engine's
       watcher follows +switch-master; other connections may learn it first). A
       subscriber left on a former master would miss every invalidation. */
    int sentinel = pool->settings.master_name[0] != '\0';
    while (ok && !atomic_load(&s->stop)) {
      struct pollfd p[2] = {{bee__redis_fd(c), POLLIN, 0}, {s->wake[0], POLLIN, 0}};
      if (poll(p, 2, sentinel ? 1000 : -1) < 0 && errno != EINTR) break;
      if (p[1].revents) break;
      if (sentinel && !bee__redis_current(pool, c)) break; /* the master moved: resubscribe there */
      if (!p[0].revents) continue;
      atomic_store(&s->busy, 1);
      atomic_store(&s->clear_until_ns, 0); /* readers look at the socket again */
      if (bee__redis_read_input(c) != 0) {
        atomic_store(&s->busy, 0);
        break;
      }
      bee__reply_t *reply;
      size_t acks = 0;
      while (bee__redis_buffered_reply(c, &reply) == 0 && reply) {
        bee__reply_t *m = reply;
        char key[BEE__ACK_KEY] = "";
        if (m->type == BEE__REPLY_ARRAY && m->elements == 3 && m->element[2]->type == BEE__REPLY_STRING)
          handle_message(engine, m->element[2]->str, m->element[2]->len, key);
        bee__reply_free(m);
        if (key[0]) {
          bee__redis_append(ack, "RPUSH %s 1", key);
          bee__redis_append(ack, "PEXPIRE %s 60000", key);
          acks += 2;
        }
      }
      atomic_store(&s->busy, 0);
      /* Acknowledged only now: the cache no longer holds what the messages named. */
      for (size_t i = 0; i < acks; i++) {
        bee__reply_t *r2 = NULL;
        if (bee__redis_get_reply(ack, &r2) != 0) break;
        bee__reply_free(r2);
      }
      if (bee__redis_failed(c) || bee__redis_failed(ack)) break;
    }
    atomic_store(&s->healthy, 0);
    atomic_store(&s->fd, -1);
    clear_local_caches(engine);
    bee__redis_free(c);
    bee__redis_free(ack);
    if (!atomic_load(&s->stop) && sub_sleep(s, backoff)) break;
  }
  return NULL;
}

static int subscriber_start(bee_engine_t *engine, bee_error_t *err) {
  bee__subscriber_t *s = bee__calloc(1, sizeof *s);
  if (!s) return bee__error(err, BEE_ENOMEM, 0, "out of memory starting the cache subscriber");
  s->engine = engine;
  atomic_store(&s->fd, -1);
  random_hex(s->nonce);
  if (pipe(s->wake) != 0) {
    bee__free(s);
    return bee__error(err, BEE_ENOMEM, 0, "cannot create a pipe for the cache subscriber: %s", strerror(errno));
  }
  if (pthread_create(&s->thread, NULL, subscriber_main, s) != 0) {
    close(s->wake[0]);
    close(s->wake[1]);
    bee__free(s);
    return bee__error(err, BEE_ENOMEM, 0, "cannot start the cache subscriber thread");
  }
  engine->subscriber = s;
  /* Wait briefly for the subscription so the first reads can use the local cache. */
  for (int i = 0; i < 200 && !atomic_load(&s->healthy); i++) usleep(1000);
  return 0;
}

static void subscriber_stop(bee__subscriber_t *s) {
  if (!s) return;
  atomic_store(&s->stop, 1);
  ssize_t w = write(s->wake[1], "x", 1);
  (void)w;
  pthread_join(s->thread, NULL);
  close(s->wake[0]);
  close(s->wake[1]);
  bee__free(s);
}

/* ------------------------------------------------------------------------ */
/* Engine runtime                                                           */

int bee__engine_orm_init(bee_engine_t *engine, bee_error_t *err) {
  /* The queues' (and invalidations') Redis pool: also for an engine without entities,
     such as a consumer that needs no application code. */
  int default_redis = bee__engine_redis_index(engine, "default");
  if (default_redis < 0 && engine->redis_count) default_redis = 0;
  engine->inval_redis = default_redis;
  if (!engine->entity_count) return 0;
  engine->rt = bee__calloc(engine->entity_count, sizeof *engine->rt);
  if (!engine->rt) return bee__error(err, BEE_ENOMEM, 0, "out of memory creating the engine");
  int any_local = 0;
  for (size_t i = 0; i < engine->entity_count; i++) {
    bee__entity_t *e = &engine->entities[i];
    bee__entity_rt_t *rt = &engine->rt[i];
    const bee__mysql_pool_t *pool = bee__engine_mysql(engine, e->mysql_pool);
    rt->mysql = (size_t)(pool - engine->mysql);
    rt->hash = bee__entity_hash(e);
    engine->entities[i].layout_hash = rt->hash; /* rows are encoded with it on every cache write */
    snprintf(rt->prefix, sizeof rt->prefix, "bee:{%s.%s}:", pool->settings.database, e->table);
    pthread_mutex_init(&rt->collation_lock, NULL);
    rt->redis = e->redis_pool[0] ? bee__engine_redis_index(engine, e->redis_pool) : -1;
    rt->id_redis = rt->redis >= 0 ? rt->redis : default_redis;
    rt->id_batch = 100;
    pthread_mutex_init(&rt->id_lock, NULL);
    if (e->local_cache > 0) {
      rt->lru = bee__lru_new((size_t)e->local_cache);
      if (!rt->lru) return bee__error(err, BEE_ENOMEM, 0, "out of memory creating the local cache of '%s'", e->name);
      any_local = 1;
    }
  }
  if (any_local && engine->inval_redis >= 0) return subscriber_start(engine, err);
  return 0;
}

void bee__engine_orm_free(bee_engine_t *engine) {
  subscriber_stop(engine->subscriber);
  engine->subscriber = NULL;
  if (!engine->rt) return;
  for (size_t i = 0; i < engine->entity_count; i++) {
    bee__lru_free(engine->rt[i].lru);
    pthread_mutex_destroy(&engine->rt[i].id_lock);
    pthread_mutex_destroy(&engine->rt[i].collation_lock);
    bee__free(engine->rt[i].collation);
  }
  bee__free(engine->rt);
  engine->rt = NULL;
}

void bee_entity_cache_stats(const bee_engine_t *engine, const bee_entity_t *entity, bee_cache_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!engine || !entity || !engine->rt) return;
  size_t i = (size_t)(entity - engine->entities);
  if (i >= engine->entity_count || !engine->rt[i].lru) return;
  bee__lru_stats_t s;
  bee__lru_stats(engine->rt[i].lru, &s);
  out->hits = s.hits;
  out->misses = s.misses;
  out->evictions = s.evictions;
  out->inserts = s.inserts;
  out->stale_skips = s.stale_skips;
  out->entries = s.entries;
  out->capacity = s.capacity;
  out->bytes = s.bytes;
}

/*
 * Waits until `receivers` subscribers acknowledged message `ack` (they have dropped its
 * ids from their local caches), at most BEE__ACK_WAIT_MS in all: then every process's
 * next read sees the flush (G8). A subscriber that is stopped or gone only costs the
 * wait; it clears its caches when it reconnects.
 */
static int wait_acks(bee_context_t *ctx, bee__rconn_t *c, const char *ack, long long receivers, bee_error_t *err) {
  int64_t deadline = now_ns() + (int64_t)BEE__ACK_WAIT_MS * 1000000;
  for (long long got = 0; got < receivers;) {
    int64_t left = deadline - now_ns();
    if (left <= 0) break;
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%.3f", (double)left / 1e9 < 0.001 ? 0.001 : (double)left / 1e9);
    bee__reply_t *r = bee__redis_command(c, "BLPOP %s %s", ack, timeout);
    if (!r) {
      int rc = bee__redis_error(err, &ctx->engine->redis[ctx->engine->inval_redis], c, NULL,
                                "waiting for invalidation acknowledgements failed");
      bee__ctx_redis_broken(ctx, (size_t)ctx->engine->inval_redis);
      return rc;
    }
    int popped = r->type == BEE__REPLY_ARRAY;
    bee__reply_free(r);
    if (!popped) break; /* timed out */
    got++;
  }
  return 0;
}

int bee__invalidation_message(const bee_engine_t *engine, size_t entity, const uint64_t *ids, size_t n,
                               char ack[BEE__ACK_KEY], bee__buf_t *msg) {
  static atomic_ulong seq;
  snprintf(ack, BEE__ACK_KEY, "beeorm:ack:%s:%lu", process_nonce(), (unsigned long)atomic_fetch_add(&seq, 1));
  msg->len = 0;
  bee__buf_printf(msg, "%s\n%s\n%s\n", engine->subscriber ? engine->subscriber->nonce : "-", ack,
                  engine->rt[entity].prefix);
  if (!ids) bee__buf_puts(msg, "*");
  for (size_t k = 0; ids && k < n; k++) {
    char num[BEE__ID_BUF];
    size_t l = bee__id_format(ids[k], num);
    if (k) bee__buf_puts(msg, " ");
    bee__buf_append(msg, num, l);
  }
  return msg->failed ? BEE_ENOMEM : 0;
}

int bee__invalidation_wait(bee_context_t *ctx, size_t entity, const char *ack, long long receivers, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  /* this engine's own subscriber (when it caches the table) received it too, and does not acknowledge its own */
  if (engine->subscriber && engine->rt[entity].lru && atomic_load(&engine->subscriber->healthy) && receivers > 0)
    receivers--;
  if (receivers <= 0) return 0;
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, (size_t)engine->inval_redis, &c, err);
  return rc ? rc : wait_acks(ctx, c, ack, receivers, err);
}

int bee__publish_invalidation(bee_context_t *ctx, size_t entity, const uint64_t *ids, size_t n, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  /* Published whether or not this engine caches the entity locally: another process may,
     under another definition of the table. */
  if ((ids && !n) || engine->inval_redis < 0) return 0;
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, (size_t)engine->inval_redis, &c, err);
  if (rc) return rc;
  bee__buf_t msg = {0};
  char ack[BEE__ACK_KEY];
  if (bee__invalidation_message(engine, entity, ids, n, ack, &msg)) {
    bee__buf_free(&msg);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory publishing invalidations");
  }
  bee__buf_t channel = {0};
  bee__invalidation_channel(engine->rt[entity].prefix, strlen(engine->rt[entity].prefix), &channel);
  bee__reply_t *r = channel.failed ? NULL : bee__redis_command(c, "PUBLISH %b %b", channel.data, channel.len, msg.data, msg.len);
  bee__buf_free(&msg);
  bee__buf_free(&channel);
  if (!r || r->type == BEE__REPLY_ERROR) {
    rc = bee__redis_error(err, &engine->redis[engine->inval_redis], c, r, "publishing invalidations failed");
    if (!r) bee__ctx_redis_broken(ctx, (size_t)engine->inval_redis);
    if (r) bee__reply_free(r);
    return rc;
  }
  long long receivers = r->type == BEE__REPLY_INTEGER ? r->integer : 0;
  bee__reply_free(r);
  return bee__invalidation_wait(ctx, entity, ack, receivers, err);
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                 */

int bee_engine_context(bee_engine_t *engine, bee_context_t **out, bee_error_t *err) {
  if (!engine || !out) return bee__error(err, BEE_EINVAL, 0, "engine or out is NULL");
  bee_context_t *ctx = bee__calloc(1, sizeof *ctx);
  if (ctx) {
    ctx->engine = engine;
    ctx->mysql = bee__calloc(engine->mysql_count ? engine->mysql_count : 1, sizeof *ctx->mysql);
    ctx->redis = bee__calloc(engine->redis_count ? engine->redis_count : 1, sizeof *ctx->redis);
  }
  if (!ctx || !ctx->mysql || !ctx->redis) {
    if (ctx) {
      bee__free(ctx->mysql);
      bee__free(ctx->redis);
      bee__free(ctx);
    }
    return bee__error(err, BEE_ENOMEM, 0, "out of memory creating a context");
  }
  *out = ctx;
  return 0;
}

void bee_context_free(bee_context_t *ctx) {
  if (!ctx) return;
  bee_context_clear_flush(ctx);
  bee__free(ctx->ops);
  bee__buf_free(&ctx->scratch);
  for (size_t i = 0; i < ctx->engine->mysql_count; i++)
    bee__engine_mysql_release(ctx->engine, &ctx->engine->mysql[i], ctx->mysql[i], 0);
  for (size_t i = 0; i < ctx->engine->redis_count; i++)
    bee__engine_redis_release(ctx->engine, &ctx->engine->redis[i], ctx->redis[i], 0);
  bee__free(ctx->mysql);
  bee__free(ctx->redis);
  bee__free(ctx);
}

int bee__ctx_mysql(bee_context_t *ctx, size_t pool, MYSQL **out, bee_error_t *err) {
  if (!ctx->mysql[pool]) {
    int rc = bee__engine_mysql_acquire(ctx->engine, &ctx->engine->mysql[pool], &ctx->mysql[pool], err);
    if (rc) return rc;
  }
  *out = ctx->mysql[pool];
  return 0;
}

int bee__ctx_redis(bee_context_t *ctx, size_t pool, bee__rconn_t **out, bee_error_t *err) {
  if (ctx->redis[pool] && (bee__redis_failed(ctx->redis[pool]) ||
                           !bee__redis_current(&ctx->engine->redis[pool], ctx->redis[pool])))
    bee__ctx_redis_broken(ctx, pool);
  if (!ctx->redis[pool]) {
    int rc = bee__engine_redis_acquire(ctx->engine, &ctx->engine->redis[pool], &ctx->redis[pool], err);
    if (rc) return rc;
  }
  *out = ctx->redis[pool];
  return 0;
}

int bee__ctx_redis_replies(bee_context_t *ctx, size_t pool, bee__rconn_t *c, size_t count, const char *doing,
                           bee_error_t *err) {
  int rc = bee__redis_replies(c, &ctx->engine->redis[pool], count, doing, err);
  if (bee__redis_failed(c)) bee__ctx_redis_broken(ctx, pool);
  return rc;
}

void bee__ctx_redis_broken(bee_context_t *ctx, size_t pool) {
  bee__engine_redis_release(ctx->engine, &ctx->engine->redis[pool], ctx->redis[pool], 1);
  ctx->redis[pool] = NULL;
}

void bee__ctx_mysql_broken(bee_context_t *ctx, size_t pool) {
  bee__engine_mysql_release(ctx->engine, &ctx->engine->mysql[pool], ctx->mysql[pool], 1);
  ctx->mysql[pool] = NULL;
}

size_t bee__queue_key(const bee_engine_t *engine, size_t pool, size_t shard, const char *suffix, char *buf,
                      size_t size) {
  int n = snprintf(buf, size, "beeorm:{q:%s:%zu}:%s", engine->mysql[pool].name, shard, suffix);
  return n < 0 ? 0 : (size_t)n;
}
