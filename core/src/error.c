/* error.c: the error table, error objects and the default MySQL errno classification. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *bee_err_name(int code) {
  switch (code) {
#define BEE__ERR_NAME(name, value, short_code, text) \
  case BEE_##name:                                   \
    return "BEE_" #name;
    BEE_ERRNO_MAP(BEE__ERR_NAME)
#undef BEE__ERR_NAME
    case BEE_OK:
      return "BEE_OK";
  }
  return "BEE_UNKNOWN";
}

const char *bee_err_code(int code) {
  switch (code) {
#define BEE__ERR_CODE(name, value, short_code, text) \
  case BEE_##name:                                   \
    return short_code;
    BEE_ERRNO_MAP(BEE__ERR_CODE)
#undef BEE__ERR_CODE
    case BEE_OK:
      return "ok";
  }
  return "unknown";
}

const char *bee_strerror(int code) {
  switch (code) {
#define BEE__ERR_TEXT(name, value, short_code, text) \
  case BEE_##name:                                   \
    return text;
    BEE_ERRNO_MAP(BEE__ERR_TEXT)
#undef BEE__ERR_TEXT
    case BEE_OK:
      return "success";
  }
  return "unknown error";
}

void bee_error_clear(bee_error_t *err) {
  if (err) memset(err, 0, sizeof *err);
}

int bee__verror(bee_error_t *err, int code, int temporary, const char *fmt, va_list ap) {
  if (!err) return code;
  memset(err, 0, sizeof *err);
  err->code = code;
  err->temporary = temporary ? 1 : 0;
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  /* One line: a server message may carry newlines. */
  for (char *p = err->message; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return code;
}

int bee__error(bee_error_t *err, int code, int temporary, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bee__verror(err, code, temporary, fmt, ap);
  va_end(ap);
  return code;
}

void bee__error_pool(bee_error_t *err, const char *pool) {
  if (!err || !pool) return;
  snprintf(err->pool, sizeof err->pool, "%s", pool);
}

void bee__error_scrub(bee_error_t *err, const char *secret) {
  if (!err || !secret || !*secret) return;
  size_t slen = strlen(secret);
  /* A short secret ("pw") also occurs inside ordinary words: replace it only where it
     stands alone between quotes, which is how messages quote input values. */
  int whole_only = slen < 4;
  char out[BEE_ERROR_MESSAGE_MAX];
  size_t o = 0;
  const char *p = err->message;
  while (*p && o + 1 < sizeof out) {
    int hit = strncmp(p, secret, slen) == 0;
    if (hit && whole_only)
      hit = p > err->message && p[-1] == '\'' && p[slen] == '\'';
    if (hit) {
      for (const char *r = "***"; *r && o + 1 < sizeof out; r++) out[o++] = *r;
      p += slen;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = '\0';
  memcpy(err->message, out, o + 1);
}

size_t bee_error_format(const bee_error_t *err, char *buf, size_t size) {
  if (!err) return (size_t)snprintf(buf, size, "no error");
  char code[32];
  if (err->code == BEE_EMYSQL && err->server_code)
    snprintf(code, sizeof code, "mysql %d", err->server_code);
  else
    snprintf(code, sizeof code, "%s", bee_err_code(err->code));
  char where[3 * BEE_NAME_MAX + 32] = "";
  if (err->entity[0] && err->field[0])
    snprintf(where, sizeof where, " %s.%s:", err->entity, err->field);
  else if (err->entity[0])
    snprintf(where, sizeof where, " %s:", err->entity);
  else if (err->pool[0])
    snprintf(where, sizeof where, " pool '%s':", err->pool);
  int n = snprintf(buf, size, "beeorm error [%s%s]%s %s", code,
                   err->temporary ? ", temporary" : "", where, err->message);
  return n < 0 ? 0 : (size_t)n;
}

int bee_mysql_errno_is_temporary(unsigned int e) {
  switch (e) {
    case 1021: /* disk full */
    case 1037: /* out of memory */
    case 1040: /* too many connections */
    case 1045: /* access denied (docs/guarantees.md G4: may be a credentials rollout) */
    case 1053: /* server shutdown in progress */
    case 1205: /* lock wait timeout */
    case 1213: /* deadlock */
    case 1290: /* --read-only (or another server option) refuses the statement now */
    case 1317: /* query interrupted */
    case 1792: /* cannot execute the statement in a read-only transaction */
    case 1836: /* running in read-only mode */
    case 1878: /* temporary file write failure */
    case 1927: /* connection killed */
    case 1969: /* statement timeout (max_statement_time) */
    case 2001: /* can't create unix socket */
    case 2002: /* can't connect through socket */
    case 2003: /* can't connect to server */
    case 2005: /* unknown host (DNS may come back) */
    case 2006: /* server has gone away */
    case 2011: /* TCP error */
    case 2013: /* lost connection during query */
    case 2026: /* SSL connection error */
    case 2048: /* invalid connection handle */
    case 2055: /* lost connection (system error) */
      return 1;
    default:
      return 0;
  }
}

const char *bee_version(void) { return BEE_VERSION_STRING; }

int bee__redis_reply_temporary(const char *reply) {
  /* Refusals that pass: loading a dataset, a busy script, a failover or resharding in
     progress, a replica asked to write, too few replicas, out of memory, a blocked read
     ended because the server became a replica. */
  static const char *const now[] = {"OOM ",      "LOADING ", "BUSY ",      "TRYAGAIN ", "CLUSTERDOWN ",
                                    "MASTERDOWN ", "READONLY ", "NOREPLICAS ", "MOVED ",    "ASK ",
                                    "UNBLOCKED "};
  for (size_t i = 0; reply && i < sizeof now / sizeof now[0]; i++)
    if (!strncmp(reply, now[i], strlen(now[i]))) return 1;
  return 0;
}
