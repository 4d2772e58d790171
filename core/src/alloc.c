/* alloc.c: the one allocation hook of the core (STYLE: tests can fail the Nth one). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *(*bee__malloc_fn)(size_t) = malloc;
static void *(*bee__realloc_fn)(void *, size_t) = realloc;
static void (*bee__free_fn)(void *) = free;

void bee_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                       void (*free_fn)(void *)) {
  bee__malloc_fn = malloc_fn ? malloc_fn : malloc;
  bee__realloc_fn = realloc_fn ? realloc_fn : realloc;
  bee__free_fn = free_fn ? free_fn : free;
}

void *bee__malloc(size_t size) { return bee__malloc_fn(size ? size : 1); }

void *bee__calloc(size_t count, size_t size) {
  if (size && count > (size_t)-1 / size) return NULL;
  void *p = bee__malloc(count * size);
  if (p) memset(p, 0, count * size > 0 ? count * size : 1);
  return p;
}

void *bee__realloc(void *ptr, size_t size) { return bee__realloc_fn(ptr, size ? size : 1); }

void bee__free(void *ptr) {
  if (ptr) bee__free_fn(ptr);
}

char *bee__strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *p = bee__malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

int bee__strlcpy(char *dst, const char *src, size_t n) {
  size_t len = strlen(src);
  if (len >= n) return -1;
  memcpy(dst, src, len + 1);
  return 0;
}

static int buf_reserve(bee__buf_t *b, size_t extra) {
  if (b->failed) return -1;
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = bee__realloc(b->data, cap);
  if (!p) {
    b->failed = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void bee__buf_append_grow(bee__buf_t *b, const char *s, size_t n) {
  if (buf_reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void bee__buf_puts(bee__buf_t *b, const char *s) { bee__buf_append(b, s, strlen(s)); }

void bee__buf_printf(bee__buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

char *bee__buf_take(bee__buf_t *b) {
  char *s = b->failed ? NULL : b->data;
  if (b->failed) bee__free(b->data);
  if (s == NULL && !b->failed) s = bee__strdup("");
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
  return s;
}

void bee__buf_free(bee__buf_t *b) {
  bee__free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}
