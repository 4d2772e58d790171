/* registry.c: the registry of pools and the engine validated from it. */
#include <ctype.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "schema_internal.h"

typedef struct bee__local_cache_default_s {
  char pool[BEE_NAME_MAX];
  int64_t capacity;
} bee__local_cache_default_t;

struct bee_registry_s {
  bee__local_cache_default_t *local_caches;
  size_t local_cache_count;
  bee__mysql_pool_t *mysql;
  size_t mysql_count;
  bee__redis_pool_t *redis;
  size_t redis_count;
  bee_entity_def_t **entities;
  size_t entity_count;
  int failed; /* a registration failed: validate reports first_error */
  bee_error_t first_error;
};

bee_registry_t *bee_registry_new(void) { return bee__calloc(1, sizeof(bee_registry_t)); }

void bee_registry_free(bee_registry_t *reg) {
  if (!reg) return;
  for (size_t i = 0; i < reg->entity_count; i++) bee_entity_def_free(reg->entities[i]);
  bee__free(reg->entities);
  bee__free(reg->local_caches);
  bee__free(reg->mysql);
  bee__free(reg->redis);
  bee__free(reg);
}

size_t bee_registry_entity_count(const bee_registry_t *reg) { return reg ? reg->entity_count : 0; }

size_t bee_registry_mysql_count(const bee_registry_t *reg) { return reg ? reg->mysql_count : 0; }
size_t bee_registry_redis_count(const bee_registry_t *reg) { return reg ? reg->redis_count : 0; }

static int remember(bee_registry_t *reg, int rc, bee_error_t *err) {
  if (rc && rc != BEE_ENOMEM && !reg->failed) {
    reg->failed = 1;
    if (err) reg->first_error = *err;
    else bee__error(&reg->first_error, rc, 0, "a pool registration failed");
  }
  return rc;
}

void bee__registry_remember(bee_registry_t *reg, int rc, bee_error_t *err) {
  if (reg) remember(reg, rc, err);
}

static int check_pool_name(const char *pool, bee_error_t *err) {
  size_t n = pool ? strlen(pool) : 0;
  if (n == 0 || n > 63)
    return bee__error(err, BEE_EPOOL, 0, "bad pool name (expected 1-63 characters of letters, digits, '_', '-')");
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)pool[i]) && pool[i] != '_' && pool[i] != '-')
      return bee__error(err, BEE_EPOOL, 0, "bad pool name '%s' (allowed: letters, digits, '_', '-')", pool);
  return 0;
}

int bee_registry_set_local_cache(bee_registry_t *reg, const char *pool, int64_t capacity,
                                 bee_error_t *err) {
  if (!reg) return bee__error(err, BEE_EINVAL, 0, "registry is NULL");
  int rc = check_pool_name(pool, err);
  if (rc) return remember(reg, rc, err);
  if (capacity < 1 || capacity > 1000000000)
    return remember(reg, bee__error(err, BEE_EINVAL, 0, "local_cache of pool '%s' must be 1 to 1000000000, got %lld",
                                    pool, (long long)capacity), err);
  for (size_t i = 0; i < reg->local_cache_count; i++)
    if (strcmp(reg->local_caches[i].pool, pool) == 0) {
      reg->local_caches[i].capacity = capacity;
      return 0;
    }
  void *grown = bee__realloc(reg->local_caches, (reg->local_cache_count + 1) * sizeof *reg->local_caches);
  if (!grown) return bee__error(err, BEE_ENOMEM, 0, "out of memory setting local_cache of pool '%s'", pool);
  reg->local_caches = grown;
  bee__local_cache_default_t *d = &reg->local_caches[reg->local_cache_count++];
  snprintf(d->pool, sizeof d->pool, "%s", pool);
  d->capacity = capacity;
  return 0;
}

int bee_registry_add_mysql(bee_registry_t *reg, const char *pool, const char *dsn, bee_error_t *err) {
  if (!reg) return bee__error(err, BEE_EINVAL, 0, "registry is NULL");
  bee__mysql_pool_t p;
  memset(&p, 0, sizeof p);
  int rc = check_pool_name(pool, err);
  if (!rc) {
    for (size_t i = 0; i < reg->mysql_count; i++)
      if (strcmp(reg->mysql[i].name, pool) == 0)
        rc = bee__error(err, BEE_EPOOL, 0, "MySQL pool '%s' is already registered", pool);
  }
  if (!rc) rc = bee_mysql_dsn_parse(dsn, &p.settings, err);
  if (rc) {
    if (err && rc == BEE_EDSN) {
      bee__error_pool(err, pool);
      char msg[BEE_ERROR_MESSAGE_MAX];
      snprintf(msg, sizeof msg, "%s", err->message);
      snprintf(err->message, sizeof err->message, "bad MySQL DSN: %.480s", msg);
    }
    return remember(reg, rc, err);
  }
  void *grown = bee__realloc(reg->mysql, (reg->mysql_count + 1) * sizeof *reg->mysql);
  if (!grown) return bee__error(err, BEE_ENOMEM, 0, "out of memory registering MySQL pool '%s'", pool);
  reg->mysql = grown;
  snprintf(p.name, sizeof p.name, "%s", pool);
  bee_mysql_settings_describe(&p.settings, p.address, sizeof p.address);
  reg->mysql[reg->mysql_count++] = p;
  return 0;
}

/* Records a parsed Redis pool; rc is the parser's result (failures are named and remembered). */
static int add_redis(bee_registry_t *reg, const char *pool, bee_redis_settings_t *settings, int rc, int sentinel,
                     bee_error_t *err) {
  if (!rc) rc = check_pool_name(pool, err);
  if (!rc) {
    for (size_t i = 0; i < reg->redis_count; i++)
      if (strcmp(reg->redis[i].name, pool) == 0)
        rc = bee__error(err, BEE_EPOOL, 0, "Redis pool '%s' is already registered", pool);
  }
  if (rc) {
    if (err && rc == BEE_EDSN) {
      bee__error_pool(err, pool);
      char msg[BEE_ERROR_MESSAGE_MAX];
      snprintf(msg, sizeof msg, "%s", err->message);
      snprintf(err->message, sizeof err->message, "bad %s: %.460s", sentinel ? "Sentinel settings" : "Redis address",
               msg);
    }
    return remember(reg, rc, err);
  }
  void *grown = bee__realloc(reg->redis, (reg->redis_count + 1) * sizeof *reg->redis);
  if (!grown) return bee__error(err, BEE_ENOMEM, 0, "out of memory registering Redis pool '%s'", pool);
  reg->redis = grown;
  bee__redis_pool_t *p = &reg->redis[reg->redis_count++];
  memset(p, 0, sizeof *p);
  p->settings = *settings;
  snprintf(p->name, sizeof p->name, "%s", pool);
  bee_redis_settings_describe(&p->settings, p->address, sizeof p->address);
  return 0;
}

int bee_registry_add_redis(bee_registry_t *reg, const char *pool, const char *address, int db,
                           bee_error_t *err) {
  return bee_registry_add_redis_options(reg, pool, address, db, NULL, err);
}

int bee_registry_add_redis_options(bee_registry_t *reg, const char *pool, const char *address, int db,
                                   const bee_redis_options_t *opts, bee_error_t *err) {
  if (!reg) return bee__error(err, BEE_EINVAL, 0, "registry is NULL");
  bee_redis_settings_t s;
  memset(&s, 0, sizeof s);
  int rc = bee_redis_address_parse(address, db, &s, err);
  if (!rc) rc = bee_redis_options_apply(&s, opts, err);
  return add_redis(reg, pool, &s, rc, 0, err);
}

int bee_registry_add_redis_sentinel(bee_registry_t *reg, const char *pool, const char *master, int db,
                                    const char *const *sentinels, size_t count, const bee_redis_options_t *opts,
                                    bee_error_t *err) {
  if (!reg) return bee__error(err, BEE_EINVAL, 0, "registry is NULL");
  bee_redis_settings_t s;
  memset(&s, 0, sizeof s);
  int rc = bee_redis_sentinel_parse(master, db, sentinels, count, &s, err);
  if (!rc) rc = bee_redis_options_apply(&s, opts, err);
  return add_redis(reg, pool, &s, rc, 1, err);
}

int bee_registry_add_entity(bee_registry_t *reg, bee_entity_def_t *def, bee_error_t *err) {
  if (!reg || !def) {
    bee_entity_def_free(def);
    return bee__error(err, BEE_EINVAL, 0, "registry or definition is NULL");
  }
  int rc = bee__entity_def_finish(def);
  if (!rc) {
    for (size_t i = 0; i < reg->entity_count; i++)
      if (!strcmp(reg->entities[i]->e.name, def->e.name)) {
        bee__error(&def->error, BEE_EDEFINITION, 0, "entity '%s' is registered twice", def->e.name);
        snprintf(def->error.entity, sizeof def->error.entity, "%s", def->e.name);
        rc = BEE_EDEFINITION;
      }
  }
  if (rc) {
    if (err) *err = def->error;
    rc = remember(reg, rc, &def->error);
    bee_entity_def_free(def);
    return rc;
  }
  bee_entity_def_t **grown = bee__realloc(reg->entities, (reg->entity_count + 1) * sizeof *grown);
  if (!grown) {
    bee_entity_def_free(def);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory registering an entity");
  }
  reg->entities = grown;
  reg->entities[reg->entity_count++] = def;
  return 0;
}

static int entity_error(bee_error_t *err, const bee__entity_t *e, const char *field, const char *fmt, ...)
    BEE__PRINTF(4, 5);
static int entity_error(bee_error_t *err, const bee__entity_t *e, const char *field, const char *fmt, ...) {
  if (!err) return BEE_EDEFINITION;
  va_list ap;
  va_start(ap, fmt);
  bee__verror(err, BEE_EDEFINITION, 0, fmt, ap);
  va_end(ap);
  snprintf(err->entity, sizeof err->entity, "%s", e->name);
  if (field) snprintf(err->field, sizeof err->field, "%s", field);
  return BEE_EDEFINITION;
}

static const bee__mysql_pool_t *find_mysql(const bee_registry_t *reg, const char *name) {
  for (size_t i = 0; i < reg->mysql_count; i++)
    if (!strcmp(reg->mysql[i].name, name)) return &reg->mysql[i];
  return NULL;
}

static const bee__redis_pool_t *find_redis(const bee_registry_t *reg, const char *name) {
  for (size_t i = 0; i < reg->redis_count; i++)
    if (!strcmp(reg->redis[i].name, name)) return &reg->redis[i];
  return NULL;
}

/* Checks across entities and pools (no I/O); resolves refs and local cache sizes in e. */
static int check_entities(const bee_registry_t *reg, bee__entity_t *entities, bee_error_t *err) {
  for (size_t i = 0; i < reg->local_cache_count; i++)
    if (!find_mysql(reg, reg->local_caches[i].pool))
      return bee__error(err, BEE_EPOOL, 0, "local_cache is set for unknown MySQL pool '%s'", reg->local_caches[i].pool);
  for (size_t i = 0; i < reg->entity_count; i++) {
    bee__entity_t *e = &entities[i];
    if (!find_mysql(reg, e->mysql_pool))
      return entity_error(err, e, NULL, "unknown MySQL pool '%s' (option 'mysql')", e->mysql_pool);
    if (e->redis_pool[0] && !find_redis(reg, e->redis_pool))
      return entity_error(err, e, NULL, "unknown Redis pool '%s' (option 'redis_cache')", e->redis_pool);
    if (reg->entities[i]->local_cache_default) {
      e->local_cache = 10000;
      for (size_t j = 0; j < reg->local_cache_count; j++)
        if (!strcmp(reg->local_caches[j].pool, e->mysql_pool)) e->local_cache = reg->local_caches[j].capacity;
    }
    for (size_t j = 0; j < i; j++)
      if (!strcmp(entities[j].table, e->table) && !strcmp(entities[j].mysql_pool, e->mysql_pool))
        return entity_error(err, e, NULL, "table '%s' of pool '%s' is used by entities '%s' and '%s'", e->table,
                            e->mysql_pool, entities[j].name, e->name);
    for (size_t k = 0; k < e->field_count; k++) {
      bee__field_t *f = &e->fields[k];
      if (f->type != BEE_FIELD_REF) continue;
      f->ref_index = -1;
      for (size_t j = 0; j < reg->entity_count; j++)
        if (!strcmp(entities[j].name, f->ref_entity)) f->ref_index = (int)j;
      if (f->ref_index < 0) return entity_error(err, e, f->name, "ref to unknown entity '%s'", f->ref_entity);
    }
  }
  return 0;
}

void bee_engine_free(bee_engine_t *engine) {
  if (!engine) return;
  bee__engine_orm_free(engine);
  bee__redis_watcher_stop(engine->watcher);
  if (engine->idle_mysql) {
    for (size_t i = 0; i < engine->mysql_count; i++)
      for (size_t j = 0; j < engine->idle_mysql[i].count; j++) mysql_close(engine->idle_mysql[i].conns[j]);
    for (size_t i = 0; i < engine->redis_count; i++)
      for (size_t j = 0; j < engine->idle_redis[i].count; j++) bee__redis_free(engine->idle_redis[i].conns[j]);
    bee__free(engine->idle_mysql);
    bee__free(engine->idle_redis);
    pthread_mutex_destroy(&engine->idle_lock);
  }
  for (size_t i = 0; i < engine->entity_count; i++) bee__entity_clear(&engine->entities[i]);
  bee__free(engine->entities);
  bee__free(engine->mysql);
  for (size_t i = 0; engine->redis && i < engine->redis_count; i++) bee__redis_pool_close(&engine->redis[i]);
  bee__free(engine->redis);
  bee__free(engine->pools);
  bee__free(engine);
}

/* "redis_version:7.0.15" out of INFO server. */
static void redis_version(bee__rconn_t *c, char *out, size_t size) {
  bee__reply_t *r = bee__redis_command(c, "INFO server");
  snprintf(out, size, "unknown");
  if (r && r->type == BEE__REPLY_STRING) {
    const char *v = strstr(r->str, "redis_version:");
    if (v) {
      v += strlen("redis_version:");
      size_t n = strcspn(v, "\r\n");
      snprintf(out, size, "%.*s", (int)n, v);
    }
  }
  if (r) bee__reply_free(r);
}

int bee_registry_validate(bee_registry_t *reg, bee_engine_t **out, bee_error_t *err) {
  if (!reg || !out) return bee__error(err, BEE_EINVAL, 0, "registry or out is NULL");
  *out = NULL;
  if (reg->failed) {
    if (err) *err = reg->first_error;
    return reg->first_error.code;
  }
  bee_engine_t *e = bee__calloc(1, sizeof *e);
  size_t total = reg->mysql_count + reg->redis_count;
  if (e) {
    e->mysql = bee__calloc(reg->mysql_count, sizeof *e->mysql);
    e->redis = bee__calloc(reg->redis_count, sizeof *e->redis);
    e->pools = bee__calloc(total, sizeof *e->pools);
  }
  if (e) {
    e->inval_redis = -1;
    e->idle_mysql = bee__calloc(reg->mysql_count, sizeof *e->idle_mysql);
    e->idle_redis = bee__calloc(reg->redis_count, sizeof *e->idle_redis);
    if (e->idle_mysql && e->idle_redis) pthread_mutex_init(&e->idle_lock, NULL);
    else {
      bee__free(e->idle_mysql);
      bee__free(e->idle_redis);
      e->idle_mysql = e->idle_redis = NULL;
    }
  }
  if (!e || !e->mysql || !e->redis || !e->pools || !e->idle_mysql) {
    bee_engine_free(e);
    return bee__error(err, BEE_ENOMEM, 0, "out of memory creating the engine");
  }
  if (reg->entity_count) {
    e->entities = bee__calloc(reg->entity_count, sizeof *e->entities);
    if (!e->entities) {
      bee_engine_free(e);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory creating the engine");
    }
    for (size_t i = 0; i < reg->entity_count; i++) {
      if (bee__entity_copy(&e->entities[i], &reg->entities[i]->e)) {
        bee_engine_free(e);
        return bee__error(err, BEE_ENOMEM, 0, "out of memory creating the engine");
      }
      e->entity_count = i + 1;
    }
    int rc = check_entities(reg, e->entities, err);
    if (rc) {
      bee_engine_free(e);
      return rc;
    }
  } else if (reg->local_cache_count) {
    int rc = check_entities(reg, NULL, err);
    if (rc) {
      bee_engine_free(e);
      return rc;
    }
  }
  if (reg->mysql_count) memcpy(e->mysql, reg->mysql, reg->mysql_count * sizeof *e->mysql);
  if (reg->redis_count) memcpy(e->redis, reg->redis, reg->redis_count * sizeof *e->redis);
  e->mysql_count = reg->mysql_count;
  e->redis_count = reg->redis_count;
  for (size_t i = 0; i < e->redis_count; i++)
    if (bee__redis_pool_open(&e->redis[i]) != 0) {
      bee_engine_free(e);
      return bee__error(err, BEE_ENOMEM, 0, "out of memory creating the engine");
    }

  for (size_t i = 0; i < e->mysql_count; i++) {
    MYSQL *conn = NULL;
    int rc = bee__mysql_connect(&e->mysql[i], &conn, err);
    if (rc) {
      bee_engine_free(e);
      return rc;
    }
    bee__engine_pool_t *p = &e->pools[i];
    snprintf(p->name, sizeof p->name, "%s", e->mysql[i].name);
    snprintf(p->address, sizeof p->address, "%s", e->mysql[i].address);
    snprintf(p->version, sizeof p->version, "%s", mysql_get_server_info(conn));
    p->kind = BEE_POOL_MYSQL;
    bee__engine_mysql_release(e, &e->mysql[i], conn, 0); /* the first idle connection */
  }
  for (size_t i = 0; i < e->redis_count; i++) {
    bee__rconn_t *c = NULL;
    int rc = bee__redis_connect(&e->redis[i], &c, err);
    if (rc) {
      bee_engine_free(e);
      return rc;
    }
    bee__engine_pool_t *p = &e->pools[e->mysql_count + i];
    snprintf(p->name, sizeof p->name, "%s", e->redis[i].name);
    snprintf(p->address, sizeof p->address, "%s", e->redis[i].address);
    redis_version(c, p->version, sizeof p->version);
    p->kind = BEE_POOL_REDIS;
    bee__engine_redis_release(e, &e->redis[i], c, 0);
  }
  e->watcher = bee__redis_watcher_start(e->redis, e->redis_count);
  int rc = bee__engine_orm_init(e, err);
  if (rc) {
    bee_engine_free(e);
    return rc;
  }
  *out = e;
  return 0;
}

size_t bee_engine_pool_count(const bee_engine_t *engine) {
  return engine ? engine->mysql_count + engine->redis_count : 0;
}

int bee_engine_pool_info(const bee_engine_t *engine, size_t index, bee_pool_info_t *out) {
  if (!engine || !out || index >= bee_engine_pool_count(engine)) return BEE_EINVAL;
  const bee__engine_pool_t *p = &engine->pools[index];
  out->name = p->name;
  out->kind = p->kind;
  out->address = p->address;
  out->server_version = p->version;
  out->master[0] = '\0';
  if (index >= engine->mysql_count) bee__redis_master(&engine->redis[index - engine->mysql_count], out->master,
                                                      sizeof out->master);
  return 0;
}

const bee_entity_t *bee_engine_entity(const bee_engine_t *engine, const char *name) {
  if (!engine || !name) return NULL;
  for (size_t i = 0; i < engine->entity_count; i++)
    if (!strcmp(engine->entities[i].name, name)) return &engine->entities[i];
  return NULL;
}

size_t bee_engine_entity_count(const bee_engine_t *engine) { return engine ? engine->entity_count : 0; }

const bee_entity_t *bee_engine_entity_at(const bee_engine_t *engine, size_t index) {
  return engine && index < engine->entity_count ? &engine->entities[index] : NULL;
}

const bee__mysql_pool_t *bee__engine_mysql(const bee_engine_t *engine, const char *name) {
  for (size_t i = 0; i < engine->mysql_count; i++)
    if (!strcmp(engine->mysql[i].name, name)) return &engine->mysql[i];
  return NULL;
}

/* Takes an idle connection of pool i from stacks, or NULL. */
static void *idle_take(bee_engine_t *engine, bee__idle_t *stacks, size_t i) {
  void *conn = NULL;
  pthread_mutex_lock(&engine->idle_lock);
  if (stacks[i].count) conn = stacks[i].conns[--stacks[i].count];
  pthread_mutex_unlock(&engine->idle_lock);
  return conn;
}

/* Keeps conn as idle for pool i; returns 0, or -1 when the stack is full (caller closes). */
static int idle_put(bee_engine_t *engine, bee__idle_t *stacks, size_t i, void *conn) {
  int rc = -1;
  pthread_mutex_lock(&engine->idle_lock);
  if (stacks[i].count < BEE__IDLE_MAX) {
    stacks[i].conns[stacks[i].count++] = conn;
    rc = 0;
  }
  pthread_mutex_unlock(&engine->idle_lock);
  return rc;
}

/*
 * 1 when an idle connection's server has closed it (restart, wait_timeout, KILL) or
 * sent anything unasked: an idle socket has nothing to read. Checked without a round
 * trip, so the first statement after a server restart does not fail on a dead socket.
 */
static int idle_dead(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return fd < 0 || poll(&p, 1, 0) != 0;
}

int bee__engine_mysql_acquire(bee_engine_t *engine, const bee__mysql_pool_t *pool, MYSQL **out, bee_error_t *err) {
  MYSQL *conn;
  while ((conn = idle_take(engine, engine->idle_mysql, (size_t)(pool - engine->mysql)))) {
    if (!idle_dead((int)mysql_get_socket(conn))) {
      *out = conn;
      return 0;
    }
    mysql_close(conn);
  }
  return bee__mysql_connect(pool, out, err);
}

void bee__engine_mysql_release(bee_engine_t *engine, const bee__mysql_pool_t *pool, MYSQL *conn, int broken) {
  if (!conn) return;
  if (broken || idle_put(engine, engine->idle_mysql, (size_t)(pool - engine->mysql), conn)) mysql_close(conn);
}

int bee__engine_redis_acquire(bee_engine_t *engine, const bee__redis_pool_t *pool, bee__rconn_t **out,
                              bee_error_t *err) {
  bee__rconn_t *conn;
  while ((conn = idle_take(engine, engine->idle_redis, (size_t)(pool - engine->redis)))) {
    /* Behind Sentinel, a connection to a former master is dropped. */
    if (!idle_dead(bee__redis_fd(conn)) && bee__redis_current(pool, conn)) {
      *out = conn;
      return 0;
    }
    bee__redis_free(conn);
  }
  return bee__redis_connect(pool, out, err);
}

void bee__engine_redis_release(bee_engine_t *engine, const bee__redis_pool_t *pool, bee__rconn_t *conn, int broken) {
  if (!conn) return;
  if (broken || bee__redis_failed(conn) || idle_put(engine, engine->idle_redis, (size_t)(pool - engine->redis), conn)) bee__redis_free(conn);
}

int bee__engine_redis_index(const bee_engine_t *engine, const char *name) {
  for (size_t i = 0; i < engine->redis_count; i++)
    if (!strcmp(engine->redis[i].name, name)) return (int)i;
  return -1;
}
