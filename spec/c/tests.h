/* The list of C unit tests; each is defined with TEST_IMPL in a test_*.c file. */
#define BEE_TEST_LIST(T)                          \
  T(error_table_names_every_code)                 \
  T(error_format_is_one_line_with_code)           \
  T(error_scrub_removes_every_secret)             \
  T(mysql_errno_classification)                   \
  T(dsn_go_form_parses_every_part)                \
  T(dsn_uri_form_matches_go_form)                 \
  T(dsn_unix_socket_forms)                        \
  T(dsn_default_address_and_port)                 \
  T(dsn_ipv6_host)                                \
  T(dsn_uri_percent_decodes_user_and_password)    \
  T(dsn_parameters)                               \
  T(dsn_bad_shapes_have_clear_errors)             \
  T(dsn_errors_never_contain_the_password)        \
  T(dsn_failure_leaves_output_untouched)          \
  T(redis_forms_parse_to_same_settings)           \
  T(redis_uri_with_password_and_user)             \
  T(redis_unix_socket)                            \
  T(redis_bad_shapes_have_clear_errors)           \
  T(describe_never_shows_password)                \
  T(registry_rejects_bad_and_duplicate_pools)     \
  T(registry_remembers_first_failure_for_validate)\
  T(registry_survives_every_allocation_failure)   \
  T(validate_without_pools_gives_empty_engine)
