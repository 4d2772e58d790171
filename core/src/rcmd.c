/*
 * rcmd.c: a Redis command built argument by argument (rcmd.h), in Redis's protocol as
 * it goes: text holds room for the "*<n>" header, then "$<len>\r\n<bytes>\r\n" per
 * argument, so sending is one append to the pipeline (hiredis's own formatter costs
 * several times more for commands of many arguments).
 */
#include <string.h>

#include "rcmd.h"

#define HEAD 24 /* room for "*<n>\r\n" before the first argument */

/* Writes "<mark><n>\r\n" ending at end; returns where it starts. */
static char *resp_len(char *end, char mark, size_t n) {
  *--end = '\n';
  *--end = '\r';
  do *--end = (char)('0' + n % 10);
  while ((n /= 10) > 0);
  *--end = mark;
  return end;
}

void bee__rcmd_reset(bee__rcmd_t *c) {
  c->text.len = 0;
  c->n = 0;
  static const char room[HEAD];
  bee__buf_append(&c->text, room, HEAD);
}

/* Records an argument's bytes at offset at, len long. Out of memory marks the command failed (then nothing is sent). */
static void push_span(bee__rcmd_t *c, size_t at, size_t len) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    size_t(*grown)[2] = bee__realloc(c->spans, cap * sizeof *grown);
    if (!grown) {
      c->failed = 1;
      return;
    }
    c->spans = grown;
    c->cap = cap;
  }
  c->spans[c->n][0] = at;
  c->spans[c->n++][1] = len;
}

void bee__rcmd_open(bee__rcmd_t *c) {
  if (!c->text.len) bee__rcmd_reset(c); /* a zeroed command */
  push_span(c, c->text.len, 0);
}

/* The bytes since bee__rcmd_open get their "$<len>\r\n" in front and "\r\n" after. */
void bee__rcmd_close(bee__rcmd_t *c) {
  if (!c->n || c->failed) return;
  size_t at = c->spans[c->n - 1][0], len = c->text.len - at;
  char head[24], *h = resp_len(head + sizeof head, '$', len);
  size_t hl = (size_t)(head + sizeof head - h);
  bee__buf_append(&c->text, head, hl); /* grows by the header's size ... */
  bee__buf_append(&c->text, "\r\n", 2);
  if (c->text.failed) return;
  memmove(c->text.data + at + hl, c->text.data + at, len); /* ... which goes in front */
  memcpy(c->text.data + at, h, hl);
  c->spans[c->n - 1][0] = at + hl;
  c->spans[c->n - 1][1] = len;
}

void bee__rcmd_arg(bee__rcmd_t *c, const char *s, size_t n) {
  if (!c->text.len) bee__rcmd_reset(c);
  char head[24], *h = resp_len(head + sizeof head, '$', n);
  bee__buf_append(&c->text, h, (size_t)(head + sizeof head - h));
  push_span(c, c->text.len, n);
  bee__buf_append(&c->text, s, n);
  bee__buf_append(&c->text, "\r\n", 2);
}

void bee__rcmd_str(bee__rcmd_t *c, const char *s) { bee__rcmd_arg(c, s, strlen(s)); }

void bee__rcmd_begin(bee__rcmd_t *c, const char *name) {
  bee__rcmd_reset(c);
  bee__rcmd_str(c, name);
}

/* The header written in front of the arguments; returns where the command starts. */
static const char *with_head(bee__rcmd_t *c) { return resp_len(c->text.data + HEAD, '*', c->n); }

void bee__rcmd_format(bee__rcmd_t *c, bee__buf_t *out) {
  out->len = 0;
  if (c->failed || c->text.failed || c->text.len < HEAD) {
    out->failed = 1;
    return;
  }
  const char *start = with_head(c);
  bee__buf_append(out, start, (size_t)(c->text.data + c->text.len - start));
}

void bee__rcmd_send(bee__rconn_t *r, bee__rcmd_t *c, size_t *count) {
  if (c->failed || c->text.failed || c->text.len < HEAD) return;
  const char *start = with_head(c);
  if (bee__redis_append_formatted(r, start, (size_t)(c->text.data + c->text.len - start)) != 0) c->failed = 1;
  else (*count)++;
}

void bee__rcmd_free(bee__rcmd_t *c) {
  bee__buf_free(&c->text);
  bee__free(c->spans);
  c->spans = NULL;
  c->n = c->cap = 0;
}
