/*
 * dsn.c: parsing MySQL DSNs and Redis addresses into settings. Pure: no I/O.
 *
 * Every error names what is wrong and where, and never quotes the password: messages
 * are built from the parts that were understood, not from the raw input.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define BEE__DSN_ERR(err, ...) bee__error((err), BEE_EDSN, 0, __VA_ARGS__)

/* A slice of the input. */
typedef struct {
  const char *p;
  size_t n;
} bee__span_t;

static bee__span_t span(const char *p, size_t n) {
  bee__span_t s = {p, n};
  return s;
}

static const char *span_find_last(bee__span_t s, char c) {
  for (size_t i = s.n; i > 0; i--)
    if (s.p[i - 1] == c) return s.p + i - 1;
  return NULL;
}

static const char *span_find(bee__span_t s, char c) {
  const void *r = memchr(s.p, c, s.n);
  return r;
}

static int span_eq(bee__span_t s, const char *lit) {
  return strlen(lit) == s.n && memcmp(s.p, lit, s.n) == 0;
}

/* Copies a span into a fixed field; fails with a message naming the field. */
static int copy_field(char *dst, size_t size, bee__span_t s, const char *what, bee_error_t *err) {
  if (s.n >= size) return BEE__DSN_ERR(err, "%s is too long (at most %zu bytes)", what, size - 1);
  memcpy(dst, s.p, s.n);
  dst[s.n] = '\0';
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s into dst (URI user and password). */
static int decode_field(char *dst, size_t size, bee__span_t s, const char *what, bee_error_t *err) {
  size_t o = 0;
  for (size_t i = 0; i < s.n; i++) {
    int c = (unsigned char)s.p[i];
    if (c == '%') {
      int hi = i + 1 < s.n ? hexval(s.p[i + 1]) : -1;
      int lo = i + 2 < s.n ? hexval(s.p[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        dst[0] = '\0';
        return BEE__DSN_ERR(err, "bad percent-encoding in %s (expected %%XX)", what);
      }
      c = hi * 16 + lo;
      i += 2;
    }
    if (c == 0 || o + 1 >= size) dst[0] = '\0';
    if (c == 0) return BEE__DSN_ERR(err, "%s contains a NUL byte", what);
    if (o + 1 >= size) return BEE__DSN_ERR(err, "%s is too long (at most %zu bytes)", what, size - 1);
    dst[o++] = (char)c;
  }
  dst[o] = '\0';
  return 0;
}

static int is_host_char(int c) {
  return isalnum(c) || c == '.' || c == '-' || c == '_';
}

/* Parses a port; the message quotes the port text, which is never secret. */
static int parse_port(bee__span_t s, unsigned int *out, bee_error_t *err) {
  unsigned long v = 0;
  if (s.n == 0) return BEE__DSN_ERR(err, "missing port after ':'");
  if (s.n > 5) return BEE__DSN_ERR(err, "bad port '%.*s' (expected 1-65535)", (int)(s.n > 20 ? 20 : s.n), s.p);
  for (size_t i = 0; i < s.n; i++) {
    if (!isdigit((unsigned char)s.p[i]))
      return BEE__DSN_ERR(err, "bad port '%.*s' (expected 1-65535)", (int)s.n, s.p);
    v = v * 10 + (unsigned long)(s.p[i] - '0');
  }
  if (v < 1 || v > 65535) return BEE__DSN_ERR(err, "bad port '%.*s' (expected 1-65535)", (int)s.n, s.p);
  *out = (unsigned int)v;
  return 0;
}

/* host[:port] or [ipv6][:port]; port is left alone when absent. */
static int parse_hostport(bee__span_t s, char *host, size_t host_size, unsigned int *port,
                          bee_error_t *err) {
  bee__span_t h, p = span(NULL, 0);
  int have_port = 0;
  if (s.n && s.p[0] == '[') {
    const char *close = span_find(s, ']');
    if (!close) return BEE__DSN_ERR(err, "unclosed '[' in IPv6 host");
    h = span(s.p + 1, (size_t)(close - s.p - 1));
    bee__span_t after = span(close + 1, s.n - (size_t)(close + 1 - s.p));
    if (after.n) {
      if (after.p[0] != ':') return BEE__DSN_ERR(err, "expected ':' after IPv6 host");
      p = span(after.p + 1, after.n - 1);
      have_port = 1;
    }
    for (size_t i = 0; i < h.n; i++)
      if (!isxdigit((unsigned char)h.p[i]) && h.p[i] != ':' && h.p[i] != '.')
        return BEE__DSN_ERR(err, "bad IPv6 host");
  } else {
    const char *colon = span_find(s, ':');
    h = colon ? span(s.p, (size_t)(colon - s.p)) : s;
    if (colon) {
      p = span(colon + 1, s.n - (size_t)(colon + 1 - s.p));
      have_port = 1;
    }
    for (size_t i = 0; i < h.n; i++)
      if (!is_host_char((unsigned char)h.p[i]))
        return BEE__DSN_ERR(err, "bad character in host name (allowed: letters, digits, '.', '-', '_')");
  }
  if (h.n == 0) return BEE__DSN_ERR(err, "missing host");
  int rc = copy_field(host, host_size, h, "host", err);
  if (rc) return rc;
  return have_port ? parse_port(p, port, err) : 0;
}

/* Go duration subset: <digits>(ms|s|m|h). */
static int parse_duration_ms(bee__span_t key, bee__span_t v, unsigned int *out, bee_error_t *err) {
  unsigned long long n = 0;
  size_t i = 0;
  while (i < v.n && isdigit((unsigned char)v.p[i]) && n < 100000000ULL) n = n * 10 + (unsigned)(v.p[i++] - '0');
  bee__span_t unit = span(v.p + i, v.n - i);
  unsigned long long mult = 0;
  if (span_eq(unit, "ms")) mult = 1;
  else if (span_eq(unit, "s")) mult = 1000;
  else if (span_eq(unit, "m")) mult = 60000;
  else if (span_eq(unit, "h")) mult = 3600000;
  if (i == 0 || mult == 0 || n * mult > 86400000ULL)
    return BEE__DSN_ERR(err, "bad duration '%.*s' for parameter '%.*s' (expected e.g. 500ms, 5s, 1m, up to 24h)",
                        (int)(v.n > 32 ? 32 : v.n), v.p, (int)key.n, key.p);
  *out = (unsigned int)(n * mult);
  return 0;
}

/*
 * The next "name=value" of a query string q (advanced past it, and past empty pairs):
 * 1 with *k and *v, 0 at the end, or a negative code when a pair has no '='.
 */
static int next_param(bee__span_t *q, bee__span_t *k, bee__span_t *v, bee_error_t *err) {
  while (q->n) {
    const char *amp = span_find(*q, '&');
    bee__span_t kv = amp ? span(q->p, (size_t)(amp - q->p)) : *q;
    *q = amp ? span(amp + 1, q->n - (size_t)(amp + 1 - q->p)) : span(q->p + q->n, 0);
    if (kv.n == 0) continue;
    const char *eq = span_find(kv, '=');
    if (!eq) return BEE__DSN_ERR(err, "parameter '%.*s' has no value (expected name=value)", (int)(kv.n > 32 ? 32 : kv.n), kv.p);
    *k = span(kv.p, (size_t)(eq - kv.p));
    *v = span(eq + 1, kv.n - (size_t)(eq + 1 - kv.p));
    return 1;
  }
  return 0;
}

static int parse_mysql_params(bee__span_t q, int uri, bee_mysql_settings_t *s, bee_error_t *err) {
  bee__span_t k, v;
  int more;
  while ((more = next_param(&q, &k, &v, err)) == 1) {
    int rc;
    if (span_eq(k, "timeout")) {
      rc = parse_duration_ms(k, v, &s->connect_timeout_ms, err);
    } else if (span_eq(k, "readTimeout")) {
      rc = parse_duration_ms(k, v, &s->read_timeout_ms, err);
    } else if (span_eq(k, "writeTimeout")) {
      rc = parse_duration_ms(k, v, &s->write_timeout_ms, err);
    } else if (span_eq(k, "charset")) {
      for (size_t i = 0; i < v.n; i++)
        if (!isalnum((unsigned char)v.p[i]) && v.p[i] != '_')
          return BEE__DSN_ERR(err, "bad charset name");
      if (v.n == 0) return BEE__DSN_ERR(err, "empty charset");
      rc = copy_field(s->charset, sizeof s->charset, v, "charset", err);
    } else if (uri && span_eq(k, "socket")) {
      if (v.n == 0 || v.p[0] != '/') return BEE__DSN_ERR(err, "socket must be an absolute path");
      rc = copy_field(s->socket, sizeof s->socket, v, "socket path", err);
    } else {
      return BEE__DSN_ERR(err,
                          "unknown parameter '%.*s' (supported: timeout, readTimeout, writeTimeout, charset%s)",
                          (int)(k.n > 32 ? 32 : k.n), k.p, uri ? ", socket" : "");
    }
    if (rc) return rc;
  }
  return more;
}

static int parse_database(bee__span_t d, bee_mysql_settings_t *s, bee_error_t *err) {
  if (d.n == 0) return BEE__DSN_ERR(err, "missing database name after '/'");
  if (d.n > 64) return BEE__DSN_ERR(err, "database name is too long (at most 64 characters)");
  for (size_t i = 0; i < d.n; i++) {
    int c = (unsigned char)d.p[i];
    if (!isalnum(c) && c != '_' && c != '$' && c != '-')
      return BEE__DSN_ERR(err, "bad character in database name (allowed: letters, digits, '_', '$', '-')");
  }
  return copy_field(s->database, sizeof s->database, d, "database name", err);
}

/* user[:password] */
static int parse_userinfo(bee__span_t ui, int decode, char *user, char *password, bee_error_t *err) {
  const char *colon = span_find(ui, ':');
  bee__span_t u = colon ? span(ui.p, (size_t)(colon - ui.p)) : ui;
  bee__span_t pw = colon ? span(colon + 1, ui.n - (size_t)(colon + 1 - ui.p)) : span(ui.p, 0);
  int rc = decode ? decode_field(user, BEE_DSN_FIELD_MAX, u, "user name", err)
                  : copy_field(user, BEE_DSN_FIELD_MAX, u, "user name", err);
  if (rc) return rc;
  return decode ? decode_field(password, BEE_DSN_FIELD_MAX, pw, "password", err)
                : copy_field(password, BEE_DSN_FIELD_MAX, pw, "password", err);
}

static int scheme_of(const char *s, bee__span_t *scheme) {
  const char *sep = strstr(s, "://");
  if (!sep) return 0;
  for (const char *p = s; p < sep; p++)
    if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.') return 0;
  *scheme = span(s, (size_t)(sep - s));
  return 1;
}

static int parse_mysql_uri(const char *dsn, bee__span_t rest, bee_mysql_settings_t *s, bee_error_t *err) {
  (void)dsn;
  /* Authority ends at the first '/' or '?' after the last '@' (passwords may hold '/'
     only percent-encoded, but a raw '@' in a password is tolerated as Go does). */
  const char *at = span_find_last(rest, '@');
  bee__span_t after = at ? span(at + 1, rest.n - (size_t)(at + 1 - rest.p)) : rest;
  size_t alen = 0;
  while (alen < after.n && after.p[alen] != '/' && after.p[alen] != '?') alen++;
  bee__span_t hostport = span(after.p, alen);
  bee__span_t tail = span(after.p + alen, after.n - alen);
  int rc;
  if (at) {
    rc = parse_userinfo(span(rest.p, (size_t)(at - rest.p)), 1, s->user, s->password, err);
    if (rc) return rc;
  }
  if (!tail.n || tail.p[0] != '/') return BEE__DSN_ERR(err, "missing database name (expected mysql://user:password@host:port/database)");
  tail = span(tail.p + 1, tail.n - 1);
  const char *q = span_find(tail, '?');
  bee__span_t db = q ? span(tail.p, (size_t)(q - tail.p)) : tail;
  if ((rc = parse_database(db, s, err))) return rc;
  if (q && (rc = parse_mysql_params(span(q + 1, tail.n - (size_t)(q + 1 - tail.p)), 1, s, err))) return rc;
  if (s->socket[0]) {
    if (hostport.n) return BEE__DSN_ERR(err, "give either a host or a socket, not both");
    s->port = 0;
    return 0;
  }
  if (hostport.n == 0) return BEE__DSN_ERR(err, "missing host (expected mysql://user:password@host:port/database)");
  return parse_hostport(hostport, s->host, sizeof s->host, &s->port, err);
}

static int parse_mysql_go(bee__span_t all, bee_mysql_settings_t *s, bee_error_t *err) {
  /* [user[:password]@][net(addr)]/database[?params]. The address ends at the last
     ")/"; without parentheses the database starts at the first '/' after the last '@'. */
  const char *sep = NULL;
  for (size_t i = all.n; i >= 2; i--)
    if (all.p[i - 2] == ')' && all.p[i - 1] == '/') {
      sep = all.p + i - 1;
      break;
    }
  if (!sep) {
    const char *at = span_find_last(all, '@');
    bee__span_t from = at ? span(at + 1, all.n - (size_t)(at + 1 - all.p)) : all;
    sep = span_find(from, '/');
    if (!sep) return BEE__DSN_ERR(err, "missing '/database' (expected user:password@tcp(host:port)/database)");
  }
  bee__span_t prefix = span(all.p, (size_t)(sep - all.p));
  bee__span_t tail = span(sep + 1, all.n - (size_t)(sep + 1 - all.p));
  const char *at = span_find_last(prefix, '@');
  bee__span_t net = at ? span(at + 1, prefix.n - (size_t)(at + 1 - prefix.p)) : prefix;
  int rc;
  if (at && (rc = parse_userinfo(span(prefix.p, (size_t)(at - prefix.p)), 0, s->user, s->password, err))) return rc;

  const char *q = span_find(tail, '?');
  bee__span_t db = q ? span(tail.p, (size_t)(q - tail.p)) : tail;
  if ((rc = parse_database(db, s, err))) return rc;
  if (q && (rc = parse_mysql_params(span(q + 1, tail.n - (size_t)(q + 1 - tail.p)), 0, s, err))) return rc;

  if (net.n == 0) { /* Go's default address */
    strcpy(s->host, "127.0.0.1");
    return 0;
  }
  const char *open = span_find(net, '(');
  if (!open) {
    if (span_eq(net, "tcp")) {
      strcpy(s->host, "127.0.0.1");
      return 0;
    }
    return BEE__DSN_ERR(err, "expected tcp(host:port) or unix(/path) after '@'");
  }
  bee__span_t kind = span(net.p, (size_t)(open - net.p));
  if (net.p[net.n - 1] != ')') return BEE__DSN_ERR(err, "unclosed '(' after '%.*s'", (int)(kind.n > 16 ? 16 : kind.n), kind.p);
  bee__span_t addr = span(open + 1, net.n - (size_t)(open + 1 - net.p) - 1);
  if (span_eq(kind, "tcp")) {
    if (addr.n == 0) return BEE__DSN_ERR(err, "missing host in tcp()");
    return parse_hostport(addr, s->host, sizeof s->host, &s->port, err);
  }
  if (span_eq(kind, "unix")) {
    if (addr.n == 0 || addr.p[0] != '/') return BEE__DSN_ERR(err, "unix() needs an absolute socket path");
    s->port = 0;
    return copy_field(s->socket, sizeof s->socket, addr, "socket path", err);
  }
  return BEE__DSN_ERR(err, "unknown network '%.*s' (use tcp or unix)", (int)(kind.n > 16 ? 16 : kind.n), kind.p);
}

static int check_text(const char *dsn, bee_error_t *err) {
  if (!dsn) return bee__error(err, BEE_EINVAL, 0, "connection string is NULL");
  if (!*dsn) return BEE__DSN_ERR(err, "empty connection string");
  for (const char *p = dsn; *p; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
      return BEE__DSN_ERR(err, "connection string contains whitespace or a control character at byte %d",
                          (int)(p - dsn) + 1);
  return 0;
}

int bee_mysql_dsn_parse(const char *dsn, bee_mysql_settings_t *out, bee_error_t *err) {
  int rc = check_text(dsn, err);
  if (rc) return rc;
  bee_mysql_settings_t s;
  memset(&s, 0, sizeof s);
  s.port = 3306;
  strcpy(s.charset, "utf8mb4");
  s.connect_timeout_ms = 5000;
  s.read_timeout_ms = 30000;
  s.write_timeout_ms = 30000;
  bee__span_t scheme;
  if (scheme_of(dsn, &scheme)) {
    if (!span_eq(scheme, "mysql") && !span_eq(scheme, "mariadb"))
      return BEE__DSN_ERR(err, "unknown scheme '%.*s://' for MySQL (use mysql:// or user:password@tcp(host:port)/database)",
                          (int)(scheme.n > 16 ? 16 : scheme.n), scheme.p);
    bee__span_t rest = span(dsn + scheme.n + 3, strlen(dsn) - scheme.n - 3);
    rc = parse_mysql_uri(dsn, rest, &s, err);
  } else {
    rc = parse_mysql_go(span(dsn, strlen(dsn)), &s, err);
  }
  if (!rc && !s.user[0]) rc = BEE__DSN_ERR(err, "missing user name (expected user:password@...)");
  if (rc) {
    bee__error_scrub(err, s.password); /* a parameter may have quoted it */
    return rc;
  }
  *out = s;
  return 0;
}

static int parse_db_index(bee__span_t d, int *out, bee_error_t *err) {
  long v = 0;
  if (d.n == 0) return BEE__DSN_ERR(err, "missing db index");
  if (d.n > 9) return BEE__DSN_ERR(err, "bad db index '%.*s' (expected a number 0 or more)", (int)(d.n > 16 ? 16 : d.n), d.p);
  for (size_t i = 0; i < d.n; i++) {
    if (!isdigit((unsigned char)d.p[i]))
      return BEE__DSN_ERR(err, "bad db index '%.*s' (expected a number 0 or more)", (int)(d.n > 16 ? 16 : d.n), d.p);
    v = v * 10 + (d.p[i] - '0');
  }
  *out = (int)v;
  return 0;
}

int bee__digits(const char *p, size_t n, unsigned long max, unsigned long *out) {
  if (!n || n > 19 || (p[0] == '0' && n > 1)) return -1;
  unsigned long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)p[i])) return -1;
    v = v * 10 + (unsigned long)(p[i] - '0');
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

/* connect_timeout_ms / timeout_ms: 1 to BEE_REDIS_TIMEOUT_MAX_MS, plain digits. */
static int parse_redis_ms(bee__span_t k, bee__span_t v, unsigned int *out, bee_error_t *err) {
  unsigned long n = 0;
  if (bee__digits(v.p, v.n, BEE_REDIS_TIMEOUT_MAX_MS, &n) != 0 || n < 1)
    return BEE__DSN_ERR(err, "bad %.*s '%.*s' (expected milliseconds, 1 to %d)", (int)k.n, k.p,
                        (int)(v.n > 16 ? 16 : v.n), v.p, BEE_REDIS_TIMEOUT_MAX_MS);
  *out = (unsigned int)n;
  return 0;
}

/* replicas: 0 to BEE_REDIS_REPLICAS_MAX, plain digits. */
static int parse_replicas(bee__span_t v, int *out, bee_error_t *err) {
  unsigned long n = 0;
  if (bee__digits(v.p, v.n, BEE_REDIS_REPLICAS_MAX, &n) != 0)
    return BEE__DSN_ERR(err, "bad replicas '%.*s' (expected 0 to %d)", (int)(v.n > 16 ? 16 : v.n), v.p,
                        BEE_REDIS_REPLICAS_MAX);
  *out = (int)n;
  return 0;
}

enum { REDIS_PARAMS_URI, REDIS_PARAMS_UNIX, REDIS_PARAMS_SENTINEL };

/* The query of a redis://, unix:// or Sentinel master address: timeouts, replicas, and
   db for unix://, credentials for Sentinel. */
static int parse_redis_params(bee__span_t q, int form, bee_redis_settings_t *sp, bee_error_t *err) {
  bee__span_t k, v;
  int more;
  while ((more = next_param(&q, &k, &v, err)) == 1) {
    int rc;
    if (span_eq(k, "timeout_ms")) rc = parse_redis_ms(k, v, &sp->timeout_ms, err);
    else if (span_eq(k, "connect_timeout_ms")) rc = parse_redis_ms(k, v, &sp->connect_timeout_ms, err);
    else if (span_eq(k, "wait_timeout_ms")) rc = parse_redis_ms(k, v, &sp->wait_timeout_ms, err);
    else if (span_eq(k, "replicas")) rc = parse_replicas(v, &sp->replicas, err);
    else if (form == REDIS_PARAMS_UNIX && span_eq(k, "db")) rc = parse_db_index(v, &sp->db, err);
    else if (form == REDIS_PARAMS_SENTINEL && span_eq(k, "password"))
      rc = decode_field(sp->password, sizeof sp->password, v, "password", err);
    else if (form == REDIS_PARAMS_SENTINEL && span_eq(k, "user"))
      rc = decode_field(sp->user, sizeof sp->user, v, "user", err);
    else if (form == REDIS_PARAMS_SENTINEL && span_eq(k, "sentinel_password"))
      rc = decode_field(sp->sentinel_password, sizeof sp->sentinel_password, v, "sentinel_password", err);
    else
      return BEE__DSN_ERR(err, "unknown parameter '%.*s' (supported: %stimeout_ms, connect_timeout_ms, replicas, "
                          "wait_timeout_ms)", (int)(k.n > 32 ? 32 : k.n), k.p,
                          form == REDIS_PARAMS_UNIX ? "db, " : form == REDIS_PARAMS_SENTINEL
                                                                 ? "password, user, sentinel_password, " : "");
    if (rc) return rc;
  }
  return more;
}

static int redis_parse_inner(const char *address, int db, bee_redis_settings_t *sp, bee_error_t *err) {
  int rc;
  bee__span_t all = span(address, strlen(address)), scheme;
  if (scheme_of(address, &scheme)) {
    bee__span_t rest = span(address + scheme.n + 3, all.n - scheme.n - 3);
    if (span_eq(scheme, "rediss"))
      return BEE__DSN_ERR(err, "rediss:// (TLS) is not supported; use redis://");
    if (span_eq(scheme, "unix")) {
      const char *q = span_find(rest, '?');
      bee__span_t path = q ? span(rest.p, (size_t)(q - rest.p)) : rest;
      if (!path.n || path.p[0] != '/') return BEE__DSN_ERR(err, "unix:// needs an absolute socket path");
      if ((rc = copy_field(sp->socket, sizeof sp->socket, path, "socket path", err))) return rc;
      if (q && (rc = parse_redis_params(span(q + 1, rest.n - (size_t)(q + 1 - rest.p)), REDIS_PARAMS_UNIX, sp, err))) return rc;
      sp->port = 0;
    } else if (span_eq(scheme, "redis")) {
      const char *qm = span_find(rest, '?');
      bee__span_t params = qm ? span(qm + 1, rest.n - (size_t)(qm + 1 - rest.p)) : span(rest.p + rest.n, 0);
      if (qm) rest = span(rest.p, (size_t)(qm - rest.p));
      const char *at = span_find_last(rest, '@');
      bee__span_t hp = at ? span(at + 1, rest.n - (size_t)(at + 1 - rest.p)) : rest;
      if (at) {
        if ((rc = parse_userinfo(span(rest.p, (size_t)(at - rest.p)), 1, sp->user, sp->password, err))) return rc;
        if (sp->user[0] && !sp->password[0]) return BEE__DSN_ERR(err, "user name without password (expected redis://user:password@host)");
      }
      const char *slash = span_find(hp, '/');
      if ((rc = parse_redis_params(params, REDIS_PARAMS_URI, sp, err))) return rc;
      bee__span_t host = slash ? span(hp.p, (size_t)(slash - hp.p)) : hp;
      if (host.n == 0) return BEE__DSN_ERR(err, "missing host (expected redis://[:password@]host:port/db)");
      if ((rc = parse_hostport(host, sp->host, sizeof sp->host, &sp->port, err))) return rc;
      if (slash) {
        bee__span_t d = span(slash + 1, hp.n - (size_t)(slash + 1 - hp.p));
        if (d.n && (rc = parse_db_index(d, &sp->db, err))) return rc;
      }
    } else {
      return BEE__DSN_ERR(err, "unknown scheme '%.*s://' for Redis (use redis://, unix://, host:port or a socket path)",
                          (int)(scheme.n > 16 ? 16 : scheme.n), scheme.p);
    }
  } else if (address[0] == '/') {
    if ((rc = copy_field(sp->socket, sizeof sp->socket, all, "socket path", err))) return rc;
    sp->port = 0;
  } else {
    /* host:port or host:port:db ([ipv6]:port[:db]) */
    const char *last = span_find_last(all, ':');
    if (!last) return BEE__DSN_ERR(err, "missing port (expected host:port, host:port:db or redis://host:port/db)");
    bee__span_t hp = all;
    const char *first_colon = address[0] == '[' ? strstr(address, "]:") : strchr(address, ':');
    if (first_colon && address[0] == '[') first_colon++;
    if (first_colon && first_colon != last) { /* host:port:db */
      if ((rc = parse_db_index(span(last + 1, all.n - (size_t)(last + 1 - all.p)), &sp->db, err))) return rc;
      hp = span(address, (size_t)(last - address));
    }
    if (hp.n && hp.p[0] == ':') return BEE__DSN_ERR(err, "missing host");
    if ((rc = parse_hostport(hp, sp->host, sizeof sp->host, &sp->port, err))) return rc;
  }
  if (db >= 0 && sp->db >= 0 && db != sp->db)
    return BEE__DSN_ERR(err, "db index given twice and different (%d in the address, %d as argument)", sp->db, db);
  if (sp->db < 0) sp->db = db >= 0 ? db : 0;
  return 0;
}


/* Parses into *sp; on failure sp->password still holds what was parsed, for scrubbing. */
static int redis_parse(const char *address, int db, bee_redis_settings_t *sp, bee_error_t *err) {
  bee_redis_settings_t s;
  memset(&s, 0, sizeof s);
  s.port = 6379;
  s.db = -1;
  *sp = s;
  return redis_parse_inner(address, db, sp, err);
}

/* What holds for every Redis pool once parsed: the wait below the reply timeout. */
static int redis_check(bee_redis_settings_t *s, bee_error_t *err) {
  unsigned int t = s->timeout_ms ? s->timeout_ms : BEE_REDIS_TIMEOUT_MS;
  unsigned int w = s->wait_timeout_ms ? s->wait_timeout_ms : BEE_REDIS_WAIT_TIMEOUT_MS;
  if (s->replicas > 0 && w >= t)
    return BEE__DSN_ERR(err, "wait_timeout_ms (%u) must be below timeout_ms (%u): the wait for replicas is one "
                        "command's reply", w, t);
  return 0;
}

int bee_redis_address_parse(const char *address, int db, bee_redis_settings_t *out, bee_error_t *err) {
  int rc = check_text(address, err);
  if (rc) return rc;
  bee_redis_settings_t s;
  rc = redis_parse(address, db, &s, err);
  if (!rc) rc = redis_check(&s, err);
  if (rc) {
    bee__error_scrub(err, s.password);
    memset(&s, 0, sizeof s);
    return rc;
  }
  *out = s;
  return 0;
}

/* "name[:db][?params]", then the sentinels. */
static int sentinel_parse(const char *master, int db, const char *const *sentinels, size_t count,
                          bee_redis_settings_t *sp, bee_error_t *err) {
  int rc;
  bee__span_t all = span(master, strlen(master));
  const char *q = span_find(all, '?');
  bee__span_t head = q ? span(master, (size_t)(q - master)) : all;
  if (q && (rc = parse_redis_params(span(q + 1, all.n - (size_t)(q + 1 - master)), REDIS_PARAMS_SENTINEL, sp, err)))
    return rc;
  const char *colon = span_find(head, ':');
  bee__span_t name = colon ? span(head.p, (size_t)(colon - head.p)) : head;
  if (colon && (rc = parse_db_index(span(colon + 1, head.n - name.n - 1), &sp->db, err))) return rc;
  if (!name.n) return BEE__DSN_ERR(err, "missing master name (expected name[:db][?password=...])");
  for (size_t i = 0; i < name.n; i++)
    if (!is_host_char((unsigned char)name.p[i]))
      return BEE__DSN_ERR(err, "bad character in master name (allowed: letters, digits, '.', '-', '_')");
  if ((rc = copy_field(sp->master_name, sizeof sp->master_name, name, "master name", err))) return rc;
  if (db >= 0 && sp->db >= 0 && db != sp->db)
    return BEE__DSN_ERR(err, "db index given twice and different (%d in the master name, %d as argument)", sp->db, db);
  if (sp->db < 0) sp->db = db >= 0 ? db : 0;
  if (sp->user[0] && !sp->password[0]) return BEE__DSN_ERR(err, "user name without password");
  if (!count || !sentinels) return BEE__DSN_ERR(err, "no sentinels (expected a list of host:port)");
  if (count > BEE_REDIS_SENTINELS_MAX)
    return BEE__DSN_ERR(err, "%zu sentinels (at most %d)", count, BEE_REDIS_SENTINELS_MAX);
  for (size_t i = 0; i < count; i++) {
    bee_redis_node_t *n = &sp->sentinels[i];
    n->port = 26379;
    if (!sentinels[i] || !sentinels[i][0])
      return BEE__DSN_ERR(err, "sentinel %zu: empty (expected host:port)", i + 1);
    if ((rc = check_text(sentinels[i], err))) return rc;
    if ((rc = parse_hostport(span(sentinels[i], strlen(sentinels[i])), n->host, sizeof n->host, &n->port, err))) {
      char msg[BEE_ERROR_MESSAGE_MAX];
      snprintf(msg, sizeof msg, "%s", err ? err->message : "");
      return BEE__DSN_ERR(err, "sentinel %zu: %.400s (expected host:port)", i + 1, msg);
    }
    for (size_t k = 0; k < i; k++)
      if (!strcmp(sp->sentinels[k].host, n->host) && sp->sentinels[k].port == n->port)
        return BEE__DSN_ERR(err, "sentinel %zu: %s:%u is listed twice", i + 1, n->host, n->port);
  }
  sp->sentinel_count = count;
  sp->port = 0;
  return 0;
}

int bee_redis_sentinel_parse(const char *master, int db, const char *const *sentinels, size_t count,
                             bee_redis_settings_t *out, bee_error_t *err) {
  int rc = master ? check_text(master, err) : BEE__DSN_ERR(err, "master name is NULL");
  if (rc) return rc;
  bee_redis_settings_t s;
  memset(&s, 0, sizeof s);
  s.db = -1;
  rc = sentinel_parse(master, db, sentinels, count, &s, err);
  if (!rc) rc = redis_check(&s, err);
  if (rc) {
    bee__error_scrub(err, s.password);
    bee__error_scrub(err, s.sentinel_password);
    memset(&s, 0, sizeof s);
    return rc;
  }
  *out = s;
  return 0;
}

int bee_redis_options_apply(bee_redis_settings_t *s, const bee_redis_options_t *o, bee_error_t *err) {
  if (!o) return 0;
  const struct {
    const char *name;
    const char *v;
    char *dst;
  } texts[] = {{"user", o->user, s->user},
               {"password", o->password, s->password},
               {"sentinel_password", o->sentinel_password, s->sentinel_password}};
  for (size_t i = 0; i < 3; i++) {
    if (!texts[i].v) continue;
    if (strlen(texts[i].v) >= BEE_DSN_FIELD_MAX)
      return BEE__DSN_ERR(err, "%s too long (at most %d bytes)", texts[i].name, BEE_DSN_FIELD_MAX - 1);
    snprintf(texts[i].dst, BEE_DSN_FIELD_MAX, "%s", texts[i].v);
  }
  if (o->sentinel_password && !s->master_name[0])
    return BEE__DSN_ERR(err, "sentinel_password is for pools behind Sentinel");
  const struct {
    const char *name;
    unsigned int v;
    unsigned int *dst;
  } ms[] = {{"timeout_ms", o->timeout_ms, &s->timeout_ms},
            {"connect_timeout_ms", o->connect_timeout_ms, &s->connect_timeout_ms},
            {"wait_timeout_ms", o->wait_timeout_ms, &s->wait_timeout_ms}};
  for (size_t i = 0; i < 3; i++) {
    if (!ms[i].v) continue;
    if (ms[i].v > BEE_REDIS_TIMEOUT_MAX_MS)
      return BEE__DSN_ERR(err, "bad %s %u (expected milliseconds, 1 to %d)", ms[i].name, ms[i].v,
                          BEE_REDIS_TIMEOUT_MAX_MS);
    *ms[i].dst = ms[i].v;
  }
  if (o->replicas < -1 || o->replicas > BEE_REDIS_REPLICAS_MAX)
    return BEE__DSN_ERR(err, "bad replicas %d (expected 0 to %d)", o->replicas, BEE_REDIS_REPLICAS_MAX);
  if (o->replicas > 0) s->replicas = o->replicas;
  if (s->user[0] && !s->password[0]) return BEE__DSN_ERR(err, "user name without password");
  return redis_check(s, err);
}

size_t bee_mysql_settings_describe(const bee_mysql_settings_t *s, char *buf, size_t size) {
  int n;
  if (s->socket[0])
    n = snprintf(buf, size, "mysql://%s@/%s?socket=%s", s->user, s->database, s->socket);
  else if (strchr(s->host, ':'))
    n = snprintf(buf, size, "mysql://%s@[%s]:%u/%s", s->user, s->host, s->port, s->database);
  else
    n = snprintf(buf, size, "mysql://%s@%s:%u/%s", s->user, s->host, s->port, s->database);
  return n < 0 ? 0 : (size_t)n;
}

size_t bee_redis_settings_describe(const bee_redis_settings_t *s, char *buf, size_t size) {
  int n;
  const char *user = s->user[0] ? s->user : "";
  const char *at = s->user[0] ? "@" : "";
  if (s->master_name[0]) {
    n = snprintf(buf, size, "sentinel://%s%s%s@", user, user[0] ? ":" : "", s->master_name);
    for (size_t i = 0; n >= 0 && (size_t)n < size && i < s->sentinel_count; i++) {
      const bee_redis_node_t *h = &s->sentinels[i];
      int m = snprintf(buf + n, size - (size_t)n, strchr(h->host, ':') ? "%s[%s]:%u" : "%s%s:%u", i ? "," : "",
                       h->host, h->port);
      if (m < 0) break;
      n += m;
    }
    if (n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, "/%d", s->db);
  } else if (s->socket[0])
    n = snprintf(buf, size, "unix://%s%s%s?db=%d", user, at, s->socket, s->db);
  else if (strchr(s->host, ':'))
    n = snprintf(buf, size, "redis://%s%s[%s]:%u/%d", user, at, s->host, s->port, s->db);
  else
    n = snprintf(buf, size, "redis://%s%s%s:%u/%d", user, at, s->host, s->port, s->db);
  return n < 0 ? 0 : (size_t)n;
}
