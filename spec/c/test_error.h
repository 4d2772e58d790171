#define BEE_TESTS_ERROR(T)                \
  T(error_table_names_every_code)         \
  T(error_format_is_one_line_with_code)   \
  T(error_scrub_removes_every_secret)     \
  T(mysql_errno_classification) \
  T(redis_refusals_that_pass_are_temporary) \
  T(error_library_version_matches_header)
