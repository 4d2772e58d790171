/*
 * cache_write.c: the caches after a flush (docs/guarantees.md G1, G8): the Redis rows, unique keys
 * and id lists of the rows a flush touched, and the local caches of every process.
 *
 * A flush changes in Redis exactly the columns it changes in MySQL (rowhash.h), so
 * writers of different columns of one row never undo each other:
 *   - a new row is written whole; a deleted one becomes "not found";
 *   - flush_async writes the columns it set (MySQL does not have them yet) and adds its
 *     increments to what the cache holds (a script: increments of other processes stay);
 *   - a sync flush drops the columns it changed: MySQL has them, readers take them from
 *     there, and the version bump fences out readers that read MySQL before the commit.
 * Unique keys are checked against the row on every hit (loader.c); a write of a unique
 * index's values replaces the index's generation, which voids the cached not-founds of
 * every spelling. Id lists the row leaves or joins are dropped (and, for flush_async,
 * the row marked pending in them).
 */
#include <stdio.h>
#include <string.h>

#include "flush.h"
#include "keys.h"
#include "rcmd.h"
#include "rowhash.h"

/* ------------------------------------------------------------------------ */
/* Rows                                                                     */

/*
 * Adds deltas (text) to the cache text of columns, keeping NULL: ARGV[1] is the flush's
 * token, then triples (column, delta, base), base being the column's cache text as the
 * writer read it before the flush, used when the hash lacks the column. Exact decimal
 * arithmetic on texts: the columns are ints (any width, unsigned 64-bit too) or
 * decimal(65,30). The row keeps the last 8 tokens that added to it (field "+"): a
 * flush_async sent again after an unknown outcome (docs/guarantees.md G11) adds once.
 */
const char *const bee__incr_script =
    "local function split(s) "
    "local neg = s:sub(1, 1) == '-' if neg then s = s:sub(2) end "
    "local i, f = s:match('^(%d+)%.?(%d*)$') return neg, i or '0', f or '' end "
    "local function add(a, b) "
    "local na, ia, fa = split(a) local nb, ib, fb = split(b) "
    "local sc = math.max(#fa, #fb) "
    "fa = fa .. string.rep('0', sc - #fa) fb = fb .. string.rep('0', sc - #fb) "
    "local x, y = ia .. fa, ib .. fb local n = math.max(#x, #y) + 1 "
    "x = string.rep('0', n - #x) .. x y = string.rep('0', n - #y) .. y "
    "local neg, big, small = na, x, y "
    "if na ~= nb and x < y then neg, big, small = nb, y, x end "
    "local r, c = {}, 0 "
    "for k = n, 1, -1 do "
    "local d if na == nb then d = big:byte(k) + small:byte(k) - 96 + c else d = big:byte(k) - small:byte(k) - c end "
    "if d >= 10 then d = d - 10 c = 1 elseif d < 0 then d = d + 10 c = 1 else c = 0 end "
    "r[k] = string.char(48 + d) end "
    "local digits = table.concat(r) "
    "local ip, fp = digits:sub(1, n - sc), digits:sub(n - sc + 1) "
    "ip = ip:gsub('^0+', '') if ip == '' then ip = '0' end "
    "local out = ip if sc > 0 then out = out .. '.' .. fp end "
    "if neg and out:find('[1-9]') then out = '-' .. out end "
    "return out end "
    "local seen = redis.call('HGET', KEYS[1], '+') or '' "
    "if string.find(' ' .. seen .. ' ', ' ' .. ARGV[1] .. ' ', 1, true) then return 0 end "
    "for k = 2, #ARGV, 3 do "
    "local cur = redis.call('HGET', KEYS[1], ARGV[k]) or ARGV[k + 2] "
    "if cur:sub(1, 1) == '=' then redis.call('HSET', KEYS[1], ARGV[k], '=' .. add(cur:sub(2), ARGV[k + 1])) end "
    "end "
    "local kept = {ARGV[1]} "
    "for t in string.gmatch(seen, '%S+') do if #kept < 8 then kept[#kept + 1] = t end end "
    "redis.call('HSET', KEYS[1], '+', table.concat(kept, ' ')) "
    "return 1";

/* The cache text of column f of an encoded row. */
static void column_text(const bee__entity_t *e, const bee__buf_t *row, size_t f, bee_value_t *values,
                        bee__buf_t *out) {
  uint64_t id;
  out->len = 0;
  if (bee__row_decode(e, row->data, row->len, &id, values) == 0) bee__rowhash_text(&values[f], out);
}

/* HSET of the row's columns (all of them, with the mark, for a new row; else those set). */
static void row_hset(bee__rcmd_t *cmd, bee__rconn_t *c, const char *key, size_t kl, const bee__entity_t *e,
                     const bee__state_t *st, bee_value_t *values, int whole, size_t *count) {
  uint64_t id;
  if (bee__row_decode(e, st->after.data, st->after.len, &id, values)) return;
  bee__rcmd_begin(cmd, "HSET");
  bee__rcmd_arg(cmd, key, kl);
  if (whole) {
    bee__rcmd_str(cmd, BEE__ROWHASH_MARK);
    bee__rcmd_str(cmd, "R");
  }
  size_t cols = 0;
  for (size_t f = 0; f < e->field_count; f++) {
    if (!whole && st->cols[f] != BEE__COL_SET) continue;
    bee__rcmd_str(cmd, e->fields[f].name);
    bee__rcmd_open(cmd);
    bee__rowhash_text(&values[f], &cmd->text);
    bee__rcmd_close(cmd);
    cols++;
  }
  if (whole || cols) bee__rcmd_send(c, cmd, count);
}

/*
 * The row's own key: not found, written whole, or its changed columns (written by
 * flush_async, dropped by a sync flush). Returns 1 when it dropped columns (readers that
 * read MySQL before the commit must be fenced out: the caller bumps the version).
 */
static int row_commands(bee__rcmd_t *cmd, bee__rconn_t *c, const bee__entity_rt_t *rt, const bee__entity_t *e,
                        const bee__state_t *st, bee_value_t *values, const char *token, size_t *count) {
  int async = token != NULL;
  char key[BEE__KEY_ROW_MAX];
  size_t kl = bee__key_row(rt->prefix, st->id, key, sizeof key);
  if (!st->has_after) {
    bee__redis_append(c, "DEL %b", key, kl);
    bee__redis_append(c, "HSET %b " BEE__ROWHASH_MARK " N", key, kl);
    *count += 2;
    return 0;
  }
  if (!st->had_before) {
    row_hset(cmd, c, key, kl, e, st, values, 1, count);
    return 0;
  }
  if (!async) {
    bee__rcmd_begin(cmd, "HDEL");
    bee__rcmd_arg(cmd, key, kl);
    size_t cols = 0;
    for (size_t f = 0; f < e->field_count; f++)
      if (st->cols[f]) bee__rcmd_str(cmd, e->fields[f].name), cols++;
    if (cols) bee__rcmd_send(c, cmd, count);
    return cols > 0;
  }
  row_hset(cmd, c, key, kl, e, st, values, 0, count);
  if (!st->deltas) return 0;
  bee__rcmd_begin(cmd, "EVAL");
  bee__rcmd_str(cmd, bee__incr_script);
  bee__rcmd_str(cmd, "1");
  bee__rcmd_arg(cmd, key, kl);
  bee__rcmd_str(cmd, token);
  bee__buf_t base = {0};
  for (size_t f = 0; f < e->field_count; f++) {
    if (st->cols[f] != BEE__COL_ADD) continue;
    bee__rcmd_str(cmd, e->fields[f].name);
    bee__rcmd_str(cmd, st->deltas + f * BEE__DELTA_TEXT);
    column_text(e, &st->before, f, values, &base);
    bee__rcmd_arg(cmd, base.data ? base.data : "", base.len);
  }
  bee__buf_free(&base);
  bee__rcmd_send(c, cmd, count);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Unique keys and lists                                                    */

/* The key text of a unique index's values in an encoded row; 0, or 1 when absent (no row, a NULL). */
static int unique_text(const bee__entity_t *e, const bee__index_t *ix, const bee__buf_t *row, int has,
                       bee_value_t *values, bee__buf_t *out) {
  uint64_t id;
  out->len = 0;
  if (!has || bee__row_decode(e, row->data, row->len, &id, values)) return 1;
  return bee__key_values_text(values, ix->fields, ix->field_count, 0, out) != 0 || out->failed;
}

/* Calls fn for every unique index whose values the flush changed in this row. */
typedef void (*unique_fn)(void *ud, const bee__index_t *ix, const bee__buf_t *old_text, const bee__buf_t *new_text);

/* 1 when e has a unique index. */
static int has_uniques(const bee__entity_t *e) {
  for (size_t i = 0; i < e->index_count; i++)
    if (e->indexes[i].unique) return 1;
  return 0;
}

static void changed_uniques(const bee__entity_t *e, const bee__state_t *st, bee_value_t *values, unique_fn fn,
                            void *ud) {
  if (!has_uniques(e)) return;
  bee__buf_t a = {0}, b = {0};
  for (size_t i = 0; i < e->index_count; i++) {
    const bee__index_t *ix = &e->indexes[i];
    if (!ix->unique) continue;
    int no_old = unique_text(e, ix, &st->before, st->had_before, values, &a);
    int no_new = unique_text(e, ix, &st->after, st->has_after, values, &b);
    if (no_old && no_new) continue;
    if (!no_old && !no_new && a.len == b.len && !memcmp(a.data, b.data, a.len)) continue;
    fn(ud, ix, no_old ? NULL : &a, no_new ? NULL : &b);
  }
  bee__buf_free(&a);
  bee__buf_free(&b);
}

/* "<p>u:<cols>:" followed by text. */
static void unique_key_of(const char *prefix, const bee__entity_t *e, const bee__index_t *ix, const bee__buf_t *text,
                          bee__buf_t *out) {
  bee__key_unique_gen(prefix, e, ix, out); /* "<p>g:<cols>": same columns part */
  out->data[strlen(prefix)] = 'u';
  bee__buf_puts(out, ":");
  bee__buf_append(out, text->data, text->len);
}

typedef struct {
  bee__rcmd_t *cmd;
  bee__rconn_t *c;
  const bee__entity_rt_t *rt;
  const bee__entity_t *e;
  const bee__state_t *st;
  const char *token;   /* the new generation */
  int async;
  size_t *count;
} unique_cmds_t;

/*
 * A unique index whose values the row changed: its generation replaced (cached
 * not-founds of every spelling are void), the old value's exact key "not found", the
 * new value's exact key this row; with flush_async the row marked pending in the index
 * (a reader looking up another spelling checks it before MySQL has it).
 */
static void unique_commands(void *ud, const bee__index_t *ix, const bee__buf_t *old_text, const bee__buf_t *new_text) {
  unique_cmds_t *u = ud;
  bee__buf_t key = {0};
  char num[BEE__ID_BUF];
  size_t nl = bee__id_format(u->st->id, num);
  bee__key_unique_gen(u->rt->prefix, u->e, ix, &key);
  bee__redis_append(u->c, "SET %b %s", key.data, key.len, u->token);
  (*u->count)++;
  if (old_text) {
    unique_key_of(u->rt->prefix, u->e, ix, old_text, &key);
    bee__redis_append(u->c, "SET %b N%s", key.data, key.len, u->token);
    (*u->count)++;
  }
  if (new_text) {
    unique_key_of(u->rt->prefix, u->e, ix, new_text, &key);
    bee__redis_append(u->c, "SET %b %b:%b", key.data, key.len, num, nl, new_text->data, new_text->len);
    (*u->count)++;
  }
  if (u->async) {
    bee__key_unique_pending(u->rt->prefix, u->e, ix, &key);
    bee__redis_append(u->c, "HSET %b %b %s", key.data, key.len, num, nl, u->token);
    (*u->count)++;
  }
  bee__buf_free(&key);
}

/* Calls fn for each cached id list the row is in before or after (both may be the same list). */
typedef void (*list_fn)(void *ud, bee__buf_t *list_key);

static int has_lists(const bee__entity_t *e);

static void row_lists(const bee__entity_rt_t *rt, const bee__entity_t *e, const bee__state_t *st, bee_value_t *values,
                      list_fn fn, void *ud) {
  if (!has_lists(e)) return;
  bee__buf_t key = {0};
  for (int after = 0; after < 2; after++) {
    const bee__buf_t *row = after ? &st->after : &st->before;
    uint64_t id;
    if (!(after ? st->has_after : st->had_before) || bee__row_decode(e, row->data, row->len, &id, values)) continue;
    for (size_t i = 0; i < e->index_count; i++) {
      const bee__index_t *ix = &e->indexes[i];
      if (!ix->unique && ix->cached && bee__key_list(rt->prefix, e, ix->fields, ix->field_count, values, &key) == 0)
        fn(ud, &key);
    }
    for (size_t f = 0; f < e->field_count; f++)
      if (e->fields[f].type == BEE_FIELD_REF && e->fields[f].cached &&
          bee__key_list(rt->prefix, e, &f, 1, values, &key) == 0)
        fn(ud, &key);
  }
  if (e->cache_all && st->had_before != st->has_after && bee__key_list(rt->prefix, e, NULL, 0, NULL, &key) == 0)
    fn(ud, &key);
  bee__buf_free(&key);
}

typedef struct {
  bee__rconn_t *c;
  const char *prefix;
  const char *token; /* flush_async: mark the row pending in the list */
  uint64_t id;
  size_t *count;
} list_cmds_t;

/*
 * A cached id list the row leaves or joins: dropped (the next reader rebuilds it), and
 * with flush_async the row marked pending in it, so that rebuild, which reads MySQL
 * before the consumer applied the change, takes the row's state from the cache.
 */
static void list_commands(void *ud, bee__buf_t *key) {
  list_cmds_t *l = ud;
  bee__redis_append(l->c, "DEL %b", key->data, key->len);
  (*l->count)++;
  if (!l->token) return;
  char num[BEE__ID_BUF];
  size_t nl = bee__id_format(l->id, num);
  bee__key_list_pending(l->prefix, key);
  bee__redis_append(l->c, "HSET %b %b %s", key->data, key->len, num, nl, l->token);
  (*l->count)++;
}

/* 1 when e has cached id lists (cache_all, cached indexes or references). */
static int has_lists(const bee__entity_t *e) {
  if (e->cache_all) return 1;
  for (size_t i = 0; i < e->index_count; i++)
    if (!e->indexes[i].unique && e->indexes[i].cached) return 1;
  for (size_t f = 0; f < e->field_count; f++)
    if (e->fields[f].type == BEE_FIELD_REF && e->fields[f].cached) return 1;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Event keys (flush_async)                                                 */

typedef struct {
  bee__batch_t *w;
  const bee__entity_rt_t *rt;
  const bee__entity_t *e;
} event_keys_t;

static void event_unique_keys(void *ud, const bee__index_t *ix, const bee__buf_t *old_text,
                              const bee__buf_t *new_text) {
  event_keys_t *k = ud;
  bee__buf_t key = {0};
  if (old_text) {
    unique_key_of(k->rt->prefix, k->e, ix, old_text, &key);
    bee__batch_key(k->w, 'F', key.data, key.len);
  }
  if (new_text) {
    unique_key_of(k->rt->prefix, k->e, ix, new_text, &key);
    bee__batch_key(k->w, 'F', key.data, key.len);
  }
  if (bee__key_unique_gen(k->rt->prefix, k->e, ix, &key) == 0) bee__batch_key(k->w, 'A', key.data, key.len);
  if (bee__key_unique_pending(k->rt->prefix, k->e, ix, &key) == 0) bee__batch_key(k->w, 'P', key.data, key.len);
  bee__buf_free(&key);
}

static void event_list_keys(void *ud, bee__buf_t *key) {
  event_keys_t *k = ud;
  bee__batch_key(k->w, 'F', key->data, key->len);
  bee__key_list_pending(k->rt->prefix, key);
  bee__batch_key(k->w, 'P', key->data, key->len);
}

void bee__event_cache_keys(bee__batch_t *w, const bee__entity_rt_t *rt, const bee__entity_t *e, const bee__state_t *st,
                           bee_value_t *values) {
  event_keys_t k = {w, rt, e};
  changed_uniques(e, st, values, event_unique_keys, &k);
  row_lists(rt, e, st, values, event_list_keys, &k);
}

/* ------------------------------------------------------------------------ */
/* Redis                                                                    */

/* A token for a sync flush's unique generations (flush_async uses its own). */
static void fresh_token(char out[17]) { bee__token_format(bee__flush_token(), out); }

/*
 * When a sync flush cannot update a cache after its commit (Redis out of memory, the
 * MULTI refused): deletes every key it would have changed, so no reader keeps seeing
 * the old state. Redis takes DEL even at maxmemory. 0 when every DEL was answered.
 */
typedef struct {
  bee__rcmd_t *cmd;
  const char *prefix;
  const bee__entity_t *e;
} drop_t;

static void drop_unique(void *ud, const bee__index_t *ix, const bee__buf_t *old_text, const bee__buf_t *new_text) {
  drop_t *d = ud;
  bee__buf_t key = {0};
  if (bee__key_unique_gen(d->prefix, d->e, ix, &key) == 0) bee__rcmd_arg(d->cmd, key.data, key.len);
  if (old_text) {
    unique_key_of(d->prefix, d->e, ix, old_text, &key);
    bee__rcmd_arg(d->cmd, key.data, key.len);
  }
  if (new_text) {
    unique_key_of(d->prefix, d->e, ix, new_text, &key);
    bee__rcmd_arg(d->cmd, key.data, key.len);
  }
  bee__buf_free(&key);
}

static void drop_list(void *ud, bee__buf_t *key) {
  drop_t *d = ud;
  bee__rcmd_arg(d->cmd, key->data, key->len);
}

static int drop_keys(bee_context_t *ctx, size_t rp, bee__states_t *s, bee_value_t *values, bee__rcmd_t *cmd,
                     bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, rp, &c, err);
  if (rc) return rc;
  size_t count = 0;
  for (size_t ei = 0; ei < engine->entity_count; ei++) {
    const bee__entity_rt_t *rt = &engine->rt[ei];
    const bee__entity_t *e = &engine->entities[ei];
    if (rt->redis != (int)rp) continue;
    drop_t d = {cmd, rt->prefix, e};
    bee__rcmd_begin(cmd, "DEL");
    char key[BEE__KEY_ROW_MAX];
    bee__rcmd_arg(cmd, key, bee__key_version(rt->prefix, key, sizeof key));
    size_t n = cmd->n;
    for (size_t i = 0; i < s->count; i++) {
      const bee__state_t *st = &s->items[i];
      if (st->entity != ei) continue;
      bee__rcmd_arg(cmd, key, bee__key_row(rt->prefix, st->id, key, sizeof key));
      changed_uniques(e, st, values, drop_unique, &d);
      row_lists(rt, e, st, values, drop_list, &d);
    }
    if (cmd->n > n) bee__rcmd_send(c, cmd, &count);
  }
  if (cmd->failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory deleting cache keys");
  return bee__ctx_redis_replies(ctx, rp, c, count, "deleting cache keys failed", err);
}

/*
 * Appends the PUBLISH of entity ei's invalidation (every id of the flush) to the MULTI
 * and records it in s->published, with its place in EXEC's reply in exec_at. Out of
 * memory, nothing is recorded: write_local publishes it then.
 */
static void publish_in_multi(bee__rconn_t *c, bee_context_t *ctx, size_t ei, bee__states_t *s, size_t *count,
                            size_t *exec_at) {
  size_t n = 0;
  for (size_t i = 0; i < s->count; i++) n += s->items[i].entity == ei;
  uint64_t *ids = bee__malloc((n ? n : 1) * sizeof *ids);
  bee__buf_t msg = {0};
  bee__published_t *p = &s->published[s->npublished];
  int ok = ids != NULL;
  n = 0;
  for (size_t i = 0; ok && i < s->count; i++)
    if (s->items[i].entity == ei) ids[n++] = s->items[i].id;
  if (ok) ok = bee__invalidation_message(ctx->engine, ei, ids, n, p->ack, &msg) == 0;
  bee__buf_t channel = {0};
  const char *prefix = ctx->engine->rt[ei].prefix;
  bee__invalidation_channel(prefix, strlen(prefix), &channel);
  if (ok && !channel.failed) {
    bee__redis_append(c, "PUBLISH %b %b", channel.data, channel.len, msg.data, msg.len);
    exec_at[s->npublished] = (*count)++ - 1; /* its place in EXEC's reply (MULTI is not in it) */
    p->entity = ei;
    p->receivers = 0;
    s->npublished++;
  }
  bee__free(ids);
  bee__buf_free(&msg);
  bee__buf_free(&channel);
}

int bee__cache_write_redis(bee_context_t *ctx, size_t rp, bee__states_t *s, bee_value_t *values, const bee__qentry_t *q,
                           size_t nq, const char *token, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  bee__rconn_t *c;
  int rc = bee__ctx_redis(ctx, rp, &c, err);
  if (rc) return rc;
  int async = token != NULL;
  char gen[17];
  if (!async) fresh_token(gen);
  bee__rcmd_t cmd = {0};
  size_t count = 0;
  size_t *exec_at = bee__calloc(engine->entity_count, sizeof *exec_at);
  if (!s->published) s->published = bee__calloc(engine->entity_count, sizeof *s->published);
  if (!s->published || !exec_at) {
    bee__free(exec_at);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory updating the cache");
  }
  size_t first_published = s->npublished;
  bee__redis_append(c, "MULTI");
  count++;
  for (size_t i = 0; i < nq; i++) {
    bee__redis_append(c, "XADD %s * e %b", q[i].key, q[i].payload.data, q[i].payload.len);
    count++;
  }
  for (size_t ei = 0; ei < engine->entity_count; ei++) {
    const bee__entity_rt_t *rt = &engine->rt[ei];
    if (rt->redis != (int)rp) continue;
    const bee__entity_t *e = &engine->entities[ei];
    int touched = 0, fence = 0;
    for (size_t i = 0; i < s->count; i++) {
      const bee__state_t *st = &s->items[i];
      if (st->entity != ei) continue;
      touched = 1;
      fence |= row_commands(&cmd, c, rt, e, st, values, token, &count);
      unique_cmds_t u = {&cmd, c, rt, e, st, async ? token : gen, async, &count};
      changed_uniques(e, st, values, unique_commands, &u);
      list_cmds_t l = {c, rt->prefix, token, st->id, &count};
      row_lists(rt, e, st, values, list_commands, &l);
    }
    /* The version fences readers' fills against what was dropped here (columns, lists).
       What was written needs no fence: fills never overwrite (loader.c). */
    if (touched && (fence || has_lists(e))) {
      bee__redis_append(c, "INCR %sv", rt->prefix);
      count++;
    }
    /* Other processes' local caches: the invalidation goes with the writes (no round trip
       of its own); its receivers are waited for after (write_local). */
    if (touched && engine->inval_redis == (int)rp) publish_in_multi(c, ctx, ei, s, &count, exec_at);
  }
  /* A command that could not be built (out of memory): nothing of the MULTI is applied. */
  int cmd_failed = cmd.failed || cmd.text.failed;
  bee__redis_append(c, cmd_failed ? "DISCARD" : "EXEC");
  count++;
  size_t exec_reply = count - 1;
  /* Durable on replicas: the queue entry is acknowledged by that many replicas before
     flush_async returns (same round trip). WAIT counts what this connection wrote. */
  const bee_redis_settings_t *rs = &engine->redis[rp].settings;
  int wait = async && nq && !cmd_failed && rs->replicas > 0;
  long long acked = -1;
  if (wait) {
    bee__redis_append(c, "WAIT %d %u", rs->replicas, rs->wait_timeout_ms ? rs->wait_timeout_ms : BEE_REDIS_WAIT_TIMEOUT_MS);
    count++;
  }
  for (size_t i = 0; i < count; i++) {
    bee__reply_t *reply = NULL;
    if (bee__redis_get_reply(c, &reply) != 0) {
      rc = bee__redis_error(err, &engine->redis[rp], c, NULL, "updating the cache failed");
      if (async && q && rc != BEE_ETIMEOUT) /* lost after sending: the MULTI may have run, or not (G11) */
        rc = err ? (err->code = BEE_ETIMEOUT) : BEE_ETIMEOUT;
      bee__ctx_redis_broken(ctx, rp);
      bee__rcmd_free(&cmd);
      bee__free(exec_at);
      s->npublished = first_published;
      return rc;
    }
    bee__reply_t *r = reply;
    /* The first refusal tells why (out of memory ...), not EXEC's EXECABORT after it. */
    if (!rc && r->type == BEE__REPLY_ERROR) rc = bee__redis_error(err, &engine->redis[rp], c, r, "updating the cache failed");
    if (wait && i == count - 1) {
      if (r->type == BEE__REPLY_INTEGER) acked = r->integer;
      else if (!rc) rc = bee__redis_error(err, &engine->redis[rp], c, r, "waiting for replicas failed");
      bee__reply_free(r);
      continue;
    }
    if (!rc && i == exec_reply && !cmd_failed) {
      if (r->type != BEE__REPLY_ARRAY) rc = bee__redis_error(err, &engine->redis[rp], c, r, "updating the cache failed");
      for (size_t k = 0; !rc && k < r->elements; k++)
        if (r->element[k]->type == BEE__REPLY_ERROR)
          rc = bee__redis_error(err, &engine->redis[rp], c, r->element[k], "updating the cache failed");
      for (size_t p = first_published; !rc && p < s->npublished; p++) {
        size_t at = exec_at[p - first_published];
        s->published[p].receivers = at < r->elements && r->element[at]->type == BEE__REPLY_INTEGER
                                        ? r->element[at]->integer
                                        : 0;
      }
    }
    bee__reply_free(r);
  }
  bee__free(exec_at);
  if (!rc && wait && acked < rs->replicas) {
    unsigned int ms = rs->wait_timeout_ms ? rs->wait_timeout_ms : BEE_REDIS_WAIT_TIMEOUT_MS;
    rc = bee__error(err, BEE_EDURABILITY, 1,
                    "flush_async queued the changes on the master, but %lld of %d replicas acknowledged them within "
                    "%u ms: a failover now could lose them. They stay tracked; flushing them again from this "
                    "context applies them once", acked < 0 ? 0 : acked, rs->replicas, ms);
    bee__error_pool(err, engine->redis[rp].name);
    /* Too few replicas may mean a master the others left (a failover this process did
       not see): the next flush takes a new connection, which asks the sentinels. */
    bee__redis_retire(c, "too few replicas acknowledged");
    bee__rcmd_free(&cmd);
    return rc;
  }
  if (rc) s->npublished = first_published; /* not published: write_local publishes them */
  if (!rc && cmd_failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory updating the cache");
  if (rc && !async) {
    /* MySQL committed: what could not be updated must not stay. */
    bee_error_t drop_err;
    if (drop_keys(ctx, rp, s, values, &cmd, &drop_err) == 0) rc = 0;
  }
  bee__rcmd_free(&cmd);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Local caches                                                             */

/*
 * This process's local caches, then the other processes' through pub/sub. A new row
 * (or a row gone) is known whole and cached here; an updated row is only dropped: what
 * the cache held for the columns this flush did not change may be older than Redis.
 */
static int write_local(bee_context_t *ctx, bee__states_t *s, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  int rc = 0;
  uint64_t *ids = bee__malloc(s->count * sizeof *ids + 1);
  if (!ids) return bee__error(err, BEE_ENOMEM, 0, "out of memory publishing invalidations");
  for (size_t i = 0; i < s->count;) { /* states are sorted by entity */
    size_t ei = s->items[i].entity, n = 0;
    bee__entity_rt_t *rt = &engine->rt[ei];
    bee__buf_t miss = {0};
    if (rt->lru) bee__row_encode_missing(&engine->entities[ei], &miss);
    for (; i < s->count && s->items[i].entity == ei; i++) {
      const bee__state_t *st = &s->items[i];
      ids[n++] = st->id;
      if (!rt->lru) continue;
      bee__lru_remove(rt->lru, st->id);
      if ((!st->had_before || !st->has_after) && !miss.failed && bee__local_cache_ok(engine)) {
        const bee__buf_t *row = st->has_after ? &st->after : &miss;
        bee__lru_put(rt->lru, st->id, row->data, row->len, bee__lru_epoch(rt->lru));
      }
    }
    bee__buf_free(&miss);
    /* Published for every entity: other processes may cache it locally under another
       definition. Most went with the cache writes: only their acknowledgements remain. */
    const bee__published_t *pub = NULL;
    for (size_t p = 0; p < s->npublished && !pub; p++)
      if (s->published[p].entity == ei) pub = &s->published[p];
    int prc = pub ? bee__invalidation_wait(ctx, ei, pub->ack, pub->receivers, err)
                  : bee__publish_invalidation(ctx, ei, ids, n, err);
    if (!rc) rc = prc;
  }
  bee__free(ids);
  return rc;
}

int bee__cache_write(bee_context_t *ctx, bee__states_t *s, bee_value_t *values, int skip_pool, const char *token,
                     const char *what, bee_error_t *err) {
  bee_engine_t *engine = ctx->engine;
  bee_error_t cache_err;
  int crc = 0;
  for (size_t rp = 0; rp < engine->redis_count; rp++) {
    if ((int)rp == skip_pool) continue;
    int any = 0;
    for (size_t i = 0; i < s->count && !any; i++) any = engine->rt[s->items[i].entity].redis == (int)rp;
    if (any) {
      int r1 = bee__cache_write_redis(ctx, rp, s, values, NULL, 0, token, &cache_err);
      if (r1 && !crc) crc = r1;
    }
  }
  int r2 = write_local(ctx, s, crc ? NULL : &cache_err);
  if (r2 && !crc) crc = r2;
  if (crc && err) {
    *err = cache_err;
    char msg[BEE_ERROR_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "%s", err->message);
    snprintf(err->message, sizeof err->message, "%s: %.400s", what, msg);
  }
  return crc;
}
