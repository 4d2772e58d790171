/* pool.c: opening MySQL connections with errors that follow README, Lua API. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>

#include "pool.h"

static pthread_once_t bee__mysql_once = PTHREAD_ONCE_INIT;
static int bee__mysql_inited;

static void mysql_init_once(void) {
  bee__mysql_inited = mysql_library_init(0, NULL, NULL) == 0;
}

void bee__mysql_library_init(void) { pthread_once(&bee__mysql_once, mysql_init_once); }

void bee_library_end(void) {
  if (bee__mysql_inited) {
    mysql_library_end();
    bee__mysql_inited = 0;
  }
}

int bee__mysql_error(bee_error_t *err, MYSQL *conn, const bee__mysql_pool_t *pool, const char *doing) {
  unsigned int e = mysql_errno(conn);
  int rc = bee__error(err, BEE_EMYSQL, bee_mysql_errno_is_temporary(e), "%s %s: %s", doing,
                      pool->address, mysql_error(conn));
  if (err) {
    err->server_code = (int)e;
    bee__error_pool(err, pool->name);
    bee__error_scrub(err, pool->settings.password);
  }
  return rc;
}

int bee__mysql_connect(const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err) {
  const bee_mysql_settings_t *s = &pool->settings;
  bee__mysql_library_init();
  MYSQL *conn = mysql_init(NULL);
  if (!conn) return bee__error(err, BEE_ENOMEM, 0, "out of memory creating a MySQL connection");
  unsigned int ct = (s->connect_timeout_ms + 999) / 1000, rt = (s->read_timeout_ms + 999) / 1000,
               wt = (s->write_timeout_ms + 999) / 1000;
  mysql_options(conn, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
  mysql_options(conn, MYSQL_OPT_READ_TIMEOUT, &rt);
  mysql_options(conn, MYSQL_OPT_WRITE_TIMEOUT, &wt);
  mysql_options(conn, MYSQL_SET_CHARSET_NAME, s->charset);
  /* "tcp(localhost:3306)" means TCP: without this libmariadb would pick a socket. */
  unsigned int proto = s->socket[0] ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
  mysql_options(conn, MYSQL_OPT_PROTOCOL, &proto);
  if (!mysql_real_connect(conn, s->socket[0] ? NULL : s->host, s->user, s->password, s->database,
                          s->port, s->socket[0] ? s->socket : NULL, CLIENT_FOUND_ROWS)) {
    int rc = bee__mysql_error(err, conn, pool, "cannot connect to");
    mysql_close(conn);
    return rc;
  }
  /* A child process must not inherit (and keep alive) our connections. */
  int fd = (int)mysql_get_socket(conn);
  if (fd >= 0) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  /* Values are UTC strings (README, Lua API): never let the server zone shift them. */
  if (mysql_query(conn, "SET time_zone = '+00:00'") != 0) {
    int rc = bee__mysql_error(err, conn, pool, "cannot set the session time zone on");
    mysql_close(conn);
    return rc;
  }
  *out = conn;
  return 0;
}
