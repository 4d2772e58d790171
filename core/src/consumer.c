/*
 * consumer.c: applying queued events to MySQL (docs/guarantees.md, the queue, G2-G5).
 *
 * Per queue: read the applied mark from _beeorm_applied, XRANGE the entries after it,
 * and apply a batch of them in one transaction that first locks the mark row (and
 * checks it did not move: another consumer's work fences this one out), runs the
 * statements (consecutive inserts into one table as one multi-row INSERT), and writes
 * the new mark. Only after COMMIT are the entries deleted from the stream, so a crash
 * anywhere replays nothing twice: entries at or below the mark are never applied again.
 *
 * Identifiers in events come from Redis: they are used only if they are plain SQL
 * identifiers ([A-Za-z_][A-Za-z0-9_]*); values are escaped by the client library.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "consumer.h"
#include "event.h"
#include "orm.h"
#include "sql.h"

void bee_engine_consume_stop(bee_engine_t *engine) {
  if (engine) atomic_store(&engine->consume_stop, 1);
}

/* ------------------------------------------------------------------------ */
/* Error classification, overridable per errno                              */

static atomic_schar overrides[4096]; /* 0 default, 1 temporary, 2 permanent */

void bee_set_error_class(unsigned int mysql_errno, int temporary) {
  if (mysql_errno >= sizeof overrides) return;
  atomic_store(&overrides[mysql_errno], (signed char)(temporary < 0 ? 0 : temporary ? 1 : 2));
}

int bee_error_is_temporary(unsigned int mysql_errno) {
  if (mysql_errno < sizeof overrides) {
    signed char o = atomic_load(&overrides[mysql_errno]);
    if (o) return o == 1;
  }
  return bee_mysql_errno_is_temporary(mysql_errno);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

int64_t bee__c_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int stopping(const consumer_t *c) {
  return atomic_load(&c->engine->consume_stop) || (c->run_stop && atomic_load(c->run_stop));
}

size_t bee__c_events(const entry_t *entries, size_t a, size_t b) {
  size_t events = 0;
  for (size_t i = a; i < b; i++) {
    size_t count = 0, pos;
    if (!entries[i].dup && entries[i].payload && bee__batch_open(entries[i].payload, entries[i].len, &count, &pos) == 0)
      events += count;
  }
  return events;
}

/* Counts entries [a, b) as applied: entries, their events, one batch. */
void bee__c_count_applied(consumer_t *c, const entry_t *entries, size_t a, size_t b) {
  for (size_t i = a; i < b; i++) {
    if (entries[i].dup) c->stats.duplicates++;
    else c->stats.entries++;
  }
  c->stats.events += bee__c_events(entries, a, b);
  c->stats.batches++;
}

/* Sleeps ms, cut short by a stop request (checked every 50 ms and on signals). */
static void sleep_ms(const consumer_t *c, int ms) {
  while (ms > 0 && !stopping(c)) {
    int step = ms < 50 ? ms : 50;
    struct timespec ts = {0, (long)step * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stopping(c)) {
    }
    ms -= step;
  }
}

static int get_mysql(consumer_t *c, size_t pool, MYSQL **out, bee_error_t *err) {
  if (!c->mysql[pool]) {
    int rc = bee__engine_mysql_acquire(c->engine, &c->engine->mysql[pool], &c->mysql[pool], err);
    if (rc) return rc;
  }
  *out = c->mysql[pool];
  return 0;
}

void bee__c_drop_mysql(consumer_t *c, size_t pool) {
  bee__engine_mysql_release(c->engine, &c->engine->mysql[pool], c->mysql[pool], 1);
  c->mysql[pool] = NULL;
}

int bee__c_get_redis(consumer_t *c, size_t pool, bee__rconn_t **out, bee_error_t *err) {
  if (c->redis[pool] && (bee__redis_failed(c->redis[pool]) || !bee__redis_current(&c->engine->redis[pool], c->redis[pool]))) {
    bee__redis_free(c->redis[pool]);
    c->redis[pool] = NULL;
  }
  if (!c->redis[pool]) {
    int rc = bee__redis_connect(&c->engine->redis[pool], &c->redis[pool], err);
    if (rc) return rc;
  }
  *out = c->redis[pool];
  return 0;
}

int bee__c_mysql_fail(consumer_t *c, size_t pool, MYSQL *conn, const char *doing, bee_error_t *err) {
  int rc = bee__mysql_error(err, conn, &c->engine->mysql[pool], doing);
  if (err) err->temporary = bee_error_is_temporary((unsigned)err->server_code);
  return rc;
}

/* Runs one statement; on failure fills err (with the consumer's classification). */
int bee__c_query(consumer_t *c, size_t pool, MYSQL *conn, const char *sql, size_t len, bee_error_t *err) {
  if (mysql_real_query(conn, sql, (unsigned long)len) != 0) return bee__c_mysql_fail(c, pool, conn, "applying events failed on", err);
  MYSQL_RES *res = mysql_store_result(conn);
  if (res) mysql_free_result(res);
  return 0;
}

void bee__c_entries_free(entry_t *e, size_t n) {
  for (size_t i = 0; i < n; i++) bee__free(e[i].payload);
  bee__free(e);
}

/* ------------------------------------------------------------------------ */
/* The drain loop                                                           */

/* Backoff for temporary errors: 50 ms doubling to 5 s, with up to 50% jitter. */
static int backoff_ms(int attempt) {
  int base = 50;
  for (int i = 1; i < attempt && base < 5000; i++) base *= 2;
  if (base > 5000) base = 5000;
  return base / 2 + rand() % (base / 2 + 1);
}

/*
 * Applies everything queued in queue (pool, shard) after its mark. Returns 0 (drained
 * or stopped), or a temporary error after the retries of non-blocking mode, or another
 * error. *last_ms/seq receive the mark reached (for XREAD in blocking mode).
 */
static int drain(consumer_t *c, size_t pool, size_t shard, uint64_t *last_ms, uint64_t *last_seq, int *held,
                 bee_error_t *err) {
  bee_engine_t *engine = c->engine;
  size_t qp = (size_t)engine->inval_redis;
  char queue[BEE_NAME_MAX + 24], key[128], pending_key[128], lease_key[128];
  snprintf(queue, sizeof queue, "%s:%zu", engine->mysql[pool].name, shard);
  bee__queue_key(engine, pool, shard, "s", key, sizeof key);
  bee__queue_key(engine, pool, shard, "pending", pending_key, sizeof pending_key);
  bee__queue_key(engine, pool, shard, "lease", lease_key, sizeof lease_key);
  char id_key[128], qid[32];
  bee__queue_key(engine, pool, shard, "id", id_key, sizeof id_key);
  int attempt = 0;
  for (;;) {
    int irc = bee__c_queue_identity(c, qp, id_key, qid, sizeof qid, err);
    if (irc) {
      if (err && !err->temporary) return irc;
      attempt++;
      if (!c->opts.block && attempt >= c->opts.max_retries) return irc;
      sleep_ms(c, backoff_ms(attempt));
      continue;
    }
    snprintf(c->mark, sizeof c->mark, "%s@%s", queue, qid);
    if (stopping(c)) return 0;
    *held = bee__c_lease(c, qp, lease_key, bee__c_lease_script);
    if (!*held) {
      /* Another consumer has this queue. Blocking: leave it to it. Draining: wait until
         it emptied the queue or its lease ran out (a killed holder's lease expires). */
      if (c->opts.block) return 0;
      entry_t *peek = NULL;
      size_t pn = 0;
      MYSQL *conn;
      uint64_t ms = 0, seq = 0;
      int prc = get_mysql(c, pool, &conn, err);
      if (!prc) prc = bee__c_ensure_mark_table(c, pool, conn, err);
      if (!prc) prc = bee__c_read_mark(c, pool, conn, 0, &ms, &seq, err);
      if (prc && err) err->temporary = 1;
      if (!prc) prc = bee__c_fetch(c, qp, key, ms, seq, 1, &peek, &pn, err);
      bee__c_entries_free(peek, pn);
      if (prc) return prc;
      if (!pn) return 0;
      sleep_ms(c, 100);
      continue;
    }
    MYSQL *conn;
    uint64_t ms, seq;
    entry_t *entries = NULL;
    size_t n = 0;
    int rc = get_mysql(c, pool, &conn, err);
    if (!rc) rc = bee__c_ensure_mark_table(c, pool, conn, err);
    if (!rc) rc = bee__c_read_mark(c, pool, conn, 0, &ms, &seq, err);
    if (rc && err) err->temporary = 1; /* any failure on the mark is tried again (docs/guarantees.md, the queue) */
    if (!rc) {
      *last_ms = ms;
      *last_seq = seq;
      rc = bee__c_fetch(c, qp, key, ms, seq, (size_t)c->opts.max_batch, &entries, &n, err);
    }
    if (!rc && n == 0 && (ms || seq)) bee__c_trim(c, qp, key, ms, seq); /* leftovers of a crash */
    if (!rc && n == 0) {
      bee__c_entries_free(entries, n);
      return 0;
    }
    if (!rc) {
      bee__c_set_pending(c, qp, pending_key, n);
      /* A retry of a parked entry starts its own batch: whether it became stale is read
         after everything queued before it was applied. */
      size_t todo = n;
      for (size_t i = 1; i < n && todo == n; i++)
        if (entries[i].retried_of[0]) todo = i;
      int parked_stale = 0;
      if (entries[0].retried_of[0]) {
        bee_error_t why;
        int s = bee__c_retry_is_stale(c, qp, key, &entries[0], &why, err);
        if (s < 0) {
          rc = s;
        } else if (s == 1) { /* parked again as stale, nothing applied (G13) */
          parked_stale = 1;
          rc = bee__c_handle_failure(c, pool, qp, conn, queue, &entries[0], 0, ms, seq, &why, err);
          if (!rc) bee__c_trim(c, qp, key, entries[0].ms, entries[0].seq);
        }
      }
      if (!rc && !parked_stale) rc = bee__c_apply_batch(c, pool, qp, conn, queue, key, entries, todo, ms, seq, err);
      if (rc == 0) attempt = 0;
      bee__c_set_pending(c, qp, pending_key, 0);
    }
    bee__c_entries_free(entries, n);
    if (rc == CONFLICT) continue; /* another consumer moved the mark: read it again */
    if (rc) {
      if (err && !err->temporary) return rc;
      /* Temporary (G4): back off and retry; non-blocking mode gives up after max_retries. */
      if (err && err->code == BEE_EMYSQL && c->mysql[pool]) bee__c_drop_mysql(c, pool);
      attempt++;
      if (!c->opts.block && attempt >= c->opts.max_retries) return rc;
      sleep_ms(c, backoff_ms(attempt));
    }
  }
}

/*
 * Consumes queues qs[0..nq) (indexes: pool * BEE__SHARDS + shard) in the calling thread
 * with its own connections, until drained (non-blocking) or stopped (blocking).
 */
static int run_queues(bee_engine_t *engine, const bee_consume_options_t *opts, atomic_int *run_stop, const size_t *qs,
                      size_t nq, bee_consume_stats_t *stats, bee_error_t *err) {
  consumer_t c;
  memset(&c, 0, sizeof c);
  c.engine = engine;
  c.run_stop = run_stop;
  c.opts = *opts;
  {
    static atomic_ulong worker_seq;
    unsigned char r[8] = {0};
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
      if (fread(r, 1, sizeof r, f) != sizeof r) memset(r, 0, sizeof r);
      fclose(f);
    }
    snprintf(c.token, sizeof c.token, "%d-%02x%02x%02x%02x%02x%02x%02x%02x-%lu", (int)getpid(), r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7], (unsigned long)atomic_fetch_add(&worker_seq, 1));
  }
  c.mysql = bee__calloc(engine->mysql_count ? engine->mysql_count : 1, sizeof *c.mysql);
  c.redis = bee__calloc(engine->redis_count, sizeof *c.redis);
  c.mark_table_ok = bee__calloc(engine->mysql_count ? engine->mysql_count : 1, 1);
  c.ev = bee__malloc(sizeof *c.ev);
  uint64_t *marks = bee__calloc(nq ? nq * 2 : 1, sizeof *marks);
  int *held = bee__calloc(nq ? nq : 1, sizeof *held);
  int64_t *rest_until = bee__calloc(nq ? nq : 1, sizeof *rest_until);
  int rc = 0;
  if (!c.mysql || !c.redis || !c.mark_table_ok || !c.ev || !marks || !held || !rest_until) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory starting a consumer");
    goto out;
  }
  /*
   * Blocking mode shares the queues with the other consumers (any process) through the
   * leases: every worker announces itself in BEE__WORKERS_KEY with a heartbeat, and holds
   * at most its fair share, ceil(queues / live workers). A worker over its share hands
   * the extra queues back and leaves them alone for a while; a worker under it picks up
   * free ones. It waits (XREAD BLOCK) only on the queues it holds.
   */
  int64_t next_beat = 0;
  size_t fair = nq;
  for (;;) {
    int64_t now = bee__c_now_ms();
    if (c.opts.block && now >= next_beat) {
      char held_names[512] = "";
      size_t hl = 0;
      for (size_t i = 0; i < nq && hl + 80 < sizeof held_names; i++)
        if (held[i]) {
          if (hl) held_names[hl++] = ',';
          hl += bee_engine_queue_name(engine, qs[i], held_names + hl, sizeof held_names - hl);
        }
      fair = bee__c_heartbeat(&c, nq, held_names);
      next_beat = now + 1000;
    }
    size_t holding = 0;
    for (size_t i = 0; i < nq && !rc; i++) {
      /* Over the share: hand a held queue over. A free queue is tried unless this worker
         handed it over lately: were it left to others who cannot take it (at their share
         too), it comes back here after a rest rather than waiting forever. */
      if (c.opts.block && (held[i] ? holding >= fair : now < rest_until[i])) {
        if (held[i]) {
          char lease_key[128];
          bee__queue_key(engine, qs[i] / BEE__SHARDS, qs[i] % BEE__SHARDS, "lease", lease_key, sizeof lease_key);
          bee__c_lease(&c, (size_t)engine->inval_redis, lease_key, bee__c_release_script);
          held[i] = 0;
          rest_until[i] = now + 2 * LEASE_MS_INT;
        }
        continue;
      }
      rc = drain(&c, qs[i] / BEE__SHARDS, qs[i] % BEE__SHARDS, &marks[2 * i], &marks[2 * i + 1], &held[i], err);
      holding += held[i] ? 1 : 0;
    }
    if (rc || !c.opts.block || stopping(&c)) break;
    /* Wait for new entries on the queues held (no polling): XREAD BLOCK from each mark. */
    bee__rconn_t *r;
    if ((rc = bee__c_get_redis(&c, (size_t)engine->inval_redis, &r, err))) {
      if (err && err->temporary) {
        rc = 0;
        sleep_ms(&c, 500);
        continue;
      }
      break;
    }
    if (!holding) { /* nothing to wait on: look for free queues again in a second */
      sleep_ms(&c, 1000);
      continue;
    }
    const char **argv = bee__malloc((6 + 2 * nq) * sizeof *argv);
    char(*keys)[128] = bee__malloc(nq * sizeof *keys);
    char(*ids)[48] = bee__malloc(nq * sizeof *ids);
    if (!argv || !keys || !ids) {
      bee__free(argv);
      bee__free(keys);
      bee__free(ids);
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory waiting for events");
      break;
    }
    size_t argc = 0;
    argv[argc++] = "XREAD";
    argv[argc++] = "COUNT";
    argv[argc++] = "1";
    argv[argc++] = "BLOCK";
    argv[argc++] = "1000"; /* wake up every second to renew leases and notice a stop request */
    argv[argc++] = "STREAMS";
    size_t nw = 0;
    for (size_t i = 0; i < nq; i++) {
      if (!held[i]) continue;
      bee__queue_key(engine, qs[i] / BEE__SHARDS, qs[i] % BEE__SHARDS, "s", keys[nw], sizeof keys[nw]);
      snprintf(ids[nw], sizeof ids[nw], "%llu-%llu", (unsigned long long)marks[2 * i],
               (unsigned long long)marks[2 * i + 1]);
      nw++;
    }
    for (size_t i = 0; i < nw; i++) argv[argc++] = keys[i];
    for (size_t i = 0; i < nw; i++) argv[argc++] = ids[i];
    bee__reply_t *rep = bee__redis_command_argv(r, (int)argc, argv, NULL);
    bee__free(argv);
    bee__free(keys);
    bee__free(ids);
    if (!rep || rep->type == BEE__REPLY_ERROR) {
      /* Redis went away, or stopped being the master (UNBLOCKED, READONLY after a
         failover): reconnect after a pause, to where the master is then. */
      bee_error_t why;
      bee__redis_error(&why, &engine->redis[engine->inval_redis], r, rep, "waiting for events");
      bee__reply_free(rep);
      bee__redis_free(c.redis[engine->inval_redis]);
      c.redis[engine->inval_redis] = NULL;
      sleep_ms(&c, 500);
      continue;
    }
    bee__reply_free(rep);
  }
  if (c.opts.block) bee__c_leave(&c);
  /* Hand the queues over at once instead of after the lease expires. */
  for (size_t i = 0; i < nq && c.redis; i++) {
    char lease_key[128];
    bee__queue_key(engine, qs[i] / BEE__SHARDS, qs[i] % BEE__SHARDS, "lease", lease_key, sizeof lease_key);
    bee__c_lease(&c, (size_t)engine->inval_redis, lease_key, bee__c_release_script);
  }
out:
  if (stats) *stats = c.stats;
  for (size_t i = 0; c.mysql && i < engine->mysql_count; i++)
    if (c.mysql[i]) bee__engine_mysql_release(engine, &engine->mysql[i], c.mysql[i], 0);
  for (size_t i = 0; c.redis && i < engine->redis_count; i++)
    if (c.redis[i]) bee__redis_free(c.redis[i]);
  bee__free(c.mysql);
  bee__free(c.redis);
  bee__free(c.mark_table_ok);
  bee__free(c.ev);
  bee__buf_free(&c.sql);
  bee__free(marks);
  bee__free(held);
  bee__free(rest_until);
  return rc;
}

/*
 * Workers hand resolver calls to the thread that called bee_engine_consume (a Lua
 * resolver may only run there). One request at a time.
 */
typedef struct {
  pthread_mutex_t mu, turn; /* turn: one requester at a time */
  pthread_cond_t cv;
  const bee_failed_event_t *ev;
  bee_edit_t *edit;
  bee_resolution_t answer;
  int state; /* 0 idle, 1 asked, 2 answered */
  int running;
  bee_resolver_fn fn;
  void *ud;
} hub_t;

static bee_resolution_t hub_resolver(void *ud, const bee_failed_event_t *ev, bee_edit_t *edit) {
  hub_t *h = ud;
  pthread_mutex_lock(&h->turn);
  pthread_mutex_lock(&h->mu);
  h->ev = ev;
  h->edit = edit;
  h->state = 1;
  pthread_cond_broadcast(&h->cv);
  while (h->state != 2) pthread_cond_wait(&h->cv, &h->mu);
  bee_resolution_t answer = h->answer;
  h->state = 0;
  pthread_mutex_unlock(&h->mu);
  pthread_mutex_unlock(&h->turn);
  return answer;
}

typedef struct {
  bee_engine_t *engine;
  bee_consume_options_t opts;
  size_t *qs;
  size_t nq;
  bee_consume_stats_t stats;
  bee_error_t err;
  int rc;
  hub_t *hub;
  atomic_int *run_stop;
  pthread_t thread;
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  w->rc = run_queues(w->engine, &w->opts, w->run_stop, w->qs, w->nq, &w->stats, &w->err);
  if (w->rc && !w->opts.block) atomic_store(w->run_stop, 1); /* a drain stops as a whole */
  pthread_mutex_lock(&w->hub->mu);
  w->hub->running--;
  pthread_cond_broadcast(&w->hub->cv);
  pthread_mutex_unlock(&w->hub->mu);
  return NULL;
}

/*
 * BEE_CONSUME_WORKERS, but no more than twice the CPUs this process may run on: on 2
 * cores, 4 workers applied 40,000 queued inserts at 320k-370k events/s and 8 workers at
 * 195k-238k (latch contention and time slicing, README "Benchmarks").
 */
static size_t default_workers(void) {
  size_t cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = (size_t)CPU_COUNT(&set);
  if (!cpus) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpus = n > 0 ? (size_t)n : 1;
  }
  return cpus * 2 < BEE_CONSUME_WORKERS ? cpus * 2 : BEE_CONSUME_WORKERS;
}

int bee_engine_consume(bee_engine_t *engine, const bee_consume_options_t *opts, bee_consume_stats_t *stats,
                       bee_error_t *err) {
  if (!engine) return bee__error(err, BEE_EINVAL, 0, "engine is NULL");
  if (engine->inval_redis < 0) return bee__error(err, BEE_ECONFIG, 0, "no Redis pool holds the queues (register one)");
  bee_consume_options_t o;
  memset(&o, 0, sizeof o);
  if (opts) o = *opts;
  if (o.max_retries <= 0) o.max_retries = 5;
  if (o.max_batch <= 0) o.max_batch = 200;
  if (o.workers < 0) return bee__error(err, BEE_EINVAL, 0, "workers must be 0 (the default) or more, not %d", o.workers);
  size_t nq = engine->mysql_count * BEE__SHARDS;
  size_t workers = o.workers ? (size_t)o.workers : default_workers();
  if (workers > nq) workers = nq ? nq : 1;
  atomic_int run_stop;
  atomic_init(&run_stop, 0);
  srand((unsigned)bee__c_now_ms());
  if (stats) {
    memset(stats, 0, sizeof *stats);
    stats->workers = workers;
  }
  size_t *qs = bee__malloc((nq ? nq : 1) * sizeof *qs);
  worker_t *w = bee__calloc(workers, sizeof *w);
  if (!qs || !w) {
    bee__free(qs);
    bee__free(w);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory starting a consumer");
  }
  /* Worker k owns queues k, k + workers, ...: disjoint, so one row's events stay in order. */
  size_t at = 0;
  for (size_t k = 0; k < workers; k++) {
    w[k].qs = qs + at;
    for (size_t i = k; i < nq; i += workers) qs[at++] = i;
    w[k].nq = (size_t)(qs + at - w[k].qs);
  }
  int rc = 0;
  if (workers == 1) {
    rc = run_queues(engine, &o, &run_stop, w[0].qs, w[0].nq, stats, err);
    if (stats) stats->workers = 1;
  } else {
    hub_t hub;
    memset(&hub, 0, sizeof hub);
    pthread_mutex_init(&hub.mu, NULL);
    pthread_mutex_init(&hub.turn, NULL);
    pthread_cond_init(&hub.cv, NULL);
    hub.fn = o.resolver;
    hub.ud = o.resolver_ud;
    bee_consume_options_t wo = o;
    if (o.resolver) {
      wo.resolver = hub_resolver;
      wo.resolver_ud = &hub;
    }
    size_t started = 0;
    for (size_t k = 0; k < workers; k++) {
      w[k].engine = engine;
      w[k].opts = wo;
      w[k].hub = &hub;
      w[k].run_stop = &run_stop;
      pthread_mutex_lock(&hub.mu);
      hub.running++;
      pthread_mutex_unlock(&hub.mu);
      if (pthread_create(&w[k].thread, NULL, worker_main, &w[k]) != 0) {
        pthread_mutex_lock(&hub.mu);
        hub.running--;
        pthread_mutex_unlock(&hub.mu);
        rc = bee__error(err, BEE_ENOMEM, 0, "cannot start consumer worker %zu", k + 1);
        atomic_store(&run_stop, 1);
        break;
      }
      started++;
    }
    /* Serve resolver requests until every worker is done. */
    pthread_mutex_lock(&hub.mu);
    while (hub.running > 0) {
      if (hub.state == 1) {
        const bee_failed_event_t *ev = hub.ev;
        bee_edit_t *edit = hub.edit;
        pthread_mutex_unlock(&hub.mu);
        bee_resolution_t answer = hub.fn(hub.ud, ev, edit);
        pthread_mutex_lock(&hub.mu);
        hub.answer = answer;
        hub.state = 2;
        pthread_cond_broadcast(&hub.cv);
        continue;
      }
      pthread_cond_wait(&hub.cv, &hub.mu);
    }
    pthread_mutex_unlock(&hub.mu);
    for (size_t k = 0; k < started; k++) {
      pthread_join(w[k].thread, NULL);
      if (stats) {
        stats->entries += w[k].stats.entries;
        stats->events += w[k].stats.events;
        stats->batches += w[k].stats.batches;
        stats->failed += w[k].stats.failed;
        stats->skipped += w[k].stats.skipped;
        stats->retried += w[k].stats.retried;
        stats->duplicates += w[k].stats.duplicates;
        stats->resolver_errors += w[k].stats.resolver_errors;
      }
      if (!rc && w[k].rc) {
        rc = w[k].rc;
        if (err) *err = w[k].err;
      }
    }
    pthread_cond_destroy(&hub.cv);
    pthread_mutex_destroy(&hub.turn);
    pthread_mutex_destroy(&hub.mu);
  }
  bee__free(qs);
  bee__free(w);
  /* Cleared when the run ends, not when it starts: a stop asked for while it was
     starting (a signal right after the handlers went in) is not lost. */
  atomic_store(&engine->consume_stop, 0);
  return rc;
}
