/* alloc.c: the one allocation hook of the core (STYLE: tests can fail the Nth one). */
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
