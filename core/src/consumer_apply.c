/* consumer_apply.c: applying queue entries to MySQL: the statements, the applied mark, flush tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "event.h"
#include "orm.h"
#include "sql.h"

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
void bee__c_event_sql(MYSQL *conn, const bee__event_t *ev, bee__buf_t *b) {
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
    rc = bee__c_query(c, pool, conn, sql->data, sql->len, err);                                                   \
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
            bee__c_event_sql(conn, ev, sql); /* "INSERT ... VALUES (first row)" */
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
      bee__c_event_sql(conn, ev, sql);
      if (sql->failed) return bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");
      rc = bee__c_query(c, pool, conn, sql->data, sql->len, err);
      if (rc && failed_event) *failed_event = k;
      sql->len = 0;
    }
  }
  if (!rc && pending) FLUSH_GROUP();
#undef FLUSH_GROUP
  if (sql->failed && !rc) rc = bee__error(err, BEE_ENOMEM, 0, "out of memory building a statement");
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The applied mark and the flush tokens                                    */

int bee__c_ensure_mark_table(consumer_t *c, size_t pool, MYSQL *conn, bee_error_t *err) {
  if (c->mark_table_ok[pool]) return 0;
  static const char sql[] =
      "CREATE TABLE IF NOT EXISTS `_beeorm_applied` (`queue` varchar(100) NOT NULL PRIMARY KEY, "
      "`ms` bigint unsigned NOT NULL, `seq` bigint unsigned NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
  /* The tokens of the flushes applied per queue (G11), kept TOKEN_DAYS. */
  static const char tokens[] =
      "CREATE TABLE IF NOT EXISTS `_beeorm_tokens` (`queue` varchar(100) NOT NULL, `token` bigint unsigned NOT NULL, "
      "`batch` bigint unsigned NOT NULL, `at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, "
      "PRIMARY KEY (`queue`, `token`), KEY `at` (`at`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
  int rc = bee__c_query(c, pool, conn, sql, sizeof sql - 1, err);
  if (!rc) rc = bee__c_query(c, pool, conn, tokens, sizeof tokens - 1, err);
  if (!rc) c->mark_table_ok[pool] = 1;
  return rc;
}

#define TOKEN_DAYS 1

/*
 * Inside apply's transaction: records the flush tokens of entries [a, b) in
 * _beeorm_tokens and marks `dup` the entries whose token this queue applied before (a
 * flush_async sent again after an unknown outcome: docs/guarantees.md G11), also within the range.
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
    rc = bee__c_mysql_fail(c, pool, conn, "recording flush tokens failed on", err);
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
      rc = bee__c_mysql_fail(c, pool, conn, "recording flush tokens failed on", err);
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
    if (!sql.failed) rc = bee__c_query(c, pool, conn, sql.data, sql.len, err);
  }
  bee__buf_free(&sql);
  return rc;
}

/* The applied mark of queue (creating its row), optionally locked FOR UPDATE. */
int bee__c_read_mark(consumer_t *c, size_t pool, MYSQL *conn, int lock, uint64_t *ms, uint64_t *seq,
                     bee_error_t *err) {
  const char *queue = c->mark;
  char sql[320];
  int n = snprintf(sql, sizeof sql, "SELECT `ms`, `seq` FROM `_beeorm_applied` WHERE `queue` = '%s'%s", queue,
                   lock ? " FOR UPDATE" : "");
  for (int attempt = 0; attempt < 2; attempt++) {
    if (mysql_real_query(conn, sql, (unsigned long)n) != 0) return bee__c_mysql_fail(c, pool, conn, "reading the applied mark failed on", err);
    MYSQL_RES *res = mysql_store_result(conn);
    if (!res) return bee__c_mysql_fail(c, pool, conn, "reading the applied mark failed on", err);
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
    int rc = bee__c_query(c, pool, conn, ins, (size_t)m, err);
    if (rc) return rc;
  }
  *ms = *seq = 0;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Applying a batch                                                         */

/*
 * One transaction: lock the mark (it must still be mark_ms-mark_seq), run entries
 * [a, b) (none when run is 0: only move the mark), set the mark to entry b-1, commit.
 * Returns 0, CONFLICT (someone else moved the mark), or an error.
 */
int bee__c_apply(consumer_t *c, size_t pool, MYSQL *conn, const char *queue, entry_t *entries, size_t a, size_t b,
                 int run, int per_event, uint64_t mark_ms, uint64_t mark_seq, size_t *failed_event, bee_error_t *err) {
  int rc = bee__c_query(c, pool, conn, "START TRANSACTION", 17, err);
  if (rc) goto mark_failed;
  uint64_t ms, seq;
  if ((rc = bee__c_read_mark(c, pool, conn, 1, &ms, &seq, err))) goto mark_failed;
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
  if ((rc = bee__c_query(c, pool, conn, sql, (size_t)n, err))) goto mark_failed;
  if ((rc = bee__c_query(c, pool, conn, "COMMIT", 6, err))) goto mark_failed;
  return 0;
mark_failed:
  /* Nothing of the entries is to blame: the transaction or the mark could not be had
     or moved (a read-only server, a lost connection ...). Never permanent: the entries
     stay queued and are tried again (G4), never parked. */
  if (err) err->temporary = 1;
rollback:
  if (mysql_query(conn, "ROLLBACK") != 0) bee__c_drop_mysql(c, pool);
  return rc;
}

/*
 * Applies entries [0, n) after the mark ms-seq as one transaction; on a permanent error,
 * entry by entry, so only the failing one stops (G5) and goes to handle_failure.
 */
int bee__c_apply_batch(consumer_t *c, size_t pool, size_t qp, MYSQL *conn, const char *queue, const char *key,
                       entry_t *entries, size_t n, uint64_t ms, uint64_t seq, bee_error_t *err) {
  size_t failed_event = 0;
  int rc = bee__c_apply(c, pool, conn, queue, entries, 0, n, 1, 0, ms, seq, &failed_event, err);
  if (rc == 0) {
    bee__c_count_applied(c, entries, 0, n);
    bee__c_invalidate(c, entries, 0, n, 0);
    bee__c_trim_applied(c, qp, queue, key, entries, 0, n);
    return 0;
  }
  if (rc == CONFLICT || !err || err->temporary || !bee__c_permanent(err)) return rc;
  rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    uint64_t pm = i ? entries[i - 1].ms : ms, ps = i ? entries[i - 1].seq : seq;
    bee_error_t one;
    size_t fe = 0;
    int r = bee__c_apply(c, pool, conn, queue, entries, i, i + 1, 1, 1, pm, ps, &fe, &one);
    if (r == 0) {
      bee__c_count_applied(c, entries, i, i + 1);
      bee__c_invalidate(c, entries, i, i + 1, 0);
      bee__c_trim_applied(c, qp, queue, key, entries, i, i + 1);
      continue;
    } else if (r == CONFLICT) {
      break;
    } else if (!one.temporary && bee__c_permanent(&one)) {
      rc = bee__c_handle_failure(c, pool, qp, conn, queue, &entries[i], fe, pm, ps, &one, err);
    } else {
      rc = r;
      if (err) *err = one;
    }
    if (!rc) bee__c_trim(c, qp, key, entries[i].ms, entries[i].seq);
  }
  return rc;
}
