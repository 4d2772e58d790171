/*
 * metrics.h: what `beeorm serve` shows, as text: a snapshot of the queues and the
 * consumers (read through beeorm.h), and its Prometheus, JSON and HTML forms. The
 * formatting is pure: no I/O.
 */
#ifndef BEE_CLI_METRICS_H
#define BEE_CLI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "beeorm.h"

/* A growable string; failed is set when memory ran out (the text is then incomplete). */
typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} sbuf_t;

void sbuf_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(sbuf_t *b);

typedef struct {
  char name[BEE_NAME_MAX + 24]; /* "<pool>:<shard>" */
  char pool[BEE_NAME_MAX];
  unsigned shard;
  bee_queue_stats_t stats;
} snapshot_queue_t;

typedef struct {
  char *token, *host, *queues;
  int pid;
  double heartbeat_age_seconds;
} snapshot_worker_t;

typedef struct {
  snapshot_queue_t *queues;
  size_t nqueues;
  snapshot_worker_t *workers;
  size_t nworkers;
  bee_consumers_t consumers;
  uint64_t applied[BEE_RATES_MAX_SECONDS], failed[BEE_RATES_MAX_SECONDS]; /* per second, oldest first */
} snapshot_t;

/* Reads the queues and the consumers of engine: 0, or a BEE_E* code with err filled. */
int snapshot_take(bee_engine_t *engine, snapshot_t *out, bee_error_t *err);
void snapshot_free(snapshot_t *s);

/* The Prometheus text exposition format (version 0.0.4). */
void metrics_prometheus(const snapshot_t *s, sbuf_t *out);
/* The same figures as one JSON object (GET /api/stats). */
void metrics_json(const snapshot_t *s, sbuf_t *out);
/* A page that shows them and reloads itself every refresh_seconds (GET /). */
void metrics_html(const snapshot_t *s, int refresh_seconds, sbuf_t *out);

/* ------------------------------------------------------------------------ */
/* The parked entries (the errors page)                                     */

/* One event of a parked entry, its strings owned. */
typedef struct {
  char *queue, *stream_id, *entity, *table, *message, *sql, *values, *resolver_error, *code;
  char kind; /* 'I', 'U', 'D'; 0 for a malformed record */
  unsigned long long id;
  int attempts;
  long long failed_at_ms;
  size_t event, failed_event, events; /* 1-based places; events 0 for a malformed record */
} parked_event_t;

typedef struct {
  parked_event_t *items;
  size_t n, cap;
  int failed; /* out of memory: the list is incomplete */
} parked_t;

/* Every event of up to max parked entries per queue: 0, or a BEE_E* code with err filled. */
int parked_take(bee_engine_t *engine, size_t max, parked_t *out, bee_error_t *err);
void parked_free(parked_t *p);

/*
 * The errors page: each parked entry with its events; with writable, one form whose
 * buttons retry, force-retry or skip an entry or an event, or all of them, each needing
 * the token typed in (POST /errors). notice (may be NULL) is shown on top.
 */
void errors_html(const parked_t *p, int writable, const char *notice, sbuf_t *out);
/* A small page: a title, a line of text, a link back to the errors page. */
void notice_html(const char *title, const char *text, sbuf_t *out);

#endif
