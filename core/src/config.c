/*
 * config.c: pools from YAML in BeeORM's layout (bee_registry_load_yaml).
 *
 *   default:
 *     mysql: root:root@tcp(localhost:3306)/app     # or: mysql: {uri: mysql://...}
 *     redis: localhost:6379:0                       # or, behind Sentinel:
 *     # sentinel: { "mymaster:0?password=secret": [ "10.0.0.1:26379", "10.0.0.2:26379" ] }
 *     local_cache: 1000
 *     streams:                                      # accepted, checked, ignored
 *       orm-lazy-channel:
 *         - orm-async-consumer
 *
 * Loading runs in three passes so that a bad document registers nothing:
 *   1. the libyaml event stream is checked against the layout above and every
 *      registration is collected into a list (pure: the registry is not touched);
 *   2. every collected value is dry-run through the same pure parsers the registry
 *      uses (DSN, Redis address, local_cache range);
 *   3. only then the list is handed to bee_registry_add_mysql / _add_redis /
 *      _set_local_cache in document order.
 * Messages never quote the value of `mysql`, `uri` or `redis`: it carries a password.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "internal.h"

/* Larger configuration files are refused: they are certainly a mistake. */
#define BEE__YAML_MAX_BYTES (1024 * 1024)
/* beeorm.h: "Valid pool names: 1..63 characters" (BEE_NAME_MAX may be larger). */
#define BEE__POOL_NAME_MAX 63
#define BEE__YAML_POOL_KEYS \
  "mysql, redis, sentinel, local_cache, streams, timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms"

typedef enum { BEE__ITEM_MYSQL, BEE__ITEM_REDIS, BEE__ITEM_SENTINEL, BEE__ITEM_LOCAL_CACHE } bee__item_kind_t;

/* One registration collected in pass 1. */
typedef struct bee__yaml_item_s {
  bee__item_kind_t kind;
  char pool[BEE_NAME_MAX];
  const char *key; /* "mysql", "mysql.uri", "redis", "sentinel" or "local_cache" (static) */
  char *value;     /* DSN, address or Sentinel master key, owned; NULL for local_cache */
  char **sentinels; /* sentinel: the "host:port" list, owned */
  size_t sentinel_count;
  int64_t capacity;
  bee_redis_options_t opts; /* the pool's Redis keys (timeouts, replicas); 0: as the address says */
  size_t line;
} bee__yaml_item_t;

/* A set of names seen in one mapping (pool names, stream names): duplicates are errors. */
typedef struct bee__yaml_names_s {
  char **names;
  size_t count, cap;
} bee__yaml_names_t;

typedef struct bee__yaml_s {
  yaml_parser_t parser;
  yaml_event_t event; /* the current event, valid while has_event */
  int has_event;
  const char *name; /* file name or the caller's name, for messages */
  const char *text;
  size_t len;
  bee_error_t *err;
  char pool[BEE_NAME_MAX]; /* the pool being read, "" outside one */
  char path[192];          /* key path of the node being read: "default.mysql" */
  size_t path_len;
  bee__yaml_item_t *items;
  size_t item_count, item_cap;
  bee__yaml_names_t pools;
} bee__yaml_t;

static size_t event_line(const bee__yaml_t *y) { return y->event.start_mark.line + 1; }

/*
 * Fails with "<name>:<line>: <path>: <what>" (no path at the top level). Sets
 * err->pool inside a pool. Returns code.
 */
static int fail(bee__yaml_t *y, int code, size_t line, const char *fmt, ...) BEE__PRINTF(4, 5);
static int fail(bee__yaml_t *y, int code, size_t line, const char *fmt, ...) {
  char what[BEE_ERROR_MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (y->path_len)
    bee__error(y->err, code, 0, "%.200s:%zu: %s: %s", y->name, line, y->path, what);
  else
    bee__error(y->err, code, 0, "%.200s:%zu: %s", y->name, line, what);
  if (y->pool[0]) bee__error_pool(y->err, y->pool);
  return code;
}

static int out_of_memory(bee__yaml_t *y) {
  return bee__error(y->err, BEE_ENOMEM, 0, "out of memory loading %.200s", y->name);
}

/* Appends ".seg" to the key path; returns the old length for path_pop. */
static size_t path_push(bee__yaml_t *y, const char *seg, size_t seg_len) {
  size_t old = y->path_len;
  size_t room = sizeof y->path - 1 - old;
  if (old && room) {
    y->path[y->path_len++] = '.';
    room--;
  }
  if (seg_len > room) seg_len = room;
  memcpy(y->path + y->path_len, seg, seg_len);
  y->path_len += seg_len;
  y->path[y->path_len] = '\0';
  return old;
}

static void path_pop(bee__yaml_t *y, size_t old) {
  y->path_len = old;
  y->path[old] = '\0';
}

/* libyaml counts lines from 0 and reader errors carry only a byte offset. */
static size_t line_of_offset(const bee__yaml_t *y, size_t offset) {
  size_t line = 1;
  for (size_t i = 0; i < offset && i < y->len; i++)
    if (y->text[i] == '\n') line++;
  return line;
}

static int syntax_error(bee__yaml_t *y) {
  const yaml_parser_t *p = &y->parser;
  if (p->error == YAML_MEMORY_ERROR) return out_of_memory(y);
  size_t line = p->error == YAML_READER_ERROR ? line_of_offset(y, p->problem_offset)
                                              : p->problem_mark.line + 1;
  const char *problem = p->problem ? p->problem : "unknown error";
  /* Problem and context are libyaml's static texts: they never quote the input. */
  if (p->context)
    return bee__error(y->err, BEE_ECONFIG, 0, "%.200s:%zu: YAML syntax error: %s (%s)", y->name,
                      line, problem, p->context);
  return bee__error(y->err, BEE_ECONFIG, 0, "%.200s:%zu: YAML syntax error: %s", y->name, line,
                    problem);
}

/* Moves to the next event. Anchors and aliases are refused: no shared nodes. */
static int next(bee__yaml_t *y) {
  if (y->has_event) {
    yaml_event_delete(&y->event);
    y->has_event = 0;
  }
  if (!yaml_parser_parse(&y->parser, &y->event)) return syntax_error(y);
  y->has_event = 1;
  const yaml_char_t *anchor = NULL;
  switch (y->event.type) {
    case YAML_ALIAS_EVENT:
      return fail(y, BEE_ECONFIG, event_line(y), "YAML aliases are not supported");
    case YAML_SCALAR_EVENT:
      anchor = y->event.data.scalar.anchor;
      break;
    case YAML_SEQUENCE_START_EVENT:
      anchor = y->event.data.sequence_start.anchor;
      break;
    case YAML_MAPPING_START_EVENT:
      anchor = y->event.data.mapping_start.anchor;
      break;
    default:
      break;
  }
  if (anchor) return fail(y, BEE_ECONFIG, event_line(y), "YAML anchors are not supported");
  return 0;
}

static int is_scalar(const bee__yaml_t *y) { return y->event.type == YAML_SCALAR_EVENT; }
static const char *scalar(const bee__yaml_t *y) { return (const char *)y->event.data.scalar.value; }
static size_t scalar_len(const bee__yaml_t *y) { return y->event.data.scalar.length; }

/* A plain "", "~" or "null": YAML's null, i.e. nothing was written there. */
static int is_null(const bee__yaml_t *y) {
  if (!is_scalar(y) || y->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *s = scalar(y);
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* "a mapping", "a sequence", "an empty value" or "a scalar", for "got ..." messages. */
static const char *node_kind(const bee__yaml_t *y) {
  switch (y->event.type) {
    case YAML_MAPPING_START_EVENT:
      return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
      return "a sequence";
    case YAML_SCALAR_EVENT:
      return is_null(y) ? "an empty value" : "a scalar";
    default:
      return "nothing";
  }
}

/*
 * Checks that the current event is a usable string: a plain or quoted scalar without
 * NUL bytes, and not null unless allow_null. `what` completes "expected ...".
 */
static int check_string(bee__yaml_t *y, const char *what, int allow_null) {
  if (!is_scalar(y) || (!allow_null && is_null(y)))
    return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got %s", what, node_kind(y));
  yaml_scalar_style_t style = y->event.data.scalar.style;
  if (style == YAML_LITERAL_SCALAR_STYLE || style == YAML_FOLDED_SCALAR_STYLE)
    return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got a block scalar (use a plain or quoted string)",
                what);
  if (memchr(scalar(y), '\0', scalar_len(y)))
    return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got a string with a NUL byte", what);
  return 0;
}

static void names_free(bee__yaml_names_t *n) {
  for (size_t i = 0; i < n->count; i++) bee__free(n->names[i]);
  bee__free(n->names);
  memset(n, 0, sizeof *n);
}

/* Adds the current scalar to n: 0, 1 when it was already there, or BEE_ENOMEM. */
static int names_add(bee__yaml_t *y, bee__yaml_names_t *n) {
  for (size_t i = 0; i < n->count; i++)
    if (!strcmp(n->names[i], scalar(y))) return 1;
  if (n->count == n->cap) {
    size_t cap = n->cap ? n->cap * 2 : 8;
    char **grown = bee__realloc(n->names, cap * sizeof *grown);
    if (!grown) return out_of_memory(y);
    n->names = grown;
    n->cap = cap;
  }
  char *copy = bee__strdup(scalar(y));
  if (!copy) return out_of_memory(y);
  n->names[n->count++] = copy;
  return 0;
}

static bee__yaml_item_t *item_add(bee__yaml_t *y, bee__item_kind_t kind, const char *key) {
  if (y->item_count == y->item_cap) {
    size_t cap = y->item_cap ? y->item_cap * 2 : 8;
    bee__yaml_item_t *grown = bee__realloc(y->items, cap * sizeof *grown);
    if (!grown) return NULL;
    y->items = grown;
    y->item_cap = cap;
  }
  bee__yaml_item_t *it = &y->items[y->item_count];
  memset(it, 0, sizeof *it);
  if (kind != BEE__ITEM_LOCAL_CACHE && !(it->value = bee__strdup(scalar(y)))) return NULL;
  it->kind = kind;
  it->key = key;
  it->line = event_line(y);
  snprintf(it->pool, sizeof it->pool, "%s", y->pool);
  y->item_count++;
  return it;
}

/* Collects the current scalar (already checked) as a DSN or address. */
static int collect_string(bee__yaml_t *y, bee__item_kind_t kind, const char *key) {
  return item_add(y, kind, key) ? 0 : out_of_memory(y);
}

/* mysql: a DSN, or a mapping with exactly `uri`. */
static int read_mysql(bee__yaml_t *y) {
  static const char *const what = "a DSN string or a mapping with 'uri'";
  int rc = next(y);
  if (rc) return rc;
  if (y->event.type != YAML_MAPPING_START_EVENT) {
    if ((rc = check_string(y, what, 0))) return rc;
    return collect_string(y, BEE__ITEM_MYSQL, "mysql");
  }
  size_t start = event_line(y);
  int have_uri = 0;
  for (;;) {
    if ((rc = next(y))) return rc;
    if (y->event.type == YAML_MAPPING_END_EVENT) break;
    if ((rc = check_string(y, "a key (uri)", 0))) return rc;
    if (strcmp(scalar(y), "uri") != 0)
      return fail(y, BEE_ECONFIG, event_line(y), "unknown key '%.64s' (allowed: uri)", scalar(y));
    if (have_uri) return fail(y, BEE_ECONFIG, event_line(y), "duplicate key 'uri'");
    have_uri = 1;
    size_t old = path_push(y, "uri", 3);
    if ((rc = next(y)) || (rc = check_string(y, "a DSN string", 0)) ||
        (rc = collect_string(y, BEE__ITEM_MYSQL, "mysql.uri")))
      return rc;
    path_pop(y, old);
  }
  if (!have_uri) return fail(y, BEE_ECONFIG, start, "missing key 'uri'");
  return 0;
}

/* An integer lo..hi in the current scalar: plain (unquoted) digits, no leading zero. `what` completes "expected ...". */
static int read_uint(bee__yaml_t *y, const char *what, unsigned long lo, unsigned long hi, unsigned long *out) {
  int rc = check_string(y, what, 0);
  if (rc) return rc;
  const char *s = scalar(y);
  if (y->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE || bee__digits(s, strlen(s), hi, out) != 0 || *out < lo)
    return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got '%.32s'", what, s);
  return 0;
}

/* Milliseconds 1..BEE_REDIS_TIMEOUT_MAX_MS in the current scalar. */
static int read_ms(bee__yaml_t *y, unsigned int *out) {
  unsigned long v = 0;
  int rc = read_uint(y, "milliseconds, an integer 1-60000", 1, BEE_REDIS_TIMEOUT_MAX_MS, &v);
  if (!rc) *out = (unsigned int)v;
  return rc;
}

static int read_redis(bee__yaml_t *y) {
  int rc = next(y);
  if (!rc) rc = check_string(y, "an address string (host:port:db, redis:// URI or socket path)", 0);
  if (!rc) rc = collect_string(y, BEE__ITEM_REDIS, "redis");
  return rc;
}

/*
 * sentinel: BeeORM's layout, one master key ("name:db?password=...", never quoted in
 * messages) mapped to a list of "host:port" sentinels.
 */
static int read_sentinel(bee__yaml_t *y) {
  static const char *const what = "a mapping of one master (name:db?params) to a list of sentinels (host:port)";
  int rc = next(y);
  if (rc) return rc;
  if (y->event.type != YAML_MAPPING_START_EVENT)
    return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got %s", what, node_kind(y));
  size_t start = event_line(y);
  bee__yaml_item_t *it = NULL;
  for (;;) {
    if ((rc = next(y))) return rc;
    if (y->event.type == YAML_MAPPING_END_EVENT) break;
    if ((rc = check_string(y, "a master key (name:db?params)", 0))) return rc;
    if (it) return fail(y, BEE_ECONFIG, event_line(y), "more than one master (a pool has one)");
    if (!(it = item_add(y, BEE__ITEM_SENTINEL, "sentinel"))) return out_of_memory(y);
    if ((rc = next(y))) return rc;
    if (y->event.type != YAML_SEQUENCE_START_EVENT)
      return fail(y, BEE_ECONFIG, event_line(y), "expected a list of sentinels (host:port), got %s", node_kind(y));
    for (;;) {
      if ((rc = next(y))) return rc;
      if (y->event.type == YAML_SEQUENCE_END_EVENT) break;
      if ((rc = check_string(y, "a sentinel address (host:port)", 0))) return rc;
      if (it->sentinel_count == BEE_REDIS_SENTINELS_MAX)
        return fail(y, BEE_ECONFIG, event_line(y), "more than %d sentinels", BEE_REDIS_SENTINELS_MAX);
      char **grown = bee__realloc(it->sentinels, (it->sentinel_count + 1) * sizeof *grown);
      if (!grown) return out_of_memory(y);
      it->sentinels = grown;
      if (!(it->sentinels[it->sentinel_count] = bee__strdup(scalar(y)))) return out_of_memory(y);
      it->sentinel_count++;
    }
    if (!it->sentinel_count) return fail(y, BEE_ECONFIG, event_line(y), "the list of sentinels is empty");
  }
  if (!it) return fail(y, BEE_ECONFIG, start, "expected %s, got an empty mapping", what);
  return 0;
}

/* replicas: 0..BEE_REDIS_REPLICAS_MAX in the current scalar. */
static int read_replicas(bee__yaml_t *y, int *out) {
  unsigned long v = 0;
  int rc = read_uint(y, "a number of replicas, 0-100", 0, BEE_REDIS_REPLICAS_MAX, &v);
  if (!rc) *out = (int)v;
  return rc;
}

/*
 * local_cache: a plain decimal integer ("-5" included, so that the range error comes
 * from bee_registry_set_local_cache); no leading zeros, which YAML 1.1 reads as octal.
 */
static int read_local_cache(bee__yaml_t *y) {
  static const char *const what = "an integer 1-1000000000";
  int rc = next(y);
  if (!rc) rc = check_string(y, what, 0);
  if (rc) return rc;
  if (y->event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got a quoted string", what);
  const char *s = scalar(y);
  const char *d = s[0] == '-' ? s + 1 : s;
  size_t n = strlen(d);
  int ok = n >= 1 && n <= 18 && !(d[0] == '0' && n > 1);
  for (size_t i = 0; ok && i < n; i++) ok = d[i] >= '0' && d[i] <= '9';
  if (!ok) return fail(y, BEE_ECONFIG, event_line(y), "expected %s, got '%.32s'", what, s);
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v * 10 + (d[i] - '0');
  bee__yaml_item_t *it = item_add(y, BEE__ITEM_LOCAL_CACHE, "local_cache");
  if (!it) return out_of_memory(y);
  it->capacity = s[0] == '-' ? -v : v;
  return 0;
}

/*
 * streams: BeeORM registers Redis streams and their consumer groups here. beeorm has
 * no stream support yet, so the section is only checked for BeeORM's shape (stream
 * name -> list of group names) and then ignored, so BeeORM files load unchanged.
 */
static int read_streams(bee__yaml_t *y) {
  int rc = next(y);
  if (rc) return rc;
  if (y->event.type != YAML_MAPPING_START_EVENT)
    return fail(y, BEE_ECONFIG, event_line(y),
                "expected a mapping of stream names to lists of consumer groups, got %s", node_kind(y));
  bee__yaml_names_t seen = {0};
  for (;;) {
    if ((rc = next(y))) break;
    if (y->event.type == YAML_MAPPING_END_EVENT) break;
    if ((rc = check_string(y, "a stream name", 0))) break;
    if ((rc = names_add(y, &seen))) {
      if (rc == 1) rc = fail(y, BEE_ECONFIG, event_line(y), "duplicate stream '%.64s'", scalar(y));
      break;
    }
    size_t old = path_push(y, scalar(y), scalar_len(y));
    if ((rc = next(y))) break;
    if (y->event.type != YAML_SEQUENCE_START_EVENT) {
      rc = fail(y, BEE_ECONFIG, event_line(y), "expected a list of consumer group names, got %s",
                node_kind(y));
      break;
    }
    for (;;) {
      if ((rc = next(y))) break;
      if (y->event.type == YAML_SEQUENCE_END_EVENT) break;
      if ((rc = check_string(y, "a consumer group name", 0))) break;
    }
    if (rc) break;
    path_pop(y, old);
  }
  names_free(&seen);
  return rc;
}

/* One pool: the current event is its name (a checked scalar). */
static int read_pool(bee__yaml_t *y) {
  size_t key_line = event_line(y);
  snprintf(y->pool, sizeof y->pool, "%s", scalar(y));
  size_t old = path_push(y, scalar(y), scalar_len(y));
  int rc = next(y);
  if (rc) return rc;
  unsigned seen = 0;
  bee_redis_options_t opts = {0}; /* the pool's Redis keys */
  size_t opts_line = 0;
  if (y->event.type == YAML_MAPPING_START_EVENT) {
    static const char *const keys[] = {"mysql", "redis", "local_cache", "streams", "connect_timeout_ms", "timeout_ms",
                                       "sentinel", "replicas", "wait_timeout_ms"};
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    for (;;) {
      if ((rc = next(y))) return rc;
      if (y->event.type == YAML_MAPPING_END_EVENT) break;
      if ((rc = check_string(y, "a key (" BEE__YAML_POOL_KEYS ")", 0))) return rc;
      unsigned k = 0;
      while (k < NKEYS && strcmp(scalar(y), keys[k]) != 0) k++;
      if (k == NKEYS)
        return fail(y, BEE_ECONFIG, event_line(y), "unknown key '%.64s' (allowed: " BEE__YAML_POOL_KEYS ")",
                    scalar(y));
      if (seen & (1u << k)) return fail(y, BEE_ECONFIG, event_line(y), "duplicate key '%s'", keys[k]);
      seen |= 1u << k;
      size_t at = path_push(y, keys[k], strlen(keys[k]));
      switch (k) {
        case 0:
          rc = read_mysql(y);
          break;
        case 1:
        case 6:
          if (seen & (1u << (k == 1 ? 6 : 1)))
            return fail(y, BEE_ECONFIG, event_line(y), "a pool has either redis or sentinel, not both");
          rc = k == 1 ? read_redis(y) : read_sentinel(y);
          break;
        case 2:
          rc = read_local_cache(y);
          break;
        case 3:
          rc = read_streams(y);
          break;
        case 7:
          if (!opts_line) opts_line = event_line(y);
          if (!(rc = next(y))) rc = read_replicas(y, &opts.replicas);
          break;
        default:
          if (!opts_line) opts_line = event_line(y);
          if (!(rc = next(y)))
            rc = read_ms(y, k == 4 ? &opts.connect_timeout_ms : k == 5 ? &opts.timeout_ms : &opts.wait_timeout_ms);
          break;
      }
      if (rc) return rc;
      path_pop(y, at);
    }
  } else if (!is_null(y)) {
    /* Never quote it: `default: <DSN>` is a likely mistake. */
    return fail(y, BEE_ECONFIG, event_line(y), "expected a mapping (keys: " BEE__YAML_POOL_KEYS "), got %s",
                node_kind(y));
  }
  path_pop(y, old);
  if (!seen) return fail(y, BEE_ECONFIG, key_line, "pool '%s' defines nothing", y->pool);
  if (opts_line) { /* they set the timeouts or replicas of the pool's Redis */
    bee__yaml_item_t *redis = NULL;
    for (size_t i = 0; i < y->item_count; i++)
      if ((y->items[i].kind == BEE__ITEM_REDIS || y->items[i].kind == BEE__ITEM_SENTINEL) &&
          !strcmp(y->items[i].pool, y->pool))
        redis = &y->items[i];
    if (!redis)
      return fail(y, BEE_ECONFIG, opts_line, "%s: timeout_ms, connect_timeout_ms, replicas and wait_timeout_ms are "
                  "settings of the pool's redis or sentinel, and it has neither", y->pool);
    redis->opts = opts;
  }
  y->pool[0] = '\0';
  return 0;
}

/* The same rule as the registry's, checked here so that nothing gets registered. */
static int check_pool_name(bee__yaml_t *y) {
  const char *s = scalar(y);
  size_t n = scalar_len(y);
  if (n == 0 || n > BEE__POOL_NAME_MAX)
    return fail(y, BEE_EPOOL, event_line(y), "bad pool name (expected 1-%d characters of letters, digits, '_', '-')",
                BEE__POOL_NAME_MAX);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
             c == '-';
    if (!ok)
      return fail(y, BEE_EPOOL, event_line(y), "bad pool name '%s' (allowed: letters, digits, '_', '-')", s);
  }
  return 0;
}

/* Pass 1: the whole stream. */
static int read_document(bee__yaml_t *y) {
  static const char *const what = "expected a mapping of pool names";
  int rc = next(y); /* STREAM-START */
  if (!rc) rc = next(y);
  if (rc) return rc;
  /* An empty document has no line of its own: it is reported at line 1. */
  if (y->event.type == YAML_STREAM_END_EVENT)
    return fail(y, BEE_ECONFIG, 1, "%s, got an empty document", what);
  if ((rc = next(y))) return rc; /* past DOCUMENT-START: the root node */
  if (is_null(y)) return fail(y, BEE_ECONFIG, 1, "%s, got an empty document", what);
  if (y->event.type != YAML_MAPPING_START_EVENT)
    return fail(y, BEE_ECONFIG, event_line(y), "%s, got %s", what, node_kind(y));
  for (;;) {
    if ((rc = next(y))) return rc;
    if (y->event.type == YAML_MAPPING_END_EVENT) break;
    if ((rc = check_string(y, "a pool name", 1)) || (rc = check_pool_name(y))) return rc;
    if ((rc = names_add(y, &y->pools))) {
      if (rc == 1) rc = fail(y, BEE_ECONFIG, event_line(y), "duplicate pool '%s'", scalar(y));
      return rc;
    }
    if ((rc = read_pool(y))) return rc;
  }
  if ((rc = next(y)) || (rc = next(y))) return rc; /* DOCUMENT-END, then STREAM-END? */
  if (y->event.type != YAML_STREAM_END_EVENT)
    return fail(y, BEE_ECONFIG, event_line(y), "expected a single YAML document, found a second one");
  return 0;
}

/*
 * Puts "<name>:<line>: <pool>.<key>: " in front of a registry error and keeps its
 * code and flags; err->pool is set when the registry left it empty.
 */
static int located(bee__yaml_t *y, const bee__yaml_item_t *it, int rc, const bee_error_t *e) {
  if (!y->err) return rc;
  *y->err = *e;
  if (!y->err->pool[0]) bee__error_pool(y->err, it->pool);
  int n = snprintf(y->err->message, sizeof y->err->message, "%.200s:%zu: %s.%s: ", y->name, it->line,
                   it->pool, it->key);
  if (n < 0 || (size_t)n >= sizeof y->err->message) return rc;
  /* Truncated to fit: the registry's message may already fill the buffer. */
  size_t room = sizeof y->err->message - 1 - (size_t)n;
  size_t m = strnlen(e->message, room);
  memcpy(y->err->message + n, e->message, m);
  y->err->message[(size_t)n + m] = '\0';
  return rc;
}

static int register_item(bee_registry_t *reg, const bee__yaml_item_t *it, bee_error_t *e) {
  switch (it->kind) {
    case BEE__ITEM_MYSQL:
      return bee_registry_add_mysql(reg, it->pool, it->value, e);
    case BEE__ITEM_REDIS:
      return bee_registry_add_redis_options(reg, it->pool, it->value, -1, &it->opts, e);
    case BEE__ITEM_SENTINEL:
      return bee_registry_add_redis_sentinel(reg, it->pool, it->value, -1, (const char *const *)it->sentinels,
                                             it->sentinel_count, &it->opts, e);
    default:
      return bee_registry_set_local_cache(reg, it->pool, it->capacity, e);
  }
}

/* Pass 2: would the registry accept the value? Pure, like the registry's own checks. */
static int dry_run(const bee__yaml_item_t *it) {
  bee_error_t e;
  switch (it->kind) {
    case BEE__ITEM_MYSQL: {
      bee_mysql_settings_t s;
      return bee_mysql_dsn_parse(it->value, &s, &e);
    }
    case BEE__ITEM_REDIS: {
      bee_redis_settings_t s;
      int rc = bee_redis_address_parse(it->value, -1, &s, &e);
      return rc ? rc : bee_redis_options_apply(&s, &it->opts, &e);
    }
    case BEE__ITEM_SENTINEL: {
      bee_redis_settings_t s;
      int rc = bee_redis_sentinel_parse(it->value, -1, (const char *const *)it->sentinels, it->sentinel_count, &s, &e);
      return rc ? rc : bee_redis_options_apply(&s, &it->opts, &e);
    }
    default:
      return it->capacity >= 1 && it->capacity <= 1000000000 ? 0 : BEE_EINVAL;
  }
}

/* Passes 2 and 3. */
static int register_all(bee__yaml_t *y, bee_registry_t *reg) {
  bee_error_t e;
  size_t first = 0;
  while (first < y->item_count && dry_run(&y->items[first]) == 0) first++;
  if (first < y->item_count) {
    /* The registry fails it again, remembers the failure and gives its message. */
    const bee__yaml_item_t *it = &y->items[first];
    int rc = register_item(reg, it, &e);
    if (rc) return located(y, it, rc, &e);
    /* Unreachable unless the dry run and the registry disagree: register the rest. */
  }
  for (size_t i = 0; i < y->item_count; i++) {
    if (i == first) continue;
    int rc = register_item(reg, &y->items[i], &e);
    if (rc) return located(y, &y->items[i], rc, &e);
  }
  return 0;
}

/*
 * Pools from YAML text (see beeorm.h). A document that is not in BeeORM's layout
 * (BEE_ECONFIG, or BEE_EPOOL for a bad pool name) and a document with a value the
 * registry would reject (BEE_EDSN, BEE_EINVAL for local_cache) register nothing.
 * Every failure is also remembered for bee_registry_validate (the first one wins), so
 * an unchecked return value never leaves pools silently missing. Only a failure the dry run cannot
 * foresee (a pool already registered before this call, BEE_ENOMEM inside the
 * registry) leaves the pools before it registered. BEE_ENOMEM while reading
 * registers nothing.
 */
int bee_registry_load_yaml_string(bee_registry_t *reg, const char *name, const char *text, size_t len,
                                  bee_error_t *err) {
  if (!name) name = "<yaml>";
  if (!reg || (!text && len)) return bee__error(err, BEE_EINVAL, 0, "registry or text is NULL");
  if (len > BEE__YAML_MAX_BYTES)
    return bee__error(err, BEE_ECONFIG, 0, "cannot load %.200s: larger than 1 MiB (%d bytes)", name,
                      BEE__YAML_MAX_BYTES);
  bee__yaml_t y;
  memset(&y, 0, sizeof y);
  y.name = name;
  y.text = text ? text : "";
  y.len = len;
  y.err = err;
  if (!yaml_parser_initialize(&y.parser)) return out_of_memory(&y);
  yaml_parser_set_input_string(&y.parser, (const unsigned char *)y.text, len);
  int rc = read_document(&y);
  if (y.has_event) yaml_event_delete(&y.event);
  yaml_parser_delete(&y.parser);
  names_free(&y.pools);
  if (!rc) rc = register_all(&y, reg);
  for (size_t i = 0; i < y.item_count; i++) {
    bee__free(y.items[i].value);
    for (size_t k = 0; k < y.items[i].sentinel_count; k++) bee__free(y.items[i].sentinels[k]);
    bee__free(y.items[i].sentinels);
  }
  bee__free(y.items);
  if (rc) bee__registry_remember(reg, rc, err);
  return rc;
}

/* Reads the whole file (at most 1 MiB) and loads it; see bee_registry_load_yaml_string. */
int bee_registry_load_yaml(bee_registry_t *reg, const char *path, bee_error_t *err) {
  if (!reg || !path) return bee__error(err, BEE_EINVAL, 0, "registry or path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f) {
    int rc = bee__error(err, BEE_ECONFIG, 0, "cannot read %.400s: %s", path, strerror(errno));
    bee__registry_remember(reg, rc, err);
    return rc;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      if (cap > BEE__YAML_MAX_BYTES) {
        rc = bee__error(err, BEE_ECONFIG, 0, "cannot read %.400s: larger than 1 MiB (%d bytes)", path,
                        BEE__YAML_MAX_BYTES);
        break;
      }
      size_t grow = cap ? cap * 2 : 16384;
      if (grow > BEE__YAML_MAX_BYTES + 1) grow = BEE__YAML_MAX_BYTES + 1;
      char *p = bee__realloc(buf, grow);
      if (!p) {
        rc = bee__error(err, BEE_ENOMEM, 0, "out of memory reading %.400s", path);
        break;
      }
      buf = p;
      cap = grow;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) {
      if (ferror(f)) rc = bee__error(err, BEE_ECONFIG, 0, "cannot read %.400s: %s", path, strerror(errno));
      break;
    }
  }
  fclose(f);
  if (rc) bee__registry_remember(reg, rc, err);
  if (!rc) rc = bee_registry_load_yaml_string(reg, path, buf, len, err);
  bee__free(buf);
  return rc;
}
