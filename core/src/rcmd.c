/* rcmd.c: a Redis command built argument by argument (rcmd.h). */
#include <string.h>

#include "rcmd.h"

/* Failed argument storage marks the command failed; bee__rcmd_send then sends nothing. */
void bee__rcmd_open(bee__rcmd_t *c) {
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
  c->spans[c->n][0] = c->text.len;
  c->spans[c->n++][1] = 0;
}

void bee__rcmd_close(bee__rcmd_t *c) {
  if (c->n) c->spans[c->n - 1][1] = c->text.len - c->spans[c->n - 1][0];
}

void bee__rcmd_arg(bee__rcmd_t *c, const char *s, size_t n) {
  bee__rcmd_open(c);
  bee__buf_append(&c->text, s, n);
  bee__rcmd_close(c);
}

void bee__rcmd_str(bee__rcmd_t *c, const char *s) { bee__rcmd_arg(c, s, strlen(s)); }

void bee__rcmd_reset(bee__rcmd_t *c) {
  c->text.len = 0;
  c->n = 0;
}

/* Starts a new command named name (what c held is forgotten). */
void bee__rcmd_begin(bee__rcmd_t *c, const char *name) {
  bee__rcmd_reset(c);
  bee__rcmd_str(c, name);
}

/* Appends the command to c's pipeline and counts it. */
void bee__rcmd_send(redisContext *r, bee__rcmd_t *c, size_t *count) {
  if (c->failed || c->text.failed) return;
  const char *small[64];
  size_t small_lens[64];
  const char **argv = c->n <= 64 ? small : bee__malloc(c->n * sizeof *argv);
  size_t *lens = c->n <= 64 ? small_lens : bee__malloc(c->n * sizeof *lens);
  if (argv && lens) {
    for (size_t i = 0; i < c->n; i++) {
      argv[i] = c->text.data + c->spans[i][0];
      lens[i] = c->spans[i][1];
    }
    if (redisAppendCommandArgv(r, (int)c->n, argv, lens) == REDIS_OK) (*count)++;
    else c->failed = 1;
  } else {
    c->failed = 1;
  }
  if (argv != small) bee__free(argv);
  if (lens != small_lens) bee__free(lens);
}

void bee__rcmd_free(bee__rcmd_t *c) {
  bee__buf_free(&c->text);
  bee__free(c->spans);
}

