#define BEE_TESTS_VALUE(T)                                 \
  T(value_check_rejects_bad_values_with_exact_messages)    \
  T(value_check_accepts_good_values_in_canonical_form)     \
  T(value_field_type_names)                                \
  T(value_check_rewrite_needs_a_big_enough_buffer)         \
  T(value_check_error_line_names_entity_and_field)         \
  T(value_check_bad_arguments_are_einval)
