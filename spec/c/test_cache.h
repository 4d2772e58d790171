#define BEE_TESTS_CACHE(T)                                         \
  T(cache_keys_name_columns_not_definitions)                       \
  T(cache_row_hash_reads_columns_by_name_in_any_order)             \
  T(cache_increments_add_exactly_and_refuse_what_does_not_fit)     \
  T(cache_commands_are_written_in_redis_protocol)                  \
  T(cache_increment_columns_round_trip_in_events)                  \
  T(cache_increments_reach_sql_only_as_numbers)
