/* task.h: a tiny test harness in libuv's manner: one TEST_IMPL(name) per behaviour. */
#ifndef BEE_TASK_H
#define BEE_TASK_H

#include <stdio.h>
#include <string.h>

#define TEST_IMPL(name) int bee_test_##name(void)
#define TEST_DECLARE(name) int bee_test_##name(void);

#define ASSERT(cond)                                                            \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "  %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                 \
    }                                                                           \
  } while (0)

#define ASSERT_EQ(a, b)                                                         \
  do {                                                                          \
    long long _a = (long long)(a), _b = (long long)(b);                         \
    if (_a != _b) {                                                             \
      fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b); \
      return 1;                                                                 \
    }                                                                           \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                     \
  do {                                                                          \
    const char *_a = (a), *_b = (b);                                            \
    if (strcmp(_a, _b) != 0) {                                                  \
      fprintf(stderr, "  %s:%d: %s == %s failed:\n    got      \"%s\"\n    expected \"%s\"\n", \
              __FILE__, __LINE__, #a, #b, _a, _b);                              \
      return 1;                                                                 \
    }                                                                           \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                            \
  do {                                                                          \
    const char *_h = (hay), *_n = (needle);                                     \
    if (!strstr(_h, _n)) {                                                      \
      fprintf(stderr, "  %s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, _h, _n); \
      return 1;                                                                 \
    }                                                                           \
  } while (0)

/* Allocation hook that fails the Nth allocation (1-based; 0 = never). */
void bee_test_fail_alloc_at(long n);
long bee_test_alloc_count(void);

#endif
