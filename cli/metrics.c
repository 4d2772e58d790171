/* metrics.c: the snapshot `beeorm serve` shows, and its Prometheus, JSON and HTML forms. */
#include "metrics.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sbuf_printf(sbuf_t *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
      b->failed = 1;
      return;
    }
    b->data = grown;
    b->cap = cap;
  }
}

void sbuf_free(sbuf_t *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* The snapshot                                                             */

typedef struct {
  snapshot_t *s;
  size_t cap;
  int failed;
} collect_t;

static char *dup_text(const char *s) {
  size_t n = strlen(s ? s : "") + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s ? s : "", n);
  return d;
}

static void collect_worker(void *ud, const bee_consumer_worker_t *w) {
  collect_t *c = ud;
  if (c->failed) return;
  if (c->s->nworkers == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    snapshot_worker_t *grown = realloc(c->s->workers, cap * sizeof *grown);
    if (!grown) {
      c->failed = 1;
      return;
    }
    c->s->workers = grown;
    c->cap = cap;
  }
  snapshot_worker_t *o = &c->s->workers[c->s->nworkers];
  o->token = dup_text(w->token);
  o->host = dup_text(w->host);
  o->queues = dup_text(w->queues);
  o->pid = w->pid;
  o->heartbeat_age_seconds = w->heartbeat_age_seconds;
  c->s->nworkers++;
  if (!o->token || !o->host || !o->queues) c->failed = 1;
}

int snapshot_take(bee_engine_t *engine, snapshot_t *out, bee_error_t *err) {
  memset(out, 0, sizeof *out);
  size_t n = bee_engine_queue_count(engine);
  out->queues = calloc(n ? n : 1, sizeof *out->queues);
  if (!out->queues) {
    snprintf(err->message, sizeof err->message, "out of memory");
    return err->code = BEE_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    snapshot_queue_t *q = &out->queues[i];
    bee_engine_queue_name(engine, i, q->name, sizeof q->name);
    const char *colon = strrchr(q->name, ':');
    snprintf(q->pool, sizeof q->pool, "%.*s", colon ? (int)(colon - q->name) : 0, q->name);
    q->shard = colon ? (unsigned)atoi(colon + 1) : 0;
    int rc = bee_engine_queue_stats(engine, i, &q->stats, err);
    if (rc) return rc;
    out->nqueues++;
  }
  collect_t c = {out, 0, 0};
  int rc = bee_engine_consumers(engine, &out->consumers, collect_worker, &c, err);
  if (!rc) rc = bee_engine_consumer_rates(engine, BEE_RATES_MAX_SECONDS, out->applied, out->failed, err);
  if (!rc && c.failed) {
    snprintf(err->message, sizeof err->message, "out of memory");
    rc = err->code = BEE_ENOMEM;
  }
  return rc;
}

void snapshot_free(snapshot_t *s) {
  for (size_t i = 0; i < s->nworkers; i++) {
    free(s->workers[i].token);
    free(s->workers[i].host);
    free(s->workers[i].queues);
  }
  free(s->workers);
  free(s->queues);
  memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------ */
/* Prometheus                                                               */

/* A label value: backslash, double quote and line feed escaped (the format's rules). */
static void label(sbuf_t *b, const char *v) {
  for (const char *p = v; *p; p++) {
    if (*p == '\\') sbuf_printf(b, "\\\\");
    else if (*p == '"') sbuf_printf(b, "\\\"");
    else if (*p == '\n') sbuf_printf(b, "\\n");
    else sbuf_printf(b, "%c", *p);
  }
}

typedef enum { Q_LEN, Q_PENDING, Q_OLDEST, Q_ERRORS, Q_APPLIED, Q_FAILED } qmetric_t;

static void queue_family(sbuf_t *b, const snapshot_t *s, const char *name, const char *type, const char *help,
                         qmetric_t m) {
  sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  for (size_t i = 0; i < s->nqueues; i++) {
    const snapshot_queue_t *q = &s->queues[i];
    sbuf_printf(b, "%s{pool=\"", name);
    label(b, q->pool);
    sbuf_printf(b, "\",shard=\"%u\"} ", q->shard);
    switch (m) {
      case Q_LEN: sbuf_printf(b, "%llu\n", (unsigned long long)q->stats.len); break;
      case Q_PENDING: sbuf_printf(b, "%llu\n", (unsigned long long)q->stats.pending); break;
      case Q_OLDEST: sbuf_printf(b, "%.3f\n", q->stats.oldest_event_seconds); break;
      case Q_ERRORS: sbuf_printf(b, "%llu\n", (unsigned long long)q->stats.errors); break;
      case Q_APPLIED: sbuf_printf(b, "%llu\n", (unsigned long long)q->stats.applied_total); break;
      case Q_FAILED: sbuf_printf(b, "%llu\n", (unsigned long long)q->stats.failed_total); break;
    }
  }
}

void metrics_prometheus(const snapshot_t *s, sbuf_t *b) {
  queue_family(b, s, "beeorm_queue_length", "gauge", "Entries waiting in the queue.", Q_LEN);
  queue_family(b, s, "beeorm_queue_pending", "gauge", "Entries a consumer is applying now.", Q_PENDING);
  queue_family(b, s, "beeorm_queue_oldest_event_age_seconds", "gauge", "Age of the oldest waiting entry.", Q_OLDEST);
  queue_family(b, s, "beeorm_queue_errors", "gauge", "Entries parked in the queue's error list.", Q_ERRORS);
  queue_family(b, s, "beeorm_events_applied_total", "counter",
               "Events applied to MySQL from the queue, by every consumer process.", Q_APPLIED);
  queue_family(b, s, "beeorm_events_failed_total", "counter",
               "Entries parked after a permanent error, by every consumer process.", Q_FAILED);
  sbuf_printf(b, "# HELP beeorm_consumer_workers Live blocking consumer workers (heartbeat within 3 s).\n"
                 "# TYPE beeorm_consumer_workers gauge\nbeeorm_consumer_workers %zu\n",
              s->consumers.workers);
}

/* ------------------------------------------------------------------------ */
/* JSON and HTML                                                            */

static void json_string(sbuf_t *b, const char *v) {
  sbuf_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p == '"' || *p == '\\') sbuf_printf(b, "\\%c", *p);
    else if (*p < 0x20) sbuf_printf(b, "\\u%04x", *p);
    else sbuf_printf(b, "%c", *p);
  }
  sbuf_printf(b, "\"");
}

void metrics_json(const snapshot_t *s, sbuf_t *b) {
  sbuf_printf(b, "{\"queues\":[");
  for (size_t i = 0; i < s->nqueues; i++) {
    const snapshot_queue_t *q = &s->queues[i];
    sbuf_printf(b, "%s{\"name\":", i ? "," : "");
    json_string(b, q->name);
    sbuf_printf(b, ",\"pool\":");
    json_string(b, q->pool);
    sbuf_printf(b,
                ",\"shard\":%u,\"len\":%llu,\"oldest_event_seconds\":%.3f,\"lag\":%.3f,\"pending\":%llu,"
                "\"errors\":%llu,\"applied_total\":%llu,\"failed_total\":%llu}",
                q->shard, (unsigned long long)q->stats.len, q->stats.oldest_event_seconds, q->stats.lag,
                (unsigned long long)q->stats.pending, (unsigned long long)q->stats.errors,
                (unsigned long long)q->stats.applied_total, (unsigned long long)q->stats.failed_total);
  }
  sbuf_printf(b, "],\"consumers\":{\"workers\":[");
  for (size_t i = 0; i < s->nworkers; i++) {
    const snapshot_worker_t *w = &s->workers[i];
    sbuf_printf(b, "%s{\"token\":", i ? "," : "");
    json_string(b, w->token);
    sbuf_printf(b, ",\"host\":");
    json_string(b, w->host);
    sbuf_printf(b, ",\"pid\":%d,\"queues\":[", w->pid);
    const char *p = w->queues;
    for (int first = 1; *p; first = 0) {
      const char *comma = strchr(p, ',');
      size_t len = comma ? (size_t)(comma - p) : strlen(p);
      char one[BEE_NAME_MAX + 24];
      snprintf(one, sizeof one, "%.*s", (int)len, p);
      sbuf_printf(b, "%s", first ? "" : ",");
      json_string(b, one);
      p += len + (comma ? 1 : 0);
    }
    sbuf_printf(b, "],\"heartbeat_age_seconds\":%.3f}", w->heartbeat_age_seconds);
  }
  sbuf_printf(b, "],\"applied_per_second\":%.3f,\"applied_total\":%llu,\"failed_total\":%llu},",
              s->consumers.applied_per_second, (unsigned long long)s->consumers.applied_total,
              (unsigned long long)s->consumers.failed_total);
  sbuf_printf(b, "\"rates\":{\"seconds\":%d", BEE_RATES_MAX_SECONDS);
  for (int pass = 0; pass < 2; pass++) {
    const uint64_t *v = pass ? s->failed : s->applied;
    sbuf_printf(b, ",\"%s\":[", pass ? "failed" : "applied");
    for (int k = 0; k < BEE_RATES_MAX_SECONDS; k++) sbuf_printf(b, "%s%llu", k ? "," : "", (unsigned long long)v[k]);
    sbuf_printf(b, "]");
  }
  sbuf_printf(b, "}}\n");
}

static void html_text(sbuf_t *b, const char *v) {
  for (const char *p = v; *p; p++) {
    switch (*p) {
      case '<': sbuf_printf(b, "&lt;"); break;
      case '>': sbuf_printf(b, "&gt;"); break;
      case '&': sbuf_printf(b, "&amp;"); break;
      case '"': sbuf_printf(b, "&quot;"); break;
      default: sbuf_printf(b, "%c", *p);
    }
  }
}

/*
 * Applied and failed events per second over the last 5 minutes as an inline SVG: one
 * polyline each, averaged over 5 s buckets so that a batch's second does not spike.
 */
static void chart(sbuf_t *b, const snapshot_t *s) {
  enum { W = 600, H = 150, BUCKET = 5, N = BEE_RATES_MAX_SECONDS / BUCKET };
  double applied[N], failed[N], top = 1;
  for (int k = 0; k < N; k++) {
    applied[k] = failed[k] = 0;
    for (int j = 0; j < BUCKET; j++) {
      applied[k] += (double)s->applied[k * BUCKET + j] / BUCKET;
      failed[k] += (double)s->failed[k * BUCKET + j] / BUCKET;
    }
    if (applied[k] > top) top = applied[k];
    if (failed[k] > top) top = failed[k];
  }
  sbuf_printf(b, "<h2>Events per second, last 5 minutes</h2>\n<svg id=\"chart\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"applied and failed events per second\" "
                 "style=\"border:1px solid #ddd\">\n<text x=\"4\" y=\"12\" font-size=\"11\">%.1f/s</text>\n",
              W, H + 20, W, H + 20, top);
  for (int pass = 0; pass < 2; pass++) {
    const double *v = pass ? failed : applied;
    sbuf_printf(b, "<polyline id=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                pass ? "failed_line" : "applied_line", pass ? "#c33" : "#36c");
    for (int k = 0; k < N; k++)
      sbuf_printf(b, "%s%d,%.1f", k ? " " : "", k * (W - 1) / (N - 1), 10 + (double)H - v[k] / top * (H - 10));
    sbuf_printf(b, "\"/>\n");
  }
  sbuf_printf(b, "<text x=\"4\" y=\"%d\" font-size=\"11\">5 min ago</text><text x=\"%d\" y=\"%d\" "
                 "font-size=\"11\">now</text><text x=\"%d\" y=\"12\" font-size=\"11\" fill=\"#36c\">applied"
                 "</text><text x=\"%d\" y=\"12\" font-size=\"11\" fill=\"#c33\">failed</text>\n</svg>\n",
              H + 18, W - 28, H + 18, W - 110, W - 50);
}

void metrics_html(const snapshot_t *s, int refresh_seconds, sbuf_t *b) {
  uint64_t len = 0, errors = 0, pending = 0;
  for (size_t i = 0; i < s->nqueues; i++) {
    len += s->queues[i].stats.len;
    errors += s->queues[i].stats.errors;
    pending += s->queues[i].stats.pending;
  }
  sbuf_printf(b,
              "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"%d\">"
              "<title>beeorm</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
              "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}"
              "td:first-child,th:first-child{text-align:left}</style></head><body>\n"
              "<h1>beeorm</h1>\n<p id=\"totals\">waiting <b id=\"len\">%llu</b> &middot; pending <b id=\"pending\">"
              "%llu</b> &middot; parked <b id=\"errors\">%llu</b> &middot; applied <b id=\"applied_per_second\">"
              "%.1f</b> events/s over the last minute &middot; <b id=\"applied_total\">%llu</b> applied, "
              "<b id=\"failed_total\">%llu</b> failed in all &middot; <b id=\"workers\">%zu</b> live workers</p>\n",
              refresh_seconds, (unsigned long long)len, (unsigned long long)pending, (unsigned long long)errors,
              s->consumers.applied_per_second, (unsigned long long)s->consumers.applied_total,
              (unsigned long long)s->consumers.failed_total, s->consumers.workers);
  chart(b, s);
  sbuf_printf(b, "<h2>Queues</h2>\n<table id=\"queues\"><tr><th>queue</th><th>len</th><th>oldest (s)</th>"
                 "<th>pending</th><th>errors</th><th>applied</th><th>failed</th></tr>\n");
  for (size_t i = 0; i < s->nqueues; i++) {
    const snapshot_queue_t *q = &s->queues[i];
    sbuf_printf(b, "<tr data-queue=\"");
    html_text(b, q->name);
    sbuf_printf(b, "\"><td>");
    html_text(b, q->name);
    sbuf_printf(b, "</td><td>%llu</td><td>%.3f</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td></tr>\n",
                (unsigned long long)q->stats.len, q->stats.oldest_event_seconds, (unsigned long long)q->stats.pending,
                (unsigned long long)q->stats.errors, (unsigned long long)q->stats.applied_total,
                (unsigned long long)q->stats.failed_total);
  }
  sbuf_printf(b, "</table>\n<h2>Consumer workers</h2>\n<table id=\"workers_table\"><tr><th>worker</th><th>host</th>"
                 "<th>pid</th><th>queues</th><th>heartbeat (s ago)</th></tr>\n");
  for (size_t i = 0; i < s->nworkers; i++) {
    const snapshot_worker_t *w = &s->workers[i];
    sbuf_printf(b, "<tr><td>");
    html_text(b, w->token);
    sbuf_printf(b, "</td><td>");
    html_text(b, w->host);
    sbuf_printf(b, "</td><td>%d</td><td>", w->pid);
    html_text(b, w->queues);
    sbuf_printf(b, "</td><td>%.1f</td></tr>\n", w->heartbeat_age_seconds);
  }
  sbuf_printf(b, "</table>\n<p><a id=\"errors_link\" href=\"/errors\">parked entries</a> &middot; "
                 "<a href=\"/metrics\">/metrics</a> &middot; <a href=\"/api/stats\">/api/stats</a></p>\n"
                 "</body></html>\n");
}

/* ------------------------------------------------------------------------ */
/* The parked entries                                                       */

typedef struct {
  parked_t *p;
} parked_collect_t;

static void value_text(sbuf_t *b, const bee_value_t *v) {
  switch (v->kind) {
    case BEE_VALUE_NIL: sbuf_printf(b, "NULL"); break;
    case BEE_VALUE_INT: sbuf_printf(b, "%lld", (long long)v->i); break;
    case BEE_VALUE_FLOAT: sbuf_printf(b, "%.17g", v->f); break;
    case BEE_VALUE_BOOL: sbuf_printf(b, "%s", v->i ? "true" : "false"); break;
    default: sbuf_printf(b, "\"%.*s\"", (int)(v->len > 200 ? 200 : v->len), v->str);
  }
}

static int collect_parked(void *ud, const bee_failed_event_t *ev) {
  parked_t *p = ud;
  if (p->failed) return 1;
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    parked_event_t *grown = realloc(p->items, cap * sizeof *grown);
    if (!grown) {
      p->failed = 1;
      return 1;
    }
    p->items = grown;
    p->cap = cap;
  }
  parked_event_t *o = &p->items[p->n++];
  memset(o, 0, sizeof *o);
  sbuf_t values = {0};
  for (size_t i = 0; i < ev->ncols; i++) {
    sbuf_printf(&values, "%s%s%s = ", i ? ", " : "", ev->cols[i], ev->increments && ev->increments[i] ? " +" : "");
    value_text(&values, &ev->values[i]);
  }
  char code[32];
  if (ev->code < 0) snprintf(code, sizeof code, "%s", bee_err_code(ev->code));
  else snprintf(code, sizeof code, "%d", ev->code);
  o->queue = dup_text(ev->queue);
  o->stream_id = dup_text(ev->stream_id);
  o->entity = dup_text(ev->entity);
  o->table = dup_text(ev->table);
  o->message = dup_text(ev->message);
  o->sql = dup_text(ev->sql);
  o->values = dup_text(values.failed ? "" : values.data);
  o->resolver_error = ev->resolver_error ? dup_text(ev->resolver_error) : NULL;
  o->code = dup_text(code);
  sbuf_free(&values);
  o->kind = ev->raw ? 0 : ev->kind;
  o->id = (unsigned long long)ev->id;
  o->attempts = ev->attempts;
  o->failed_at_ms = (long long)ev->failed_at_ms;
  o->event = ev->event + 1;
  o->failed_event = ev->failed_event + 1;
  o->events = ev->raw ? 0 : ev->events;
  if (!o->queue || !o->stream_id || !o->entity || !o->table || !o->message || !o->sql || !o->values || !o->code)
    p->failed = 1;
  return p->failed;
}

int parked_take(bee_engine_t *engine, size_t max, parked_t *out, bee_error_t *err) {
  memset(out, 0, sizeof *out);
  size_t n = bee_engine_queue_count(engine);
  for (size_t i = 0; i < n; i++) {
    int rc = bee_engine_queue_error_events(engine, i, max, collect_parked, out, err);
    if (rc) return rc;
  }
  if (out->failed) {
    snprintf(err->message, sizeof err->message, "out of memory");
    return err->code = BEE_ENOMEM;
  }
  return 0;
}

void parked_free(parked_t *p) {
  for (size_t i = 0; i < p->n; i++) {
    parked_event_t *o = &p->items[i];
    free(o->queue);
    free(o->stream_id);
    free(o->entity);
    free(o->table);
    free(o->message);
    free(o->sql);
    free(o->values);
    free(o->resolver_error);
    free(o->code);
  }
  free(p->items);
  memset(p, 0, sizeof *p);
}

static const char *page_head =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>beeorm: %s</title><style>"
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    ".failed{background:#fee}.sql{font-family:monospace;font-size:90%%}.notice{padding:.5em;background:#eef}"
    "</style></head><body>\n";

void notice_html(const char *title, const char *text, sbuf_t *b) {
  sbuf_printf(b, page_head, "notice");
  sbuf_printf(b, "<h1 id=\"title\">");
  html_text(b, title);
  sbuf_printf(b, "</h1>\n<p id=\"text\">");
  html_text(b, text);
  sbuf_printf(b, "</p>\n<p><a id=\"back\" href=\"/errors\">back to the parked entries</a> &middot; "
                 "<a href=\"/\">dashboard</a></p>\n</body></html>\n");
}

void errors_html(const parked_t *p, int writable, const char *notice, sbuf_t *b) {
  size_t entries = 0;
  for (size_t i = 0; i < p->n; i++) entries += p->items[i].event == 1;
  sbuf_printf(b, page_head, "parked entries");
  sbuf_printf(b, "<h1>Parked entries</h1>\n");
  if (notice) {
    sbuf_printf(b, "<p class=\"notice\" id=\"notice\">");
    html_text(b, notice);
    sbuf_printf(b, "</p>\n");
  }
  sbuf_printf(b, "<p><span id=\"entries\">%zu</span> parked entr%s (<a href=\"/\">dashboard</a>). ", entries,
              entries == 1 ? "y" : "ies");
  if (writable)
    sbuf_printf(b, "Retry puts an entry back at the end of its queue (refused when a row of it got a newer change "
                   "since, unless forced); skip drops one event for good and puts the entry's others back.</p>\n"
                   "<form method=\"post\" action=\"/errors\" id=\"actions\">\n<p><label>token "
                   "<input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\"></label> "
                   "<button name=\"act\" value=\"retry-all\" id=\"retry-all\">retry all</button> "
                   "<button name=\"act\" value=\"skip-all\" id=\"skip-all\">skip all failing events</button>"
                   "</p>\n");
  else
    sbuf_printf(b, "Read-only: this server was started without --token.</p>\n");
  sbuf_printf(b, "<table id=\"parked\"><tr><th>queue</th><th>entry</th><th>event</th><th>row</th><th>values</th>"
                 "<th>error</th><th>attempts</th><th>failed at (UTC)</th>%s</tr>\n",
              writable ? "<th></th>" : "");
  for (size_t i = 0; i < p->n; i++) {
    const parked_event_t *e = &p->items[i];
    int failing = e->event == e->failed_event;
    char at[32] = "-";
    time_t t = (time_t)(e->failed_at_ms / 1000);
    struct tm tm;
    if (e->failed_at_ms > 0 && gmtime_r(&t, &tm)) strftime(at, sizeof at, "%Y-%m-%d %H:%M:%S", &tm);
    sbuf_printf(b, "<tr class=\"%s\" data-entry=\"", failing ? "failed" : "held");
    html_text(b, e->stream_id);
    sbuf_printf(b, "\" data-event=\"%zu\"><td>", e->event);
    html_text(b, e->queue);
    sbuf_printf(b, "</td><td>");
    html_text(b, e->stream_id);
    if (e->events) sbuf_printf(b, "</td><td>%zu/%zu</td><td>%s ", e->event, e->events,
                               e->kind == 'I' ? "insert" : e->kind == 'U' ? "update" : "delete");
    else sbuf_printf(b, "</td><td>-</td><td>malformed ");
    html_text(b, e->entity);
    sbuf_printf(b, " %llu</td><td>", e->id);
    html_text(b, e->values);
    if (failing && e->sql[0]) {
      sbuf_printf(b, "<div class=\"sql\">");
      html_text(b, e->sql);
      sbuf_printf(b, "</div>");
    }
    sbuf_printf(b, "</td><td>");
    if (failing) {
      html_text(b, e->code);
      sbuf_printf(b, ": ");
      html_text(b, e->message);
      if (e->resolver_error) {
        sbuf_printf(b, "<br>resolver: ");
        html_text(b, e->resolver_error);
      }
      sbuf_printf(b, "</td><td>%d</td><td>%s</td>", e->attempts, at);
    } else {
      sbuf_printf(b, "waits with event %zu</td><td>-</td><td>%s</td>", e->failed_event, at);
    }
    if (writable) {
      sbuf_printf(b, "<td>");
      if (e->event == 1) {
        const char *verbs[] = {"retry", "force"};
        for (int k = 0; k < 2 && e->events; k++) {
          sbuf_printf(b, "<button name=\"act\" value=\"%s|", verbs[k]);
          html_text(b, e->queue);
          sbuf_printf(b, "|");
          html_text(b, e->stream_id);
          sbuf_printf(b, "\">%s</button> ", k ? "force retry" : "retry");
        }
      }
      sbuf_printf(b, "<button name=\"act\" value=\"skip|");
      html_text(b, e->queue);
      sbuf_printf(b, "|");
      html_text(b, e->stream_id);
      sbuf_printf(b, "|%zu\">skip%s</button></td>", e->event, e->events ? " this event" : "");
    }
    sbuf_printf(b, "</tr>\n");
  }
  sbuf_printf(b, "</table>\n%s</body></html>\n", writable ? "</form>\n" : "");
}
