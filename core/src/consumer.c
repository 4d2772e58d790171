/*
 * consumer.c: applying queued events to MySQL (DESIGN §4, G2-G5).
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

#include "event.h"
#include "rcmd.h"
#include "record.h"
#include "orm.h"
#include "queues.h"
#include "schema_internal.h"
#include "sql.h"

#define CONFLICT 1
#define MAX_ATTEMPTS 3

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

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


typedef struct {
  char id[48];
  uint64_t ms, seq;
  char *payload;
  size_t len;
  int retried; /* came back from the error list: its keys were invalidated on failure */
  char retried_of[48]; /* the parked entry it retries (its stream id), "" when forced or not a retry */
  int stale;    /* a retry whose rows got newer changes since it was parked: parked again, not applied */
  uint64_t token; /* its flush's token (G11); 0 for a malformed entry, which is never anyone's duplicate */
  int dup;     /* its flush's token was applied already in this queue: not applied again (G11) */
  int bad;      /* malformed (BEE__BATCH_*): checked whole when read, so nothing of it is ever applied */
  size_t bad_event, trailing; /* BEE__BATCH_BAD_EVENT: which event (0-based); BEE__BATCH_TRAILING: how many bytes */
} entry_t;


typedef struct {
  bee_engine_t *engine;
  atomic_int *run_stop; /* this bee_engine_consume call stops (a worker failed while draining) */
  bee_consume_options_t opts;
  bee_consume_stats_t stats;
  char token[64]; /* this worker's lease token */
  char mark[160];  /* the current queue's row in _beeorm_applied: "<pool>:<shard>@<queue id>" */
  MYSQL **mysql;        /* per pool, this consumer's own */
  bee__rconn_t **redis; /* per Redis pool, this consumer's own */
  unsigned char *mark_table_ok;
  bee__event_t *ev;
  bee__buf_t sql;
} consumer_t;

static int stopping(const consumer_t *c) {
  return atomic_load(&c->engine->consume_stop) || (c->run_stop && atomic_load(c->run_stop));
}

/* Counts entries [a, b) as applied: entries, their events, one batch. */
static void count_applied(consumer_t *c, const entry_t *entries, size_t a, size_t b) {
  for (size_t i = a; i < b; i++) {
    size_t count = 0, pos;
    if (entries[i].dup) {
      c->stats.duplicates++;
      continue;
    }
    if (entries[i].payload && bee__batch_open(entries[i].payload, entries[i].len, &count, &pos) == 0)
      c->stats.events += count;
    c->stats.entries++;
  }
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

static void drop_mysql(consumer_t *c, size_t pool) {
  bee__engine_mysql_release(c->engine, &c->engine->mysql[pool], c->mysql[pool], 1);
  c->mysql[pool] = NULL;
}

static int get_redis(consumer_t *c, size_t pool, bee__rconn_t **out, bee_error_t *err) {
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

static int mysql_fail(consumer_t *c, size_t pool, MYSQL *conn, const char *doing, bee_error_t *err) {
  int rc = bee__mysql_error(err, conn, &c->engine->mysql[pool], doing);
  if (err) err->temporary = bee_error_is_temporary((unsigned)err->server_code);
  return rc;
}

/* Runs one statement; on failure fills err (with the consumer's classification). */
static int q(consumer_t *c, size_t pool, MYSQL *conn, const char *sql, size_t len, bee_error_t *err) {
  if (mysql_real_query(conn, sql, (unsigned long)len) != 0) return mysql_fail(c, pool, conn, "applying events failed on", err);
  MYSQL_RES *res = mysql_store_result(conn);
  if (res) mysql_free_result(res);
  return 0;
}

static int ensure_mark_table(consumer_t *c, size_t pool, MYSQL *conn, bee_error_t *err) {
  if (c->mark_table_ok[pool]) return 0;
  static const char sql[] =
      "CREATE TABLE IF NOT EXISTS `_beeorm_applied` (`queue` varchar(100) NOT NULL PRIMARY KEY, "
      "`ms` bigint unsigned NOT NULL, `seq` bigint unsigned NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
  /* The tokens of the flushes applied per queue (G11), kept TOKEN_DAYS. */
  static const char tokens[] =
      "CREATE TABLE IF NOT EXISTS `_beeorm_tokens` (`queue` varchar(100) NOT NULL, `token` bigint unsigned NOT NULL, "
      "`batch` bigint unsigned NOT NULL, `at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, "
      "PRIMARY KEY (`queue`, `token`), KEY `at` (`at`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
  int rc = q(c, pool, conn, sql, sizeof sql - 1, err);
  if (!rc) rc = q(c, pool, conn, tokens, sizeof tokens - 1, err);
  if (!rc) c->mark_table_ok[pool] = 1;
  return rc;
}

#define TOKEN_DAYS 1

/*
 * Inside apply's transaction: records the flush tokens of entries [a, b) in
 * _beeorm_tokens and marks `dup` the entries whose token this queue applied before (a
 * flush_async sent again after an unknown outcome: DESIGN G11), also within the range.
 * One INSERT IGNORE; a SELECT only when some token was there already.
 */
static int dedupe(consumer_t *c, size_t pool, MYSQL *conn, entry_t *entries, size_t a, size_t b, bee_error_t *err) {
  bee__buf_t sql = {0};
  uint64_t batch = bee__flush_token();
  size_t n = 0;
  bee__buf_printf(&sql, "INSERT IGNORE INTO `_beeorm_tokens` (`queue`, `token`, `batch`) VALUES ");
  for (size_t i = a; i < b; i++) {
    entries[i].dup = 0;
    uint64_t t = entries[i].token;
    if (!t) continue;
    for (size_t k = a; k < i && !entries[i].dup; k++) /* the same flush twice in this range */
      entries[i].dup = !entries[k].dup && entries[k].token == t;
    if (entries[i].dup) continue;
    bee__buf_printf(&sql, "%s('%s', %llu, %llu)", n++ ? "," : "", c->mark, (unsigned long long)t,
                    (unsigned long long)batch);
  }
  int rc = 0;
  if (n && sql.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory recording flush tokens");
  else if (n && mysql_real_query(conn, sql.data, (unsigned long)sql.len) != 0)
    rc = mysql_fail(c, pool, conn, "recording flush tokens failed on", err);
  if (!rc && n && mysql_affected_rows(conn) < n) { /* some were applied before: which */
    sql.len = 0;
    bee__buf_printf(&sql, "SELECT `token` FROM `_beeorm_tokens` WHERE `queue` = '%s' AND `batch` <> %llu AND `token` IN (",
                    c->mark, (unsigned long long)batch);
    for (size_t i = a, k = 0; i < b; i++) {
      uint64_t t = entries[i].dup ? 0 : entries[i].token;
      if (t) bee__buf_printf(&sql, "%s%llu", k++ ? "," : "", (unsigned long long)t);
    }
    bee__buf_puts(&sql, ")");
    MYSQL_RES *res = NULL;
    if (sql.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory recording flush tokens");
    else if (mysql_real_query(conn, sql.data, (unsigned long)sql.len) != 0 || !(res = mysql_store_result(conn)))
      rc = mysql_fail(c, pool, conn, "recording flush tokens failed on", err);
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res)) != NULL) {
      uint64_t t = row[0] ? strtoull(row[0], NULL, 10) : 0;
      for (size_t i = a; i < b; i++)
        if (t && entries[i].token == t) entries[i].dup = 1;
    }
    if (res) mysql_free_result(res);
  }
  if (!rc && (batch & 1023) == 0) { /* now and then: forget old tokens */
    sql.len = 0;
    bee__buf_printf(&sql, "DELETE FROM `_beeorm_tokens` WHERE `queue` = '%s' AND `at` < NOW() - INTERVAL %d DAY LIMIT 10000",
                    c->mark, TOKEN_DAYS);
    if (!sql.failed) rc = q(c, pool, conn, sql.data, sql.len, err);
  }
  bee__buf_free(&sql);
  return rc;
}

/* The applied mark of queue (creating its row), optionally locked FOR UPDATE. */
static int read_mark(consumer_t *c, size_t pool, MYSQL *conn, int lock, uint64_t *ms, uint64_t *seq,
                     bee_error_t *err) {
  const char *queue = c->mark;
  char sql[320];
  int n = snprintf(sql, sizeof sql, "SELECT `ms`, `seq` FROM `_beeorm_applied` WHERE `queue` = '%s'%s", queue,
                   lock ? " FOR UPDATE" : "");
  for (int attempt = 0; attempt < 2; attempt++) {
    if (mysql_real_query(conn, sql, (unsigned long)n) != 0) return mysql_fail(c, pool, conn, "reading the applied mark failed on", err);
    MYSQL_RES *res = mysql_store_result(conn);
    if (!res) return mysql_fail(c, pool, conn, "reading the applied mark failed on", err);
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row) {
      *ms = strtoull(row[0], NULL, 10);
      *seq = strtoull(row[1], NULL, 10);
      mysql_free_result(res);
      return 0;
    }
    mysql_free_result(res);
    char ins[320];
    int m = snprintf(ins, sizeof ins, "INSERT IGNORE INTO `_beeorm_applied` (`queue`, `ms`, `seq`) VALUES ('%s', 0, 0)", queue);
    int rc = q(c, pool, conn, ins, (size_t)m, err);
    if (rc) return rc;
  }
  *ms = *seq = 0;
  return 0;
}

static void entries_free(entry_t *e, size_t n) {
  for (size_t i = 0; i < n; i++) bee__free(e[i].payload);
  bee__free(e);
}

/* The error of a malformed entry (entry_t.bad), naming it; *failed_event says which event. */
static int malformed_error(const entry_t *e, size_t *failed_event, bee_error_t *err) {
  if (failed_event) *failed_event = e->bad_event;
  if (e->bad == BEE__BATCH_BAD_EVENT)
    return bee__error(err, BEE_EMALFORMED, 0, "queue entry %s holds a malformed event (#%zu)", e->id,
                      e->bad_event + 1);
  if (e->bad == BEE__BATCH_TRAILING)
    return bee__error(err, BEE_EMALFORMED, 0, "queue entry %s has %zu bytes after its last event", e->id,
                      e->trailing);
  return bee__error(err, BEE_EMALFORMED, 0, "queue entry %s is not a beeorm event batch", e->id);
}

/* Up to max entries after ms-seq, in order. */
static int fetch_after(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq, size_t max,
                       entry_t **out, size_t *n, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = get_redis(c, qp, &r, err);
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
        entries_free(e, k);
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

static void invalidate(consumer_t *c, entry_t *entries, size_t a, size_t b, int failed_all);
static void trim(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq);
static void trim_applied(consumer_t *c, size_t qp, const char *key, const entry_t *entries, size_t a, size_t b);

/*
 * Up to max entries after the mark ms-seq. The read starts at the stream's head: entries
 * at or below the mark are there only when a consumer died (or lost Redis) between its
 * COMMIT and its cache work; that work is done for them now (it is idempotent), and
 * they are trimmed. Normally the head is the first entry after the mark: no extra cost.
 */
static int fetch(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq, size_t max, entry_t **out,
                 size_t *n, bee_error_t *err) {
  for (;;) {
    int rc = fetch_after(c, qp, key, 0, 0, max, out, n, err);
    if (rc || !*n || (*out)[0].ms > ms || ((*out)[0].ms == ms && (*out)[0].seq > seq)) return rc;
    size_t old = 0;
    while (old < *n && ((*out)[old].ms < ms || ((*out)[old].ms == ms && (*out)[old].seq <= seq))) old++;
    invalidate(c, *out, 0, old, 0);
    trim(c, qp, key, (*out)[old - 1].ms, (*out)[old - 1].seq); /* only what was handled */
    entries_free(*out, *n);
    *out = NULL;
    *n = 0;
    if (old == max) continue; /* more leftovers may follow */
    return fetch_after(c, qp, key, ms, seq, max, out, n, err);
  }
}

/* ------------------------------------------------------------------------ */
/* Building statements                                                      */

static void put_id(bee__buf_t *b, uint64_t id) {
  char num[BEE__ID_BUF];
  bee__buf_append(b, num, bee__id_format(id, num));
}

static int same_shape(const bee__event_t *a, const char *table, size_t tlen, const bee__str_t *cols,
                      const unsigned char *add, size_t ncols) {
  if (a->table.n != tlen || memcmp(a->table.p, table, tlen) || a->ncols != ncols) return 0;
  for (size_t i = 0; i < ncols; i++)
    if (a->cols[i].n != cols[i].n || memcmp(a->cols[i].p, cols[i].p, cols[i].n) || a->add[i] != add[i]) return 0;
  return 1;
}

/* Appends the value of column i of ev: a literal, or for an increment a plain number (event_ok checked it). */
static void col_value(MYSQL *conn, const bee__event_t *ev, size_t i, bee__buf_t *b) {
  if (ev->add[i]) bee__sql_number(&ev->values[i], b);
  else bee__sql_literal(conn, &ev->values[i], b);
}

/* The statement of a single event (for error reports and the one-event mode). */
static void event_sql(MYSQL *conn, const bee__event_t *ev, bee__buf_t *b) {
  b->len = 0;
  if (ev->kind == 'I') {
    bee__buf_printf(b, "INSERT INTO `%.*s` (`id`", (int)ev->table.n, ev->table.p);
    for (size_t i = 0; i < ev->ncols; i++) bee__buf_printf(b, ",`%.*s`", (int)ev->cols[i].n, ev->cols[i].p);
    bee__buf_puts(b, ") VALUES (");
    put_id(b, ev->id);
    for (size_t i = 0; i < ev->ncols; i++) {
      bee__buf_puts(b, ",");
      bee__sql_literal(conn, &ev->values[i], b);
    }
    bee__buf_puts(b, ")");
  } else if (ev->kind == 'U') {
    bee__buf_printf(b, "UPDATE `%.*s` SET ", (int)ev->table.n, ev->table.p);
    for (size_t i = 0; i < ev->ncols; i++) {
      bee__buf_printf(b, "%s`%.*s`=", i ? "," : "", (int)ev->cols[i].n, ev->cols[i].p);
      if (!ev->add[i]) bee__sql_literal(conn, &ev->values[i], b);
      else bee__sql_add(ev->cols[i].p, ev->cols[i].n, &ev->values[i], b); /* a number: event_ok */
    }
    bee__buf_puts(b, " WHERE `id`=");
    put_id(b, ev->id);
  } else {
    bee__buf_printf(b, "DELETE FROM `%.*s` WHERE `id`=", (int)ev->table.n, ev->table.p);
    put_id(b, ev->id);
  }
}

/*
 * Runs the events of entries [a, b) inside the caller's transaction. Batched: runs of
 * inserts into one table with the same columns go as one multi-row INSERT, runs of updates
 * as one UPDATE ... JOIN, runs of deletes as one DELETE ... IN. per_event:
 * one statement per event, and *failed_event (entry-relative) says which one failed.
 */
static int run_events(consumer_t *c, size_t pool, MYSQL *conn, entry_t *entries, size_t a, size_t b, int per_event,
                      size_t *failed_event, bee_error_t *err) {
  bee__event_t *ev = c->ev;
  bee__buf_t *sql = &c->sql;
  int rc = 0;
  /*
   * A pending group: a multi-row INSERT, a multi-row UPDATE written as
   *   UPDATE t JOIN (SELECT id, v1 UNION ALL SELECT ...) AS x ON t.id = x.id SET t.c = x.c
   * of events with the same table and columns (and distinct ids, so each row changes
   * once), or one DELETE ... WHERE id IN (...) of a run of deletes from one table.
   */
  char table[BEE__IDENT_MAX], kind = 0;
  size_t tlen = 0, pending = 0, pending_cols = 0;
  static _Thread_local bee__str_t cols[1024];
  static _Thread_local unsigned char adds[1024];
  static _Thread_local char colbuf[1024 * BEE__IDENT_MAX];
  static _Thread_local uint64_t ids[1000];
  sql->len = 0;
#define FLUSH_GROUP()                                                                                  \
  do {                                                                                                 \
    if (kind == 'U') {                                                                                 \
      bee__buf_puts(sql, ") AS x ON t.`id` = x.`id` SET ");                                           \
      for (size_t j_ = 0; j_ < pending_cols; j_++)                                                     \
        bee__buf_printf(sql, "%st.`%.*s` = %s%.*s%sx.`%.*s`", j_ ? ", " : "", (int)cols[j_].n, cols[j_].p,\
                        adds[j_] ? "t.`" : "", adds[j_] ? (int)cols[j_].n : 0, cols[j_].p,             \
                        adds[j_] ? "` + " : "", (int)cols[j_].n, cols[j_].p);                         \
    } else if (kind == 'D') {                                                                          \
      bee__buf_puts(sql, ")");                                                                         \
    }                                                                                                  \
    if (sql->failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");      \
    rc = q(c, pool, conn, sql->data, sql->len, err);                                                   \
    pending = 0;                                                                                       \
    sql->len = 0;                                                                                      \
  } while (0)
  for (size_t i = a; i < b && !rc; i++) {
    size_t count, pos;
    if (entries[i].dup) continue; /* applied already (G11) */
    if (entries[i].bad) return malformed_error(&entries[i], failed_event, err);
    bee__batch_open(entries[i].payload, entries[i].len, &count, &pos); /* checked whole when read */
    for (size_t k = 0; k < count && !rc; k++) {
      bee__batch_next(entries[i].payload, entries[i].len, &pos, ev);
      int batchable = !per_event;
      if (pending) {
        int same = batchable && ev->kind == kind && same_shape(ev, table, tlen, cols, adds, pending_cols) &&
                   pending < 1000 && sql->len < (4u << 20);
        for (size_t j = 0; same && kind == 'U' && j < pending; j++) same = ids[j] != ev->id;
        if (!same) {
          FLUSH_GROUP();
          if (rc) break;
        }
      }
      if (batchable) {
        if (!pending) {
          kind = ev->kind;
          tlen = ev->table.n;
          memcpy(table, ev->table.p, tlen);
          pending_cols = ev->ncols;
          for (size_t j = 0; j < ev->ncols; j++) {
            memcpy(colbuf + j * BEE__IDENT_MAX, ev->cols[j].p, ev->cols[j].n);
            cols[j].p = colbuf + j * BEE__IDENT_MAX;
            cols[j].n = ev->cols[j].n;
            adds[j] = ev->add[j];
          }
          if (kind == 'I') {
            event_sql(conn, ev, sql); /* "INSERT ... VALUES (first row)" */
          } else if (kind == 'D') {
            bee__buf_printf(sql, "DELETE FROM `%.*s` WHERE `id` IN (", (int)tlen, table);
            put_id(sql, ev->id);
          } else {
            bee__buf_printf(sql, "UPDATE `%.*s` AS t JOIN (SELECT ", (int)tlen, table);
            put_id(sql, ev->id);
            bee__buf_puts(sql, " AS `id`");
            for (size_t j = 0; j < ev->ncols; j++) {
              bee__buf_puts(sql, ", ");
              col_value(conn, ev, j, sql);
              bee__buf_printf(sql, " AS `%.*s`", (int)ev->cols[j].n, ev->cols[j].p);
            }
          }
        } else if (kind == 'D') {
          bee__buf_puts(sql, ",");
          put_id(sql, ev->id);
        } else {
          bee__buf_puts(sql, kind == 'I' ? ",(" : " UNION ALL SELECT ");
          put_id(sql, ev->id);
          for (size_t j = 0; j < ev->ncols; j++) {
            bee__buf_puts(sql, kind == 'I' ? "," : ", ");
            col_value(conn, ev, j, sql);
          }
          if (kind == 'I') bee__buf_puts(sql, ")");
        }
        ids[pending++] = ev->id;
        continue;
      }
      event_sql(conn, ev, sql);
      if (sql->failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");
      rc = q(c, pool, conn, sql->data, sql->len, err);
      if (rc && failed_event) *failed_event = k;
      sql->len = 0;
    }
  }
  if (!rc && pending) FLUSH_GROUP();
#undef FLUSH_GROUP
  if (sql->failed && !rc) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");
  return rc;
}

/*
 * One transaction: lock the mark (it must still be mark_ms-mark_seq), run entries
 * [a, b) (none when run is 0: only move the mark), set the mark to entry b-1, commit.
 * Returns 0, CONFLICT (someone else moved the mark), or an error.
 */
static int apply(consumer_t *c, size_t pool, MYSQL *conn, const char *queue, entry_t *entries, size_t a, size_t b,
                 int run, int per_event, uint64_t mark_ms, uint64_t mark_seq, size_t *failed_event, bee_error_t *err) {
  int rc = q(c, pool, conn, "START TRANSACTION", 17, err);
  if (rc) goto mark_failed;
  uint64_t ms, seq;
  if ((rc = read_mark(c, pool, conn, 1, &ms, &seq, err))) goto mark_failed;
  if (ms != mark_ms || seq != mark_seq) {
    rc = CONFLICT;
    goto rollback;
  }
  if (run && (rc = dedupe(c, pool, conn, entries, a, b, err))) goto mark_failed;
  if (run && (rc = run_events(c, pool, conn, entries, a, b, per_event, failed_event, err))) goto rollback;
  char sql[320];
  (void)queue;
  int n = snprintf(sql, sizeof sql, "UPDATE `_beeorm_applied` SET `ms` = %llu, `seq` = %llu WHERE `queue` = '%s'",
                   (unsigned long long)entries[b - 1].ms, (unsigned long long)entries[b - 1].seq, c->mark);
  if ((rc = q(c, pool, conn, sql, (size_t)n, err))) goto mark_failed;
  if ((rc = q(c, pool, conn, "COMMIT", 6, err))) goto mark_failed;
  return 0;
mark_failed:
  /* Nothing of the entries is to blame: the transaction or the mark could not be had
     or moved (a read-only server, a lost connection ...). Never permanent: the entries
     stay queued and are tried again (G4), never parked. */
  if (err) err->temporary = 1;
rollback:
  if (mysql_query(conn, "ROLLBACK") != 0) drop_mysql(c, pool);
  return rc;
}

/* Removes field ARGV[1] of the hash KEYS[1] if it holds ARGV[2] (the batch's token). */
static const char *const unpend_script =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

/*
 * Deletes cache keys of the events of entries [a, b): 'A' keys always, 'F' keys too
 * when failed; clears their pending marks ('P'); bumps each entity's version once. Pipelined: one round trip per Redis
 * pool for the whole range. Failed rows are also dropped from every process's local
 * cache (published without an ack: nobody waits on a consumer).
 */
static void invalidate(consumer_t *c, entry_t *entries, size_t a, size_t b, int failed_all) {
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
      if (rp < 0 || get_redis(c, (size_t)rp, &r, &ignored)) continue;
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

static void trim(consumer_t *c, size_t qp, const char *key, uint64_t ms, uint64_t seq) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (get_redis(c, qp, &r, &ignored)) return;
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
 * now stale (a retry would undo a newer write, DESIGN G13). Marked in "...:stale":
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
static void forget_retried(consumer_t *c, bee__rconn_t *r, const char *parked_key, const char *stale_key,
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
static void trim_applied(consumer_t *c, size_t qp, const char *key, const entry_t *entries, size_t a, size_t b) {
  bee__rconn_t *r;
  bee_error_t ignored;
  size_t kl = strlen(key);
  const char **argv = b > a ? bee__malloc((b - a + 2) * sizeof *argv) : NULL;
  if (!argv || kl < 3 || get_redis(c, qp, &r, &ignored)) {
    bee__free(argv);
    if (b > a) trim(c, qp, key, entries[b - 1].ms, entries[b - 1].seq);
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
  bee__reply_t *x = NULL, *t = NULL, *n = NULL;
  int parked = bee__redis_get_reply(r, &x) == 0 && bee__redis_get_reply(r, &t) == 0 &&
               bee__redis_get_reply(r, &n) == 0 && n->type == BEE__REPLY_INTEGER && n->integer > 0;
  bee__reply_free(x);
  bee__reply_free(t);
  bee__reply_free(n);
  bee__free(argv);
  if (parked) mark_stale(c, r, parked_key, stale_key, entries, a, b);
  for (size_t i = a; i < b; i++) forget_retried(c, r, parked_key, stale_key, &entries[i]);
}

static void set_pending(consumer_t *c, size_t qp, const char *pending_key, size_t n) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (get_redis(c, qp, &r, &ignored)) return;
  char num[24];
  snprintf(num, sizeof num, "%zu", n); /* (hiredis formats know no %zu) */
  bee__reply_t *rep = n ? bee__redis_command(r, "SET %s %s PX 60000", pending_key, num) : bee__redis_command(r, "DEL %s", pending_key);
  if (rep) bee__reply_free(rep);
}

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
  event_sql(conn, ev, sql);
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
  out->failed_at_ms = now_ms();
  out->events = count;
  (void)c;
  return 0;
}

/* 1 when err is an entry's own permanent failure (MySQL refused it, or it is malformed): it is parked, not retried. */
static int permanent(const bee_error_t *err) {
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
 * event, and does what it says (DESIGN G5, G13):
 *   retry (after an edit, or after the cause was fixed): the entry is applied again;
 *   skip: that event is dropped and the entry's other events are applied together;
 *   keep (and a resolver that fails): the entry is parked in the error list.
 * An event is asked at most MAX_ATTEMPTS times; attempts are counted per event. When the
 * entry is done (applied, emptied by skips, or parked) the mark moves past it and the
 * cache keys of every event it had are dropped, so reads converge on MySQL.
 */
static int handle_failure(consumer_t *c, size_t pool, size_t qp, MYSQL *conn, const char *queue, entry_t *e,
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
    int r = apply(c, pool, conn, queue, e, 0, 1, 1, 1, mark_ms, mark_seq, &fe, &cur);
    if (r == 0) {
      count_applied(c, e, 0, 1);
      invalidate(c, &original, 0, 1, 1); /* applied as retried, edited or without skipped events */
      trim_applied(c, qp, stream_key, e, 0, 1);
      goto out;
    }
    if (r == CONFLICT) goto out;
    if (cur.temporary || !permanent(&cur)) {
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
    bee__record_encode(&rec, cur.code == BEE_EMYSQL ? cur.server_code : cur.code, attempts, now_ms(), failed_event,
                       cur.message, &sql, e->payload ? e->payload : "", e->payload ? e->len : 0, resolver_error);
    bee__rconn_t *r;
    if (rec.failed) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory recording a failed event");
    else if (!(rc = get_redis(c, qp, &r, err))) {
      bee__reply_t *rep = bee__redis_command(r, "HSET %s %s %b", errors_key, e->id, rec.data, rec.len);
      if (!rep || rep->type == BEE__REPLY_ERROR) rc = bee__redis_error(err, &c->engine->redis[qp], r, rep, "recording a failed event failed");
      if (rep) bee__reply_free(rep);
      if (!rc) park_rows(r, shard, c, pool, e);
    }
    bee__buf_free(&rec);
    if (rc) goto out;
    c->stats.failed++;
    if (resolver_error[0]) c->stats.resolver_errors++;
  }
move_mark: {
  int r = apply(c, pool, conn, queue, e, 0, 1, 0, 0, mark_ms, mark_seq, NULL, &cur);
  if (r && r != CONFLICT) {
    rc = r;
    if (err) *err = cur;
    goto out;
  }
  /* (a stale retry changed nothing: the caches hold the newer changes, queued ones too) */
  if (!e->stale) invalidate(c, &original, 0, 1, 1);
}
out:
  if (rc == 0 && original.retried_of[0]) { /* the retry is done with: applied, parked again or emptied */
    bee__rconn_t *r;
    bee_error_t ignored;
    if (!get_redis(c, qp, &r, &ignored)) {
      char parked_key[128], stale_key[128];
      bee__queue_key(c->engine, pool, shard, "parked", parked_key, sizeof parked_key);
      bee__queue_key(c->engine, pool, shard, "stale", stale_key, sizeof stale_key);
      forget_retried(c, r, parked_key, stale_key, &original);
    }
  }
  bee__free(original.payload);
  bee__buf_free(&sql);
  bee__free(ev);
  bee__free(cols);
  bee__free(colp);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The drain loop                                                           */

/*
 * Applies entries [0, n) after the mark ms-seq as one transaction; on a permanent error,
 * entry by entry, so only the failing one stops (G5) and goes to handle_failure.
 */
static int apply_batch(consumer_t *c, size_t pool, size_t qp, MYSQL *conn, const char *queue, const char *key,
                       entry_t *entries, size_t n, uint64_t ms, uint64_t seq, bee_error_t *err) {
  size_t failed_event = 0;
  int rc = apply(c, pool, conn, queue, entries, 0, n, 1, 0, ms, seq, &failed_event, err);
  if (rc == 0) {
    count_applied(c, entries, 0, n);
    invalidate(c, entries, 0, n, 0);
    trim_applied(c, qp, key, entries, 0, n);
    return 0;
  }
  if (rc == CONFLICT || !err || err->temporary || !permanent(err)) return rc;
  rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    uint64_t pm = i ? entries[i - 1].ms : ms, ps = i ? entries[i - 1].seq : seq;
    bee_error_t one;
    size_t fe = 0;
    int r = apply(c, pool, conn, queue, entries, i, i + 1, 1, 1, pm, ps, &fe, &one);
    if (r == 0) {
      count_applied(c, entries, i, i + 1);
      invalidate(c, entries, i, i + 1, 0);
      trim_applied(c, qp, key, entries, i, i + 1);
      continue;
    } else if (r == CONFLICT) {
      break;
    } else if (!one.temporary && permanent(&one)) {
      rc = handle_failure(c, pool, qp, conn, queue, &entries[i], fe, pm, ps, &one, err);
    } else {
      rc = r;
      if (err) *err = one;
    }
    if (!rc) trim(c, qp, key, entries[i].ms, entries[i].seq);
  }
  return rc;
}

/*
 * Entry e retries parked entry e->retried_of. Returns 1 when that one is stale (a newer
 * change of one of its rows was applied since it was parked, DESIGN G13): e must not
 * apply; *why says which row and change, and e's own id inherits the stale mark (so a
 * retry of the record it becomes is refused too). 0: it may apply. < 0: Redis failed.
 */
static int retry_is_stale(consumer_t *c, size_t qp, const char *key, entry_t *e, bee_error_t *why, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = get_redis(c, qp, &r, err);
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

/*
 * The identity of a queue's stream: a random id kept in Redis next to it (created on
 * first use). Marks are kept per identity, so two Redis servers (or a Redis that lost
 * its data) feeding one database never share a mark and never skip each other's events.
 */
static int queue_identity(consumer_t *c, size_t qp, const char *id_key, char *out, size_t size, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = get_redis(c, qp, &r, err);
  if (rc) return rc;
  char fresh[20];
  unsigned char b[8] = {0};
  FILE *f = fopen("/dev/urandom", "rb");
  if (f) {
    if (fread(b, 1, sizeof b, f) != sizeof b) memset(b, 0, sizeof b);
    fclose(f);
  }
  uint64_t x = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 40);
  for (int i = 0; i < 8; i++) b[i] ^= (unsigned char)(x >> (8 * i));
  snprintf(fresh, sizeof fresh, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  bee__redis_append(r, "SET %s %s NX", id_key, fresh);
  bee__redis_append(r, "GET %s", id_key);
  bee__reply_t *r1 = NULL, *r2 = NULL;
  if (bee__redis_get_reply(r, &r1) != 0 || bee__redis_get_reply(r, &r2) != 0) {
    if (r1) bee__reply_free(r1);
    return bee__redis_error(err, &c->engine->redis[qp], r, NULL, "reading the queue identity failed");
  }
  bee__reply_t *g = r2;
  if (g->type == BEE__REPLY_STRING && g->len < size && g->len > 0) {
    memcpy(out, g->str, g->len);
    out[g->len] = '\0';
  } else {
    rc = bee__error(err, BEE_EREDIS, 1, "the queue identity %s is unreadable", id_key);
  }
  bee__reply_free(r1);
  bee__reply_free(r2);
  return rc;
}

/* Takes or renews the lease on a queue; 1 when this worker holds it now. */
static const char *const lease_script =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0";
static const char *const release_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";

#define LEASE_MS "3000" /* LEASE_MS_INT as text */

/*
 * Leases (DESIGN §4): a worker applies a queue only while it holds the queue's lease,
 * renewed before every batch (and every second while waiting) and expiring 3 s after
 * its holder stops renewing; so
 * consumer processes split the queues and a dead one's queues move on. Correctness does
 * not rest on it: the applied mark fences out any stale holder. If Redis cannot be
 * asked, the worker goes on (the fence still holds).
 */
static int lease(consumer_t *c, size_t qp, const char *key, const char *script) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (get_redis(c, qp, &r, &ignored)) return 1;
  const char *argv[] = {"EVAL", script, "1", key, c->token, LEASE_MS};
  bee__reply_t *rep = bee__redis_command_argv(r, 6, argv, NULL);
  int held = !rep || rep->type != BEE__REPLY_INTEGER || rep->integer == 1;
  if (rep) bee__reply_free(rep);
  return held;
}

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
    int irc = queue_identity(c, qp, id_key, qid, sizeof qid, err);
    if (irc) {
      if (err && !err->temporary) return irc;
      attempt++;
      if (!c->opts.block && attempt >= c->opts.max_retries) return irc;
      sleep_ms(c, backoff_ms(attempt));
      continue;
    }
    snprintf(c->mark, sizeof c->mark, "%s@%s", queue, qid);
    if (stopping(c)) return 0;
    *held = lease(c, qp, lease_key, lease_script);
    if (!*held) {
      /* Another consumer has this queue. Blocking: leave it to it. Draining: wait until
         it emptied the queue or its lease ran out (a killed holder's lease expires). */
      if (c->opts.block) return 0;
      entry_t *peek = NULL;
      size_t pn = 0;
      MYSQL *conn;
      uint64_t ms = 0, seq = 0;
      int prc = get_mysql(c, pool, &conn, err);
      if (!prc) prc = ensure_mark_table(c, pool, conn, err);
      if (!prc) prc = read_mark(c, pool, conn, 0, &ms, &seq, err);
      if (prc && err) err->temporary = 1;
      if (!prc) prc = fetch(c, qp, key, ms, seq, 1, &peek, &pn, err);
      entries_free(peek, pn);
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
    if (!rc) rc = ensure_mark_table(c, pool, conn, err);
    if (!rc) rc = read_mark(c, pool, conn, 0, &ms, &seq, err);
    if (rc && err) err->temporary = 1; /* any failure on the mark is tried again (DESIGN §4) */
    if (!rc) {
      *last_ms = ms;
      *last_seq = seq;
      rc = fetch(c, qp, key, ms, seq, (size_t)c->opts.max_batch, &entries, &n, err);
    }
    if (!rc && n == 0 && (ms || seq)) trim(c, qp, key, ms, seq); /* leftovers of a crash */
    if (!rc && n == 0) {
      entries_free(entries, n);
      return 0;
    }
    if (!rc) {
      set_pending(c, qp, pending_key, n);
      /* A retry of a parked entry starts its own batch: whether it became stale is read
         after everything queued before it was applied. */
      size_t todo = n;
      for (size_t i = 1; i < n && todo == n; i++)
        if (entries[i].retried_of[0]) todo = i;
      int parked_stale = 0;
      if (entries[0].retried_of[0]) {
        bee_error_t why;
        int s = retry_is_stale(c, qp, key, &entries[0], &why, err);
        if (s < 0) {
          rc = s;
        } else if (s == 1) { /* parked again as stale, nothing applied (G13) */
          parked_stale = 1;
          rc = handle_failure(c, pool, qp, conn, queue, &entries[0], 0, ms, seq, &why, err);
          if (!rc) trim(c, qp, key, entries[0].ms, entries[0].seq);
        }
      }
      if (!rc && !parked_stale) rc = apply_batch(c, pool, qp, conn, queue, key, entries, todo, ms, seq, err);
      if (rc == 0) attempt = 0;
      set_pending(c, qp, pending_key, 0);
    }
    entries_free(entries, n);
    if (rc == CONFLICT) continue; /* another consumer moved the mark: read it again */
    if (rc) {
      if (err && !err->temporary) return rc;
      /* Temporary (G4): back off and retry; non-blocking mode gives up after max_retries. */
      if (err && err->code == BEE_EMYSQL && c->mysql[pool]) drop_mysql(c, pool);
      attempt++;
      if (!c->opts.block && attempt >= c->opts.max_retries) return rc;
      sleep_ms(c, backoff_ms(attempt));
    }
  }
}

/* Live blocking workers of every process: sorted set token -> heartbeat deadline (ms). */
#define BEE__WORKERS_KEY "beeorm:workers"
#define LEASE_MS_INT 3000

/*
 * Renews this worker's heartbeat, forgets workers whose heartbeat ran out, and returns
 * this worker's fair share of the engine's queues: ceil(queues / live workers). On a
 * Redis failure, all of them (the leases still keep workers apart).
 */
static size_t heartbeat(consumer_t *c, size_t mine) {
  size_t total = c->engine->mysql_count * BEE__SHARDS;
  bee__rconn_t *r;
  bee_error_t ignored;
  if (get_redis(c, (size_t)c->engine->inval_redis, &r, &ignored)) return mine;
  int64_t now = now_ms();
  char deadline[24], cutoff[24];
  snprintf(deadline, sizeof deadline, "%lld", (long long)(now + LEASE_MS_INT));
  snprintf(cutoff, sizeof cutoff, "%lld", (long long)now);
  bee__redis_append(r, "ZADD %s %s %s", BEE__WORKERS_KEY, deadline, c->token);
  bee__redis_append(r, "ZREMRANGEBYSCORE %s -inf (%s", BEE__WORKERS_KEY, cutoff);
  bee__redis_append(r, "ZCARD %s", BEE__WORKERS_KEY);
  size_t live = 0;
  for (int i = 0; i < 3; i++) {
    bee__reply_t *reply = NULL;
    if (bee__redis_get_reply(r, &reply) != 0) return mine;
    bee__reply_t *rep = reply;
    if (i == 2 && rep->type == BEE__REPLY_INTEGER && rep->integer > 0) live = (size_t)rep->integer;
    bee__reply_free(rep);
  }
  if (!live) return mine;
  size_t fair = (total + live - 1) / live;
  return fair ? fair : 1;
}

/* Leaves the live workers (a stopping blocking worker). */
static void leave(consumer_t *c) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (get_redis(c, (size_t)c->engine->inval_redis, &r, &ignored)) return;
  bee__reply_t *rep = bee__redis_command(r, "ZREM %s %s", BEE__WORKERS_KEY, c->token);
  if (rep) bee__reply_free(rep);
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
    int64_t now = now_ms();
    if (c.opts.block && now >= next_beat) {
      fair = heartbeat(&c, nq);
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
          lease(&c, (size_t)engine->inval_redis, lease_key, release_script);
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
    if ((rc = get_redis(&c, (size_t)engine->inval_redis, &r, err))) {
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
  if (c.opts.block) leave(&c);
  /* Hand the queues over at once instead of after the lease expires. */
  for (size_t i = 0; i < nq && c.redis; i++) {
    char lease_key[128];
    bee__queue_key(engine, qs[i] / BEE__SHARDS, qs[i] % BEE__SHARDS, "lease", lease_key, sizeof lease_key);
    lease(&c, (size_t)engine->inval_redis, lease_key, release_script);
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
  srand((unsigned)now_ms());
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
