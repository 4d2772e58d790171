/* consumer_fail.c: failed entries: the resolver and its edits, error records, parked and stale retries. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "event.h"
#include "orm.h"
#include "queues.h"
#include "record.h"

/* ------------------------------------------------------------------------ */
/* Failures: error records and the resolver                                 */

struct bee_edit_s {
  bee__event_t *ev;
  bee__buf_t strings; /* copies of edited string values */
  int edited;
  char resolver_error[BEE_ERROR_MESSAGE_MAX]; /* "" unless the resolver failed */
};

int bee_failed_event_resolver_failed(bee_edit_t *edit, const char *message) {
  if (!edit || !message) return BEE_EINVAL;
  size_t o = 0;
  for (const char *p = message; *p && o + 1 < sizeof edit->resolver_error; p++)
    edit->resolver_error[o++] = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
  edit->resolver_error[o] = '\0';
  if (!o) snprintf(edit->resolver_error, sizeof edit->resolver_error, "the resolver failed");
  return 0;
}

int bee_failed_event_edit(bee_edit_t *edit, const char *col, const bee_value_t *v) {
  if (!edit || !col || !v) return BEE_EINVAL;
  for (size_t i = 0; i < edit->ev->ncols; i++) {
    if (strlen(col) != edit->ev->cols[i].n || memcmp(col, edit->ev->cols[i].p, edit->ev->cols[i].n)) continue;
    edit->ev->values[i] = *v;
    if (v->kind == BEE_VALUE_STRING) {
      /* Offsets now, pointers after the last edit: the buffer may move. */
      size_t off = edit->strings.len;
      bee__buf_append(&edit->strings, v->str, v->len);
      if (edit->strings.failed) return BEE_ENOMEM;
      edit->ev->values[i].str = (const char *)(uintptr_t)off;
      edit->ev->values[i].len = v->len | ((size_t)1 << (sizeof(size_t) * 8 - 1)); /* mark as an offset */
    }
    edit->edited = 1;
    return 0;
  }
  return BEE_EINVAL;
}

/* Replaces the bytes of entry e with the batch rewritten: event `index` replaced by ev, or dropped (ev NULL). */
static int rewrite_entry(entry_t *e, size_t index, const bee__event_t *ev) {
  bee__buf_t out = {0};
  int rc = bee__batch_rewrite(e->payload, e->len, index, ev, &out);
  if (rc) {
    bee__buf_free(&out);
    return rc;
  }
  size_t n = out.len;
  char *payload = bee__buf_take(&out);
  if (!payload) return BEE_ENOMEM;
  bee__free(e->payload);
  e->payload = payload;
  e->len = n;
  bee__event_t *check = bee__malloc(sizeof *check); /* an edit can be unsound too (a string added to a number) */
  if (!check) return BEE_ENOMEM;
  e->bad = bee__batch_check(e->payload, e->len, check, &e->bad_event, &e->trailing);
  e->token = e->bad ? 0 : bee__batch_token(e->payload, e->len);
  bee__free(check);
  return 0;
}

/* Entry e with event `index` replaced by the resolver's edit of it. */
static int reencode(entry_t *e, size_t index, bee__event_t *edited, bee_edit_t *edit) {
  const size_t mark = (size_t)1 << (sizeof(size_t) * 8 - 1);
  for (size_t i = 0; i < edited->ncols; i++)
    if (edited->values[i].kind == BEE_VALUE_STRING && (edited->values[i].len & mark)) {
      edited->values[i].len &= ~mark;
      edited->values[i].str = edit->strings.data + (uintptr_t)edited->values[i].str;
    }
  return rewrite_entry(e, index, edited);
}

/* Fills the public view of a failing event from entry e, event index. */
static int describe(consumer_t *c, const char *queue, entry_t *e, size_t index, MYSQL *conn, const bee_error_t *err,
                    int attempts, bee__event_t *ev, bee__buf_t *sql, char (*cols)[BEE__IDENT_MAX + 1],
                    const char **colp, char *entity, char *table, bee_failed_event_t *out) {
  size_t count, pos;
  if (bee__batch_open(e->payload, e->len, &count, &pos) || index >= count) return -1;
  for (size_t k = 0; k <= index; k++)
    if (bee__batch_next(e->payload, e->len, &pos, ev)) return -1;
  bee__c_event_sql(conn, ev, sql);
  bee__buf_append(sql, "", 0);
  snprintf(entity, BEE__IDENT_MAX + 1, "%.*s", (int)ev->entity.n, ev->entity.p);
  snprintf(table, BEE__IDENT_MAX + 1, "%.*s", (int)ev->table.n, ev->table.p);
  for (size_t i = 0; i < ev->ncols; i++) {
    snprintf(cols[i], BEE__IDENT_MAX + 1, "%.*s", (int)ev->cols[i].n, ev->cols[i].p);
    colp[i] = cols[i];
  }
  memset(out, 0, sizeof *out);
  out->queue = queue;
  out->stream_id = e->id;
  out->kind = ev->kind;
  out->entity = entity;
  out->table = table;
  out->id = ev->id;
  out->sql = sql->data ? sql->data : "";
  out->ncols = ev->ncols;
  out->cols = colp;
  out->values = ev->values;
  out->increments = ev->add;
  out->code = err->code == BEE_EMYSQL ? err->server_code : err->code;
  out->message = err->message;
  out->attempts = attempts;
  out->failed_at_ms = bee__c_now_ms();
  out->events = count;
  out->event = index;
  out->failed_event = index;
  (void)c;
  return 0;
}

/* 1 when err is an entry's own permanent failure (MySQL refused it, or it is malformed): it is parked, not retried. */
int bee__c_permanent(const bee_error_t *err) {
  return !err->temporary && (err->code == BEE_EMYSQL || err->code == BEE_EINVAL || err->code == BEE_EMALFORMED);
}

/* The number of events of an entry (0 when it is not a batch). */
static size_t entry_events(const entry_t *e) {
  size_t count = 0, pos;
  if (!e->payload || bee__batch_open(e->payload, e->len, &count, &pos)) return 0;
  return count;
}

/* The rows of a parked entry, so that a later change applied to one of them makes it stale. */
static void park_rows(bee__rconn_t *r, size_t shard, consumer_t *c, size_t pool, const entry_t *e) {
  char parked_key[128];
  bee__queue_key(c->engine, pool, shard, "parked", parked_key, sizeof parked_key);
  bee__park_t p = {r, parked_key, e->id};
  bee__batch_rows(e->payload, e->len, c->ev, bee__park_row, &p);
}

/*
 * Entry e failed permanently (first) at event failed_event. Asks the resolver, event by
 * event, and does what it says (docs/guarantees.md G5, G13):
 *   retry (after an edit, or after the cause was fixed): the entry is applied again;
 *   skip: that event is dropped and the entry's other events are applied together;
 *   keep (and a resolver that fails): the entry is parked in the error list.
 * An event is asked at most MAX_ATTEMPTS times; attempts are counted per event. When the
 * entry is done (applied, emptied by skips, or parked) the mark moves past it and the
 * cache keys of every event it had are dropped, so reads converge on MySQL.
 */
int bee__c_handle_failure(consumer_t *c, size_t pool, size_t qp, MYSQL *conn, const char *queue, entry_t *e,
                          size_t failed_event, uint64_t mark_ms, uint64_t mark_seq, bee_error_t *first,
                          bee_error_t *err) {
  char errors_key[128], stream_key[128];
  size_t shard = (size_t)strtoul(strrchr(queue, ':') + 1, NULL, 10);
  bee__queue_key(c->engine, pool, shard, "errors", errors_key, sizeof errors_key);
  bee__queue_key(c->engine, pool, shard, "s", stream_key, sizeof stream_key);
  bee_error_t cur = *first;
  bee__event_t *ev = bee__malloc(sizeof *ev);
  char(*cols)[BEE__IDENT_MAX + 1] = bee__malloc(1024 * sizeof *cols);
  const char **colp = bee__malloc(1024 * sizeof *colp);
  entry_t original = *e; /* what the flush queued: every event's cache keys go at the end */
  original.payload = e->payload ? bee__malloc(e->len + 1) : NULL;
  bee__buf_t sql = {0};
  char resolver_error[BEE_ERROR_MESSAGE_MAX] = "";
  int rc = 0;
  if (!ev || !cols || !colp || (e->payload && !original.payload)) {
    rc = bee__error(err, BEE_ENOMEM, 0, "out of memory handling a failed event");
    goto out;
  }
  if (e->payload) memcpy(original.payload, e->payload, e->len);
  bee_resolution_t decision = BEE_RESOLVE_KEEP;
  int attempts = 1;                       /* of the event failing now */
  size_t budget = MAX_ATTEMPTS * (entry_events(e) + 1); /* resolver calls for the whole entry */
  for (;;) {
    char entity[BEE__IDENT_MAX + 1], table[BEE__IDENT_MAX + 1];
    bee_failed_event_t view;
    decision = BEE_RESOLVE_KEEP;
    if (c->opts.resolver && !e->bad && !e->stale && attempts <= MAX_ATTEMPTS && budget > 0 &&
        describe(c, queue, e, failed_event, conn, &cur, attempts, ev, &sql, cols, colp, entity, table, &view) == 0) {
      budget--;
      bee_edit_t edit = {ev, {0}, 0, ""};
      decision = c->opts.resolver(c->opts.resolver_ud, &view, &edit);
      if (edit.resolver_error[0]) { /* a resolver with a bug: keep the entry, say why, go on */
        snprintf(resolver_error, sizeof resolver_error, "%s", edit.resolver_error);
        decision = BEE_RESOLVE_KEEP;
      } else if (decision == BEE_RESOLVE_RETRY && edit.edited && reencode(e, failed_event, ev, &edit)) {
        decision = BEE_RESOLVE_KEEP;
      }
      bee__buf_free(&edit.strings);
    }
    if (decision == BEE_RESOLVE_KEEP) break;
    if (decision == BEE_RESOLVE_SKIP) {
      c->stats.skipped++;
      if ((rc = rewrite_entry(e, failed_event, NULL))) {
        rc = bee__error(err, rc, 0, "cannot drop the skipped event of entry %s", e->id);
        goto out;
      }
      if (entry_events(e) == 0) goto move_mark; /* nothing left to apply */
    } else {
      c->stats.retried++;
    }
    size_t fe = 0;
    int r = bee__c_apply(c, pool, conn, queue, e, 0, 1, 1, 1, mark_ms, mark_seq, &fe, &cur);
    if (r == 0) {
      bee__c_count_applied(c, e, 0, 1);
      bee__c_invalidate(c, &original, 0, 1, 1); /* applied as retried, edited or without skipped events */
      bee__c_trim_applied(c, qp, queue, stream_key, e, 0, 1);
      goto out;
    }
    if (r == CONFLICT) goto out;
    if (cur.temporary || !bee__c_permanent(&cur)) {
      rc = r;
      if (err) *err = cur;
      goto out;
    }
    /* another event of the entry (or the same one again) fails now */
    attempts = decision == BEE_RESOLVE_RETRY && fe == failed_event ? attempts + 1 : 1;
    failed_event = fe;
  }
  {
    /* Keep: record first (idempotent: keyed by stream id), then move the mark. */
    char entity[BEE__IDENT_MAX + 1], table[BEE__IDENT_MAX + 1];
    bee_failed_event_t view;
    sql.len = 0;
    if (describe(c, queue, e, failed_event, conn, &cur, attempts, ev, &sql, cols, colp, entity, table, &view)) sql.len = 0;
    bee__buf_t rec = {0};
    bee__record_encode(&rec, cur.code == BEE_EMYSQL ? cur.server_code : cur.code, attempts, bee__c_now_ms(), failed_event,
                       cur.message, &sql, e->payload ? e->payload : "", e->payload ? e->len : 0, resolver_error);
    bee__rconn_t *r;
    if (rec.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory recording a failed event");
    else if (!(rc = bee__c_get_redis(c, qp, &r, err))) {
      bee__reply_t *rep = bee__redis_command(r, "HSET %s %s %b", errors_key, e->id, rec.data, rec.len);
      if (!rep || rep->type == BEE__REPLY_ERROR) rc = bee__redis_error(err, &c->engine->redis[qp], r, rep, "recording a failed event failed");
      if (rep) bee__reply_free(rep);
      if (!rc) {
        size_t k = bee__c_append_figures(r, queue, "failed", BEE__FAILED_RATE_KEY, 1);
        while (k-- > 0 && bee__redis_get_reply(r, &rep) == 0) bee__reply_free(rep);
      }
      if (!rc) park_rows(r, shard, c, pool, e);
    }
    bee__buf_free(&rec);
    if (rc) goto out;
    c->stats.failed++;
    if (resolver_error[0]) c->stats.resolver_errors++;
  }
move_mark: {
  int r = bee__c_apply(c, pool, conn, queue, e, 0, 1, 0, 0, mark_ms, mark_seq, NULL, &cur);
  if (r && r != CONFLICT) {
    rc = r;
    if (err) *err = cur;
    goto out;
  }
  /* (a stale retry changed nothing: the caches hold the newer changes, queued ones too) */
  if (!e->stale) bee__c_invalidate(c, &original, 0, 1, 1);
}
out:
  if (rc == 0 && original.retried_of[0]) { /* the retry is done with: applied, parked again or emptied */
    bee__rconn_t *r;
    bee_error_t ignored;
    if (!bee__c_get_redis(c, qp, &r, &ignored)) {
      char parked_key[128], stale_key[128];
      bee__queue_key(c->engine, pool, shard, "parked", parked_key, sizeof parked_key);
      bee__queue_key(c->engine, pool, shard, "stale", stale_key, sizeof stale_key);
      bee__c_forget_retried(c, r, parked_key, stale_key, &original);
    }
  }
  bee__free(original.payload);
  bee__buf_free(&sql);
  bee__free(ev);
  bee__free(cols);
  bee__free(colp);
  return rc;
}

/*
 * Entry e retries parked entry e->retried_of. Returns 1 when that one is stale (a newer
 * change of one of its rows was applied since it was parked, docs/guarantees.md G13): e must not
 * apply; *why says which row and change, and e's own id inherits the stale mark (so a
 * retry of the record it becomes is refused too). 0: it may apply. < 0: Redis failed.
 */
int bee__c_retry_is_stale(consumer_t *c, size_t qp, const char *key, entry_t *e, bee_error_t *why, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = bee__c_get_redis(c, qp, &r, err);
  if (rc) return rc;
  size_t kl = strlen(key);
  char stale_key[160];
  snprintf(stale_key, sizeof stale_key, "%.*sstale", (int)(kl - 1), key);
  bee__reply_t *rep = bee__redis_command(r, "HGET %s %s", stale_key, e->retried_of);
  if (!rep || (rep->type != BEE__REPLY_STRING && rep->type != BEE__REPLY_NIL)) {
    rc = bee__redis_error(err, &c->engine->redis[qp], r, rep, "reading the stale marks failed");
    if (rep) bee__reply_free(rep);
    return rc;
  }
  if (rep->type == BEE__REPLY_NIL) {
    bee__reply_free(rep);
    return 0;
  }
  bee__reply_t *x = bee__redis_command(r, "HSET %s %s %b", stale_key, e->id, rep->str, rep->len);
  int ok = x && x->type == BEE__REPLY_INTEGER;
  if (!ok) rc = bee__redis_error(err, &c->engine->redis[qp], r, x, "writing a stale mark failed");
  if (x) bee__reply_free(x);
  if (ok) {
    const char *sp = memchr(rep->str, ' ', rep->len);
    int rl = sp ? (int)(sp - rep->str) : (int)rep->len;
    bee__error(why, BEE_ESTALE, 0,
               "entry %s retries parked entry %s, which is stale: row %.*s got a newer change (entry %.*s) applied "
               "since it was parked; applying it would undo that change (retry it with force to apply it anyway)",
               e->id, e->retried_of, rl, rep->str, sp ? (int)(rep->len - (size_t)rl - 1) : 0, sp ? sp + 1 : "");
    e->stale = 1;
  }
  bee__reply_free(rep);
  return ok ? 1 : rc;
}
