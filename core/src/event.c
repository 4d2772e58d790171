/* event.c: encoding and decoding queued events (format in event.h). Pure. */
#include <stdio.h>
#include <string.h>

#include "event.h"
#include "schema_internal.h"
#include "sql.h"

#define HEAD_SAME 1
#define COL_NAMED 0
#define COL_SAME 1
#define COL_ADD 2 /* added to COL_NAMED or COL_SAME: an increment */

static void put_u8(bee__buf_t *b, unsigned v) {
  char c = (char)(unsigned char)v;
  bee__buf_append(b, &c, 1);
}

static void put_le(bee__buf_t *b, uint64_t v, int bytes) {
  char out[8];
  for (int i = 0; i < bytes; i++) out[i] = (char)(unsigned char)(v >> (8 * i));
  bee__buf_append(b, out, (size_t)bytes);
}

static void patch_le(bee__buf_t *b, size_t at, uint64_t v, int bytes) {
  if (b->failed || at + (size_t)bytes > b->len) return;
  for (int i = 0; i < bytes; i++) b->data[at + (size_t)i] = (char)(unsigned char)(v >> (8 * i));
}

static void put_str(bee__buf_t *b, const char *s, size_t n) {
  put_le(b, n, 4);
  bee__buf_append(b, s, n);
}

static void finish_event(bee__batch_t *w) {
  if (!w->count) return;
  patch_le(w->b, w->ncols_at, w->ncols, 2);
  patch_le(w->b, w->nkeys_at, w->nkeys, 2);
  /* this event's names become the previous event's */
  if (w->names && w->ncols) memmove(w->names, w->names + w->names_cap / 2, w->ncols * sizeof *w->names);
  w->prev_ncols = w->ncols;
}

/* Writes s as a str unless it equals the previous header's string i; 1 when equal. */
static int same_head(const bee__batch_t *w, int i, const char *s, size_t n) {
  return w->count && w->head[i][1] == n && !w->b->failed && memcmp(w->b->data + w->head[i][0], s, n) == 0;
}

void bee__batch_begin(bee__batch_t *w, bee__buf_t *b, uint64_t token) {
  memset(w, 0, sizeof *w);
  w->b = b;
  put_u8(b, 'B');
  put_u8(b, BEE__EVENT_VERSION);
  w->count_at = b->len;
  put_le(b, 0, 4);
  put_le(b, token, 8);
}

void bee__batch_event(bee__batch_t *w, char kind, const char *table, const char *entity, const char *cache_pool,
                      const char *prefix, uint64_t id) {
  finish_event(w);
  const char *head[4] = {table, entity, cache_pool, prefix};
  size_t len[4];
  int same = 1;
  for (int i = 0; i < 4; i++) {
    len[i] = strlen(head[i]);
    same = same && same_head(w, i, head[i], len[i]);
  }
  w->count++;
  w->ncols = w->nkeys = 0;
  bee__buf_t *b = w->b;
  put_u8(b, (unsigned char)kind);
  put_u8(b, same ? HEAD_SAME : 0);
  for (int i = 0; i < 4 && !same; i++) {
    put_le(b, len[i], 4);
    w->head[i][0] = b->len;
    w->head[i][1] = len[i];
    bee__buf_append(b, head[i], len[i]);
  }
  put_le(b, id, 8);
  w->ncols_at = b->len;
  put_le(b, 0, 2);
  w->nkeys_at = (size_t)-1;
}

void bee__batch_col(bee__batch_t *w, const char *name, const bee_value_t *v, int add) {
  bee__buf_t *b = w->b;
  size_t i = w->ncols, n = strlen(name);
  if (i >= 1024) {
    w->bad = 1;
    return;
  }
  if (i >= w->names_cap / 2) { /* two halves: the previous event's names, then this event's */
    size_t half = w->names_cap ? w->names_cap : 32;
    while (half <= i) half *= 2;
    size_t(*grown)[2] = bee__malloc(2 * half * sizeof *grown);
    if (!grown) {
      b->failed = 1;
      return;
    }
    if (w->names) {
      size_t old = w->names_cap / 2;
      memcpy(grown, w->names, old * sizeof *grown);
      memcpy(grown + half, w->names + old, old * sizeof *grown);
      bee__free(w->names);
    }
    w->names = grown;
    w->names_cap = 2 * half;
  }
  size_t(*cur)[2] = w->names + w->names_cap / 2;
  w->ncols++;
  if (i < w->prev_ncols && w->names[i][1] == n && !b->failed && memcmp(b->data + w->names[i][0], name, n) == 0) {
    put_u8(b, COL_SAME | (add ? COL_ADD : 0));
    cur[i][0] = w->names[i][0];
  } else {
    put_u8(b, COL_NAMED | (add ? COL_ADD : 0));
    put_le(b, n, 4);
    cur[i][0] = b->len;
    bee__buf_append(b, name, n);
  }
  cur[i][1] = n;
  switch (v->kind) {
    case BEE_VALUE_NIL: put_u8(b, BEE__TAG_NIL); break;
    case BEE_VALUE_INT:
      put_u8(b, BEE__TAG_INT);
      put_le(b, (uint64_t)v->i, 8);
      break;
    case BEE_VALUE_FLOAT: {
      uint64_t bits;
      memcpy(&bits, &v->f, sizeof bits);
      put_u8(b, BEE__TAG_FLOAT);
      put_le(b, bits, 8);
      break;
    }
    case BEE_VALUE_BOOL:
      put_u8(b, BEE__TAG_BOOL);
      put_u8(b, v->i ? 1 : 0);
      break;
    case BEE_VALUE_STRING:
      put_u8(b, BEE__TAG_STRING);
      put_str(b, v->str, v->len);
      break;
  }
}

void bee__batch_keys_begin(bee__batch_t *w) {
  w->nkeys_at = w->b->len;
  put_le(w->b, 0, 2);
}

void bee__batch_key(bee__batch_t *w, char when, const char *key, size_t len) {
  w->nkeys++;
  put_u8(w->b, (unsigned char)when);
  put_str(w->b, key, len);
}

int bee__batch_end(bee__batch_t *w) {
  finish_event(w);
  patch_le(w->b, w->count_at, w->count, 4);
  bee__free(w->names);
  w->names = NULL;
  return w->b->failed ? BEE_ENOMEM : w->bad ? BEE_EINVAL : 0;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */

typedef struct {
  const unsigned char *p;
  size_t len, pos;
} rd_t;

static int get_le(rd_t *r, int bytes, uint64_t *out) {
  if (r->len - r->pos < (size_t)bytes) return -1;
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | r->p[r->pos + (size_t)i];
  r->pos += (size_t)bytes;
  *out = v;
  return 0;
}

static int get_str(rd_t *r, bee__str_t *s) {
  uint64_t n;
  if (get_le(r, 4, &n) || r->len - r->pos < n) return -1;
  s->p = (const char *)r->p + r->pos;
  s->n = (size_t)n;
  r->pos += (size_t)n;
  return 0;
}

int bee__batch_open(const char *data, size_t len, size_t *count, size_t *pos) {
  rd_t r = {(const unsigned char *)data, len, 0};
  uint64_t c;
  uint64_t token;
  if (len < 14 || data[0] != 'B' || (unsigned char)data[1] < 2 || (unsigned char)data[1] > BEE__EVENT_VERSION)
    return BEE_EINVAL;
  r.pos = 2;
  if (get_le(&r, 4, &c) || get_le(&r, 8, &token) || c == 0) return BEE_EINVAL; /* an entry has events */
  *count = (size_t)c;
  *pos = r.pos;
  return 0;
}

void bee__token_format(uint64_t token, char out[17]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, token >>= 4) out[i] = hex[token & 15];
  out[16] = '\0';
}

uint64_t bee__batch_token(const char *data, size_t len) {
  rd_t r = {(const unsigned char *)data, len, 6};
  uint64_t token;
  if (len < 14 || data[0] != 'B' || (unsigned char)data[1] < 2 || (unsigned char)data[1] > BEE__EVENT_VERSION ||
      get_le(&r, 8, &token))
    return 0;
  return token;
}

#define BATCH_HEAD 14 /* 'B', version, count, token: where the first event starts */

int bee__batch_next(const char *data, size_t len, size_t *pos, bee__event_t *ev) {
  rd_t r = {(const unsigned char *)data, len, *pos};
  uint64_t v;
  int first = *pos == BATCH_HEAD;
  size_t prev_ncols = first ? 0 : ev->ncols;
  if (r.pos > len || len - r.pos < 2) return BEE_EINVAL;
  ev->kind = (char)r.p[r.pos++];
  unsigned flags = r.p[r.pos++];
  if (ev->kind != 'I' && ev->kind != 'U' && ev->kind != 'D') return BEE_EINVAL;
  if (flags & ~(unsigned)HEAD_SAME || (first && flags)) return BEE_EINVAL;
  if (!(flags & HEAD_SAME) && (get_str(&r, &ev->table) || get_str(&r, &ev->entity) || get_str(&r, &ev->cache_pool) ||
                               get_str(&r, &ev->prefix)))
    return BEE_EINVAL;
  if (get_le(&r, 8, &ev->id) || ev->id == 0) return BEE_EINVAL;
  if (get_le(&r, 2, &v) || v > sizeof ev->cols / sizeof ev->cols[0]) return BEE_EINVAL;
  ev->ncols = (size_t)v;
  for (size_t i = 0; i < ev->ncols; i++) {
    bee_value_t *val = &ev->values[i];
    memset(val, 0, sizeof *val);
    if (r.pos >= len) return BEE_EINVAL;
    unsigned mark = r.p[r.pos++];
    ev->add[i] = (mark & COL_ADD) != 0;
    if (ev->add[i] && (unsigned char)data[1] < 3) return BEE_EINVAL;
    mark &= ~(unsigned)COL_ADD;
    if (mark == COL_SAME) {
      if (i >= prev_ncols) return BEE_EINVAL; /* ev->cols[i] still holds the previous event's name */
    } else if (mark != COL_NAMED || get_str(&r, &ev->cols[i])) {
      return BEE_EINVAL;
    }
    if (r.pos >= len) return BEE_EINVAL;
    unsigned tag = r.p[r.pos++];
    switch (tag) {
      case BEE__TAG_NIL: val->kind = BEE_VALUE_NIL; break;
      case BEE__TAG_INT:
        if (get_le(&r, 8, &v)) return BEE_EINVAL;
        val->kind = BEE_VALUE_INT;
        val->i = (int64_t)v;
        break;
      case BEE__TAG_FLOAT:
        if (get_le(&r, 8, &v)) return BEE_EINVAL;
        val->kind = BEE_VALUE_FLOAT;
        memcpy(&val->f, &v, sizeof v);
        break;
      case BEE__TAG_BOOL:
        if (get_le(&r, 1, &v) || v > 1) return BEE_EINVAL;
        val->kind = BEE_VALUE_BOOL;
        val->i = (int64_t)v;
        break;
      case BEE__TAG_STRING: {
        bee__str_t s;
        if (get_str(&r, &s)) return BEE_EINVAL;
        val->kind = BEE_VALUE_STRING;
        val->str = s.p;
        val->len = s.n;
        break;
      }
      default: return BEE_EINVAL;
    }
  }
  if (get_le(&r, 2, &v)) return BEE_EINVAL;
  ev->nkeys = (size_t)v;
  ev->keys_at = data + r.pos;
  for (size_t i = 0; i < ev->nkeys; i++) {
    bee__str_t k;
    if (r.pos >= len) return BEE_EINVAL;
    char when = (char)r.p[r.pos++];
    if ((when != 'A' && when != 'F' && when != 'P') || get_str(&r, &k)) return BEE_EINVAL;
  }
  ev->keys_len = (size_t)(data + r.pos - ev->keys_at);
  *pos = r.pos;
  return 0;
}

size_t bee__event_row_key(const bee__event_t *ev, char *buf, size_t size) {
  int n = snprintf(buf, size, "%.*sr:%llu", (int)ev->prefix.n, ev->prefix.p, (unsigned long long)ev->id);
  return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

int bee__event_key(const bee__event_t *ev, size_t i, char *when, bee__str_t *key) {
  rd_t r = {(const unsigned char *)ev->keys_at, ev->keys_len, 0};
  for (size_t k = 0; k <= i; k++) {
    if (r.pos >= r.len) return BEE_EINVAL;
    *when = (char)r.p[r.pos++];
    if (get_str(&r, key)) return BEE_EINVAL;
  }
  return 0;
}

int bee__batch_rewrite(const char *data, size_t len, size_t index, const bee__event_t *replace, bee__buf_t *out) {
  size_t count, pos;
  out->len = 0;
  if (bee__batch_open(data, len, &count, &pos) || index >= count) return BEE_EINVAL;
  bee__event_t *ev = bee__malloc(sizeof *ev);
  if (!ev) return BEE_ENOMEM;
  bee__batch_t w;
  bee__batch_begin(&w, out, bee__batch_token(data, len));
  int rc = 0;
  for (size_t k = 0; k < count && !rc; k++) {
    if (bee__batch_next(data, len, &pos, ev)) {
      rc = BEE_EINVAL;
      break;
    }
    if (k == index && !replace) continue;
    const bee__event_t *src = k == index ? replace : ev;
    char table[BEE__IDENT_MAX + 1], entity[BEE__IDENT_MAX + 1], pool[BEE_NAME_MAX], prefix[512];
    snprintf(table, sizeof table, "%.*s", (int)src->table.n, src->table.p);
    snprintf(entity, sizeof entity, "%.*s", (int)src->entity.n, src->entity.p);
    snprintf(pool, sizeof pool, "%.*s", (int)src->cache_pool.n, src->cache_pool.p);
    snprintf(prefix, sizeof prefix, "%.*s", (int)src->prefix.n, src->prefix.p);
    bee__batch_event(&w, src->kind, table, entity, pool, prefix, src->id);
    for (size_t i = 0; i < src->ncols; i++) {
      char col[BEE__IDENT_MAX + 1];
      snprintf(col, sizeof col, "%.*s", (int)src->cols[i].n, src->cols[i].p);
      bee__batch_col(&w, col, &src->values[i], src->add[i]);
    }
    bee__batch_keys_begin(&w);
    for (size_t j = 0; j < src->nkeys; j++) {
      char when;
      bee__str_t key;
      if (bee__event_key(src, j, &when, &key) == 0) bee__batch_key(&w, when, key.p, key.n);
    }
  }
  bee__free(ev);
  int end = bee__batch_end(&w);
  return rc ? rc : end;
}

static int ident(const bee__str_t *s) {
  char buf[BEE__IDENT_MAX];
  if (s->n == 0 || s->n >= sizeof buf) return 0;
  memcpy(buf, s->p, s->n);
  buf[s->n] = '\0';
  return bee__ident_ok(buf);
}

/* Checks an event's identifiers; a malformed event is a permanent failure. */
int bee__event_ok(const bee__event_t *ev) {
  if (!ident(&ev->table)) return 0;
  for (size_t i = 0; i < ev->ncols; i++) {
    if (!ident(&ev->cols[i]) || (ev->cols[i].n == 2 && !memcmp(ev->cols[i].p, "id", 2))) return 0;
    if (ev->add[i] && (ev->kind != 'U' || !bee__sql_number_ok(&ev->values[i]))) return 0; /* increments: numbers */
  }
  if (ev->kind == 'U' && ev->ncols == 0) return 0;
  return 1;
}

/*
 * Checks a whole batch before anything of it is applied: the header, every event
 * (decodable, with sound identifiers), and no bytes after the last one. Returns BEE__BATCH_OK
 * or what is wrong (*bad: the failing event; *trailing: the extra bytes).
 */
int bee__batch_check(const char *data, size_t len, bee__event_t *ev, size_t *bad, size_t *trailing) {
  size_t count, pos;
  *bad = 0;
  *trailing = 0;
  if (!data || bee__batch_open(data, len, &count, &pos)) return BEE__BATCH_NOT;
  for (size_t k = 0; k < count; k++) {
    if (bee__batch_next(data, len, &pos, ev) || !bee__event_ok(ev)) {
      *bad = k;
      return BEE__BATCH_BAD_EVENT;
    }
  }
  if (pos != len) {
    *bad = count - 1;
    *trailing = len - pos;
    return BEE__BATCH_TRAILING;
  }
  return BEE__BATCH_OK;
}

/*
 * Calls fn(ud, "<table>:<id>") for each event of a batch (its row), as long as fn
 * returns 0. Malformed bytes: stops quietly.
 */
void bee__batch_rows(const char *data, size_t len, bee__event_t *ev, int (*fn)(void *ud, const char *row), void *ud) {
  size_t count, pos;
  if (!data || bee__batch_open(data, len, &count, &pos)) return;
  for (size_t k = 0; k < count; k++) {
    if (bee__batch_next(data, len, &pos, ev)) return;
    char row[BEE__IDENT_MAX + 32];
    snprintf(row, sizeof row, "%.*s:%llu", (int)ev->table.n, ev->table.p, (unsigned long long)ev->id);
    if (fn(ud, row)) return;
  }
}
