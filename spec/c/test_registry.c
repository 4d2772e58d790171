#include "internal.h"
#include "task.h"

TEST_IMPL(registry_rejects_bad_and_duplicate_pools) {
  bee_registry_t *reg = bee_registry_new();
  bee_error_t err;
  ASSERT(reg);
  ASSERT_EQ(bee_registry_add_mysql(reg, "default", "root@tcp(h)/app", &err), 0);
  ASSERT_EQ(bee_registry_add_mysql(reg, "default", "root@tcp(h)/app", &err), BEE_EPOOL);
  ASSERT_STR_EQ(err.message, "MySQL pool 'default' is already registered");
  ASSERT_EQ(bee_registry_add_redis(reg, "default", "h:1", 0, &err), 0);
  ASSERT_EQ(bee_registry_add_redis(reg, "bad name", "h:1", 0, &err), BEE_EPOOL);
  ASSERT_STR_EQ(err.message, "bad pool name 'bad name' (allowed: letters, digits, '_', '-')");
  ASSERT_EQ(bee_registry_add_redis(reg, "", "h:1", 0, &err), BEE_EPOOL);
  ASSERT_EQ(bee_registry_add_mysql(reg, "logs", "root@tcp(h:0)/app", &err), BEE_EDSN);
  ASSERT_STR_EQ(err.message, "bad MySQL DSN: bad port '0' (expected 1-65535)");
  ASSERT_STR_EQ(err.pool, "logs");
  ASSERT_EQ(bee_registry_mysql_count(reg), 1);
  ASSERT_EQ(bee_registry_redis_count(reg), 1);
  bee_registry_free(reg);
  bee_registry_free(NULL);
  return 0;
}

TEST_IMPL(registry_remembers_first_failure_for_validate) {
  bee_registry_t *reg = bee_registry_new();
  bee_engine_t *engine = (bee_engine_t *)&reg; /* must be reset to NULL */
  bee_error_t err;
  ASSERT_EQ(bee_registry_add_redis(reg, "default", "h:1:zz", -1, NULL), BEE_EDSN);
  ASSERT_EQ(bee_registry_add_mysql(reg, "default", "", NULL), BEE_EDSN);
  ASSERT_EQ(bee_registry_validate(reg, &engine, &err), BEE_EDSN);
  ASSERT(engine == NULL);
  ASSERT_STR_EQ(err.message, "a pool registration failed");
  bee_registry_free(reg);

  reg = bee_registry_new();
  ASSERT_EQ(bee_registry_add_redis(reg, "q", "h:1:zz", -1, &err), BEE_EDSN);
  ASSERT_EQ(bee_registry_validate(reg, &engine, &err), BEE_EDSN);
  ASSERT_STR_EQ(err.message, "bad Redis address: bad db index 'zz' (expected a number 0 or more)");
  ASSERT_STR_EQ(err.pool, "q");
  bee_registry_free(reg);
  return 0;
}

TEST_IMPL(registry_survives_every_allocation_failure) {
  /* Fail the 1st, 2nd, ... allocation until the sequence succeeds whole. */
  for (long n = 1; n < 100; n++) {
    bee_test_fail_alloc_at(n);
    bee_error_t err;
    bee_registry_t *reg = bee_registry_new();
    int ok = reg != NULL;
    if (ok && bee_registry_add_mysql(reg, "default", "root@tcp(h)/app", &err) != 0) {
      ASSERT_EQ(err.code, BEE_ENOMEM);
      ASSERT_EQ(bee_registry_mysql_count(reg), 0);
      ok = 0;
    }
    if (ok && bee_registry_add_redis(reg, "default", "h:1", 0, &err) != 0) {
      ASSERT_EQ(err.code, BEE_ENOMEM);
      ASSERT_EQ(bee_registry_redis_count(reg), 0);
      ASSERT_EQ(bee_registry_mysql_count(reg), 1);
      ok = 0;
    }
    bee_registry_free(reg);
    if (ok) {
      bee_test_fail_alloc_at(0);
      ASSERT(n > 3);
      return 0;
    }
  }
  return 1;
}

TEST_IMPL(validate_without_pools_gives_empty_engine) {
  bee_registry_t *reg = bee_registry_new();
  bee_engine_t *engine = NULL;
  bee_error_t err;
  ASSERT_EQ(bee_registry_validate(reg, &engine, &err), 0);
  ASSERT(engine);
  ASSERT_EQ(bee_engine_pool_count(engine), 0);
  bee_pool_info_t info;
  ASSERT_EQ(bee_engine_pool_info(engine, 0, &info), BEE_EINVAL);
  bee_engine_free(engine);
  bee_engine_free(NULL);
  bee_registry_free(reg);
  return 0;
}
