/*
 * The list of C unit tests. Each test_X.c has a companion test_X.h defining
 * BEE_TESTS_X(T) with one T(name) per TEST_IMPL(name) in the .c file.
 */
#include "test_cache.h"
#include "test_codec.h"
#include "test_config.h"
#include "test_dsn.h"
#include "test_error.h"
#include "test_event.h"
#include "test_lru.h"
#include "test_record.h"
#include "test_registry.h"
#include "test_schema.h"
#include "test_value.h"

#define BEE_TEST_LIST(T) \
  BEE_TESTS_ERROR(T)     \
  BEE_TESTS_EVENT(T)     \
  BEE_TESTS_RECORD(T)    \
  BEE_TESTS_DSN(T)       \
  BEE_TESTS_REGISTRY(T)  \
  BEE_TESTS_VALUE(T)     \
  BEE_TESTS_CODEC(T)     \
  BEE_TESTS_SCHEMA(T)    \
  BEE_TESTS_LRU(T)       \
  BEE_TESTS_CONFIG(T)    \
  BEE_TESTS_CACHE(T)
