/*
 * flush_async.c: writing tracked changes through the queue (docs/guarantees.md G1, G3, G8).
 *
 * The rows' current state is read through the caches (they hold earlier flush_async
 * results MySQL may not have yet); the events (one stream entry per MySQL pool and
 * shard) and the cache writes of the queue's Redis pool go to Redis in one MULTI/EXEC.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "flush.h"

typedef struct {
  bee__states_t *s;
  size_t entity;
  const uint64_t *ids;
} before_t;

static int keep_before(void *ud, size_t index, const bee_row_t *row) {
  before_t *b = ud;
  if (!row) return 0;
  bee__state_t *st = bee__state_find(b->s, b->entity, b->ids[index]);
  if (!st || st->had_before) return 0;
  st->had_before = 1;
  return bee__row_encode(row->entity, row->id, row->values, &st->before) ? BEE_ENOMEM : 0;
}

/*
 * The current rows of updated and deleted states, as readers see them now: through the
 * caches, which already hold earlier flush_async results that MySQL may not have yet.
 */
static int load_before(bee_context_t *ctx, bee__states_t *s, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  uint64_t *ids = bee__malloc((s->count ? s->count : 1) * sizeof *ids);
  if (!ids) return bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
  int rc = 0;
  for (size_t ei = 0; ei < engine->entity_count && !rc; ei++) {
    size_t n = 0;
    for (size_t i = 0; i < ctx->op_count; i++) {
      const bee__op_t *op = &ctx->ops[i];
      if (op->entity != ei || op->kind == BEE__OP_INSERT) continue;
      int dup = 0;
      for (size_t k = 0; k < n && !dup; k++) dup = ids[k] == op->id;
      if (!dup) ids[n++] = op->id;
    }
    if (!n) continue;
    before_t b = {s, ei, ids};
    rc = bee__load_by_ids(ctx, ei, ids, n, keep_before, &b, err);
  }
  bee__free(ids);
  return rc;
}

/* A number no other flush_async (of any process) is likely to draw: random seed + counter. */
uint64_t bee__flush_token(void) {
  static _Atomic uint64_t next;
  static _Atomic uint64_t seed;
  uint64_t s = atomic_load(&seed);
  if (!s) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      r = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    r |= 1;
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&seed, &zero, r);
    s = atomic_load(&seed);
  }
  uint64_t t = s + atomic_fetch_add(&next, 0x9E3779B97F4A7C15ull);
  return t ? t : 1;
}

/*
 * A timeout in flush_async: whether Redis ran the MULTI is unknown (docs/guarantees.md G11). The
 * message says so, and what to do; a retry of the same changes is safe (same token).
 */
static void unknown_outcome_message(const bee_engine_t *engine, size_t qp, int rc, bee_error_t *err) {
  if (rc != BEE_ETIMEOUT || !err) return;
  char why[200];
  snprintf(why, sizeof why, "%.190s", err->message);
  bee__error(err, BEE_ETIMEOUT, 1,
             "flush_async got no answer (%s): the changes may or may not have been queued; they stay tracked, and "
             "flushing them again from this context queues them at most once",
             why);
  bee__error_pool(err, engine->redis[qp].name);
}

/* FNV-1a 64 of the tracked changes: kinds, rows, and the columns and values they write. */
static uint64_t changes_digest(const bee_context_t *ctx) {
  uint64_t h = 0xcbf29ce484222325ull;
#define MIX(p, n)                                          \
  do {                                                     \
    const unsigned char *b_ = (const unsigned char *)(p);  \
    for (size_t k_ = 0; k_ < (n); k_++) {                  \
      h ^= b_[k_];                                         \
      h *= 0x100000001b3ull;                               \
    }                                                      \
  } while (0)
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    MIX(&op->kind, sizeof op->kind);
    MIX(&op->entity, sizeof op->entity);
    MIX(&op->id, sizeof op->id);
    size_t nf = op->kind == BEE__OP_DELETE ? 0 : ctx->engine->entities[op->entity].field_count;
    for (size_t f = 0; f < nf; f++) {
      const bee_value_t *v = &op->values[f];
      MIX(&op->changed[f], 1);
      if (!op->changed[f]) continue;
      MIX(&v->kind, sizeof v->kind);
      if (v->kind == BEE_VALUE_STRING) MIX(v->str, v->len);
      else if (v->kind == BEE_VALUE_FLOAT) MIX(&v->f, sizeof v->f);
      else if (v->kind != BEE_VALUE_NIL) MIX(&v->i, sizeof v->i);
    }
  }
#undef MIX
  return h;
}

static bee__qentry_t *queue_entry(bee_context_t *ctx, bee__qentry_t *q, size_t *nq, size_t pool, size_t shard,
                             uint64_t token) {
  for (size_t i = 0; i < *nq; i++)
    if (q[i].pool == pool && q[i].shard == shard) return &q[i];
  bee__qentry_t *e = &q[(*nq)++];
  memset(e, 0, sizeof *e);
  e->pool = pool;
  e->shard = shard;
  bee__queue_key(ctx->engine, pool, shard, "s", e->key, sizeof e->key);
  bee__batch_begin(&e->w, &e->payload, token);
  return e;
}

int bee_context_flush_async(bee_context_t *ctx, bee_error_t *err) {
  if (!ctx) return bee__error(err, BEE_EINVAL, 0, "context is NULL");
  if (!ctx->op_count) return 0;
  bee_engine_t *engine = ctx->engine;
  if (engine->inval_redis < 0)
    return bee__error(err, BEE_ECONFIG, 0, "flush_async needs a Redis pool to queue events on (register one)");
  size_t qp = (size_t)engine->inval_redis;
  bee_value_t *values = bee__calloc(bee__max_fields(engine), sizeof *values);
  bee__qentry_t *q = bee__calloc(ctx->op_count, sizeof *q);
  size_t nq = 0;
  bee__states_t s = {0};
  int rc = 0;
  if (!values || !q || bee__states_build(ctx, &s)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
    goto out;
  }
  if ((rc = load_before(ctx, &s, err))) {
    unknown_outcome_message(engine, qp, rc, err);
    goto out;
  }
  /* The same changes as a flush_async whose outcome was unknown: the same token (G11). */
  uint64_t digest = changes_digest(ctx);
  uint64_t token = ctx->unknown_outcome && ctx->unknown_digest == digest ? ctx->unknown_token : bee__flush_token();
  char token_text[17];
  bee__token_format(token, token_text);
  if (bee__compute_after(ctx, &s, values)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory flushing");
    goto out;
  }
  /* One stream entry per (pool, shard) touched, events in flush order. */
  for (size_t i = 0; i < ctx->op_count; i++) {
    const bee__op_t *op = &ctx->ops[i];
    const bee__entity_t *e = &engine->entities[op->entity];
    const bee__entity_rt_t *rt = &engine->rt[op->entity];
    bee__qentry_t *qe = queue_entry(ctx, q, &nq, rt->mysql, bee__shard(op->id), token);
    char kind = op->kind == BEE__OP_INSERT ? 'I' : op->kind == BEE__OP_UPDATE ? 'U' : 'D';
    bee__batch_event(&qe->w, kind, e->table, e->name, rt->redis >= 0 ? engine->redis[rt->redis].name : "",
                     rt->redis >= 0 ? rt->prefix : "", op->id);
    for (size_t f = 0; f < e->field_count && op->kind != BEE__OP_DELETE; f++)
      if (op->changed[f])
        bee__batch_col(&qe->w, e->fields[f].name, &op->values[f], op->changed[f] == BEE__COL_ADD);
    bee__batch_keys_begin(&qe->w);
    if (rt->redis >= 0) /* (the row key is implied: see event.h) */
      bee__event_cache_keys(&qe->w, rt, e, &s.items[op->state], values);
  }
  for (size_t i = 0; i < nq; i++)
    if (bee__batch_end(&q[i].w)) {
      rc = bee__error(err, BEE_ENOMEM, 0, "out of memory encoding events");
      goto out;
    }
  /* The queue's Redis pool: events and that pool's caches in one MULTI/EXEC (G1). */
  if ((rc = bee__cache_write_redis(ctx, qp, &s, values, q, nq, token_text, err)) == BEE_EDURABILITY) {
    /* Queued on the master, not yet on enough replicas: the other caches follow as for
       a success (the entry will be applied), and the changes stay tracked so that the
       caller may flush them again: the same token, so they apply once (G11). */
    ctx->unknown_outcome = 1;
    ctx->unknown_token = token;
    ctx->unknown_digest = digest;
    bee_error_t cache_err;
    bee__cache_write(ctx, &s, values, (int)qp, token_text, "events queued, but a cache update failed", &cache_err);
    goto out;
  }
  if (rc) {
    unknown_outcome_message(engine, qp, rc, err);
    /* Maybe queued, maybe not: remembered, so the same changes flushed again keep the token. */
    ctx->unknown_outcome = 1;
    ctx->unknown_token = token;
    ctx->unknown_digest = digest;
    goto out;
  }
  /* Caches on other Redis pools, then local caches: the events are queued already. */
  rc = bee__cache_write(ctx, &s, values, (int)qp, token_text, "events queued, but a cache update failed", err);
  bee_context_clear_flush(ctx); /* queued: nothing left to retry */
out:
  for (size_t i = 0; q && i < nq; i++) bee__buf_free(&q[i].payload);
  bee__free(q);
  bee__states_free(&s);
  bee__free(values);
  return rc;
}
