/* consumer_lease.c: the queues' leases, and the heartbeats that share the queues among live workers. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "consumer.h"
#include "queues.h"
#include "event.h"
#include "orm.h"

/*
 * The identity of a queue's stream: a random id kept in Redis next to it (created on
 * first use). Marks are kept per identity, so two Redis servers (or a Redis that lost
 * its data) feeding one database never share a mark and never skip each other's events.
 */
int bee__c_queue_identity(consumer_t *c, size_t qp, const char *id_key, char *out, size_t size, bee_error_t *err) {
  bee__rconn_t *r;
  int rc = bee__c_get_redis(c, qp, &r, err);
  if (rc) return rc;
  char fresh[20];
  unsigned char b[8] = {0};
  FILE *f = fopen("/dev/urandom", "rb");
  if (f) {
    if (fread(b, 1, sizeof b, f) != sizeof b) memset(b, 0, sizeof b);
    fclose(f);
  }
  uint64_t x = (uint64_t)bee__c_now_ms() ^ ((uint64_t)getpid() << 40);
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
const char *const bee__c_lease_script =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0";
const char *const bee__c_release_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";

/*
 * Leases (docs/guarantees.md, the queue): a worker applies a queue only while it holds the queue's lease,
 * renewed before every batch (and every second while waiting) and expiring 3 s after
 * its holder stops renewing; so
 * consumer processes split the queues and a dead one's queues move on. Correctness does
 * not rest on it: the applied mark fences out any stale holder. If Redis cannot be
 * asked, the worker goes on (the fence still holds).
 */
int bee__c_lease(consumer_t *c, size_t qp, const char *key, const char *script) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (bee__c_get_redis(c, qp, &r, &ignored)) return 1;
  const char *argv[] = {"EVAL", script, "1", key, c->token, LEASE_MS};
  bee__reply_t *rep = bee__redis_command_argv(r, 6, argv, NULL);
  int held = !rep || rep->type != BEE__REPLY_INTEGER || rep->integer == 1;
  if (rep) bee__reply_free(rep);
  return held;
}

/*
 * Renews this worker's heartbeat, forgets workers whose heartbeat ran out, and returns
 * this worker's fair share of the engine's queues: ceil(queues / live workers). On a
 * Redis failure, all of them (the leases still keep workers apart).
 */
size_t bee__c_heartbeat(consumer_t *c, size_t mine, const char *held) {
  size_t total = c->engine->mysql_count * BEE__SHARDS;
  bee__rconn_t *r;
  bee_error_t ignored;
  if (bee__c_get_redis(c, (size_t)c->engine->inval_redis, &r, &ignored)) return mine;
  int64_t now = bee__c_now_ms();
  char deadline[24], cutoff[24];
  snprintf(deadline, sizeof deadline, "%lld", (long long)(now + LEASE_MS_INT));
  snprintf(cutoff, sizeof cutoff, "%lld", (long long)now);
  char host[256] = "";
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "unknown");
  bee__redis_append(r, "ZADD %s %s %s", BEE__WORKERS_KEY, deadline, c->token);
  bee__redis_append(r, "ZREMRANGEBYSCORE %s -inf (%s", BEE__WORKERS_KEY, cutoff);
  bee__redis_append(r, "ZCARD %s", BEE__WORKERS_KEY);
  /* what operators see of it (bee_engine_consumers): where it runs and what it holds */
  bee__redis_append(r, "HSET %s %s %s\t%d\t%s", BEE__WORKER_INFO_KEY, c->token, host, (int)getpid(), held);
  size_t live = 0;
  for (int i = 0; i < 4; i++) {
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
void bee__c_leave(consumer_t *c) {
  bee__rconn_t *r;
  bee_error_t ignored;
  if (bee__c_get_redis(c, (size_t)c->engine->inval_redis, &r, &ignored)) return;
  bee__redis_append(r, "ZREM %s %s", BEE__WORKERS_KEY, c->token);
  bee__redis_append(r, "HDEL %s %s", BEE__WORKER_INFO_KEY, c->token);
  bee__reply_t *rep = NULL;
  for (int i = 0; i < 2 && bee__redis_get_reply(r, &rep) == 0; i++) bee__reply_free(rep);
}
