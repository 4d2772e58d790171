#define BEE_TESTS_RECORD(T)                          \
  T(record_round_trips_every_field)                  \
  T(record_keeps_negative_codes_and_no_resolver_error) \
  T(record_reads_version_1)                          \
  T(record_rejects_every_truncation_and_trailing_bytes) \
  T(record_with_a_huge_length_is_rejected)
