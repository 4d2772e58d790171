/*
 * record.h: the error record of a parked stream entry (the value in a queue's errors
 * hash, keyed by the entry's stream id), as pure encode/decode functions.
 *
 *   'E' u8 version (2; 1 is read too), u32 code, u32 attempts, u64 failed_at_ms,
 *   u32 event index, str message, str sql, str batch, str resolver_error (version 2)
 *   str := u32 length, bytes; integers little-endian
 * code is the MySQL errno (or a negative BEE_E* code), attempts those of the failing
 * event, batch the entry's bytes as queued (event.h), resolver_error "" unless the
 * resolver failed on it.
 */
#ifndef BEE_RECORD_H
#define BEE_RECORD_H

#include "internal.h"
#include "event.h"

#define BEE__RECORD_VERSION 2

typedef struct {
  int code, attempts;
  int64_t at;
  size_t index;
  bee__str_t message, sql, batch, resolver_error;
} bee__record_t;

/* Appends the record to b (check b->failed). */
void bee__record_encode(bee__buf_t *b, int code, int attempts, int64_t at, size_t index, const char *msg,
                        const bee__buf_t *sql, const char *batch, size_t batch_len, const char *resolver_error);

/* Decodes a record (any bytes): 0, or -1 when it is not a well-formed record. Strings point into p. */
int bee__record_decode(const char *p, size_t len, bee__record_t *r);

#endif
