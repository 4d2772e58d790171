#define BEE_TESTS_CONFIG(T)                                     \
  T(yaml_file_with_every_pool_form_loads)                       \
  T(yaml_malformed_documents_give_exact_messages)               \
  T(yaml_layout_error_registers_nothing_and_is_remembered)          \
  T(yaml_rejected_value_registers_nothing_and_is_remembered)    \
  T(yaml_pool_registered_before_keeps_registry_code)            \
  T(yaml_missing_file_cannot_be_read)                           \
  T(yaml_larger_than_one_mib_is_refused)                        \
  T(yaml_messages_never_contain_password)                       \
  T(yaml_survives_every_allocation_failure)
