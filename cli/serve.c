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

const char serve_usage[] =
    "usage: beeorm serve --config FILE [--listen HOST:PORT]\n"
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
    "Only GET (and HEAD) is served; at most 64 connections, 16 per client address, each\n"
    "closed after 10 s idle.\n"
    "\n"
    "options:\n"
    "  --config FILE       the YAML config with the pools (MySQL and the Redis of the queues)\n"
    "  --listen HOST:PORT  the address to listen on (default 127.0.0.1:9188: loopback\n"
    "                      only); an IPv4 or [IPv6] address; port 0 takes a free one\n"
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
} serve_t;

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
                                 size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *msg) {
  return send_text(conn, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **state) {
  (void)version;
  (void)upload_data;
  serve_t *sv = cls;
  if (!*state) { /* the first call sees the headers only */
    static int marker;
    *state = &marker;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
      return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "405 method not allowed: only GET and HEAD are served\n");
    return MHD_YES;
  }
  if (*upload_size) { /* a GET with a body: ignored */
    *upload_size = 0;
    return MHD_YES;
  }
  int page = !strcmp(url, "/"), metrics = !strcmp(url, "/metrics"), api = !strcmp(url, "/api/stats");
  if (!page && !metrics && !api) return plain(conn, MHD_HTTP_NOT_FOUND, "404 not found (try /, /metrics or /api/stats)\n");
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
  const char *config = NULL, *listen = SERVE_DEFAULT_LISTEN;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(serve_usage, stdout);
      return 0;
    }
  }
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char **dst = !strcmp(a, "--config") ? &config : !strcmp(a, "--listen") ? &listen : NULL;
    if (!strncmp(a, "--config=", 9)) config = a + 9;
    else if (!strncmp(a, "--listen=", 9)) listen = a + 9;
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
  serve_t sv = {engine};
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
      handle, &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)SERVE_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)SERVE_PER_IP,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_TIMEOUT_SECONDS, MHD_OPTION_END);
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
