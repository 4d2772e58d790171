/* Runs every C unit test (no server needed) and prints "N passed, N failed". */
#include <stdlib.h>

#include "beeorm.h"
#include "task.h"
#include "tests.h"

BEE_TEST_LIST(TEST_DECLARE)

static long fail_at, alloc_count;

static void *test_malloc(size_t n) {
  if (fail_at && ++alloc_count == fail_at) return NULL;
  return malloc(n);
}
static void *test_realloc(void *p, size_t n) {
  if (fail_at && ++alloc_count == fail_at) return NULL;
  return realloc(p, n);
}

void bee_test_fail_alloc_at(long n) {
  fail_at = n;
  alloc_count = 0;
}
long bee_test_alloc_count(void) { return alloc_count; }

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*fn)(void);
  } tests[] = {
#define BEE_TEST_ENTRY(name) {#name, bee_test_##name},
      BEE_TEST_LIST(BEE_TEST_ENTRY)
#undef BEE_TEST_ENTRY
  };
  bee_set_allocator(test_malloc, test_realloc, free);
  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
    bee_test_fail_alloc_at(0);
    int rc = tests[i].fn();
    printf("%s %s\n", rc ? "FAIL" : "ok  ", tests[i].name);
    if (rc) failed++;
    else passed++;
  }
  bee_library_end();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
