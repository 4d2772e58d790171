#define BEE_TESTS_LRU(T)                                            \
  T(lru_get_hits_and_misses)                                        \
  T(lru_new_rejects_zero_capacity_and_put_rejects_null_value)       \
  T(lru_put_replaces_the_value_of_a_key)                            \
  T(lru_capacity_one_keeps_only_the_latest_key)                     \
  T(lru_capacity_three_evicts_the_least_recently_used)              \
  T(lru_remove_bumps_the_epoch_so_a_stale_put_is_skipped)           \
  T(lru_clear_empties_and_bumps_the_epoch)                          \
  T(lru_stats_count_every_outcome)                                  \
  T(lru_a_million_inserts_stay_within_capacity)                     \
  T(lru_zero_length_values_are_hits)                                \
  T(lru_holds_a_one_mib_value)                                      \
  T(lru_put_survives_every_allocation_failure)                      \
  T(lru_get_that_cannot_grow_out_is_enomem_and_changes_nothing)     \
  T(lru_matches_a_reference_model_under_random_operations)          \
  T(lru_threads_only_ever_see_values_of_their_key)
