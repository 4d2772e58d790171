/*
 * internal.h: helpers shared by the core's translation units. Not installed.
 * Non-static internal names are bee__*.
 */
#ifndef BEE_INTERNAL_H
#define BEE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "beeorm.h"

#if defined(__GNUC__)
#define BEE__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BEE__PRINTF(f, a)
#endif

/* Allocation through the hook of bee_set_allocator. bee__free accepts NULL. */
void *bee__malloc(size_t size);
void *bee__calloc(size_t count, size_t size);
void *bee__realloc(void *ptr, size_t size);
void bee__free(void *ptr);
/* A copy of s (NULL when out of memory or s is NULL). */
char *bee__strdup(const char *s);

/*
 * Fills err (when not NULL) with code, temporary flag and a formatted message, and
 * returns code so callers can `return bee__error(...)`. Other fields are cleared.
 */
int bee__error(bee_error_t *err, int code, int temporary, const char *fmt, ...) BEE__PRINTF(4, 5);
int bee__verror(bee_error_t *err, int code, int temporary, const char *fmt, va_list ap);

/* 1 when a Redis error reply says a refusal that passes (out of memory, loading, failover ...): temporary. */
int bee__redis_reply_temporary(const char *reply);

/* Sets err->pool (truncated to fit). */
void bee__error_pool(bee_error_t *err, const char *pool);

/*
 * Replaces every occurrence of secret (when non-empty) in err->message with "***".
 * A last line of defence: no message built from server text can carry a password.
 */
void bee__error_scrub(bee_error_t *err, const char *secret);

/* Copies src into dst of size n; returns 0, or -1 when src does not fit (dst untouched). */
int bee__strlcpy(char *dst, const char *src, size_t n);

/*
 * A growable string. Starts zeroed ({0}); after an allocation failure `failed` is set
 * and further appends do nothing, so callers check once at the end.
 */
typedef struct bee__buf_s {
  char *data;
  size_t len, cap;
  int failed;
} bee__buf_t;

/* The slow path of bee__buf_append: grows the buffer first. */
void bee__buf_append_grow(bee__buf_t *b, const char *s, size_t n);
/* Appends n bytes of s (keeping data NUL-terminated); inline: it is on every hot path. */
static inline void bee__buf_append(bee__buf_t *b, const char *s, size_t n) {
  if (!b->failed && b->len + n < b->cap) {
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
  } else {
    bee__buf_append_grow(b, s, n);
  }
}
void bee__buf_puts(bee__buf_t *b, const char *s);
void bee__buf_printf(bee__buf_t *b, const char *fmt, ...) BEE__PRINTF(2, 3);
/* Takes the string out (NUL-terminated, caller frees with bee__free); the buffer is reset. */
char *bee__buf_take(bee__buf_t *b);
void bee__buf_free(bee__buf_t *b);

/*
 * Remembers a failure (the first one wins) so that bee_registry_validate reports it:
 * for loaders such as the YAML reader that fail before any pool is registered.
 * BEE_ENOMEM is not remembered. err may be NULL.
 */
void bee__registry_remember(bee_registry_t *reg, int rc, bee_error_t *err);

/* A plain decimal number of n bytes at p: digits only, no leading zero (but "0"), at
   most max. 0 and *out, or -1. Pure (dsn.c). */
int bee__digits(const char *p, size_t n, unsigned long max, unsigned long *out);

/* Ensures mysql_library_init has run once (thread-safe). */
void bee__mysql_library_init(void);

#endif
