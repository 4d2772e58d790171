/* queues.c: the queues as operators see them: stats, error lists, retry and skip (queues.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "orm.h"
#include "queues.h"
#include "record.h"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bee__stream_id_parse(const char *s, uint64_t *ms, uint64_t *seq) {
  char *end;
  errno = 0;
  unsigned long long a = strtoull(s, &end, 10);
  if (errno || *end != '-') return -1;
  unsigned long long b = strtoull(end + 1, &end, 10);
  if (errno || *end) return -1;
  *ms = a;
  *seq = b;
  return 0;
}

/* Runs script on row's field of p's "...:parked" hash with p's stream id. */
static int row_script(const bee__park_t *p, const char *script, const char *row) {
  bee__reply_t *x = bee__redis_command(p->r, "EVAL %s 1 %s %s %s", script, p->parked_key, row, p->id);
  if (x) bee__reply_free(x);
  return 0;
}

/* Appends the parked entry's id to its row's field in "...:parked" (ids space-separated). */
int bee__park_row(void *ud, const char *row) {
  static const char *const script =
      "local v = redis.call('HGET', KEYS[1], ARGV[1]) or '' "
      "if not string.find(' ' .. v .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then "
      "redis.call('HSET', KEYS[1], ARGV[1], v == '' and ARGV[2] or (v .. ' ' .. ARGV[2])) end return 0";
  return row_script(ud, script, row);
}

/* Removes the parked entry's id from its row's field in "...:parked". */
int bee__unpark_row(void *ud, const char *row) {
  static const char *const script =
      "local v = redis.call('HGET', KEYS[1], ARGV[1]) if not v then return 0 end "
      "local kept = {} for t in string.gmatch(v, '%S+') do if t ~= ARGV[2] then kept[#kept + 1] = t end end "
      "if #kept == 0 then redis.call('HDEL', KEYS[1], ARGV[1]) "
      "else redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept, ' ')) end return 0";
  return row_script(ud, script, row);
}

size_t bee_engine_queue_count(const bee_engine_t *engine) {
  return engine && engine->inval_redis >= 0 ? engine->mysql_count * BEE__SHARDS : 0;
}

size_t bee_engine_queue_name(const bee_engine_t *engine, size_t i, char *buf, size_t size) {
  int n = snprintf(buf, size, "%s:%zu", engine->mysql[i / BEE__SHARDS].name, i % BEE__SHARDS);
  return n < 0 ? 0 : (size_t)n;
}

/* Runs fn with a Redis connection of the queue pool borrowed from the engine. */
static int with_queue_redis(bee_engine_t *engine, size_t i, bee__rconn_t **r, bee_error_t *err) {
  if (!engine || i >= bee_engine_queue_count(engine)) return bee__error(err, BEE_EINVAL, 0, "no queue %zu", i);
  return bee__engine_redis_acquire(engine, &engine->redis[engine->inval_redis], r, err);
}

static double entry_age(bee__reply_t *rep, int64_t now) {
  if (!rep || rep->type != BEE__REPLY_ARRAY || rep->elements < 1) return -1;
  bee__reply_t *it = rep->element[0];
  if (it->type != BEE__REPLY_ARRAY || it->elements < 1 || it->element[0]->type != BEE__REPLY_STRING) return -1;
  uint64_t ms, seq;
  if (bee__stream_id_parse(it->element[0]->str, &ms, &seq)) return -1;
  return (double)(now - (int64_t)ms) / 1000.0;
}

int bee_engine_queue_stats(bee_engine_t *engine, size_t i, bee_queue_stats_t *out, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = with_queue_redis(engine, i, &r, err);
  if (rc) return rc;
  char key[128], errors[128], pending[128];
  bee__queue_key(engine, i / BEE__SHARDS, i % BEE__SHARDS, "s", key, sizeof key);
  bee__queue_key(engine, i / BEE__SHARDS, i % BEE__SHARDS, "errors", errors, sizeof errors);
  bee__queue_key(engine, i / BEE__SHARDS, i % BEE__SHARDS, "pending", pending, sizeof pending);
  bee__redis_append(r, "XLEN %s", key);
  bee__redis_append(r, "XRANGE %s - + COUNT 1", key);
  bee__redis_append(r, "XREVRANGE %s + - COUNT 1", key);
  bee__redis_append(r, "GET %s", pending);
  bee__redis_append(r, "HLEN %s", errors);
  char name[BEE_NAME_MAX + 24];
  bee_engine_queue_name(engine, i, name, sizeof name);
  bee__redis_append(r, "HMGET %s %s:applied %s:failed", BEE__COUNTERS_KEY, name, name);
  bee__reply_t *rep[6] = {0};
  for (int k = 0; k < 6; k++) {
    bee__reply_t *x = NULL;
    if (bee__redis_get_reply(r, &x) != 0) {
      rc = bee__redis_error(err, &engine->redis[engine->inval_redis], r, NULL, "reading queue statistics failed");
      break;
    }
    rep[k] = x;
  }
  if (!rc) {
    int64_t now = now_ms();
    memset(out, 0, sizeof *out);
    out->len = rep[0]->type == BEE__REPLY_INTEGER ? (uint64_t)rep[0]->integer : 0;
    double oldest = entry_age(rep[1], now), newest = entry_age(rep[2], now);
    out->oldest_event_seconds = oldest > 0 ? oldest : 0;
    out->lag = oldest > 0 && newest >= 0 ? oldest - newest : 0;
    out->pending = rep[3]->type == BEE__REPLY_STRING ? strtoull(rep[3]->str, NULL, 10) : 0;
    out->errors = rep[4]->type == BEE__REPLY_INTEGER ? (uint64_t)rep[4]->integer : 0;
    if (rep[5]->type == BEE__REPLY_ARRAY && rep[5]->elements == 2) {
      if (rep[5]->element[0]->type == BEE__REPLY_STRING) out->applied_total = strtoull(rep[5]->element[0]->str, NULL, 10);
      if (rep[5]->element[1]->type == BEE__REPLY_STRING) out->failed_total = strtoull(rep[5]->element[1]->str, NULL, 10);
    }
  }
  for (int k = 0; k < 6; k++)
    if (rep[k]) bee__reply_free(rep[k]);
  bee__engine_redis_release(engine, &engine->redis[engine->inval_redis], r, rc != 0);
  return rc;
}

/* "MGET" and the keys of prefix's per-second counts of the `seconds` whole seconds up to `last`, oldest first. */
static void rate_keys(const char *prefix, int64_t last, size_t seconds, char (*keys)[64], const char **argv) {
  argv[0] = "MGET";
  for (size_t k = 0; k < seconds; k++) {
    snprintf(keys[k], sizeof keys[k], "%s%lld", prefix, (long long)(last - (int64_t)(seconds - 1 - k)));
    argv[k + 1] = keys[k];
  }
}

/*
 * The consumers of every process: live workers (heartbeat deadline not passed) with what
 * their last heartbeat said, the totals of the counters hash, and the events applied in
 * each of the last 60 whole seconds. One round trip; info of workers gone is dropped.
 */
int bee_engine_consumers(bee_engine_t *engine, bee_consumers_t *out,
                         void (*fn)(void *ud, const bee_consumer_worker_t *w), void *ud, bee_error_t *err) {
  if (!engine || !out) return bee__error(err, BEE_EINVAL, 0, "engine or out is NULL");
  memset(out, 0, sizeof *out);
  if (engine->inval_redis < 0) return 0;
  bee__rconn_t *r;
  int rc = bee__engine_redis_acquire(engine, &engine->redis[engine->inval_redis], &r, err);
  if (rc) return rc;
  int64_t now = now_ms(), sec = now / 1000;
  char nowt[24];
  snprintf(nowt, sizeof nowt, "%lld", (long long)now);
  enum { SECONDS = 60 };
  char keys[SECONDS][64];
  const char *argv[SECONDS + 1];
  rate_keys(BEE__RATE_KEY, sec - 1, SECONDS, keys, argv); /* the last 60 whole seconds, not the one running */
  bee__redis_append(r, "ZRANGEBYSCORE %s %s +inf WITHSCORES", BEE__WORKERS_KEY, nowt);
  bee__redis_append(r, "HGETALL %s", BEE__WORKER_INFO_KEY);
  bee__redis_append(r, "HGETALL %s", BEE__COUNTERS_KEY);
  bee__redis_append_argv(r, SECONDS + 1, argv, NULL);
  bee__reply_t *rep[4] = {0};
  for (int k = 0; k < 4 && !rc; k++)
    if (bee__redis_get_reply(r, &rep[k]) != 0 || rep[k]->type != BEE__REPLY_ARRAY)
      rc = bee__redis_error(err, &engine->redis[engine->inval_redis], r, rep[k], "reading the consumers failed");
  if (!rc) {
    const bee__reply_t *live = rep[0], *info = rep[1], *counters = rep[2], *rates = rep[3];
    for (size_t k = 0; k + 1 < counters->elements; k += 2) {
      const bee__reply_t *f = counters->element[k], *v = counters->element[k + 1];
      if (f->type != BEE__REPLY_STRING || v->type != BEE__REPLY_STRING) continue;
      uint64_t n = strtoull(v->str, NULL, 10);
      if (f->len > 8 && !strcmp(f->str + f->len - 8, ":applied")) out->applied_total += n;
      else if (f->len > 7 && !strcmp(f->str + f->len - 7, ":failed")) out->failed_total += n;
    }
    uint64_t applied = 0;
    for (size_t k = 0; k < rates->elements; k++)
      if (rates->element[k]->type == BEE__REPLY_STRING) applied += strtoull(rates->element[k]->str, NULL, 10);
    out->applied_per_second = (double)applied / SECONDS;
    for (size_t k = 0; k + 1 < live->elements; k += 2) {
      const bee__reply_t *tok = live->element[k];
      if (tok->type != BEE__REPLY_STRING) continue;
      out->workers++;
      if (!fn) continue;
      bee_consumer_worker_t w = {tok->str, "", 0, "", 0};
      double deadline = live->element[k + 1]->type == BEE__REPLY_STRING ? strtod(live->element[k + 1]->str, NULL) : 0;
      w.heartbeat_age_seconds = deadline > 0 ? ((double)now - (deadline - 3000.0)) / 1000.0 : 0;
      if (w.heartbeat_age_seconds < 0) w.heartbeat_age_seconds = 0;
      char buf[1024] = "";
      for (size_t j = 0; j + 1 < info->elements; j += 2)
        if (info->element[j]->type == BEE__REPLY_STRING && !strcmp(info->element[j]->str, tok->str) &&
            info->element[j + 1]->type == BEE__REPLY_STRING)
          snprintf(buf, sizeof buf, "%s", info->element[j + 1]->str);
      char *t1 = strchr(buf, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
      if (t1 && t2) {
        *t1 = *t2 = '\0';
        w.host = buf;
        w.pid = atoi(t1 + 1);
        w.queues = t2 + 1;
      }
      fn(ud, &w);
    }
    /* info of workers whose heartbeat ran out (killed: no goodbye) */
    for (size_t j = 0; j + 1 < info->elements; j += 2) {
      const bee__reply_t *tok = info->element[j];
      int alive = 0;
      for (size_t k = 0; k + 1 < live->elements && !alive; k += 2)
        alive = live->element[k]->type == BEE__REPLY_STRING && !strcmp(live->element[k]->str, tok->str);
      if (!alive && tok->type == BEE__REPLY_STRING) {
        bee__reply_t *d = bee__redis_command(r, "HDEL %s %s", BEE__WORKER_INFO_KEY, tok->str);
        if (d) bee__reply_free(d);
      }
    }
  }
  for (int k = 0; k < 4; k++)
    if (rep[k]) bee__reply_free(rep[k]);
  bee__engine_redis_release(engine, &engine->redis[engine->inval_redis], r, rc != 0);
  return rc;
}

int bee_engine_consumer_rates(bee_engine_t *engine, size_t seconds, uint64_t *applied, uint64_t *failed,
                              bee_error_t *err) {
  if (!engine || !applied || !failed || !seconds || seconds > BEE_RATES_MAX_SECONDS)
    return bee__error(err, BEE_EINVAL, 0, "bad arguments (seconds 1 to %d)", BEE_RATES_MAX_SECONDS);
  memset(applied, 0, seconds * sizeof *applied);
  memset(failed, 0, seconds * sizeof *failed);
  if (engine->inval_redis < 0) return 0;
  bee__rconn_t *r;
  int rc = bee__engine_redis_acquire(engine, &engine->redis[engine->inval_redis], &r, err);
  if (rc) return rc;
  int64_t last = now_ms() / 1000 - 1; /* the last whole second */
  char(*keys)[64] = bee__malloc(seconds * sizeof *keys);
  const char **argv = bee__malloc((seconds + 1) * sizeof *argv);
  if (!keys || !argv) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading rates");
  for (int pass = 0; !rc && pass < 2; pass++) {
    rate_keys(pass ? BEE__FAILED_RATE_KEY : BEE__RATE_KEY, last, seconds, keys, argv);
    bee__reply_t *rep = bee__redis_command_argv(r, (int)seconds + 1, argv, NULL);
    if (!rep || rep->type != BEE__REPLY_ARRAY || rep->elements != seconds) {
      rc = bee__redis_error(err, &engine->redis[engine->inval_redis], r, rep, "reading rates failed");
    } else {
      uint64_t *out = pass ? failed : applied;
      for (size_t k = 0; k < seconds; k++)
        if (rep->element[k]->type == BEE__REPLY_STRING) out[k] = strtoull(rep->element[k]->str, NULL, 10);
    }
    if (rep) bee__reply_free(rep);
  }
  bee__free(keys);
  bee__free(argv);
  bee__engine_redis_release(engine, &engine->redis[engine->inval_redis], r, rc != 0);
  return rc;
}

/* One record of an error list as HGETALL gives it: its stream id and its bytes. */
typedef struct {
  const bee__reply_t *id, *val;
} listed_t;

static int cmp_ids(const void *a, const void *b) {
  const listed_t *x = a, *y = b;
  uint64_t xm = 0, xs = 0, ym = 0, ys = 0;
  bee__stream_id_parse(x->id->str, &xm, &xs);
  bee__stream_id_parse(y->id->str, &ym, &ys);
  if (xm != ym) return xm < ym ? -1 : 1;
  return xs < ys ? -1 : xs > ys;
}

/* Scratch of one listing: the decoded event and its column names. */
typedef struct {
  bee__event_t *ev;
  char (*cols)[BEE__IDENT_MAX + 1];
  const char **colp;
} scratch_t;

/*
 * Calls fn with the view of one event of an errored entry: event `at` of a sound entry
 * (ev decoded), or the whole record when it is malformed or unreadable (ev NULL).
 * Returns what fn returns.
 */
static int emit(const char *queue, const bee__reply_t *id, const bee__reply_t *val, const bee__record_t *rec,
                size_t count, size_t at, const bee__event_t *ev, scratch_t *sc,
                int (*fn)(void *ud, const bee_failed_event_t *ev), void *ud) {
  int record_ok = rec != NULL;
  char entity[BEE__IDENT_MAX + 1] = "", table[BEE__IDENT_MAX + 1] = "", message[BEE_ERROR_MESSAGE_MAX],
       resolver[BEE_ERROR_MESSAGE_MAX] = "";
  bee__buf_t sql = {0};
  bee_failed_event_t view;
  memset(&view, 0, sizeof view);
  view.queue = queue;
  view.stream_id = id->str;
  view.cols = sc->colp;
  view.event = at;
  if (record_ok) {
    if (!ev || at == rec->index) bee__buf_append(&sql, rec->sql.p, rec->sql.n); /* the failing event's only */
    snprintf(message, sizeof message, "%.*s", (int)rec->message.n, rec->message.p);
    snprintf(resolver, sizeof resolver, "%.*s", (int)rec->resolver_error.n, rec->resolver_error.p);
    view.attempts = rec->attempts;
    view.failed_at_ms = rec->at;
    view.events = count;
    view.failed_event = ev ? rec->index : 0; /* a malformed record is listed (and skipped) as one */
    view.code = rec->code;
  } else {
    snprintf(message, sizeof message, "the error record cannot be read (%zu bytes)",
             val && val->type == BEE__REPLY_STRING ? val->len : (size_t)0);
  }
  bee__buf_append(&sql, "", 0);
  view.sql = sql.data ? sql.data : "";
  view.message = message;
  view.resolver_error = resolver[0] ? resolver : NULL;
  if (ev) {
    snprintf(entity, sizeof entity, "%.*s", (int)ev->entity.n, ev->entity.p);
    snprintf(table, sizeof table, "%.*s", (int)ev->table.n, ev->table.p);
    for (size_t c = 0; c < ev->ncols; c++) {
      snprintf(sc->cols[c], BEE__IDENT_MAX + 1, "%.*s", (int)ev->cols[c].n, ev->cols[c].p);
      sc->colp[c] = sc->cols[c];
    }
    view.kind = ev->kind;
    view.id = ev->id;
    view.ncols = ev->ncols;
    view.values = ev->values;
    view.increments = ev->add;
  } else { /* junk queued, or a record that cannot be read: listed all the same (docs/guarantees.md G13) */
    view.code = BEE_EMALFORMED;
    view.raw = record_ok ? rec->batch.p : val && val->type == BEE__REPLY_STRING ? val->str : "";
    view.raw_len = record_ok ? rec->batch.n : val && val->type == BEE__REPLY_STRING ? val->len : 0;
  }
  view.entity = entity;
  view.table = table;
  int stop = fn(ud, &view);
  bee__buf_free(&sql);
  return stop;
}

/* The errored entries of queue i, oldest first: their failing events, or every event (all_events). */
static int list_errors(bee_engine_t *engine, size_t i, size_t max, int all_events,
                       int (*fn)(void *ud, const bee_failed_event_t *ev), void *ud, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = with_queue_redis(engine, i, &r, err);
  if (rc) return rc;
  char key[128], queue[BEE_NAME_MAX + 24];
  bee__queue_key(engine, i / BEE__SHARDS, i % BEE__SHARDS, "errors", key, sizeof key);
  bee_engine_queue_name(engine, i, queue, sizeof queue);
  bee__reply_t *rep = bee__redis_command(r, "HGETALL %s", key);
  if (!rep || rep->type != BEE__REPLY_ARRAY) {
    rc = bee__redis_error(err, &engine->redis[engine->inval_redis], r, rep, "reading the error list failed");
    if (rep) bee__reply_free(rep);
    bee__engine_redis_release(engine, &engine->redis[engine->inval_redis], r, 1);
    return rc;
  }
  size_t n = rep->elements / 2;
  listed_t *names = bee__malloc((n ? n : 1) * sizeof *names); /* in stream order */
  scratch_t sc = {bee__malloc(sizeof *sc.ev), bee__malloc(1024 * sizeof *sc.cols), bee__malloc(1024 * sizeof *sc.colp)};
  if (!names || !sc.ev || !sc.cols || !sc.colp) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading the error list");
  for (size_t k = 0; !rc && k < n; k++) names[k] = (listed_t){rep->element[2 * k], rep->element[2 * k + 1]};
  if (!rc) qsort(names, n, sizeof *names, cmp_ids);
  int stop = 0;
  for (size_t k = 0; !rc && !stop && k < n && k < max; k++) {
    const bee__reply_t *val = names[k].val;
    bee__record_t rec;
    int record_ok = val && val->type == BEE__REPLY_STRING && bee__record_decode(val->str, val->len, &rec) == 0;
    size_t count = 0, pos, bad = 0, trailing = 0;
    /* a sound entry: checked whole, so that every one of its events decodes */
    int sound = record_ok && rec.code != BEE_EMALFORMED &&
                bee__batch_check(rec.batch.p, rec.batch.n, sc.ev, &bad, &trailing) == BEE__BATCH_OK &&
                bee__batch_open(rec.batch.p, rec.batch.n, &count, &pos) == 0 && rec.index < count;
    if (!sound) {
      stop = emit(queue, names[k].id, val, record_ok ? &rec : NULL, count, 0, NULL, &sc, fn, ud);
      continue;
    }
    for (size_t at = 0; !stop && at < count && bee__batch_next(rec.batch.p, rec.batch.n, &pos, sc.ev) == 0; at++)
      if (all_events || at == rec.index) stop = emit(queue, names[k].id, val, &rec, count, at, sc.ev, &sc, fn, ud);
  }
  bee__free(names);
  bee__free(sc.ev);
  bee__free(sc.cols);
  bee__free(sc.colp);
  bee__reply_free(rep);
  bee__engine_redis_release(engine, &engine->redis[engine->inval_redis], r, rc != 0);
  return rc;
}

int bee_engine_queue_errors(bee_engine_t *engine, size_t i, size_t max,
                            int (*fn)(void *ud, const bee_failed_event_t *ev), void *ud, bee_error_t *err) {
  return list_errors(engine, i, max, 0, fn, ud, err);
}

int bee_engine_queue_error_events(bee_engine_t *engine, size_t i, size_t max,
                                  int (*fn)(void *ud, const bee_failed_event_t *ev), void *ud, bee_error_t *err) {
  return list_errors(engine, i, max, 1, fn, ud, err);
}

/*
 * Retry: puts an errored entry back at the end of its queue, unless it is stale (a newer
 * change of one of its rows was applied since it was parked, docs/guarantees.md G13) and not forced,
 * or still in its stream (its parking did not finish: the consumer handles it again).
 * Skip: drops the failing event only; the entry's other events go back to the queue.
 * Malformed records can only be skipped (dropped whole).
 */
#define FAILING_EVENT ((size_t)-1)

static int resolve_error(bee_engine_t *engine, size_t i, const char *stream_id, int retry, int force, size_t drop,
                         bee_error_t *err) {
  bee__rconn_t *r;
  int rc = with_queue_redis(engine, i, &r, err);
  if (rc) return rc;
  size_t pool = i / BEE__SHARDS, shard = i % BEE__SHARDS;
  char key[128], stream[128], stale_key[128], parked_key[128];
  bee__queue_key(engine, pool, shard, "errors", key, sizeof key);
  bee__queue_key(engine, pool, shard, "s", stream, sizeof stream);
  bee__queue_key(engine, pool, shard, "stale", stale_key, sizeof stale_key);
  bee__queue_key(engine, pool, shard, "parked", parked_key, sizeof parked_key);
  bee__redis_append(r, "HGET %s %s", key, stream_id);
  bee__redis_append(r, "HGET %s %s", stale_key, stream_id);
  bee__redis_append(r, "XRANGE %s %s %s", stream, stream_id, stream_id);
  bee__reply_t *x1 = NULL, *x2 = NULL, *x3 = NULL;
  if (bee__redis_get_reply(r, &x1) != 0 || bee__redis_get_reply(r, &x2) != 0 || bee__redis_get_reply(r, &x3) != 0) {
    rc = bee__redis_error(err, &engine->redis[engine->inval_redis], r, NULL, "reading the error list failed");
    goto out;
  }
  bee__reply_t *rep = x1, *stale = x2, *queued = x3;
  bee__record_t rec;
  size_t count = 0, pos;
  size_t bad_event = 0, trailing = 0;
  bee__event_t *check = bee__malloc(sizeof *check);
  if (!check) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading an error record");
    goto out;
  }
  int malformed = rep->type != BEE__REPLY_STRING || bee__record_decode(rep->str, rep->len, &rec) ||
                  rec.code == BEE_EMALFORMED ||
                  bee__batch_check(rec.batch.p, rec.batch.n, check, &bad_event, &trailing) != BEE__BATCH_OK ||
                  bee__batch_open(rec.batch.p, rec.batch.n, &count, &pos) || rec.index >= count;
  bee__free(check);
  if (rep->type == BEE__REPLY_ERROR) {
    rc = bee__redis_error(err, &engine->redis[engine->inval_redis], r, rep, "reading the error list failed");
  } else if (rep->type != BEE__REPLY_STRING) {
    rc = bee__error(err, BEE_ENOTFOUND, 0, "no error entry %s in this queue", stream_id);
  } else if (!retry && drop != FAILING_EVENT && (malformed || drop >= count)) {
    rc = malformed ? bee__error(err, BEE_EMALFORMED, 0, "error entry %s is malformed: it can only be skipped whole",
                                stream_id)
                   : bee__error(err, BEE_EINVAL, 0, "error entry %s has %zu event%s: there is no event %zu", stream_id,
                                count, count == 1 ? "" : "s", drop + 1);
  } else if (retry && malformed) {
    rc = bee__error(err, BEE_EMALFORMED, 0, "error entry %s is malformed: it can only be skipped", stream_id);
  } else if (retry && queued->type == BEE__REPLY_ARRAY && queued->elements > 0) {
    rc = bee__error(err, BEE_EINVAL, 0,
                    "entry %s is still in its queue (its parking did not finish): the consumer applies or parks it "
                    "again",
                    stream_id);
  } else if (retry && !force && stale->type == BEE__REPLY_STRING) {
    const char *sp = memchr(stale->str, ' ', stale->len);
    int rl = sp ? (int)(sp - stale->str) : (int)stale->len;
    rc = bee__error(err, BEE_ESTALE, 0,
                    "entry %s is stale: row %.*s got a newer change (entry %.*s) applied since it was parked; "
                    "retrying would undo it (force it to apply it anyway)",
                    stream_id, rl, stale->str, sp ? (int)(stale->len - (size_t)rl - 1) : 0, sp ? sp + 1 : "");
  } else {
    /* What goes back to the queue: the entry (retry), or the entry without its failing event (skip). */
    bee__buf_t back = {0};
    int requeue = retry;
    if (!retry && !malformed && count > 1) {
      requeue = 1;
      if (bee__batch_rewrite(rec.batch.p, rec.batch.n, drop == FAILING_EVENT ? rec.index : drop, NULL, &back))
        rc = bee__error(err, BEE_ENOMEM, 0, "out of memory skipping an event");
    } else if (retry) {
      bee__buf_append(&back, rec.batch.p, rec.batch.n);
    }
    if (!rc && back.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory retrying an entry");
    if (!rc) { /* one MULTI/EXEC: the entry is never lost or doubled */
      int n = 0;
      bee__redis_append(r, "MULTI"), n++;
      /* "r <parked id>": the consumer checks it is not stale before it applies (a newer
         change may be queued before it); "r force": applied as it is */
      if (requeue)
        bee__redis_append(r, "XADD %s * e %b r %s", stream, back.data, back.len, force ? "force" : stream_id), n++;
      bee__redis_append(r, "HDEL %s %s", key, stream_id), n++;
      bee__redis_append(r, "HDEL %s %s", stale_key, stream_id), n++;
      bee__redis_append(r, "EXEC"), n++;
      /* (an error inside EXEC too: the entry must not leave the error list without being queued) */
      rc = bee__redis_replies(r, &engine->redis[engine->inval_redis], (size_t)n,
                              retry ? "retrying an entry failed" : "skipping an event failed", err);
    }
    if (!rc && !malformed && !(retry && !force)) {
      /* Its rows are no longer held back by it, except those of what was queued again
         unforced (held since it was parked): a newer change applied to one of them
         before it applies makes it stale. */
      bee__event_t *ev = bee__malloc(sizeof *ev);
      bee__park_t u = {r, parked_key, stream_id};
      if (ev) bee__batch_rows(rec.batch.p, rec.batch.n, ev, bee__unpark_row, &u);
      if (ev && requeue && !force) bee__batch_rows(back.data, back.len, ev, bee__park_row, &u);
      bee__free(ev);
    }
    bee__buf_free(&back);
  }
out:
  if (x1) bee__reply_free(x1);
  if (x2) bee__reply_free(x2);
  if (x3) bee__reply_free(x3);
  bee__engine_redis_release(engine, &engine->redis[engine->inval_redis], r,
                            rc != 0 && rc != BEE_ENOTFOUND && rc != BEE_ESTALE && rc != BEE_EMALFORMED && rc != BEE_EINVAL);
  return rc;
}

int bee_engine_queue_retry(bee_engine_t *engine, size_t i, const char *stream_id, int force, bee_error_t *err) {
  if (!engine || !stream_id || i >= bee_engine_queue_count(engine)) return bee__error(err, BEE_EINVAL, 0, "bad queue or entry");
  return resolve_error(engine, i, stream_id, 1, force, FAILING_EVENT, err);
}

int bee_engine_queue_skip(bee_engine_t *engine, size_t i, const char *stream_id, bee_error_t *err) {
  if (!engine || !stream_id || i >= bee_engine_queue_count(engine)) return bee__error(err, BEE_EINVAL, 0, "bad queue or entry");
  return resolve_error(engine, i, stream_id, 0, 0, FAILING_EVENT, err);
}

int bee_engine_queue_skip_event(bee_engine_t *engine, size_t i, const char *stream_id, size_t event,
                                bee_error_t *err) {
  if (!engine || !stream_id || i >= bee_engine_queue_count(engine) || event == FAILING_EVENT)
    return bee__error(err, BEE_EINVAL, 0, "bad queue, entry or event");
  return resolve_error(engine, i, stream_id, 0, 0, event, err);
}
