/* serve.c: `beeorm serve`, an HTTP server (libmicrohttpd) for Prometheus and people. */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "metrics.h"

#define SERVE_DEFAULT_LISTEN "127.0.0.1:9188"
#define SERVE_CONNECTIONS 64     /* at once, in all */
#define SERVE_PER_IP 16          /* at once, from one address */
#define SERVE_TIMEOUT_SECONDS 10 /* an idle connection is closed after this */
#define SERVE_REFRESH_SECONDS 5  /* the page reloads itself */
#define SERVE_BODY_MAX 8192      /* a form larger than this is refused */
#define SERVE_PARKED_MAX 200     /* parked entries shown per queue */

const char serve_usage[] =
    "usage: beeorm serve --config FILE [--listen HOST:PORT] [--token TOKEN]\n"
    "\n"
    "Serves what the queues and their consumers are doing, over HTTP, until SIGINT or\n"
    "SIGTERM:\n"
    "  GET /            a page with the totals, each queue and each live consumer worker;\n"
    "                   it reloads itself every 5 s\n"
    "  GET /metrics     the Prometheus text format: per queue (labels pool, shard)\n"
    "                   beeorm_queue_length, beeorm_queue_pending,\n"
    "                   beeorm_queue_oldest_event_age_seconds, beeorm_queue_errors,\n"
    "                   beeorm_events_applied_total, beeorm_events_failed_total (counted\n"
    "                   by every consumer process, kept in Redis), and\n"
    "                   beeorm_consumer_workers\n"
    "  GET /api/stats   the same as JSON\n"
    "  GET /errors      the parked entries of every queue with their events; with --token,\n"
    "                   buttons to retry, force-retry or skip an entry or an event, or all\n"
    "  POST /errors     what those buttons send: refused unless the form carries the token\n"
    "                   (and always when serve runs without --token: read-only)\n"
    "At most 64 connections, 16 per client address, each closed after 10 s idle; forms\n"
    "up to 8 KiB.\n"
    "\n"
    "options:\n"
    "  --config FILE       the YAML config with the pools (MySQL and the Redis of the queues)\n"
    "  --listen HOST:PORT  the address to listen on (default 127.0.0.1:9188: loopback\n"
    "                      only); an IPv4 or [IPv6] address; port 0 takes a free one\n"
    "  --token TOKEN       the secret an operator types on the errors page to change\n"
    "                      anything (at least 8 characters); without it, read-only\n"
    "  -h, --help          print this help\n"
    "\n"
    "It prints one line when it listens: \"beeorm serve: listening on http://HOST:PORT\".\n"
    "\n"
    "exit codes:\n"
    "  0  stopped by SIGINT or SIGTERM\n"
    "  1  the config is unreadable or invalid, a server is unreachable, or the address\n"
    "     cannot be listened on\n"
    "  2  bad usage: unknown option, missing or bad value, missing --config\n";

typedef struct {
  bee_engine_t *engine;
  const char *token; /* NULL: read-only */
} serve_t;

/* One request in progress: a POST's body as it arrives. */
typedef struct {
  int post;
  int too_large;
  sbuf_t body;
} request_t;

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
                                 size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *msg) {
  return send_text(conn, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

static enum MHD_Result send_html(struct MHD_Connection *conn, unsigned status, const sbuf_t *b) {
  if (b->failed) return plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "500 out of memory\n");
  return send_text(conn, status, "text/html; charset=utf-8", b->data ? b->data : "", b->len);
}

static enum MHD_Result notice(struct MHD_Connection *conn, unsigned status, const char *title, const char *text) {
  sbuf_t b = {0};
  notice_html(title, text, &b);
  enum MHD_Result r = send_html(conn, status, &b);
  sbuf_free(&b);
  return r;
}

/* Decodes an application/x-www-form-urlencoded value in place. */
static void form_decode(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (*p == '+') *o++ = ' ';
    else if (*p == '%' && p[1] && p[2]) {
      char hex[3] = {p[1], p[2], 0};
      char *end;
      long v = strtol(hex, &end, 16);
      if (*end || v <= 0) *o++ = '?';
      else *o++ = (char)v;
      p += 2;
    } else *o++ = *p;
  }
  *o = '\0';
}

/* The value of field name in a form body (decoded, in buf), or NULL. */
static const char *form_field(const char *body, const char *name, char *buf, size_t size) {
  size_t nl = strlen(name);
  for (const char *p = body; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
      snprintf(buf, size, "%.*s", (int)(len - nl - 1), p + nl + 1);
      form_decode(buf);
      return buf;
    }
    p = amp ? amp + 1 : NULL;
  }
  return NULL;
}

/* Compares in time that does not depend on where they differ. */
static int same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return diff == 0;
}

static int queue_index(bee_engine_t *engine, const char *name, size_t *out) {
  size_t n = bee_engine_queue_count(engine);
  for (size_t i = 0; i < n; i++) {
    char q[BEE_NAME_MAX + 24];
    bee_engine_queue_name(engine, i, q, sizeof q);
    if (!strcmp(q, name)) {
      *out = i;
      return 0;
    }
  }
  return -1;
}

/* Skips event (1-based) of an entry; a malformed record is skipped whole. */
static int skip_one(bee_engine_t *engine, size_t q, const char *id, size_t event, bee_error_t *err) {
  int rc = event ? bee_engine_queue_skip_event(engine, q, id, event - 1, err) : BEE_EMALFORMED;
  if (rc == BEE_EMALFORMED) rc = bee_engine_queue_skip(engine, q, id, err);
  return rc;
}

/* POST /errors: act = retry|Q|ID, force|Q|ID, skip|Q|ID|EVENT, retry-all, skip-all. */
static enum MHD_Result act(serve_t *sv, struct MHD_Connection *conn, request_t *rq) {
  if (!sv->token)
    return notice(conn, MHD_HTTP_FORBIDDEN, "Refused: read-only",
                  "This server was started without --token, so nothing can be changed from here.");
  if (rq->too_large) return notice(conn, MHD_HTTP_CONTENT_TOO_LARGE, "Refused: too large", "The form is over 8 KiB.");
  const char *body = rq->body.data ? rq->body.data : "";
  char token[512], action[512];
  if (!form_field(body, "token", token, sizeof token) || !token[0] || !same_secret(token, sv->token))
    return notice(conn, MHD_HTTP_FORBIDDEN, "Refused: wrong or missing token",
                  "Type the token this server was started with (--token) before pressing a button.");
  if (!form_field(body, "act", action, sizeof action))
    return notice(conn, MHD_HTTP_BAD_REQUEST, "Refused: no action", "The form names no action.");
  bee_error_t err;
  memset(&err, 0, sizeof err);
  char done[256];
  int rc = 0;
  if (!strcmp(action, "retry-all") || !strcmp(action, "skip-all")) {
    int retry = action[0] == 'r';
    parked_t p;
    size_t n = 0;
    rc = parked_take(sv->engine, SERVE_PARKED_MAX, &p, &err);
    for (size_t i = 0; !rc && i < p.n; i++) {
      const parked_event_t *e = &p.items[i];
      size_t q;
      if (e->event != e->failed_event || queue_index(sv->engine, e->queue, &q)) continue;
      rc = retry ? bee_engine_queue_retry(sv->engine, q, e->stream_id, 0, &err)
                 : skip_one(sv->engine, q, e->stream_id, e->events ? e->event : 0, &err);
      if (!rc) n++;
    }
    parked_free(&p);
    snprintf(done, sizeof done, "%s %zu entr%s.", retry ? "Retried" : "Skipped the failing event of", n,
             n == 1 ? "y" : "ies");
  } else {
    char *parts[4] = {0};
    size_t np = 0;
    for (char *p = action; p && np < 4;) {
      parts[np++] = p;
      char *bar = strchr(p, '|');
      if (bar) *bar = '\0';
      p = bar ? bar + 1 : NULL;
    }
    size_t q;
    int verb_retry = np == 3 && (!strcmp(parts[0], "retry") || !strcmp(parts[0], "force"));
    int verb_skip = np == 4 && !strcmp(parts[0], "skip");
    if ((!verb_retry && !verb_skip) || queue_index(sv->engine, parts[1], &q))
      return notice(conn, MHD_HTTP_BAD_REQUEST, "Refused: bad action", "The action names no known queue or verb.");
    if (verb_retry) {
      rc = bee_engine_queue_retry(sv->engine, q, parts[2], parts[0][0] == 'f', &err);
      snprintf(done, sizeof done, "%s entry %.60s of %.60s.", parts[0][0] == 'f' ? "Force-retried" : "Retried",
               parts[2], parts[1]);
    } else {
      size_t event = (size_t)strtoul(parts[3], NULL, 10);
      rc = skip_one(sv->engine, q, parts[2], event, &err);
      snprintf(done, sizeof done, "Skipped event %zu of entry %.60s of %.60s.", event, parts[2], parts[1]);
    }
  }
  if (rc) {
    char line[BEE_ERROR_MESSAGE_MAX + 64];
    bee_error_format(&err, line, sizeof line);
    return notice(conn, rc == BEE_ESTALE || rc == BEE_EINVAL || rc == BEE_ENOTFOUND ? MHD_HTTP_CONFLICT
                                                                                     : MHD_HTTP_SERVICE_UNAVAILABLE,
                  "Not done", line);
  }
  return notice(conn, MHD_HTTP_OK, "Done", done);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **state) {
  (void)version;
  serve_t *sv = cls;
  request_t *rq = *state;
  if (!rq) { /* the first call sees the headers only */
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!get && !(post && !strcmp(url, "/errors")))
      return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "405 method not allowed: GET and HEAD, and POST /errors\n");
    if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
    rq->post = post;
    *state = rq;
    return MHD_YES;
  }
  if (*upload_size) { /* a POST's body, in pieces; a GET's is ignored */
    if (rq->post && rq->body.len + *upload_size <= SERVE_BODY_MAX)
      sbuf_printf(&rq->body, "%.*s", (int)*upload_size, upload_data);
    else if (rq->post)
      rq->too_large = 1;
    *upload_size = 0;
    return MHD_YES;
  }
  if (rq->post) return act(sv, conn, rq);
  int page = !strcmp(url, "/"), metrics = !strcmp(url, "/metrics"), api = !strcmp(url, "/api/stats");
  if (!strcmp(url, "/errors")) {
    parked_t p;
    bee_error_t err;
    memset(&err, 0, sizeof err);
    if (parked_take(sv->engine, SERVE_PARKED_MAX, &p, &err) != 0) {
      char line[BEE_ERROR_MESSAGE_MAX + 32];
      bee_error_format(&err, line, sizeof line);
      parked_free(&p);
      return notice(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Cannot read the parked entries", line);
    }
    sbuf_t b = {0};
    errors_html(&p, sv->token != NULL, NULL, &b);
    parked_free(&p);
    enum MHD_Result r = send_html(conn, MHD_HTTP_OK, &b);
    sbuf_free(&b);
    return r;
  }
  if (!page && !metrics && !api)
    return plain(conn, MHD_HTTP_NOT_FOUND, "404 not found (try /, /metrics, /api/stats or /errors)\n");
  snapshot_t s;
  bee_error_t err;
  memset(&err, 0, sizeof err);
  if (snapshot_take(sv->engine, &s, &err) != 0) {
    char msg[BEE_ERROR_MESSAGE_MAX + 64];
    char line[BEE_ERROR_MESSAGE_MAX + 32];
    bee_error_format(&err, line, sizeof line);
    snprintf(msg, sizeof msg, "503 cannot read the queues: %s\n", line);
    snapshot_free(&s);
    return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
  }
  sbuf_t b = {0};
  const char *type;
  if (metrics) {
    metrics_prometheus(&s, &b);
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (api) {
    metrics_json(&s, &b);
    type = "application/json";
  } else {
    metrics_html(&s, SERVE_REFRESH_SECONDS, &b);
    type = "text/html; charset=utf-8";
  }
  snapshot_free(&s);
  enum MHD_Result ret = b.failed ? plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "500 out of memory\n")
                                 : send_text(conn, MHD_HTTP_OK, type, b.data ? b.data : "", b.len);
  sbuf_free(&b);
  return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)conn;
  (void)why;
  request_t *rq = *state;
  if (!rq) return;
  sbuf_free(&rq->body);
  free(rq);
  *state = NULL;
}

/* "HOST:PORT" (IPv4, or [IPv6]) into addr: 0, or -1 with why filled. */
static int parse_listen(const char *s, struct sockaddr_storage *addr, socklen_t *len, char *why, size_t why_size) {
  char host[64];
  const char *port_at;
  memset(addr, 0, sizeof *addr);
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host) {
      snprintf(why, why_size, "expected [IPv6]:PORT");
      return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(close - s - 1), s + 1);
    port_at = close + 2;
  } else {
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) {
      snprintf(why, why_size, "expected HOST:PORT");
      return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    port_at = colon + 1;
  }
  char *end;
  errno = 0;
  long port = strtol(port_at, &end, 10);
  if (!*port_at || *end || errno || port < 0 || port > 65535) {
    snprintf(why, why_size, "bad port '%.16s' (expected 0-65535)", port_at);
    return -1;
  }
  if (!strcmp(host, "localhost")) snprintf(host, sizeof host, "127.0.0.1");
  struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
  } else {
    snprintf(why, why_size, "'%.40s' is not an IP address (use 127.0.0.1, 0.0.0.0, [::1] ...)", host);
    return -1;
  }
  return 0;
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "beeorm serve: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (try 'beeorm serve --help')\n");
  return 2;
}

int serve_main(int argc, char **argv) {
  const char *config = NULL, *listen = SERVE_DEFAULT_LISTEN, *token = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(serve_usage, stdout);
      return 0;
    }
  }
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char **dst = !strcmp(a, "--config")   ? &config
                       : !strcmp(a, "--listen") ? &listen
                       : !strcmp(a, "--token")  ? &token
                                                : NULL;
    if (!strncmp(a, "--config=", 9)) config = a + 9;
    else if (!strncmp(a, "--listen=", 9)) listen = a + 9;
    else if (!strncmp(a, "--token=", 8)) token = a + 8;
    else if (dst) {
      if (i + 1 >= argc) return usage_error("missing value for %s", a);
      *dst = argv[++i];
    } else if (a[0] == '-') {
      return usage_error("unknown option '%s'", a);
    } else {
      return usage_error("unexpected argument '%s'", a);
    }
  }
  if (!config) return usage_error("missing --config FILE%s", "");
  if (token && strlen(token) < 8) return usage_error("--token must be at least 8 characters%s", "");
  struct sockaddr_storage addr;
  socklen_t addr_len = 0;
  char why[128];
  if (parse_listen(listen, &addr, &addr_len, why, sizeof why) != 0) {
    fprintf(stderr, "beeorm serve: bad --listen '%.80s': %s\n", listen, why);
    return 2;
  }
  bee_registry_t *reg = bee_registry_new();
  bee_engine_t *engine = NULL;
  bee_error_t err;
  char line[BEE_ERROR_MESSAGE_MAX + 64];
  if (!reg || bee_registry_load_yaml(reg, config, &err) != 0 || bee_registry_validate(reg, &engine, &err) != 0) {
    if (!reg) snprintf(err.message, sizeof err.message, "out of memory");
    bee_error_format(&err, line, sizeof line);
    fprintf(stderr, "beeorm serve: %s\n", line);
    bee_registry_free(reg);
    return 1;
  }
  bee_registry_free(reg);
  if (!bee_engine_queue_count(engine)) {
    fprintf(stderr, "beeorm serve: the config has no queues (they need a MySQL pool and a Redis pool)\n");
    bee_engine_free(engine);
    return 1;
  }
  /* SIGINT and SIGTERM are waited for below; blocked before the server's thread starts,
     so that it never takes them. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);
  serve_t sv = {engine, token};
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
      handle, &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)SERVE_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)SERVE_PER_IP,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_TIMEOUT_SECONDS, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
      MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "beeorm serve: cannot listen on %s: %s\n", listen, strerror(errno ? errno : EADDRINUSE));
    bee_engine_free(engine);
    return 1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = info ? info->port : 0;
  char host[64] = "";
  if (addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
  else
    inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
  printf(addr.ss_family == AF_INET6 ? "beeorm serve: listening on http://[%s]:%u\n"
                                     : "beeorm serve: listening on http://%s:%u\n",
         host, port);
  fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  MHD_stop_daemon(d);
  bee_engine_free(engine);
  printf("beeorm serve: stopped (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  return 0;
}
