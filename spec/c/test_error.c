#include "internal.h"
#include "task.h"

TEST_IMPL(error_table_names_every_code) {
#define CHECK_ONE(name, value, code, text)          \
  ASSERT_STR_EQ(bee_err_name(BEE_##name), "BEE_" #name); \
  ASSERT_STR_EQ(bee_err_code(BEE_##name), code);    \
  ASSERT_STR_EQ(bee_strerror(BEE_##name), text);    \
  ASSERT(value < 0);
  BEE_ERRNO_MAP(CHECK_ONE)
#undef CHECK_ONE
  ASSERT_STR_EQ(bee_err_name(-9999), "BEE_UNKNOWN");
  ASSERT_STR_EQ(bee_err_code(-9999), "unknown");
  return 0;
}

TEST_IMPL(error_format_is_one_line_with_code) {
  bee_error_t err;
  char line[1024];
  bee__error(&err, BEE_EMYSQL, 1, "cannot connect\nto server");
  err.server_code = 2003;
  bee__error_pool(&err, "default");
  bee_error_format(&err, line, sizeof line);
  ASSERT_STR_EQ(line, "beeorm error [mysql 2003, temporary] pool 'default': cannot connect to server");
  bee__error(&err, BEE_EDSN, 0, "missing host");
  bee_error_format(&err, line, sizeof line);
  ASSERT_STR_EQ(line, "beeorm error [dsn] missing host");
  return 0;
}

TEST_IMPL(error_scrub_removes_every_secret) {
  bee_error_t err;
  bee__error(&err, BEE_EREDIS, 0, "pw=hunter2 and again hunter2!");
  bee__error_scrub(&err, "hunter2");
  ASSERT_STR_EQ(err.message, "pw=*** and again ***!");
  bee__error_scrub(&err, "");
  ASSERT_STR_EQ(err.message, "pw=*** and again ***!");
  bee__error(&err, BEE_EDSN, 0, "bad port 'pw' in a pwd");
  bee__error_scrub(&err, "pw");
  ASSERT_STR_EQ(err.message, "bad port '***' in a pwd");
  return 0;
}

TEST_IMPL(mysql_errno_classification) {
  static const unsigned temporary[] = {1021, 1040, 1045, 1205, 1213, 2002, 2003, 2006, 2013,
                                       1290, 1792, 1836, 1878, 1969}; /* "not now": read-only, timeouts */
  static const unsigned permanent[] = {1062, 1022, 1146, 1051, 1109, 1054, 1064, 1149, 1048,
                                       1364, 1406, 1264, 1265, 1292, 1366, 1452, 1451, 1049};
  for (size_t i = 0; i < sizeof temporary / sizeof *temporary; i++)
    ASSERT_EQ(bee_mysql_errno_is_temporary(temporary[i]), 1);
  for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++)
    ASSERT_EQ(bee_mysql_errno_is_temporary(permanent[i]), 0);
  return 0;
}

TEST_IMPL(error_library_version_matches_header) {
  ASSERT_STR_EQ(bee_version(), BEE_VERSION_STRING);
  return 0;
}

TEST_IMPL(redis_refusals_that_pass_are_temporary) {
  static const char *const temporary[] = {
      "OOM command not allowed when used memory > 'maxmemory'.", "LOADING Redis is loading the dataset in memory",
      "BUSY Redis is busy running a script.", "TRYAGAIN Multiple keys request during rehashing of slot",
      "CLUSTERDOWN The cluster is down", "MASTERDOWN Link with MASTER is down",
      "READONLY You can't write against a read only replica.", "NOREPLICAS Not enough good replicas to write.",
      "MOVED 3999 127.0.0.1:6381", "ASK 3999 127.0.0.1:6381",
      "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"};
  static const char *const permanent[] = {
      "ERR unknown command 'FOO'", "WRONGTYPE Operation against a key holding the wrong kind of value",
      "EXECABORT Transaction discarded because of previous errors.", "NOSCRIPT No matching script.",
      "OOMX not a refusal", "oom lower case is not Redis", "", "LOADING"};
  for (size_t i = 0; i < sizeof temporary / sizeof temporary[0]; i++) ASSERT(bee__redis_reply_temporary(temporary[i]));
  for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++) ASSERT(!bee__redis_reply_temporary(permanent[i]));
  ASSERT(!bee__redis_reply_temporary(NULL));
  return 0;
}
