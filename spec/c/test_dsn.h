#define BEE_TESTS_DSN(T)                          \
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
  T(redis_uri_timeouts)                           \
  T(redis_replicas_and_wait)                      \
  T(redis_sentinel_settings)                      \
  T(redis_bad_shapes_have_clear_errors)           \
  T(describe_never_shows_password)
