/*
 * metrics.h: what `beeorm serve` shows, as text: a snapshot of the queues and the
 * consumers (read through beeorm.h), and its Prometheus, JSON and HTML forms. The
 * formatting is pure: no I/O.
 */
#ifndef BEE_CLI_METRICS_H
#define BEE_CLI_METRICS_H

#include <stddef.h>

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

#endif
