#define BEE_TESTS_SCHEMA(T)                                          \
  T(ddl_column_type_for_every_field_type_and_option)                 \
  T(ddl_create_table_with_unique_composite_cached_and_ref_indexes)   \
  T(schema_diff_without_live_table_creates_it)                       \
  T(schema_diff_of_matching_mariadb_table_is_empty)                  \
  T(schema_diff_of_matching_mysql8_table_is_empty)                   \
  T(schema_diff_adds_missing_column_after_previous)                  \
  T(schema_diff_drops_extra_column_unsafely)                         \
  T(schema_diff_widening_is_safe_on_non_empty_table)                 \
  T(schema_diff_narrowing_is_unsafe_on_non_empty_table)             \
  T(schema_diff_narrowing_is_safe_on_empty_table)                    \
  T(schema_diff_converts_other_charsets_to_utf8mb4)                  \
  T(schema_diff_adds_drops_and_rebuilds_indexes_but_never_primary)   \
  T(schema_diff_orders_alters_by_kind)                               \
  T(schema_diff_survives_every_allocation_failure)
