/* consumer_queue.c: reading and trimming a queue's stream, and the caches dropped after a batch. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "consumer.h"
#include "event.h"
#include "orm.h"
#include "queues.h"
#include "rcmd.h"

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */

/* Up to max entries after ms-seq, in order. */
static int fetch_after(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq, size_t max,
                       entry_t **out, size_t *n, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = bee__c_get_redis(c, qp, &r, err);
  if (rc) return rc;
  char mark[64], count[24];
  snprintf(mark, sizeof mark, "(%llu-%llu", (unsigned long long)ms, (unsigned long long)seq);
  snprintf(count, sizeof count, "%zu", max);
  const char *argv[] = {"XRANGE", key, mark, "+", "COUNT", count};
  bee__reply_t *rep = bee__redis_command_argv(r, 6, argv, NULL);
  if (!rep || rep->type != BEE__REPLY_ARRAY) {
    rc = bee__redis_error(err, &c->engine->redis[qp], r, rep, "reading the queue failed");
    if (rep) bee__reply_free(rep);
    return rc;
  }
  entry_t *e = bee__calloc(rep->elements ? rep->elements : 1, sizeof *e);
  if (!e) {
    bee__reply_free(rep);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory reading the queue");
  }
  size_t k = 0;
  for (size_t i = 0; i < rep->elements; i++) {
    bee__reply_t *it = rep->element[i];
    if (it->type != BEE__REPLY_ARRAY || it->elements != 2 || it->element[0]->type != BEE__REPLY_STRING) continue;
    entry_t *x = &e[k];
    snprintf(x->id, sizeof x->id, "%s", it->element[0]->str);
    if (bee__stream_id_parse(x->id, &x->ms, &x->seq)) continue;
    bee__reply_t *f = it->element[1];
    /* "e" <batch>, or "e" <batch> "r" <what> for an entry retried from the error list:
       <what> is the parked entry's stream id (checked for staleness before it applies),
       "force" (a forced retry) or "1" (written by earlier versions);
       anything else is junk: kept as it is (its first value) and parked as malformed */
    int shape = f->type == BEE__REPLY_ARRAY && (f->elements == 2 || f->elements == 4);
    for (size_t j = 0; shape && j < f->elements; j++) shape = f->element[j]->type == BEE__REPLY_STRING;
    shape = shape && f->element[0]->len == 1 && f->element[0]->str[0] == 'e';
    if (shape && f->elements == 4) {
      const bee__reply_t *w = f->element[3];
      uint64_t oms, oseq;
      shape = f->element[2]->len == 1 && f->element[2]->str[0] == 'r';
      if (shape && !(w->len == 1 && w->str[0] == '1') && !(w->len == 5 && !memcmp(w->str, "force", 5))) {
        shape = w->len < sizeof x->retried_of && !memchr(w->str, '\0', w->len) && !bee__stream_id_parse(w->str, &oms, &oseq);
        if (shape) memcpy(x->retried_of, w->str, w->len + 1);
      }
      x->retried = shape;
    }
    if (f->type == BEE__REPLY_ARRAY && f->elements >= 2 && f->element[1]->type == BEE__REPLY_STRING) {
      x->payload = bee__malloc(f->element[1]->len + 1);
      if (!x->payload) {
        bee__c_entries_free(e, k);
        bee__reply_free(rep);
        return bee__error(err, BEE_ENOMEM, 0, "out of memory reading the queue");
      }
      memcpy(x->payload, f->element[1]->str, f->element[1]->len);
      x->len = f->element[1]->len;
    }
    x->bad = shape ? bee__batch_check(x->payload, x->len, c->ev, &x->bad_event, &x->trailing) : BEE__BATCH_NOT;
    x->token = x->bad ? 0 : bee__batch_token(x->payload, x->len);
    k++;
  }
  bee__reply_free(rep);
  *out = e;
  *n = k;
  return 0;
}

/*
 * Up to max entries after the mark ms-seq. The read starts at the stream's head: entries
 * at or below the mark are there only when a consumer died (or lost Redis) between its
 * COMMIT and its cache work; that work is done for them now (it is idempotent), and
 * they are trimmed. Normally the head is the first entry after the mark: no extra cost.
 */
int bee__c_fetch(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq, size_t max, entry_t **out,
                 size_t *n, bee_error_t *err) {
  for (;;) {
    int rc = fetch_after(c, qp, key, 0, 0, max, out, n, err);
    if (rc || !*n || (*out)[0].ms > ms || ((*out)[0].ms == ms && (*out)[0].seq > seq)) return rc;
    size_t old = 0;
    while (old < *n && ((*out)[old].ms < ms || ((*out)[old].ms == ms && (*out)[old].seq <= seq))) old++;
    bee__c_invalidate(c, *out, 0, old, 0);
    bee__c_trim(c, qp, key, (*out)[old - 1].ms, (*out)[old - 1].seq); /* only what was handled */
    bee__c_entries_free(*out, *n);
    *out = NULL;
    *n = 0;
    if (old == max) continue; /* more leftovers may follow */
    return fetch_after(c, qp, key, ms, seq, max, out, n, err);
  }
}

/* ------------------------------------------------------------------------ */
/* The caches dropped after a batch                                         */

/* Removes field ARGV[1] of the hash KEYS[1] if it holds ARGV[2] (the batch's token). */
static const char *const unpend_script =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

/*
 * Deletes cache keys of the events of entries [a, b): 'A' keys always, 'F' keys too
 * when failed; clears their pending marks ('P'); bumps each entity's version once. Pipelined: one round trip per Redis
 * pool for the whole range. Failed rows are also dropped from every process's local
 * cache (published without an ack: nobody waits on a consumer).
 */
void bee__c_invalidate(consumer_t *c, entry_t *entries, size_t a, size_t b, int failed_all) {
  bee__event_t *ev = c->ev;
  bee_engine_t *engine = c->engine;
  size_t *sent = bee__calloc(engine->redis_count ? engine->redis_count : 1, sizeof *sent);
  char(*prefixes)[512] = bee__malloc(64 * sizeof *prefixes);
  int *prefix_pool = bee__malloc(64 * sizeof *prefix_pool);
  size_t nprefix = 0;
  if (!sent || !prefixes || !prefix_pool) goto out;
  for (size_t i = a; i < b; i++) {
    size_t count, pos;
    /* 'F' keys go when the entry failed, and when it applies after having failed once:
       readers may have filled them from MySQL in between. */
    int failed = failed_all || entries[i].retried;
    if (!entries[i].payload || bee__batch_open(entries[i].payload, entries[i].len, &count, &pos)) continue;
    char token[17];
    bee__token_format(bee__batch_token(entries[i].payload, entries[i].len), token);
    for (size_t k = 0; k < count; k++) {
      if (bee__batch_next(entries[i].payload, entries[i].len, &pos, ev)) break;
      if (!ev->prefix.n || !ev->cache_pool.n || ev->prefix.n >= sizeof prefixes[0]) continue;
      char pool_name[BEE_NAME_MAX];
      snprintf(pool_name, sizeof pool_name, "%.*s", (int)ev->cache_pool.n, ev->cache_pool.p);
      int rp = bee__engine_redis_index(engine, pool_name);
      bee__rconn_t *r;
      bee_error_t ignored;
      if (rp < 0 || bee__c_get_redis(c, (size_t)rp, &r, &ignored)) continue;
      if (failed) { /* the row's own key, implied by the event */
        char row_key[600];
        size_t rl = bee__event_row_key(ev, row_key, sizeof row_key);
        if (rl) {
          bee__redis_append(r, "DEL %b", row_key, rl);
          sent[rp]++;
        }
      }
      for (size_t j = 0; j < ev->nkeys; j++) {
        char when;
        bee__str_t key;
        if (bee__event_key(ev, j, &when, &key)) break;
        if (when == 'P') { /* the list's pending mark, unless a later flush_async set it again */
          char num[BEE__ID_BUF];
          size_t nl = bee__id_format(ev->id, num);
          bee__redis_append(r, "EVAL %s 1 %b %b %s", unpend_script, key.p, key.n, num, nl, token);
          sent[rp]++;
        } else if (when == 'A' || failed) {
          bee__redis_append(r, "DEL %b", key.p, key.n);
          sent[rp]++;
        }
      }
      size_t p = 0;
      while (p < nprefix && (prefix_pool[p] != rp || strlen(prefixes[p]) != ev->prefix.n ||
                             memcmp(prefixes[p], ev->prefix.p, ev->prefix.n)))
        p++;
      if (p == nprefix) {
        if (nprefix < 64) {
          snprintf(prefixes[nprefix], sizeof prefixes[0], "%.*s", (int)ev->prefix.n, ev->prefix.p);
          prefix_pool[nprefix++] = rp;
        } else { /* too many entities in one batch to remember: bump now */
          bee__redis_append(r, "INCR %bv", ev->prefix.p, ev->prefix.n);
          sent[rp]++;
        }
      }
      if (failed && engine->inval_redis == rp) {
        char num[BEE__ID_BUF];
        size_t nl = bee__id_format(ev->id, num);
        bee__redis_append(r, "PUBLISH " BEE__CHANNEL "%b -\n\n%b\n%b", ev->prefix.p, ev->prefix.n, ev->prefix.p,
                           ev->prefix.n, num, nl);
        sent[rp]++;
      }
    }
  }
  for (size_t p = 0; p < nprefix; p++) {
    bee__redis_append(c->redis[prefix_pool[p]], "INCR %sv", prefixes[p]); /* the entity's version */
    sent[prefix_pool[p]]++;
  }
  for (size_t rp = 0; rp < engine->redis_count; rp++)
    for (size_t j = 0; j < sent[rp]; j++) {
      bee__reply_t *reply = NULL;
      if (bee__redis_get_reply(c->redis[rp], &reply) != 0) break;
      bee__reply_free(reply);
    }
out:
  bee__free(sent);
  bee__free(prefixes);
  bee__free(prefix_pool);
}

/* ------------------------------------------------------------------------ */
/* Trimming                                                                 */

/*
 * Removes every entry at or below the mark ms-seq from the stream: the batch just
 * applied and any left by a consumer that died between COMMIT and this step. A
 * failure only leaves them for the mark to skip (and the next trim to remove).
 */
/* Appends to r's pipeline the XTRIM removing every entry at or below ms-seq (min: scratch). */
static void append_trim(bee__rconn_t *r, const char *key, uint64_t ms, uint64_t seq, char min[64]) {
  if (seq == UINT64_MAX) snprintf(min, 64, "%llu-0", (unsigned long long)ms + 1);
  else snprintf(min, 64, "%llu-%llu", (unsigned long long)ms, (unsigned long long)seq + 1);
  const char *argv[] = {"XTRIM", key, "MINID", "=", min};
  bee__redis_append_argv(r, 5, argv, NULL);
}

void bee__c_trim(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (bee__c_get_redis(c, qp, &r, &ignored)) return;
  char min[64];
  append_trim(r, key, ms, seq, min);
  bee__reply_t *rep = NULL;
  bee__redis_get_reply(r, &rep);
  bee__reply_free(rep);
}

/* Adds a row to the command ud (a bee__rcmd_t). */
static int add_row_arg(void *ud, const char *row) {
  bee__rcmd_str(ud, row);
  return 0;
}

/*
 * Rows of entries [a, b), just applied, that have a parked change: that parked entry is
 * now stale (a retry would undo a newer write, docs/guarantees.md G13). Marked in "...:stale":
 * parked stream id -> "<table>:<id> <the newer entry>".
 */
static void mark_stale(consumer_t *c, bee__rconn_t *r, const char *parked_key, const char *stale_key,
                       const entry_t *entries, size_t a, size_t b) {
  bee__rcmd_t cmd = {0};
  bee__rcmd_begin(&cmd, "HMGET");
  bee__rcmd_str(&cmd, parked_key);
  size_t *ends = bee__malloc((b - a) * sizeof *ends); /* ends[i - a]: arguments up to entry i's rows */
  if (!ends) {
    bee__rcmd_free(&cmd);
    return;
  }
  for (size_t i = a; i < b; i++) {
    if (!entries[i].dup) bee__batch_rows(entries[i].payload, entries[i].len, c->ev, add_row_arg, &cmd);
    ends[i - a] = cmd.n;
  }
  size_t sent = 0;
  if (cmd.n > 2) bee__rcmd_send(r, &cmd, &sent);
  bee__reply_t *reply = NULL;
  if (sent && bee__redis_get_reply(r, &reply) == 0) {
    bee__reply_t *rep = reply;
    for (size_t k = 0; rep->type == BEE__REPLY_ARRAY && k < rep->elements; k++) {
      const bee__reply_t *ids = rep->element[k];
      if (ids->type != BEE__REPLY_STRING) continue;
      const char *row = cmd.text.data + cmd.spans[2 + k][0];
      size_t row_len = cmd.spans[2 + k][1], owner = a;
      while (owner + 1 < b && ends[owner - a] <= 2 + k) owner++; /* the entry that changed the row */
      for (const char *p = ids->str, *end = ids->str + ids->len; p < end;) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t n = sp ? (size_t)(sp - p) : (size_t)(end - p);
        int own = n == strlen(entries[owner].retried_of) && !memcmp(p, entries[owner].retried_of, n);
        if (n && !own) { /* (a retry applying its own parked change is not newer than itself) */
          char value[BEE__IDENT_MAX + 96]; /* "<table>:<id> <newer entry>" */
          snprintf(value, sizeof value, "%.*s %s", (int)row_len, row, entries[owner].id);
          bee__reply_t *x = bee__redis_command(r, "HSET %s %b %s", stale_key, p, n, value);
          if (x) bee__reply_free(x);
        }
        p += n + 1;
      }
    }
    bee__reply_free(rep);
  }
  bee__free(ends);
  bee__rcmd_free(&cmd);
}

/*
 * A retry of a parked entry (e->retried_of) is done with, applied or parked again: the
 * rows of that parked id are no longer held back, and it is no longer stale.
 */
void bee__c_forget_retried(consumer_t *c, bee__rconn_t *r, const char *parked_key, const char *stale_key,
                           const entry_t *e) {
  if (!e->retried_of[0]) return;
  bee__park_t u = {r, parked_key, e->retried_of};
  bee__batch_rows(e->payload, e->len, c->ev, bee__unpark_row, &u);
  bee__reply_t *x = bee__redis_command(r, "HDEL %s %s", stale_key, e->retried_of);
  if (x) bee__reply_free(x);
}

/*
 * Entries [a, b) were just applied. In one round trip: an error record of any of them
 * is gone (one was left when an entry was parked but its mark could not be moved: it
 * was then applied after all, and must never be retried), the stream is trimmed up to
 * the last of them, and the parked rows are counted; only while some are, the rows of
 * [a, b) mark parked entries stale (mark_stale), and retries among them are forgotten.
 */
size_t bee__c_append_figures(bee__rconn_t *r, const char *queue, const char *what, const char *rate_prefix, size_t n) {
  char rate[64], count[24];
  snprintf(rate, sizeof rate, "%s%lld", rate_prefix, (long long)(bee__c_now_ms() / 1000));
  snprintf(count, sizeof count, "%zu", n);
  bee__redis_append(r, "HINCRBY %s %s:%s %s", BEE__COUNTERS_KEY, queue, what, count);
  bee__redis_append(r, "INCRBY %s %s", rate, count);
  bee__redis_append(r, "EXPIRE %s " BEE__RATE_KEEP_S, rate);
  return 3;
}

void bee__c_trim_applied(consumer_t *c, size_t qp, const char *queue, const char *key, const entry_t *entries, size_t a,
                         size_t b) {
  bee__rconn_t *r;
  bee_error_t ignored;
  size_t kl = strlen(key);
  const char **argv = b > a ? bee__malloc((b - a + 2) * sizeof *argv) : NULL;
  if (!argv || kl < 3 || bee__c_get_redis(c, qp, &r, &ignored)) {
    bee__free(argv);
    if (b > a) bee__c_trim(c, qp, key, entries[b - 1].ms, entries[b - 1].seq);
    return;
  }
  char errors_key[160], parked_key[160], stale_key[160], min[64];
  snprintf(errors_key, sizeof errors_key, "%.*serrors", (int)(kl - 1), key); /* "...}:s" -> "...}:errors" */
  snprintf(parked_key, sizeof parked_key, "%.*sparked", (int)(kl - 1), key);
  snprintf(stale_key, sizeof stale_key, "%.*sstale", (int)(kl - 1), key);
  argv[0] = "HDEL";
  argv[1] = errors_key;
  for (size_t i = a; i < b; i++) argv[2 + i - a] = entries[i].id;
  bee__redis_append_argv(r, (int)(b - a + 2), argv, NULL);
  append_trim(r, key, entries[b - 1].ms, entries[b - 1].seq, min);
  bee__redis_append(r, "HLEN %s", parked_key);
  size_t events = bee__c_events(entries, a, b);
  size_t extra = events ? bee__c_append_figures(r, queue, "applied", BEE__RATE_KEY, events) : 0;
  bee__reply_t *x = NULL, *t = NULL, *n = NULL;
  int parked = bee__redis_get_reply(r, &x) == 0 && bee__redis_get_reply(r, &t) == 0 &&
               bee__redis_get_reply(r, &n) == 0 && n->type == BEE__REPLY_INTEGER && n->integer > 0;
  bee__reply_free(x);
  bee__reply_free(t);
  bee__reply_free(n);
  for (size_t i = 0; i < extra; i++) {
    bee__reply_t *e = NULL;
    if (bee__redis_get_reply(r, &e) != 0) break;
    bee__reply_free(e);
  }
  bee__free(argv);
  if (parked) mark_stale(c, r, parked_key, stale_key, entries, a, b);
  for (size_t i = a; i < b; i++) bee__c_forget_retried(c, r, parked_key, stale_key, &entries[i]);
}

void bee__c_set_pending(consumer_t *c, size_t qp, const char *pending_key, size_t n) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (bee__c_get_redis(c, qp, &r, &ignored)) return;
  char num[24];
  snprintf(num, sizeof num, "%zu", n); /* (the client library's formats know no %zu) */
  bee__reply_t *rep = n ? bee__redis_command(r, "SET %s %s PX 60000", pending_key, num) : bee__redis_command(r, "DEL %s", pending_key);
  if (rep) bee__reply_free(rep);
}
