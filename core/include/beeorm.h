/*
 * beeorm.h: the public C API of beeorm.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 * - Functions that can fail return int: 0 on success or a negative BEE_E* code.
 * - A function that takes a `bee_error_t *err` fills it on failure (err may be NULL).
 *   The message is one line, bounded, and never contains a password.
 * - Destructors accept NULL.
 * - Strings passed in are copied; the caller keeps ownership of its buffers.
 * - On BEE_ENOMEM nothing was changed: inputs and handles are as they were.
 * - Threads: a registry and a context belong to one thread at a time; an engine is
 *   shared by all threads (its pools, local caches and subscriber are thread-safe).
 *   bee_engine_consume runs its workers in threads of its own.
 * - Ownership: a function returning a handle (registry, engine, context, alters)
 *   transfers it to the caller, who frees it with the matching *_free; pointers into
 *   an engine (entities, names) live until bee_engine_free; pointers handed to
 *   callbacks live during the call only.
 */
#ifndef BEEORM_H
#define BEEORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BEE_VERSION_MAJOR 0
#define BEE_VERSION_MINOR 1
#define BEE_VERSION_PATCH 0
#define BEE_VERSION_STRING "0.1.0"

/*
 * The version of the library linked in ("0.1.0"), to compare with BEE_VERSION_STRING
 * of the header a program was compiled with. Static string.
 */
const char *bee_version(void);

/*
 * Error codes: XX(name, value, short code, description).
 * The short code is what Lua sees as err.code for errors that are not MySQL errors
 * (a MySQL error shows its errno instead).
 */
#define BEE_ERRNO_MAP(XX)                                                   \
  XX(ENOMEM, -1, "nomem", "out of memory")                                  \
  XX(EINVAL, -2, "invalid", "invalid argument")                             \
  XX(EDSN, -3, "dsn", "bad connection string")                              \
  XX(EPOOL, -4, "pool", "bad pool")                                         \
  XX(EMYSQL, -5, "mysql", "MySQL error")                                    \
  XX(EREDIS, -6, "redis", "Redis error")                                    \
  XX(ETIMEOUT, -7, "timeout", "timed out")                                  \
  XX(EDEFINITION, -8, "definition", "bad entity definition")                \
  XX(EVALIDATION, -9, "validation", "invalid value")                        \
  XX(ECONFIG, -10, "config", "bad configuration")                           \
  XX(ECLOSED, -11, "closed", "handle is closed")                            \
  XX(ENOTFOUND, -12, "not_found", "not found")                              \
  XX(EMALFORMED, -13, "malformed", "malformed queue entry or record")         \
  XX(ESTALE, -14, "stale", "a newer change was applied since")                \
  XX(EDURABILITY, -15, "durability", "queued, but fewer replicas than asked acknowledged it")

typedef enum {
  BEE_OK = 0,
#define BEE__ERRNO_ENUM(name, value, code, text) BEE_##name = value,
  BEE_ERRNO_MAP(BEE__ERRNO_ENUM)
#undef BEE__ERRNO_ENUM
} bee_errno_t;

/* "BEE_EDSN" for BEE_EDSN; "BEE_UNKNOWN" for a value not in the map. Static strings. */
const char *bee_err_name(int code);
/* The short code ("dsn", "redis", ...); "unknown" for a value not in the map. */
const char *bee_err_code(int code);
/* The description ("bad connection string", ...). Static strings. */
const char *bee_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Error object                                                             */

#define BEE_ERROR_MESSAGE_MAX 512
#define BEE_NAME_MAX 72

/*
 * Detail of a failed operation. Plain data: copy it freely, nothing to free.
 * `server_code` is the MySQL errno (server or client side, e.g. 1045 or 2003) when
 * code == BEE_EMYSQL, and 0 otherwise. `temporary` is 1 when the same operation may
 * succeed later unchanged (server down, timeout, deadlock), following docs/guarantees.md G4/G5.
 */
typedef struct bee_error_s {
  int code;
  int server_code;
  int temporary;
  char pool[BEE_NAME_MAX];
  char entity[BEE_NAME_MAX];
  char field[BEE_NAME_MAX];
  char message[BEE_ERROR_MESSAGE_MAX];
} bee_error_t;

void bee_error_clear(bee_error_t *err);

/*
 * Writes one readable line describing err into buf (always NUL-terminated when
 * size > 0) and returns the length it needed, like snprintf.
 */
size_t bee_error_format(const bee_error_t *err, char *buf, size_t size);

/*
 * The default classification of a MySQL errno (docs/guarantees.md G4): 1 when temporary
 * (lost connection, too many connections, access denied, lock wait timeout,
 * deadlock, disk full, 2002/2003/2006/2013 ...), 0 otherwise.
 */
int bee_mysql_errno_is_temporary(unsigned int mysql_errno);

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */

/*
 * Routes every allocation of the core through these functions. Call before any
 * other beeorm function; passing NULLs restores malloc/realloc/free.
 */
void bee_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                       void (*free_fn)(void *));

/*
 * Releases the client libraries' global state (mysql_library_end). Call once at
 * process exit, after every engine was freed. Optional: it only quiets leak checkers.
 */
void bee_library_end(void);

/* ------------------------------------------------------------------------ */
/* Connection strings (pure: no I/O)                                        */

#define BEE_DSN_FIELD_MAX 256

/*
 * A parsed MySQL connection string. Accepted forms:
 *   user[:password]@tcp(host[:port])/database[?param=value&...]
 *   user[:password]@unix(/path/to/socket)/database[?...]
 *   mysql://user[:password]@host[:port]/database[?param=value&...]
 *   mysql://user[:password]@/database?socket=/path/to/socket
 * Parameters: timeout (connect), readTimeout, writeTimeout as Go durations
 * ("5s", "500ms", "1m"), charset (default utf8mb4), and socket (URI form only).
 * In the URI form user and password are percent-decoded.
 */
typedef struct bee_mysql_settings_s {
  char user[BEE_DSN_FIELD_MAX];
  char password[BEE_DSN_FIELD_MAX];
  char host[BEE_DSN_FIELD_MAX];   /* "" when socket is used */
  char socket[BEE_DSN_FIELD_MAX]; /* "" when TCP is used */
  char database[BEE_DSN_FIELD_MAX];
  char charset[BEE_NAME_MAX];
  unsigned int port; /* 3306 unless given; 0 with a socket */
  unsigned int connect_timeout_ms;
  unsigned int read_timeout_ms;
  unsigned int write_timeout_ms;
} bee_mysql_settings_t;

/*
 * Parses dsn into *out. Returns 0, or BEE_EDSN with err->message naming what is wrong
 * (the password is never quoted). *out is fully written on success only.
 */
int bee_mysql_dsn_parse(const char *dsn, bee_mysql_settings_t *out, bee_error_t *err);

/*
 * A parsed Redis address. Accepted forms:
 *   host:port                    (db from the db argument, default 0)
 *   host:port:db                 (BeeORM's YAML form)
 *   redis://[[user]:password@]host[:port][/db][?params]
 *   /path/to/redis.sock          (unix socket; also unix:///path?db=N[&params])
 * params (URI forms): connect_timeout_ms (default 5000) and timeout_ms (every command's
 * reply, default 30000), each 1 to 60000; replicas (0 to 100) and wait_timeout_ms (1 to
 * 60000, default 1000, below timeout_ms): flush_async returns only once that many
 * replicas acknowledged its entry (Redis WAIT), else fails with BEE_EDURABILITY.
 *
 * A pool behind Redis Sentinel (bee_redis_sentinel_parse) has master_name and the
 * sentinels set, and no host: the master's address is asked of the sentinels.
 */
#define BEE_REDIS_SENTINELS_MAX 16
#define BEE_REDIS_REPLICAS_MAX 100
#define BEE_REDIS_WAIT_TIMEOUT_MS 1000

typedef struct bee_redis_node_s {
  char host[BEE_DSN_FIELD_MAX];
  unsigned int port;
} bee_redis_node_t;

typedef struct bee_redis_settings_s {
  char host[BEE_DSN_FIELD_MAX];   /* "" when socket is used, or behind Sentinel */
  char socket[BEE_DSN_FIELD_MAX]; /* "" when TCP is used */
  char user[BEE_DSN_FIELD_MAX];   /* ACL user, "" for the default user */
  char password[BEE_DSN_FIELD_MAX];
  unsigned int port; /* 6379 unless given */
  int db;
  unsigned int connect_timeout_ms; /* BEE_REDIS_CONNECT_TIMEOUT_MS unless given */
  unsigned int timeout_ms;         /* BEE_REDIS_TIMEOUT_MS unless given */
  int replicas;                    /* replicas flush_async waits for (0: none) */
  unsigned int wait_timeout_ms;    /* how long it waits for them (BEE_REDIS_WAIT_TIMEOUT_MS unless given) */
  /* Sentinel: the monitored master's name ("" for a single server) and the sentinels. */
  char master_name[BEE_NAME_MAX];
  char sentinel_password[BEE_DSN_FIELD_MAX]; /* AUTH to the sentinels, "" for none */
  size_t sentinel_count;
  bee_redis_node_t sentinels[BEE_REDIS_SENTINELS_MAX];
} bee_redis_settings_t;

#define BEE_REDIS_CONNECT_TIMEOUT_MS 5000
#define BEE_REDIS_TIMEOUT_MS 30000
#define BEE_REDIS_TIMEOUT_MAX_MS 60000

/*
 * Parses address into *out. db < 0 means "take it from the address, else 0"; a db
 * given both ways must agree. Returns 0 or BEE_EDSN.
 */
int bee_redis_address_parse(const char *address, int db, bee_redis_settings_t *out,
                            bee_error_t *err);

/*
 * A pool behind Redis Sentinel. master is BeeORM's YAML key: "name[:db][?params]" with
 * params password, user, sentinel_password and those of redis:// addresses; sentinels
 * are "host:port" strings (port 26379 unless given), 1 to BEE_REDIS_SENTINELS_MAX of
 * them. db < 0 means "from master, else 0". Returns 0 or BEE_EDSN.
 */
int bee_redis_sentinel_parse(const char *master, int db, const char *const *sentinels, size_t count,
                             bee_redis_settings_t *out, bee_error_t *err);

/*
 * Options of a Redis pool given apart from its address (Lua's options table, YAML pool
 * keys). Zero or NULL leaves what the address says.
 */
typedef struct bee_redis_options_s {
  const char *user;
  const char *password;
  const char *sentinel_password;
  unsigned int timeout_ms;
  unsigned int connect_timeout_ms;
  int replicas; /* -1 or 0..BEE_REDIS_REPLICAS_MAX; 0 here means "as the address says" too */
  unsigned int wait_timeout_ms;
} bee_redis_options_t;

/* Applies opts to s and checks the result (ranges, wait_timeout_ms below timeout_ms). 0 or BEE_EDSN. */
int bee_redis_options_apply(bee_redis_settings_t *s, const bee_redis_options_t *opts, bee_error_t *err);

/* A printable form without the password, e.g. "mysql://app@127.0.0.1:3306/app". */
size_t bee_mysql_settings_describe(const bee_mysql_settings_t *s, char *buf, size_t size);
size_t bee_redis_settings_describe(const bee_redis_settings_t *s, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Registry and engine                                                      */

typedef struct bee_registry_s bee_registry_t;
typedef struct bee_engine_s bee_engine_t;

/* A new, empty registry, or NULL when out of memory. Free with bee_registry_free. */
bee_registry_t *bee_registry_new(void);
void bee_registry_free(bee_registry_t *reg);

/*
 * Valid pool names: 1..63 characters of [A-Za-z0-9_-] (BEE_NAME_MAX leaves room). The pool named "default" is
 * the one entities use unless they say otherwise.
 *
 * bee_registry_add_mysql / bee_registry_add_redis parse the connection string and
 * record the pool. On failure they return BEE_EDSN (bad string) or BEE_EPOOL (bad or
 * duplicate pool name) and record nothing; the registry remembers the first such
 * failure and bee_registry_validate reports it, so an ignored failure is never lost.
 * db < 0 for Redis means "from the address, else 0".
 */
int bee_registry_add_mysql(bee_registry_t *reg, const char *pool, const char *dsn,
                           bee_error_t *err);
int bee_registry_add_redis(bee_registry_t *reg, const char *pool, const char *address, int db,
                           bee_error_t *err);
/* The same with options (opts may be NULL). */
int bee_registry_add_redis_options(bee_registry_t *reg, const char *pool, const char *address, int db,
                                   const bee_redis_options_t *opts, bee_error_t *err);
/*
 * A Redis pool behind Sentinel: master as bee_redis_sentinel_parse (a plain name is
 * fine), sentinels "host:port". Every new connection asks the sentinels (the one that
 * answers first is asked first next time) for the master's address, checks with ROLE
 * that it is a master, and connections to a former master are dropped.
 */
int bee_registry_add_redis_sentinel(bee_registry_t *reg, const char *pool, const char *master, int db,
                                    const char *const *sentinels, size_t count, const bee_redis_options_t *opts,
                                    bee_error_t *err);

/*
 * Sets the default local cache capacity (entries per entity) for entities of MySQL
 * pool `pool` that say `local_cache = true`. capacity must be 1..1e9. The pool need not
 * be registered yet; bee_registry_validate checks it exists. Returns 0, BEE_EPOOL,
 * BEE_EINVAL or BEE_ENOMEM.
 */
int bee_registry_set_local_cache(bee_registry_t *reg, const char *pool, int64_t capacity,
                                 bee_error_t *err);

/*
 * Loads pools from a YAML file in BeeORM's layout: top-level keys are pool names;
 * each pool may have `mysql` (a DSN or URI, or a mapping with `uri`), `redis`
 * (host:port:db, a redis:// URI or a unix socket path), `local_cache` (capacity) and
 * `streams` (accepted for BeeORM compatibility: stream name -> list of group names).
 * The whole document is checked before anything is registered, so a malformed file
 * registers nothing. Returns 0, or BEE_ECONFIG (err names the file, line and key),
 * BEE_EDSN/BEE_EPOOL/BEE_EINVAL for a bad pool value (also with file and line),
 * BEE_ENOMEM. A failure is remembered for bee_registry_validate like any
 * registration failure. bee_registry_load_yaml_string does the same for text in
 * memory; name is used in messages in place of the file name.
 */
int bee_registry_load_yaml(bee_registry_t *reg, const char *path, bee_error_t *err);
int bee_registry_load_yaml_string(bee_registry_t *reg, const char *name, const char *text,
                                  size_t len, bee_error_t *err);

size_t bee_registry_mysql_count(const bee_registry_t *reg);
size_t bee_registry_redis_count(const bee_registry_t *reg);

/*
 * Checks the definitions and connects to every pool (MySQL: connect and ask the
 * server version; Redis: connect, AUTH, SELECT, PING). On success *out is a new
 * engine that owns copies of everything it needs (the registry may be freed or
 * changed afterwards). On failure returns the error of the first pool that failed
 * (BEE_EMYSQL with err->server_code, BEE_EREDIS, BEE_ETIMEOUT, or the remembered
 * registration error) and *out is NULL.
 */
int bee_registry_validate(bee_registry_t *reg, bee_engine_t **out, bee_error_t *err);

void bee_engine_free(bee_engine_t *engine);

typedef enum { BEE_POOL_MYSQL = 1, BEE_POOL_REDIS = 2 } bee_pool_kind_t;

/* Strings point into the engine and stay valid until bee_engine_free. */
typedef struct bee_pool_info_s {
  const char *name;
  bee_pool_kind_t kind;
  const char *address;        /* as bee_*_settings_describe, no password */
  const char *server_version; /* as reported by the server at validate time */
  /* Redis behind Sentinel: the master's "host:port" as last resolved (when this call was
     made), "" before any; "" for other pools. */
  char master[BEE_DSN_FIELD_MAX + 8];
} bee_pool_info_t;

/* Pools are listed MySQL first, each kind in registration order. */
size_t bee_engine_pool_count(const bee_engine_t *engine);
/* Returns 0, or BEE_EINVAL when index is out of range. */
int bee_engine_pool_info(const bee_engine_t *engine, size_t index, bee_pool_info_t *out);

/* ------------------------------------------------------------------------ */
/* Values                                                                   */

/*
 * A value handed to or returned by the core. Strings are not owned by the value:
 * whoever built it keeps the bytes alive for as long as the value is used.
 * Conventions by field type (README, Lua API):
 *   int, ref        BEE_VALUE_INT; an unsigned 64-bit value above INT64_MAX is a
 *                   BEE_VALUE_STRING of decimal digits. A BEE_VALUE_FLOAT with an
 *                   integral value is accepted on input.
 *   bool            BEE_VALUE_BOOL
 *   float           BEE_VALUE_FLOAT (BEE_VALUE_INT accepted on input)
 *   decimal         BEE_VALUE_STRING ("-12.50"); BEE_VALUE_INT accepted on input
 *   string, text, bytes, enum, date ("YYYY-MM-DD"), datetime ("YYYY-MM-DD hh:mm:ss")
 *                   BEE_VALUE_STRING
 *   set             BEE_VALUE_STRING of members joined by ',' ("" is the empty set)
 *   NULL            BEE_VALUE_NIL
 */
typedef enum {
  BEE_VALUE_NIL = 0,
  BEE_VALUE_INT,
  BEE_VALUE_FLOAT,
  BEE_VALUE_BOOL,
  BEE_VALUE_STRING
} bee_value_kind_t;

typedef struct bee_value_s {
  bee_value_kind_t kind;
  int64_t i;       /* BEE_VALUE_INT; BEE_VALUE_BOOL as 0/1 */
  double f;        /* BEE_VALUE_FLOAT */
  const char *str; /* BEE_VALUE_STRING: len bytes, not necessarily NUL-terminated */
  size_t len;
} bee_value_t;

/* ------------------------------------------------------------------------ */
/* Entity definitions                                                       */

typedef enum {
  BEE_FIELD_INT = 1,
  BEE_FIELD_BOOL,
  BEE_FIELD_FLOAT,
  BEE_FIELD_DECIMAL,
  BEE_FIELD_STRING,
  BEE_FIELD_TEXT,
  BEE_FIELD_BYTES,
  BEE_FIELD_DATE,
  BEE_FIELD_DATETIME,
  BEE_FIELD_ENUM,
  BEE_FIELD_SET,
  BEE_FIELD_REF
} bee_field_type_t;

/*
 * Building a definition. A definition collects options in any order; the first
 * problem is recorded in it (each call also returns it) and reported again by
 * bee_registry_add_entity, so a caller may feed everything and check once.
 * Errors are BEE_EDEFINITION with err->entity, err->field (when a field is concerned)
 * and a message naming the option or index; BEE_ENOMEM leaves the definition as it was.
 *
 * Entity options (bee_entity_def_option):
 *   table        string: table name (default: the entity name)
 *   mysql        string: MySQL pool (default "default")
 *   redis_cache  true (pool "default"), a Redis pool name, or false
 *   local_cache  true (the pool's default capacity, else 10000), a capacity 1..1e9, or false
 *   cache_all    boolean: keep the set of all ids (get_all)
 * Field types: int bool float decimal string text bytes date datetime enum set ref.
 * Field options (bee_entity_def_field_option):
 *   required (bool), unique (true, or the index name), and by type:
 *   int: bits (8/16/24/32/64, default 32), unsigned (bool); decimal: precision (1..65,
 *   default 10), scale (0..30, default 0, <= precision); string: length (1..16383
 *   characters, default 255); ref: entity (name); enum/set: members through
 *   bee_entity_def_field_value (required, distinct; set: at most 64, no ',').
 * Index options (bee_entity_def_index_option): cached (bool, non-unique indexes).
 * Names of entities, tables, fields and indexes: [A-Za-z_][A-Za-z0-9_]*, at most 64.
 */
typedef struct bee_entity_def_s bee_entity_def_t;

/* A new definition of entity `name` (checked later), or NULL when out of memory. */
bee_entity_def_t *bee_entity_def_new(const char *name);
/* Frees a definition not handed to bee_registry_add_entity. NULL is fine. */
void bee_entity_def_free(bee_entity_def_t *def);

int bee_entity_def_option(bee_entity_def_t *def, const char *key, const bee_value_t *value);
/* Adds a field; returns its number (0, 1, ...) or a negative error. */
int bee_entity_def_field(bee_entity_def_t *def, const char *name, const char *type);
int bee_entity_def_field_option(bee_entity_def_t *def, int field, const char *key,
                                const bee_value_t *value);
/* Appends an enum/set member. */
int bee_entity_def_field_value(bee_entity_def_t *def, int field, const char *member);
/* Adds an index; returns its number or a negative error. */
int bee_entity_def_index(bee_entity_def_t *def, const char *name, int unique);
int bee_entity_def_index_field(bee_entity_def_t *def, int index, const char *field);
int bee_entity_def_index_option(bee_entity_def_t *def, int index, const char *key,
                                const bee_value_t *value);

/*
 * Records a problem found outside the core (e.g. by a binding converting its own data
 * structures) as the definition's error, unless one is recorded already. field may be
 * NULL. Returns BEE_EDEFINITION.
 */
int bee_entity_def_fail(bee_entity_def_t *def, const char *field, const char *message);

/*
 * Checks the definition as a whole and adds it to the registry. The registry takes
 * def in every case (it is freed here on failure). Checks needing other entities or
 * pools (ref targets, pool names) run in bee_registry_validate. Returns 0,
 * BEE_EDEFINITION (also remembered for validate) or BEE_ENOMEM.
 */
int bee_registry_add_entity(bee_registry_t *reg, bee_entity_def_t *def, bee_error_t *err);
size_t bee_registry_entity_count(const bee_registry_t *reg);

/* ------------------------------------------------------------------------ */
/* Entities of an engine                                                    */

typedef struct bee__entity_s bee_entity_t;

/* The entity named name, or NULL. Valid until bee_engine_free. */
const bee_entity_t *bee_engine_entity(const bee_engine_t *engine, const char *name);
size_t bee_engine_entity_count(const bee_engine_t *engine);
const bee_entity_t *bee_engine_entity_at(const bee_engine_t *engine, size_t index);

typedef struct bee_field_info_s {
  const char *name;
  bee_field_type_t type;
  const char *type_name; /* "int", "decimal", ... */
  int required;
} bee_field_info_t;

const char *bee_entity_name(const bee_entity_t *entity);
const char *bee_entity_table(const bee_entity_t *entity);
size_t bee_entity_field_count(const bee_entity_t *entity);
/* The number of field name, or -1 when the entity has no such field. */
int bee_entity_field_index(const bee_entity_t *entity, const char *name);
/* Returns 0, or BEE_EINVAL when field is out of range. Strings live as long as the engine. */
int bee_entity_field_info(const bee_entity_t *entity, size_t field, bee_field_info_t *out);

/*
 * Validates a value for a field (docs/guarantees.md G7) and gives its canonical form; see the
 * value conventions above bee_value_t. buf must hold in->len + 80 bytes; out->str may
 * point into buf or into in->str. Returns 0 or BEE_EVALIDATION.
 */
int bee_entity_check_value(const bee_entity_t *entity, size_t field, const bee_value_t *in,
                           bee_value_t *out, char *buf, size_t bufsize, bee_error_t *err);

/* ------------------------------------------------------------------------ */
/* Schema                                                                   */

/*
 * One statement that brings a table to its definition. `safe` is 1 when it cannot
 * lose or change stored data (creating a table, adding a column or an index,
 * widening a type, any change to an empty table) and 0 otherwise (dropping a column,
 * narrowing or converting a type of a non-empty table, making a column NOT NULL ...).
 */
typedef struct bee_alter_s {
  char *sql;
  int safe;
  char pool[BEE_NAME_MAX];
  char table[BEE_NAME_MAX + 1];
} bee_alter_t;

/*
 * Compares every entity's table with the live database of its pool and lists the
 * statements to run, in order. *out is an array of *count alters (NULL when none);
 * free it with bee_alters_free. Tables that no entity defines are left alone.
 * Returns 0, BEE_EMYSQL, BEE_ENOMEM.
 */
int bee_engine_schema_alters(bee_engine_t *engine, bee_alter_t **out, size_t *count,
                             bee_error_t *err);
void bee_alters_free(bee_alter_t *alters, size_t count);

/*
 * Runs the safe alters (all of them when unsafe != 0), in order, stopping at the first
 * failure. *applied (may be NULL) counts the statements that ran. Returns 0,
 * BEE_EMYSQL, BEE_ENOMEM.
 */
int bee_engine_sync_schema(bee_engine_t *engine, int unsafe, size_t *applied, bee_error_t *err);

/* ------------------------------------------------------------------------ */
/* Plain SQL                                                                */

/*
 * Runs one statement on MySQL pool `pool` (NULL: "default"). Each `?` outside quotes,
 * backticks and comments is replaced by args[i] rendered as a literal and escaped by
 * the client library (docs/guarantees.md G10): NIL as NULL, INT and FLOAT as numbers, BOOL as
 * 1/0, STRING quoted (X'..' hex when it is not valid UTF-8). *affected (may be NULL)
 * receives the affected row count. Returns 0, BEE_EMYSQL, BEE_EINVAL (unknown pool,
 * placeholder count differs from nargs, non-finite float), BEE_ENOMEM.
 */
int bee_engine_sql_exec(bee_engine_t *engine, const char *pool, const char *sql, const bee_value_t *args,
                        size_t nargs, uint64_t *affected, bee_error_t *err);

/*
 * Called once per result row with the row's cells as text (NULL for SQL NULL) and
 * their lengths, and the column names. Pointers are valid during the call only.
 * Returning non-zero stops the query early (bee_engine_sql_query then returns 0).
 */
typedef int (*bee_sql_row_fn)(void *ud, size_t ncols, const char *const *names, const char *const *cells,
                              const size_t *lens);

/* Like bee_engine_sql_exec for a statement that returns rows; fn sees each row. */
int bee_engine_sql_query(bee_engine_t *engine, const char *pool, const char *sql, const bee_value_t *args,
                         size_t nargs, bee_sql_row_fn fn, void *ud, bee_error_t *err);

/* ------------------------------------------------------------------------ */
/* Contexts: tracked changes, flush, loaders                                */

/*
 * A unit of work (one per request, coroutine or thread; not thread-safe). It borrows
 * connections from the engine's pools as it needs them and gives them back when freed.
 * The engine must outlive its contexts.
 */
typedef struct bee_context_s bee_context_t;

/* A new context in *out (BEE_EINVAL for a NULL engine, BEE_ENOMEM). Free with bee_context_free. */
int bee_engine_context(bee_engine_t *engine, bee_context_t **out, bee_error_t *err);
/* Forgets tracked changes and returns the connections. NULL is fine. */
void bee_context_free(bee_context_t *ctx);

/*
 * A new id for entity (docs/guarantees.md G9): unique across processes, never reused, also after
 * Redis loses its data. Ids come from ranges reserved in MySQL (table _beeorm_ids)
 * and handed out through a Redis counter, so most calls do no I/O at all.
 */
int bee_context_new_id(bee_context_t *ctx, const bee_entity_t *entity, uint64_t *id, bee_error_t *err);

/*
 * Tracking changes for the next flush. Values are validated now (docs/guarantees.md G7) and copied;
 * on BEE_EVALIDATION nothing was tracked. insert takes every field; update writes only
 * the fields flagged in changed (one flag per field) and keeps the rest as MySQL has
 * them; delete needs only the id.
 */
int bee_context_insert(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, const bee_value_t *values,
                       bee_error_t *err);
int bee_context_update(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, const bee_value_t *values,
                       const unsigned char *changed, bee_error_t *err);
int bee_context_delete(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, bee_error_t *err);
/*
 * Tracks an atomic increment of an int or decimal field (docs/guarantees.md G8): `f = f + delta` in
 * MySQL by the next flush or flush_async, in order with the other tracked changes; the
 * row is not read first, so increments from many contexts and processes sum exactly, in
 * MySQL and in the caches. delta: an integer for int fields (of any sign: MySQL judges
 * the result against the column's range, a failure being a MySQL error like any other),
 * a decimal string or an integer with at most the field's scale for decimal fields.
 * NULL + delta stays NULL, as in MySQL. An increment right after another change of the
 * same row merges with it (into the value set, or into the sum of increments).
 * Returns 0, BEE_EINVAL (no such field, not an int or decimal field), BEE_EVALIDATION.
 */
int bee_context_increment(bee_context_t *ctx, const bee_entity_t *entity, uint64_t id, size_t field,
                          const bee_value_t *delta, bee_error_t *err);
/* The number of tracked changes waiting for a flush. */
size_t bee_context_pending(const bee_context_t *ctx);
/*
 * Forgets the tracked changes without writing them, and a flush_async whose outcome was
 * unknown: the next flush_async is a new flush even with the same changes.
 */
void bee_context_clear_flush(bee_context_t *ctx);
/*
 * Forgets the tracked changes only, keeping the memory of a flush_async whose outcome was
 * unknown (for a binding that tracks changes itself and feeds them again at every flush).
 */
void bee_context_drop_changes(bee_context_t *ctx);

/*
 * Writes the tracked changes (docs/guarantees.md G6): one transaction per MySQL pool, consecutive
 * inserts into a table as one multi-row INSERT, updates of the changed columns only
 * (changes that make a single statement in a single pool, such as new entities of one
 * entity, run as that one statement, atomic by itself, without BEGIN and COMMIT).
 * Statements of all pools run before any commits; on any failure every pool is rolled
 * back, no cache changed, the changes stay tracked, and the MySQL error is returned.
 * After commit the Redis and local caches are updated and other processes' local
 * caches invalidated (G8), then the tracked changes are cleared. A Redis failure after
 * the commit returns BEE_EREDIS with a message saying MySQL committed; the changes are
 * cleared since they are written.
 */
int bee_context_flush(bee_context_t *ctx, bee_error_t *err);

/*
 * Writes the tracked changes asynchronously (docs/guarantees.md G1): values were validated when
 * tracked (G7); the caches and the queued events (one stream entry per MySQL pool and
 * shard; 8 shards per pool, runs of 64 ids share one) go to Redis in one MULTI/EXEC on
 * the queue's Redis pool (the
 * pool named "default", else the first one). Returns 0 only after Redis acknowledged
 * it; on failure nothing changed and the changes stay tracked. Caches on other Redis
 * pools and local caches are updated afterwards; if that fails the events are queued
 * and BEE_EREDIS says so. A consumer applies the events to MySQL.
 * When the outcome is unknown (no reply in the pool's timeout_ms, or the connection was
 * lost after the MULTI was sent: docs/guarantees.md G11) it returns BEE_ETIMEOUT, temporary, and the
 * changes stay tracked; flushing the same changes again from this context (until
 * bee_context_clear_flush) sends them with the same token, and the consumer applies a
 * token once: queued twice, applied once.
 */
int bee_context_flush_async(bee_context_t *ctx, bee_error_t *err);

/* A row handed to a loader callback: values has one entry per field, valid during the call. */
typedef struct bee_row_s {
  const bee_entity_t *entity;
  uint64_t id;
  const bee_value_t *values;
} bee_row_t;

/*
 * Called once per result, in order; row is NULL where nothing was found. Non-zero stops
 * the loader, which then returns that value.
 *
 * Every loader reads through the local cache, then Redis, then MySQL, and fills the
 * caches it missed (README, Lua API, G8). Returns 0 (also when nothing was found), fn's stop
 * value, BEE_EINVAL (an entity of another engine, an unknown index or field, a wrong
 * number of values), BEE_EVALIDATION (a lookup value the field cannot hold),
 * BEE_EMYSQL, BEE_EREDIS, BEE_ENOMEM.
 */
typedef int (*bee_row_fn)(void *ud, size_t index, const bee_row_t *row);

/* Rows by id, in the order of ids (duplicates kept). One Redis round trip and one SQL query for the misses. */
int bee_context_get_by_ids(bee_context_t *ctx, const bee_entity_t *entity, const uint64_t *ids, size_t n,
                           bee_row_fn fn, void *ud, bee_error_t *err);
/* The row whose unique index has these values (one per index field); fn sees index 0 once. */
int bee_context_get_by_unique(bee_context_t *ctx, const bee_entity_t *entity, const char *index,
                              const bee_value_t *values, size_t n, bee_row_fn fn, void *ud, bee_error_t *err);
/* Rows whose ref field points at id, ordered by id (cached when the field says cached). */
int bee_context_get_by_reference(bee_context_t *ctx, const bee_entity_t *entity, const char *field, uint64_t id,
                                 bee_row_fn fn, void *ud, bee_error_t *err);
/*
 * Rows whose non-unique index has these values, ordered by id. Cached indexes (and
 * get_all with cache_all) show flush_async changes at once; others read MySQL.
 */
int bee_context_get_by_index(bee_context_t *ctx, const bee_entity_t *entity, const char *index,
                             const bee_value_t *values, size_t n, bee_row_fn fn, void *ud, bee_error_t *err);
/* Every row of the entity, ordered by id. */
int bee_context_get_all(bee_context_t *ctx, const bee_entity_t *entity, bee_row_fn fn, void *ud, bee_error_t *err);
/*
 * Rows matching `where` (a trusted SQL fragment after WHERE, may end with ORDER BY,
 * with ? placeholders for args), limit rows from offset (limit 0: no limit).
 */
int bee_context_search(bee_context_t *ctx, const bee_entity_t *entity, const char *where, const bee_value_t *args,
                       size_t nargs, size_t offset, size_t limit, bee_row_fn fn, void *ud, bee_error_t *err);

/*
 * Drops what the caches hold of an entity (docs/guarantees.md G8), for rows changed behind them
 * (bee_engine_sql_exec): with ids (n > 0), those rows in Redis and in the local caches of
 * every process, and the unique keys and id lists they were or are now in; with ids NULL,
 * everything cached for the entity. The next reads load from MySQL. Changes queued by
 * flush_async and not yet applied are not in MySQL: clear rows whose queues are drained.
 * Returns 0, BEE_EINVAL, BEE_EREDIS/BEE_ETIMEOUT, BEE_EMYSQL, BEE_ENOMEM.
 */
int bee_engine_clear_cache(bee_engine_t *engine, const bee_entity_t *entity, const uint64_t *ids, size_t n,
                           bee_error_t *err);

/* Local cache counters of an entity (zeros when it has no local cache). */
typedef struct bee_cache_stats_s {
  uint64_t hits, misses, evictions, inserts, stale_skips;
  size_t entries, capacity, bytes;
} bee_cache_stats_t;
void bee_entity_cache_stats(const bee_engine_t *engine, const bee_entity_t *entity, bee_cache_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Consuming queued events (docs/guarantees.md, the queue)                                      */

/*
 * A queued event that failed with a permanent MySQL error (docs/guarantees.md G5). Strings point
 * into memory owned by the caller of the callback and are valid during the call only.
 */
typedef struct bee_failed_event_s {
  const char *queue;     /* "<pool>:<shard>" */
  const char *stream_id; /* the stream entry's id, "<ms>-<seq>" */
  char kind;             /* 'I' insert, 'U' update, 'D' delete */
  const char *entity, *table;
  uint64_t id;
  const char *sql;       /* the failing statement, for people (values inline) */
  size_t ncols;          /* the event's columns and values (canonical) */
  const char *const *cols;
  const bee_value_t *values;
  const unsigned char *increments; /* per column: 1 when it is an increment (`col = col + value`) */
  int code;              /* MySQL errno */
  const char *message;
  int attempts;
  int64_t failed_at_ms;  /* Unix time in ms of the last failure */
  size_t events;         /* events in the entry (all applied or none, G3) */
  size_t event;          /* this event's place in the entry, 0-based */
  size_t failed_event;   /* the place of the event that failed; code, message, sql and attempts are its */
  const char *resolver_error; /* NULL, or why the resolver failed on this event (it was kept) */
  const char *raw;       /* a malformed entry or record (code BEE_EMALFORMED): its bytes; else NULL */
  size_t raw_len;
} bee_failed_event_t;

typedef enum {
  BEE_RESOLVE_KEEP = 0, /* move the entry to the queue's error list */
  BEE_RESOLVE_RETRY,    /* apply the entry again now (after fixing the cause or editing it) */
  BEE_RESOLVE_SKIP      /* drop the entry */
} bee_resolution_t;

/* Opaque handle for bee_failed_event_edit during a resolver call. */
typedef struct bee_edit_s bee_edit_t;

/*
 * Decides what happens to a permanently failing entry. It may change column values of
 * the failing event with bee_failed_event_edit before returning BEE_RESOLVE_RETRY.
 * A retry that fails again calls the resolver again, up to 3 attempts; then KEEP.
 */
typedef bee_resolution_t (*bee_resolver_fn)(void *ud, const bee_failed_event_t *ev, bee_edit_t *edit);

/* Sets column col of the failing event to v (copied). Returns 0, BEE_EINVAL (no such column), BEE_ENOMEM. */
int bee_failed_event_edit(bee_edit_t *edit, const char *col, const bee_value_t *v);

/*
 * Says the resolver itself failed on this event (message copied, folded to one line and
 * bounded): whatever the resolver returns, the entry is kept in the error list with this
 * message next to the MySQL error, and consumption goes on. Returns 0 or BEE_EINVAL.
 */
int bee_failed_event_resolver_failed(bee_edit_t *edit, const char *message);

typedef struct bee_consume_options_s {
  /* A zeroed struct asks for every default. */
  int block;              /* 0: drain what is queued, then return; 1: wait for events until stopped */
  int max_retries;        /* temporary errors, non-blocking mode: attempts before returning (0: 5) */
  int max_batch;          /* stream entries per transaction (0: 200) */
  int workers;            /* threads, each with its own connections and its own queues; 0: the default,
                             BEE_CONSUME_WORKERS but at most twice the CPUs this process may run on
                             (more writers than that only contend); never more than the queues */
  bee_resolver_fn resolver; /* NULL: every permanent failure is kept in the error list */
  void *resolver_ud;
} bee_consume_options_t;

#define BEE_CONSUME_WORKERS 11 /* as BeeORM */

typedef struct bee_consume_stats_s {
  uint64_t entries, events, batches; /* applied: stream entries, their events, transactions */
  uint64_t failed, skipped, retried;  /* resolver outcomes of permanently failing entries */
  uint64_t workers;                   /* the threads that ran */
  uint64_t duplicates;                /* entries not applied: their flush's token was applied already (G11) */
  uint64_t resolver_errors;           /* entries kept because the resolver failed on them */
} bee_consume_stats_t;

/*
 * Applies queued events to MySQL, queue by queue, exactly once (G2): each batch of
 * stream entries commits in one transaction together with the queue's applied mark in
 * _beeorm_applied, which also fences out a second consumer. Temporary errors (G4) are
 * retried with exponential backoff and jitter (50 ms doubling to 5 s); in non-blocking
 * mode the error is returned after max_retries attempts, nothing skipped. Permanent
 * errors (G5) are retried entry by entry so only the failing entry stops; the resolver
 * decides, and a kept entry goes to the error list with its cache keys invalidated.
 * Blocking mode waits on XREAD BLOCK and returns 0 after bee_engine_consume_stop,
 * finishing the batch in hand; blocking workers share the queues fairly with other
 * consumers (any process) through leases and heartbeats in Redis. The resolver is
 * called in the thread that called bee_engine_consume, one failure at a time. stats
 * (may be NULL) receives counters. Returns 0, BEE_EINVAL (NULL engine, workers < 0),
 * BEE_ECONFIG (no Redis pool), the temporary error given up on (non-blocking mode),
 * BEE_EMYSQL/BEE_EREDIS for a failure it cannot retry, BEE_ENOMEM.
 */
int bee_engine_consume(bee_engine_t *engine, const bee_consume_options_t *opts, bee_consume_stats_t *stats,
                       bee_error_t *err);
/*
 * Asks the running bee_engine_consume calls of this engine to stop; the request is
 * cleared when they return. A request made while none runs stops the next one as soon
 * as it starts (so a signal caught while a consumer is starting is never lost). Any
 * thread; async-signal-safe, so a SIGTERM handler may call it.
 */
void bee_engine_consume_stop(bee_engine_t *engine);

/*
 * Overrides the classification of a MySQL errno for consumers: temporary 1 or 0, or
 * -1 to restore the default (bee_mysql_errno_is_temporary). Process-wide.
 */
void bee_set_error_class(unsigned int mysql_errno, int temporary);
int bee_error_is_temporary(unsigned int mysql_errno);

/* Queues: one per (MySQL pool, shard); index 0 .. count-1. */
size_t bee_engine_queue_count(const bee_engine_t *engine);
/* "<pool>:<shard>" of queue i into buf. */
size_t bee_engine_queue_name(const bee_engine_t *engine, size_t i, char *buf, size_t size);

typedef struct bee_queue_stats_s {
  uint64_t len;                /* stream entries waiting */
  double oldest_event_seconds; /* age of the oldest waiting entry (0 when none) */
  double lag;                  /* seconds between the oldest and the newest waiting entry */
  uint64_t pending;            /* entries a consumer is applying right now */
  uint64_t errors;             /* entries in the error list */
  uint64_t applied_total;      /* events applied from this queue, by every consumer process ever */
  uint64_t failed_total;       /* entries parked after a permanent error, likewise */
} bee_queue_stats_t;

/* Statistics of queue i (one Redis round trip). Returns 0, BEE_EINVAL (i out of range), BEE_EREDIS. */
int bee_engine_queue_stats(bee_engine_t *engine, size_t i, bee_queue_stats_t *out, bee_error_t *err);

/* A live blocking consumer worker of any process, as its last heartbeat (every second) said. */
typedef struct bee_consumer_worker_s {
  const char *token;  /* the worker's lease token: "<pid>-<random>-<n>" */
  const char *host;   /* its machine's host name */
  int pid;
  const char *queues; /* the queues it held, comma-separated ("" none) */
  double heartbeat_age_seconds;
} bee_consumer_worker_t;

typedef struct bee_consumers_s {
  size_t workers;             /* live blocking workers (heartbeat within 3 s) */
  double applied_per_second;  /* events applied by every process, averaged over the last 60 s */
  uint64_t applied_total;     /* over every queue (bee_queue_stats_t.applied_total summed) */
  uint64_t failed_total;
} bee_consumers_t;

/*
 * What the consumers of every process are doing (kept in the queues' Redis): fn (may be
 * NULL) is called for each live worker, oldest heartbeat first. Returns 0, BEE_EREDIS,
 * BEE_ENOMEM.
 */
int bee_engine_consumers(bee_engine_t *engine, bee_consumers_t *out,
                         void (*fn)(void *ud, const bee_consumer_worker_t *w), void *ud, bee_error_t *err);

#define BEE_RATES_MAX_SECONDS 300
/*
 * Events applied and entries parked by every consumer process in each of the last
 * `seconds` whole seconds (1..BEE_RATES_MAX_SECONDS), oldest first, into applied[] and
 * failed[] (each `seconds` long). Returns 0, BEE_EINVAL, BEE_EREDIS.
 */
int bee_engine_consumer_rates(bee_engine_t *engine, size_t seconds, uint64_t *applied, uint64_t *failed,
                              bee_error_t *err);
/*
 * Calls fn for up to max entries of the error list, oldest first; fn returning non-zero
 * stops. The record's strings are valid during the call. Returns 0, BEE_EINVAL,
 * BEE_EREDIS, BEE_ENOMEM.
 */
int bee_engine_queue_errors(bee_engine_t *engine, size_t i, size_t max,
                            int (*fn)(void *ud, const bee_failed_event_t *ev), void *ud, bee_error_t *err);
/*
 * The same, once per event of each errored entry (an entry of three rows: three calls,
 * `event` 0, 1, 2; the failing one has event == failed_event). The statement (sql) is
 * known for the failing event only ("" for the others). max counts entries.
 */
int bee_engine_queue_error_events(bee_engine_t *engine, size_t i, size_t max,
                                  int (*fn)(void *ud, const bee_failed_event_t *ev), void *ud, bee_error_t *err);
/*
 * Puts an errored entry back at the end of its queue (it applies after what is queued
 * now; docs/guarantees.md G13). Refused with BEE_ESTALE when a newer change of one of its rows was
 * applied since it was parked (retrying would undo it), unless force; with BEE_EINVAL
 * when the entry is still in its stream (its parking did not finish: the consumer
 * handles it again); with BEE_EMALFORMED for a malformed record. Returns 0,
 * BEE_ENOTFOUND (no such entry in the error list), those, BEE_EREDIS.
 */
int bee_engine_queue_retry(bee_engine_t *engine, size_t i, const char *stream_id, int force, bee_error_t *err);
/*
 * Drops the failing event of an errored entry: its other events go back to the end of
 * the queue, to apply together (a malformed record, or an entry of one event, is dropped
 * whole). Returns 0, BEE_ENOTFOUND, BEE_EINVAL, BEE_EREDIS.
 */
int bee_engine_queue_skip(bee_engine_t *engine, size_t i, const char *stream_id, bee_error_t *err);
/* Drops event `event` (0-based) of an errored entry instead of the failing one; BEE_EINVAL when it has no such event. */
int bee_engine_queue_skip_event(bee_engine_t *engine, size_t i, const char *stream_id, size_t event,
                                bee_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* BEEORM_H */
