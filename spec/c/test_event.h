#define BEE_TESTS_EVENT(T)                      \
  T(event_batch_round_trips_every_kind)         \
  T(event_batch_rejects_every_truncation)       \
  T(event_batch_rejects_bad_headers_and_tags)   \
  T(event_batch_fuzz_never_reads_out_of_bounds) \
  T(event_batch_writes_repeats_once)            \
  T(event_batch_rejects_repeats_with_nothing_before) \
  T(event_batch_with_count_zero_is_not_a_batch)      \
  T(event_batch_rewrite_drops_or_replaces_one_event) \
  T(event_row_key_matches_the_cache)
