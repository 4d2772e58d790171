/*
 * beeorm_core.c: the Lua 5.4 binding (module "beeorm.core"). A client of beeorm.h only.
 *
 * Rules (STYLE.md): argument errors raise; failed operations return nil, err where err
 * is a table { code, message, temporary, pool, entity, field } with a shared metatable
 * whose __tostring gives one line. No malloc'd memory is held across a call that can
 * raise. Userdata are born closed, have one idempotent __gc/__close and two checkers.
 */
#include <stdatomic.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "beeorm.h"

#define BEE_REGISTRY_MT "beeorm.Registry"
#define BEE_ENGINE_MT "beeorm.Engine"
#define BEE_ERROR_MT "beeorm.Error"
#define BEE_SENTINEL_MT "beeorm.LibrarySentinel"

#if defined(__GNUC__)
#define BEE_EXPORT __attribute__((visibility("default")))
#else
#define BEE_EXPORT
#endif

typedef struct {
  bee_registry_t *reg;
} lbee_registry_t;

typedef struct {
  bee_engine_t *engine;
} lbee_engine_t;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* Pushes the error table for err. */
static void push_error(lua_State *L, const bee_error_t *err) {
  lua_createtable(L, 0, 7);
  if (err->code == BEE_EMYSQL && err->server_code)
    lua_pushinteger(L, err->server_code);
  else
    lua_pushstring(L, bee_err_code(err->code));
  lua_setfield(L, -2, "code");
  lua_pushstring(L, err->message);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, err->temporary);
  lua_setfield(L, -2, "temporary");
  if (err->pool[0]) {
    lua_pushstring(L, err->pool);
    lua_setfield(L, -2, "pool");
  }
  if (err->entity[0]) {
    lua_pushstring(L, err->entity);
    lua_setfield(L, -2, "entity");
  }
  if (err->field[0]) {
    lua_pushstring(L, err->field);
    lua_setfield(L, -2, "field");
  }
  luaL_setmetatable(L, BEE_ERROR_MT);
}

/* A string argument that must really be a string (numbers are not coerced). */
static const char *check_text(lua_State *L, int arg) {
  luaL_checktype(L, arg, LUA_TSTRING);
  return lua_tostring(L, arg);
}

static const char *opt_text(lua_State *L, int arg, const char *def) {
  return lua_isnoneornil(L, arg) ? def : check_text(L, arg);
}

static int fail(lua_State *L, const bee_error_t *err) {
  lua_pushnil(L);
  push_error(L, err);
  return 2;
}

/* Rebuilds a bee_error_t from an error table so tostring uses the core's format. */
static int error_tostring(lua_State *L) {
  bee_error_t err;
  bee_error_clear(&err);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "code");
  if (lua_isinteger(L, -1)) {
    err.code = BEE_EMYSQL;
    err.server_code = (int)lua_tointeger(L, -1);
  } else {
    const char *code = lua_tostring(L, -1);
    err.code = BEE_EINVAL;
#define LBEE_MATCH(name, value, short_code, text) \
  if (code && strcmp(code, short_code) == 0) err.code = BEE_##name;
    BEE_ERRNO_MAP(LBEE_MATCH)
#undef LBEE_MATCH
  }
  lua_getfield(L, 1, "temporary");
  err.temporary = lua_toboolean(L, -1);
  static const struct {
    const char *key;
    size_t off, size;
  } fields[] = {
      {"message", offsetof(bee_error_t, message), sizeof err.message},
      {"pool", offsetof(bee_error_t, pool), sizeof err.pool},
      {"entity", offsetof(bee_error_t, entity), sizeof err.entity},
      {"field", offsetof(bee_error_t, field), sizeof err.field},
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    lua_getfield(L, 1, fields[i].key);
    const char *s = lua_tostring(L, -1);
    if (s) {
      char *dst = (char *)&err + fields[i].off;
      size_t n = strlen(s);
      if (n >= fields[i].size) n = fields[i].size - 1;
      memcpy(dst, s, n);
      dst[n] = '\0';
    }
  }
  char line[BEE_ERROR_MESSAGE_MAX + 4 * BEE_NAME_MAX + 64];
  bee_error_format(&err, line, sizeof line);
  lua_pushstring(L, line);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */

static lbee_registry_t *to_registry(lua_State *L) { return luaL_checkudata(L, 1, BEE_REGISTRY_MT); }

static bee_registry_t *check_registry(lua_State *L) {
  lbee_registry_t *r = to_registry(L);
  if (!r->reg) luaL_error(L, "attempt to use a closed beeorm registry");
  return r->reg;
}

static int registry_new(lua_State *L) {
  lbee_registry_t *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->reg = NULL; /* born closed */
  luaL_setmetatable(L, BEE_REGISTRY_MT);
  r->reg = bee_registry_new();
  if (!r->reg) return luaL_error(L, "beeorm: out of memory creating a registry");
  return 1;
}

static int registry_gc(lua_State *L) {
  lbee_registry_t *r = to_registry(L);
  bee_registry_free(r->reg);
  r->reg = NULL;
  return 0;
}

static int registry_tostring(lua_State *L) {
  lbee_registry_t *r = to_registry(L);
  if (!r->reg)
    lua_pushstring(L, "beeorm.Registry (closed)");
  else
    lua_pushfstring(L, "beeorm.Registry (%d MySQL pools, %d Redis pools)",
                    (int)bee_registry_mysql_count(r->reg), (int)bee_registry_redis_count(r->reg));
  return 1;
}

/* registry:register_mysql(dsn [, pool]) -> true | nil, err */
static int registry_register_mysql(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  const char *dsn = check_text(L, 2);
  const char *pool = opt_text(L, 3, "default");
  bee_error_t err;
  if (bee_registry_add_mysql(reg, pool, dsn, &err) != 0) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * registry:register_redis(address [, db] [, pool]) -> true | nil, err
 * The second argument is the db when it is a number and the pool when a string.
 */
static int registry_register_redis(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  const char *address = check_text(L, 2);
  lua_Integer db = -1;
  const char *pool = "default";
  if (lua_type(L, 3) == LUA_TNUMBER) {
    db = luaL_checkinteger(L, 3);
    luaL_argcheck(L, db >= 0 && db <= 0x7fffffff, 3, "db index must be 0 or more");
    pool = opt_text(L, 4, "default");
  } else if (!lua_isnoneornil(L, 3)) {
    pool = check_text(L, 3);
    luaL_argcheck(L, lua_isnoneornil(L, 4), 4, "no argument expected after the pool name");
  }
  bee_error_t err;
  if (bee_registry_add_redis(reg, pool, address, (int)db, &err) != 0) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* registry:validate() -> engine | nil, err */
static int registry_validate(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  lbee_engine_t *e = lua_newuserdatauv(L, sizeof *e, 0);
  e->engine = NULL; /* born closed: a failure below leaves nothing to free */
  luaL_setmetatable(L, BEE_ENGINE_MT);
  bee_error_t err;
  if (bee_registry_validate(reg, &e->engine, &err) != 0) return fail(L, &err);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Engine                                                                   */

static lbee_engine_t *to_engine(lua_State *L) { return luaL_checkudata(L, 1, BEE_ENGINE_MT); }

static bee_engine_t *check_engine(lua_State *L) {
  lbee_engine_t *e = to_engine(L);
  if (!e->engine) luaL_error(L, "attempt to use a closed beeorm engine");
  return e->engine;
}

static int engine_gc(lua_State *L) {
  lbee_engine_t *e = to_engine(L);
  bee_engine_free(e->engine);
  e->engine = NULL;
  return 0;
}

static int engine_tostring(lua_State *L) {
  lbee_engine_t *e = to_engine(L);
  if (!e->engine) {
    lua_pushstring(L, "beeorm.Engine (closed)");
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "beeorm.Engine (");
  size_t n = bee_engine_pool_count(e->engine);
  for (size_t i = 0; i < n; i++) {
    bee_pool_info_t info;
    bee_engine_pool_info(e->engine, i, &info);
    if (i) luaL_addstring(&b, ", ");
    lua_pushfstring(L, "%s %s", info.name, info.address);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, ")");
  luaL_pushresult(&b);
  return 1;
}

/* engine:pools() -> array of { name, kind, address, server_version } */
static int engine_pools(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  size_t n = bee_engine_pool_count(engine);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    bee_pool_info_t info;
    bee_engine_pool_info(engine, i, &info);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, info.name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, info.kind == BEE_POOL_MYSQL ? "mysql" : "redis");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, info.address);
    lua_setfield(L, -2, "address");
    lua_pushstring(L, info.server_version);
    lua_setfield(L, -2, "server_version");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Connection strings                                                       */

static void set_str(lua_State *L, const char *key, const char *value) {
  if (!value[0]) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_int(lua_State *L, const char *key, lua_Integer value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

/* core.parse_mysql_dsn(dsn) -> settings (password_set instead of the password) | nil, err */
static int parse_mysql_dsn(lua_State *L) {
  const char *dsn = check_text(L, 1);
  bee_mysql_settings_t s;
  bee_error_t err;
  if (bee_mysql_dsn_parse(dsn, &s, &err) != 0) return fail(L, &err);
  lua_createtable(L, 0, 10);
  set_str(L, "user", s.user);
  lua_pushboolean(L, s.password[0] != '\0');
  lua_setfield(L, -2, "password_set");
  set_str(L, "host", s.host);
  set_str(L, "socket", s.socket);
  set_str(L, "database", s.database);
  set_str(L, "charset", s.charset);
  if (s.port) set_int(L, "port", s.port);
  set_int(L, "connect_timeout_ms", s.connect_timeout_ms);
  set_int(L, "read_timeout_ms", s.read_timeout_ms);
  set_int(L, "write_timeout_ms", s.write_timeout_ms);
  char buf[2 * BEE_DSN_FIELD_MAX + 64];
  bee_mysql_settings_describe(&s, buf, sizeof buf);
  set_str(L, "address", buf);
  return 1;
}

/* core.parse_redis_address(address [, db]) -> settings | nil, err */
static int parse_redis_address(lua_State *L) {
  const char *address = check_text(L, 1);
  lua_Integer db = luaL_optinteger(L, 2, -1);
  luaL_argcheck(L, db >= -1 && db <= 0x7fffffff, 2, "db index must be 0 or more");
  bee_redis_settings_t s;
  bee_error_t err;
  if (bee_redis_address_parse(address, (int)db, &s, &err) != 0) return fail(L, &err);
  lua_createtable(L, 0, 7);
  set_str(L, "host", s.host);
  set_str(L, "socket", s.socket);
  set_str(L, "user", s.user);
  lua_pushboolean(L, s.password[0] != '\0');
  lua_setfield(L, -2, "password_set");
  if (s.port) set_int(L, "port", s.port);
  set_int(L, "db", s.db);
  char buf[2 * BEE_DSN_FIELD_MAX + 64];
  bee_redis_settings_describe(&s, buf, sizeof buf);
  set_str(L, "address", buf);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                   */

/* Lua states that loaded the module; the client libraries are released with the last. */
static atomic_int lbee_states;

static int sentinel_gc(lua_State *L) {
  (void)L;
  if (atomic_fetch_sub(&lbee_states, 1) == 1) bee_library_end();
  return 0;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

BEE_EXPORT int luaopen_beeorm_core(lua_State *L) {
  static const luaL_Reg registry_methods[] = {
      {"register_mysql", registry_register_mysql},
      {"register_redis", registry_register_redis},
      {"validate", registry_validate},
      {"close", registry_gc},
      {NULL, NULL},
  };
  static const luaL_Reg engine_methods[] = {
      {"pools", engine_pools},
      {"close", engine_gc},
      {NULL, NULL},
  };
  static const luaL_Reg functions[] = {
      {"registry", registry_new},
      {"parse_mysql_dsn", parse_mysql_dsn},
      {"parse_redis_address", parse_redis_address},
      {NULL, NULL},
  };
  new_class(L, BEE_REGISTRY_MT, registry_methods, registry_gc, registry_tostring);
  new_class(L, BEE_ENGINE_MT, engine_methods, engine_gc, engine_tostring);
  luaL_newmetatable(L, BEE_ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushstring(L, BEE_ERROR_MT);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  luaL_newlib(L, functions);
  /* Created first among the module's finalizable objects, finalized last at lua_close. */
  if (luaL_newmetatable(L, BEE_SENTINEL_MT)) {
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "beeorm.sentinel") == LUA_TNIL) {
    lua_newuserdatauv(L, 0, 0);
    luaL_setmetatable(L, BEE_SENTINEL_MT);
    lua_setfield(L, LUA_REGISTRYINDEX, "beeorm.sentinel");
    atomic_fetch_add(&lbee_states, 1);
  }
  lua_pop(L, 1);

  luaL_getmetatable(L, BEE_REGISTRY_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "Registry");
  lua_pop(L, 1);
  luaL_getmetatable(L, BEE_ENGINE_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "Engine");
  lua_pop(L, 1);
  luaL_getmetatable(L, BEE_ERROR_MT);
  lua_setfield(L, -2, "Error");
  lua_pushliteral(L, BEE_VERSION_STRING);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
