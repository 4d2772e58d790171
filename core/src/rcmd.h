/*
 * rcmd.h: a Redis command built argument by argument into one reusable buffer, already
 * in Redis's protocol, then appended to a hiredis pipeline (for commands whose argument count varies: HSET of a
 * row's columns, HDEL, EVAL with per-column arguments, DEL of many keys).
 */
#ifndef BEE_RCMD_H
#define BEE_RCMD_H

#include "redis.h"

#include "internal.h"

typedef struct {
  bee__buf_t text;     /* room for the header, then each argument as "$<len>\r\n<bytes>\r\n" */
  size_t (*spans)[2];  /* offset and length of each argument's bytes in text */
  size_t n, cap;
  int failed;          /* out of memory: bee__rcmd_send sends nothing */
} bee__rcmd_t;

/* Forgets what c held (keeping its buffers): c then holds no argument. */
void bee__rcmd_reset(bee__rcmd_t *c);
/* Starts a new command named name (what c held is forgotten). */
void bee__rcmd_begin(bee__rcmd_t *c, const char *name);
/* Appends an argument. */
void bee__rcmd_arg(bee__rcmd_t *c, const char *s, size_t n);
void bee__rcmd_str(bee__rcmd_t *c, const char *s);
/* Opens an argument: what is appended to c->text until bee__rcmd_close belongs to it. */
void bee__rcmd_open(bee__rcmd_t *c);
void bee__rcmd_close(bee__rcmd_t *c);
/* The command in Redis's protocol (RESP: "*<n>\r\n" then "$<len>\r\n<arg>\r\n" each) into out. Pure. */
void bee__rcmd_format(bee__rcmd_t *c, bee__buf_t *out);
/* Appends the command to r's pipeline and counts it in *count (not when c->failed). */
void bee__rcmd_send(bee__rconn_t *r, bee__rcmd_t *c, size_t *count);
/* Frees c's buffers (c may be reused after, zeroed). */
void bee__rcmd_free(bee__rcmd_t *c);

#endif
