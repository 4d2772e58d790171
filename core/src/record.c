/* record.c: error records of parked entries (format in record.h). Pure. */
#include <string.h>

#include "record.h"

static void put_le(bee__buf_t *b, uint64_t v, int n) {
  char o[8];
  for (int i = 0; i < n; i++) o[i] = (char)(unsigned char)(v >> (8 * i));
  bee__buf_append(b, o, (size_t)n);
}

static void put_str(bee__buf_t *b, const char *s, size_t n) {
  put_le(b, n, 4);
  bee__buf_append(b, s ? s : "", n);
}

void bee__record_encode(bee__buf_t *b, int code, int attempts, int64_t at, size_t index, const char *msg,
                        const bee__buf_t *sql, const char *batch, size_t batch_len, const char *resolver_error) {
  bee__buf_append(b, "E", 1);
  put_le(b, BEE__RECORD_VERSION, 1);
  put_le(b, (uint64_t)(uint32_t)code, 4);
  put_le(b, (uint64_t)attempts, 4);
  put_le(b, (uint64_t)at, 8);
  put_le(b, index, 4);
  put_str(b, msg, strlen(msg));
  put_str(b, sql->data, sql->len);
  put_str(b, batch, batch_len);
  put_str(b, resolver_error, resolver_error ? strlen(resolver_error) : 0);
}

int bee__record_decode(const char *p, size_t len, bee__record_t *r) {
  const unsigned char *u = (const unsigned char *)p;
  size_t pos = 2;
  if (len < 26 || p[0] != 'E' || (p[1] != 1 && p[1] != 2)) return -1;
  int version = p[1];
#define RD(n, out)                                                            \
  do {                                                                        \
    if (len - pos < (n)) return -1;                                           \
    uint64_t v_ = 0;                                                          \
    for (int i_ = (n)-1; i_ >= 0; i_--) v_ = (v_ << 8) | u[pos + (size_t)i_]; \
    pos += (n);                                                               \
    out = v_;                                                                 \
  } while (0)
  uint64_t v;
  RD(4, v);
  r->code = (int)(uint32_t)v;
  RD(4, v);
  r->attempts = (int)v;
  RD(8, v);
  r->at = (int64_t)v;
  RD(4, v);
  r->index = (size_t)v;
  r->resolver_error.p = "";
  r->resolver_error.n = 0;
  bee__str_t *strs[4] = {&r->message, &r->sql, &r->batch, &r->resolver_error};
  for (int i = 0; i < (version == 1 ? 3 : 4); i++) {
    RD(4, v);
    if (len - pos < v) return -1;
    strs[i]->p = p + pos;
    strs[i]->n = (size_t)v;
    pos += (size_t)v;
  }
#undef RD
  return pos == len ? 0 : -1;
}
