#define BEE_TESTS_REGISTRY(T)                     \
  T(registry_rejects_bad_and_duplicate_pools)     \
  T(registry_remembers_first_failure_for_validate)\
  T(registry_survives_every_allocation_failure)   \
  T(validate_without_pools_gives_empty_engine)
