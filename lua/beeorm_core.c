/*
 * beeorm_core.c: the Lua 5.4 binding (module "beeorm.core"). A client of beeorm.h only.
 *
 * Rules (STYLE.md): argument errors raise; failed operations return nil, err where err
 * is a table { code, message, temporary, pool, entity, field } with a shared metatable
 * whose __tostring gives one line. No malloc'd memory is held across a call that can
 * raise. Userdata are born closed, have one idempotent __gc/__close and two checkers.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "beeorm.h"

#define BEE_REGISTRY_MT "beeorm.Registry"
#define BEE_ENGINE_MT "beeorm.Engine"
#define BEE_ERROR_MT "beeorm.Error"
#define BEE_SENTINEL_MT "beeorm.LibrarySentinel"
#define BEE_CONTEXT_MT "beeorm.Context"

#if defined(__GNUC__)
#define BEE_EXPORT __attribute__((visibility("default")))
#else
#define BEE_EXPORT
#endif

typedef struct {
  bee_registry_t *reg;
} lbee_registry_t;

/* An engine with live contexts is only marked closing; the last context frees it. */
typedef struct {
  bee_engine_t *engine;
  int contexts;
  int closing;
} lbee_engine_t;

/* User values: 1 = the engine userdata (kept alive), 2 = the tracked rows in the order
   they were first tracked, 3 = the same rows by entity and id (see "Tracking"). */
typedef struct {
  bee_context_t *ctx;
} lbee_context_t;

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
 * The options table of a Redis registration (arg idx, may be absent): password, user,
 * sentinel_password (strings), timeout_ms, connect_timeout_ms, replicas, wait_timeout_ms
 * (integers). An unknown key or a value of the wrong type raises; ranges are the core's.
 */
static void redis_options(lua_State *L, int idx, bee_redis_options_t *o, int sentinel) {
  memset(o, 0, sizeof *o);
  if (!idx || lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  static const char *const texts[] = {"password", "user", "sentinel_password"};
  static const char *const ints[] = {"timeout_ms", "connect_timeout_ms", "replicas", "wait_timeout_ms"};
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "Redis options: keys must be strings");
    const char *k = lua_tostring(L, -2);
    size_t t = 0, i = 0;
    while (t < 3 && strcmp(k, texts[t])) t++;
    while (i < 4 && strcmp(k, ints[i])) i++;
    if (t == 2 && !sentinel) luaL_error(L, "Redis options: sentinel_password is for register_redis_sentinel");
    if (t < 3) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "Redis options: %s must be a string", k);
      const char *v = lua_tostring(L, -1); /* kept alive by the options table */
      if (t == 0) o->password = v;
      else if (t == 1) o->user = v;
      else o->sentinel_password = v;
    } else if (i < 4) {
      int isnum = 0;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum || lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "Redis options: %s must be an integer", k);
      lua_Integer lo = i == 2 ? 0 : 1, hi = i == 2 ? BEE_REDIS_REPLICAS_MAX : BEE_REDIS_TIMEOUT_MAX_MS;
      if (v < lo || v > hi)
        luaL_error(L, "Redis options: %s must be %d to %d, got %I", k, (int)lo, (int)hi, v);
      if (i == 0) o->timeout_ms = (unsigned int)v;
      else if (i == 1) o->connect_timeout_ms = (unsigned int)v;
      else if (i == 2) o->replicas = (int)v;
      else o->wait_timeout_ms = (unsigned int)v;
    } else {
      luaL_error(L, "Redis options: unknown key '%s' (allowed: password, user, %stimeout_ms, connect_timeout_ms, "
                 "replicas, wait_timeout_ms)", k, sentinel ? "sentinel_password, " : "");
    }
    lua_pop(L, 1);
  }
}

/*
 * registry:register_redis(address [, db] [, pool] [, options]) -> true | nil, err
 * The second argument is the db when it is a number and the pool when a string.
 */
static int registry_register_redis(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  const char *address = check_text(L, 2);
  int top = lua_gettop(L);
  while (top > 2 && lua_isnil(L, top)) top--; /* trailing nils: not given */
  int opts_at = top >= 3 && lua_type(L, top) == LUA_TTABLE ? top : 0;
  if (opts_at) top--;
  lua_Integer db = -1;
  const char *pool = "default";
  if (lua_type(L, 3) == LUA_TNUMBER) {
    db = luaL_checkinteger(L, 3);
    luaL_argcheck(L, db >= 0 && db <= 0x7fffffff, 3, "db index must be 0 or more");
    if (top >= 4) pool = opt_text(L, 4, "default");
    luaL_argcheck(L, top <= 4, 5, "options (a table) expected");
  } else if (top >= 3 && !lua_isnil(L, 3)) {
    pool = check_text(L, 3);
    luaL_argcheck(L, top <= 3 || lua_isnoneornil(L, 4), 4, "options (a table) expected after the pool name");
  }
  bee_redis_options_t o;
  redis_options(L, opts_at, &o, 0);
  bee_error_t err;
  if (bee_registry_add_redis_options(reg, pool, address, (int)db, opts_at ? &o : NULL, &err) != 0)
    return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * registry:register_redis_sentinel(master_name, db, { "host:port", ... } [, pool] [, options])
 *   -> true | nil, err
 */
static int registry_register_redis_sentinel(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  const char *master = check_text(L, 2);
  lua_Integer db = luaL_checkinteger(L, 3);
  luaL_argcheck(L, db >= 0 && db <= 0x7fffffff, 3, "db index must be 0 or more");
  luaL_checktype(L, 4, LUA_TTABLE);
  int top = lua_gettop(L);
  while (top > 4 && lua_isnil(L, top)) top--; /* trailing nils: not given */
  int opts_at = top >= 5 && lua_type(L, top) == LUA_TTABLE ? top : 0;
  const char *pool = "default";
  if (top >= 5 && lua_type(L, 5) != LUA_TTABLE) pool = opt_text(L, 5, "default");
  luaL_argcheck(L, top <= 6 && !(top == 6 && !opts_at), top, "options (a table) expected");
  size_t n = (size_t)lua_rawlen(L, 4);
  luaL_argcheck(L, n >= 1 && n <= BEE_REDIS_SENTINELS_MAX, 4, "1 to 16 sentinel addresses (\"host:port\") expected");
  const char *list[BEE_REDIS_SENTINELS_MAX];
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 4, (lua_Integer)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "sentinel %d: a \"host:port\" string expected", (int)i + 1);
    list[i] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  bee_redis_options_t o;
  redis_options(L, opts_at, &o, 1);
  bee_error_t err;
  if (bee_registry_add_redis_sentinel(reg, pool, master, (int)db, list, n, opts_at ? &o : NULL, &err) != 0)
    return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Entity definitions                                                       */

/* Converts the Lua value at idx; returns 0, or -1 for a type with no bee_value_t form. */
static int to_value(lua_State *L, int idx, bee_value_t *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: v->kind = BEE_VALUE_NIL; return 0;
    case LUA_TBOOLEAN: v->kind = BEE_VALUE_BOOL; v->i = lua_toboolean(L, idx); return 0;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        v->kind = BEE_VALUE_INT;
        v->i = lua_tointeger(L, idx);
      } else {
        v->kind = BEE_VALUE_FLOAT;
        v->f = lua_tonumber(L, idx);
      }
      return 0;
    case LUA_TSTRING: v->kind = BEE_VALUE_STRING; v->str = lua_tolstring(L, idx, &v->len); return 0;
    default: return -1;
  }
}

/* Pushes the string keys of the table at idx as a sorted array (deterministic first error). */
static int sorted_keys(lua_State *L, int idx, int *bad_key) {
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_remove(L, -2);
  lua_newtable(L);
  int n = 0;
  *bad_key = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, -3, ++n);
    } else if (!lua_isinteger(L, -1)) {
      *bad_key = 1;
    }
  }
  lua_pushvalue(L, -1);
  lua_insert(L, -3); /* keys, sort, keys */
  lua_call(L, 1, 0);
  return n;
}

static void def_failf(bee_entity_def_t *def, const char *field, lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  bee_entity_def_fail(def, field, msg);
  lua_pop(L, 1);
}

/* Feeds the string-keyed options of the table at idx to setter (field or index). */
typedef int (*option_setter)(bee_entity_def_t *, int, const char *, const bee_value_t *);

static void feed_options(lua_State *L, int idx, bee_entity_def_t *def, int target, const char *field,
                         option_setter set, const char *skip) {
  int bad;
  int n = sorted_keys(L, idx, &bad);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    const char *key = lua_tostring(L, -1);
    if (!skip || strcmp(key, skip) != 0) {
      lua_getfield(L, idx, key);
      bee_value_t v;
      if (to_value(L, -1, &v) != 0)
        def_failf(def, field, L, "option '%s' must not be a %s", key, luaL_typename(L, -1));
      else
        set(def, target, key, &v);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int set_entity_option(bee_entity_def_t *def, int unused, const char *key, const bee_value_t *v) {
  (void)unused;
  return bee_entity_def_option(def, key, v);
}

static void feed_fields(lua_State *L, int idx, bee_entity_def_t *def) {
  if (!lua_istable(L, idx)) {
    def_failf(def, NULL, L, "option 'fields' must be a table of field specs, got %s", luaL_typename(L, idx));
    return;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    int spec = lua_gettop(L);
    if (!lua_istable(L, spec)) {
      def_failf(def, NULL, L, "fields[%d] must be a table like { \"name\", \"type\", ... }, got %s", (int)i,
                luaL_typename(L, spec));
      lua_pop(L, 1);
      continue;
    }
    lua_rawgeti(L, spec, 1);
    lua_rawgeti(L, spec, 2);
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    const char *type = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!name || !type) {
      def_failf(def, name, L, "fields[%d] needs a name and a type as its first two values", (int)i);
      lua_pop(L, 3);
      continue;
    }
    int field = bee_entity_def_field(def, name, type);
    if (field >= 0) {
      if (lua_rawlen(L, spec) > 2) def_failf(def, name, L, "field spec has an extra value at position 3");
      lua_getfield(L, spec, "values");
      if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1)) {
          def_failf(def, name, L, "option 'values' must be a list of strings, got %s", luaL_typename(L, -1));
        } else {
          lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
          if (m == 0) bee_entity_def_field_value(def, field, ""); /* lets the core name the type's rule */
          for (lua_Integer j = 1; j <= m; j++) {
            lua_rawgeti(L, -1, j);
            if (lua_type(L, -1) != LUA_TSTRING)
              def_failf(def, name, L, "values[%d] must be a string, got %s", (int)j, luaL_typename(L, -1));
            else
              bee_entity_def_field_value(def, field, lua_tostring(L, -1));
            lua_pop(L, 1);
          }
        }
      }
      lua_pop(L, 1);
      feed_options(L, spec, def, field, name, bee_entity_def_field_option, "values");
    }
    lua_pop(L, 3);
  }
}

/* unique = { name = { "f1", "f2" } } or indexes = { name = { "f1", cached = true } } */
static void feed_indexes(lua_State *L, int idx, bee_entity_def_t *def, int unique) {
  const char *what = unique ? "unique" : "indexes";
  if (!lua_istable(L, idx)) {
    def_failf(def, NULL, L, "option '%s' must be a table of index name = { fields }, got %s", what, luaL_typename(L, idx));
    return;
  }
  int bad;
  int n = sorted_keys(L, idx, &bad);
  if (bad) def_failf(def, NULL, L, "option '%s' must map index names to field lists", what);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    const char *name = lua_tostring(L, -1);
    lua_getfield(L, idx, name);
    int spec = lua_gettop(L);
    if (!lua_istable(L, spec)) {
      def_failf(def, NULL, L, "index '%s' must be a list of field names, got %s", name, luaL_typename(L, spec));
    } else {
      int ix = bee_entity_def_index(def, name, unique);
      if (ix >= 0) {
        lua_Integer m = (lua_Integer)lua_rawlen(L, spec);
        for (lua_Integer j = 1; j <= m; j++) {
          lua_rawgeti(L, spec, j);
          if (lua_type(L, -1) != LUA_TSTRING)
            def_failf(def, NULL, L, "index '%s' lists a %s where a field name belongs", name, luaL_typename(L, -1));
          else
            bee_entity_def_index_field(def, ix, lua_tostring(L, -1));
          lua_pop(L, 1);
        }
        feed_options(L, spec, def, ix, NULL, bee_entity_def_index_option, NULL);
      }
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* registry:register_entity{ name = ..., fields = { ... }, ... } -> true | nil, err */
static int registry_register_entity(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 2, "name");
  const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  bee_entity_def_t *def = bee_entity_def_new(name);
  if (!def) return luaL_error(L, "beeorm: out of memory defining an entity");
  /* Nothing below raises (only a memory error could, and would leak def). */
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    def_failf(def, NULL, L, "option 'name' must be a string, got %s", luaL_typename(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, 2, "fields");
  if (!lua_isnil(L, -1)) feed_fields(L, lua_gettop(L), def);
  lua_pop(L, 1);
  lua_getfield(L, 2, "unique");
  if (!lua_isnil(L, -1)) feed_indexes(L, lua_gettop(L), def, 1);
  lua_pop(L, 1);
  lua_getfield(L, 2, "indexes");
  if (!lua_isnil(L, -1)) feed_indexes(L, lua_gettop(L), def, 0);
  lua_pop(L, 1);
  int bad;
  int n = sorted_keys(L, 2, &bad);
  if (bad) def_failf(def, NULL, L, "definition keys must be strings");
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    const char *key = lua_tostring(L, -1);
    if (strcmp(key, "name") && strcmp(key, "fields") && strcmp(key, "unique") && strcmp(key, "indexes")) {
      lua_getfield(L, 2, key);
      bee_value_t v;
      if (to_value(L, -1, &v) != 0)
        def_failf(def, NULL, L, "option '%s' must not be a %s", key, luaL_typename(L, -1));
      else
        set_entity_option(def, 0, key, &v);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  bee_error_t err;
  if (bee_registry_add_entity(reg, def, &err) != 0) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* registry:load_yaml(path) -> true | nil, err */
static int registry_load_yaml(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  const char *path = check_text(L, 2);
  bee_error_t err;
  if (bee_registry_load_yaml(reg, path, &err) != 0) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* registry:validate() -> engine | nil, err */
static int registry_validate(lua_State *L) {
  bee_registry_t *reg = check_registry(L);
  lbee_engine_t *e = lua_newuserdatauv(L, sizeof *e, 1);
  e->engine = NULL; /* born closed: a failure below leaves nothing to free */
  e->contexts = 0;
  e->closing = 0;
  lua_newtable(L); /* entity metatables by name */
  lua_setiuservalue(L, -2, 1);
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
  if (!e->engine || e->closing) luaL_error(L, "attempt to use a closed beeorm engine");
  return e->engine;
}

static int engine_gc(lua_State *L) {
  lbee_engine_t *e = to_engine(L);
  if (e->contexts > 0) {
    e->closing = 1;
    return 0;
  }
  bee_engine_free(e->engine);
  e->engine = NULL;
  return 0;
}

static int engine_tostring(lua_State *L) {
  lbee_engine_t *e = to_engine(L);
  if (!e->engine || e->closing) {
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

/* engine:pools() -> array of { name, kind, address, server_version [, master] } */
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
    if (info.master[0]) {
      lua_pushstring(L, info.master);
      lua_setfield(L, -2, "master");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static const bee_entity_t *check_entity(lua_State *L, bee_engine_t *engine, int arg) {
  const char *name = check_text(L, arg);
  const bee_entity_t *e = bee_engine_entity(engine, name);
  if (!e) luaL_error(L, "unknown entity '%s'", name);
  return e;
}

static void push_value(lua_State *L, const bee_value_t *v) {
  switch (v->kind) {
    case BEE_VALUE_INT: lua_pushinteger(L, v->i); break;
    case BEE_VALUE_FLOAT: lua_pushnumber(L, v->f); break;
    case BEE_VALUE_BOOL: lua_pushboolean(L, (int)v->i); break;
    case BEE_VALUE_STRING: lua_pushlstring(L, v->str, v->len); break;
    default: lua_pushnil(L); break;
  }
}

/*
 * Converts the Lua value at idx for field `info` and checks it. A set may be given as
 * a list of members, a ref as an entity table with an id. On success pushes the
 * canonical Lua value and returns 1; on failure fills err and returns 0 (nothing pushed).
 */
static void field_error(bee_error_t *err, const bee_entity_t *e, const char *field, const char *msg) {
  bee_error_clear(err);
  err->code = BEE_EVALIDATION;
  snprintf(err->message, sizeof err->message, "%s", msg);
  snprintf(err->entity, sizeof err->entity, "%s", bee_entity_name(e));
  snprintf(err->field, sizeof err->field, "%s", field);
}

/*
 * Converts the Lua value at idx for a field into *in, without validating it: a set may
 * be a list of members (joined here), a ref an entity table with an id. Returns how
 * many values it pushed to keep strings alive (0 or 1; the caller pops them when done
 * with *in), or -1 with err filled (nothing pushed).
 */
static int lua_field_value(lua_State *L, const bee_entity_t *e, size_t field, int idx, bee_value_t *in,
                           bee_error_t *err) {
  bee_field_info_t info;
  bee_entity_field_info(e, field, &info);
  idx = lua_absindex(L, idx);
  int pushed = 0;
  if (lua_istable(L, idx) && info.type == BEE_FIELD_SET) {
    lua_Integer count = 0, n = (lua_Integer)lua_rawlen(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      count++;
    }
    if (count != n) {
      field_error(err, e, info.name, "set members must be given as a list of strings");
      return -1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_rawgeti(L, idx, i) != LUA_TSTRING) {
        lua_pop(L, 1);
        luaL_pushresult(&b);
        lua_pop(L, 1);
        char msg[64];
        snprintf(msg, sizeof msg, "set members must be strings (item %d is not)", (int)i);
        field_error(err, e, info.name, msg);
        return -1;
      }
      if (i > 1) luaL_addchar(&b, ',');
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    idx = lua_gettop(L);
    pushed = 1;
  } else if (lua_istable(L, idx) && info.type == BEE_FIELD_REF) {
    if (lua_getfield(L, idx, "id") == LUA_TNIL) {
      lua_pop(L, 1);
      field_error(err, e, info.name, "the referenced entity table has no id");
      return -1;
    }
    idx = lua_gettop(L);
    pushed = 1;
  } else if (lua_type(L, idx) != LUA_TNIL && lua_type(L, idx) != LUA_TBOOLEAN && lua_type(L, idx) != LUA_TNUMBER &&
             lua_type(L, idx) != LUA_TSTRING) {
    char msg[96];
    snprintf(msg, sizeof msg, "expected %s %s value, got %s", strchr("aeiou", info.type_name[0]) ? "an" : "a",
             info.type_name, luaL_typename(L, idx));
    field_error(err, e, info.name, msg);
    return -1;
  }
  to_value(L, idx, in);
  return pushed;
}

/*
 * Converts and checks the Lua value at idx for a field. On success pushes the
 * canonical Lua value and returns 1; on failure fills err and returns 0 (nothing pushed).
 */
static int check_field_value(lua_State *L, const bee_entity_t *e, size_t field, int idx, bee_error_t *err) {
  bee_value_t in, out;
  int pushed = lua_field_value(L, e, field, idx, &in, err);
  if (pushed < 0) return 0;
  size_t need = in.len + 80;
  char small[256];
  char *buf = need <= sizeof small ? small : lua_newuserdatauv(L, need, 0);
  int rc = bee_entity_check_value(e, field, &in, &out, buf, need, err);
  if (rc == 0) push_value(L, &out);
  if (buf != small) lua_remove(L, rc == 0 ? -2 : -1);
  if (pushed) lua_remove(L, rc == 0 ? -2 : -1);
  return rc == 0;
}

/* 1 when the value at idx is an id: an integer >= 1, or a decimal string of a uint64 >= 1. */
static int check_id(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return lua_tointeger(L, idx) >= 1;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (len == 0 || len > 20 || s[0] == '0') return 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return len < 20 || strcmp(s, "18446744073709551615") <= 0;
}

/*
 * engine:check_values(entity, values) -> canonical values | nil, err
 * Validates a whole entity table as a flush will (docs/guarantees.md G7): unknown fields raise;
 * every field is checked, also the absent ones (required fields must be present).
 */
static int engine_check_values(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  const bee_entity_t *e = check_entity(L, engine, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "entity '%s' values must have string keys", bee_entity_name(e));
    const char *key = lua_tostring(L, -1);
    if (strcmp(key, "id") && bee_entity_field_index(e, key) < 0)
      return luaL_error(L, "entity '%s' has no field '%s'", bee_entity_name(e), key);
  }
  size_t n = bee_entity_field_count(e);
  lua_createtable(L, 0, (int)n + 1);
  lua_getfield(L, 3, "id");
  if (!lua_isnil(L, -1) && !check_id(L, -1)) {
    bee_error_t err;
    bee_error_clear(&err);
    err.code = BEE_EVALIDATION;
    snprintf(err.entity, sizeof err.entity, "%s", bee_entity_name(e));
    snprintf(err.field, sizeof err.field, "id");
    snprintf(err.message, sizeof err.message, "id must be a positive integer (or a decimal string up to 18446744073709551615)");
    return fail(L, &err);
  }
  lua_setfield(L, -2, "id");
  for (size_t i = 0; i < n; i++) {
    bee_field_info_t info;
    bee_entity_field_info(e, i, &info);
    lua_getfield(L, 3, info.name);
    bee_error_t err;
    if (!check_field_value(L, e, i, -1, &err)) return fail(L, &err);
    lua_setfield(L, -3, info.name);
    lua_pop(L, 1);
  }
  return 1;
}

/* engine:entities() -> array of { name, table, fields = { { name, type, required }... } } */
static int engine_entities(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  size_t n = bee_engine_entity_count(engine);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    const bee_entity_t *e = bee_engine_entity_at(engine, i);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, bee_entity_name(e));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, bee_entity_table(e));
    lua_setfield(L, -2, "table");
    size_t m = bee_entity_field_count(e);
    lua_createtable(L, (int)m, 0);
    for (size_t j = 0; j < m; j++) {
      bee_field_info_t info;
      bee_entity_field_info(e, j, &info);
      lua_createtable(L, 0, 3);
      lua_pushstring(L, info.name);
      lua_setfield(L, -2, "name");
      lua_pushstring(L, info.type_name);
      lua_setfield(L, -2, "type");
      lua_pushboolean(L, info.required);
      lua_setfield(L, -2, "required");
      lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    lua_setfield(L, -2, "fields");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* Reads an optional argument list { ... , n = count } into a userdata-backed array. */
static size_t check_args(lua_State *L, int arg, bee_value_t **out) {
  *out = NULL;
  if (lua_isnoneornil(L, arg)) return 0;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_getfield(L, arg, "n");
  lua_Integer n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, arg);
  lua_pop(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 65535, arg, "too many arguments");
  bee_value_t *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  /* stays on the stack (alive) until the calling function returns; strings in v point
     into the args table, which is an argument and so stays alive as well */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, arg, i);
    if (to_value(L, -1, &v[i - 1]) != 0)
      luaL_error(L, "argument %d is a %s (expected nil, boolean, number or string)", (int)i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  *out = v;
  return (size_t)n;
}

/* engine:sql_exec(sql [, args] [, pool]) -> affected rows | nil, err */
static int engine_sql_exec(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  const char *sql = check_text(L, 2);
  const char *pool = opt_text(L, 4, NULL);
  lua_settop(L, 4);
  bee_value_t *args;
  size_t n = check_args(L, 3, &args);
  uint64_t affected = 0;
  bee_error_t err;
  int rc = bee_engine_sql_exec(engine, pool, sql, args, n, &affected, &err);
  if (rc == BEE_EINVAL) return luaL_error(L, "%s", err.message); /* a bad argument, not a failure */
  if (rc != 0) return fail(L, &err);
  lua_pushinteger(L, (lua_Integer)affected);
  return 1;
}

/*
 * Calls fn(ud [, value at idx1 [, value at idx2]]) under lua_pcall, from a core callback
 * running inside the binding function whose stack holds idx1 and idx2 (absolute
 * indexes; 0: not passed), so no Lua error unwinds through the core. Returns 0, or 1
 * with the error object left on the stack (the binding re-raises it once the core
 * returned).
 */
static int protected_call(lua_State *L, lua_CFunction fn, void *ud, int idx1, int idx2, int nresults) {
  int nargs = 1;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  if (idx1) lua_pushvalue(L, idx1), nargs++;
  if (idx2) lua_pushvalue(L, idx2), nargs++;
  return lua_pcall(L, nargs, nresults, 0) != LUA_OK;
}

typedef struct {
  lua_State *L;
  int rows;     /* stack index of the result table */
  int failed;   /* a Lua error happened while building a row: re-raised after */
  lua_Integer count;
  size_t ncols;
  const char *const *names;
  const char *const *cells;
  const size_t *lens;
} lbee_rows_t;

static int push_row(lua_State *L) {
  lbee_rows_t *r = lua_touserdata(L, 1);
  lua_createtable(L, 0, (int)r->ncols);
  for (size_t i = 0; i < r->ncols; i++) {
    if (!r->cells[i]) continue;
    lua_pushlstring(L, r->cells[i], r->lens[i]);
    lua_setfield(L, -2, r->names[i]);
  }
  lua_rawseti(L, 2, ++r->count); /* the result table, passed as argument 2 */
  return 0;
}

/* Row callback: builds the row in protected mode so no Lua error crosses the core. */
static int collect_row(void *ud, size_t ncols, const char *const *names, const char *const *cells, const size_t *lens) {
  lbee_rows_t *r = ud;
  r->ncols = ncols;
  r->names = names;
  r->cells = cells;
  r->lens = lens;
  return r->failed = protected_call(r->L, push_row, r, r->rows, 0, 0);
}

/*
 * engine:sql_query(sql [, args] [, pool]) -> array of rows | nil, err
 * Each row maps column names to text values; SQL NULL is absent from the row.
 */
static int engine_sql_query(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  const char *sql = check_text(L, 2);
  const char *pool = opt_text(L, 4, NULL);
  lua_settop(L, 4);
  bee_value_t *args;
  size_t n = check_args(L, 3, &args);
  lua_newtable(L);
  lbee_rows_t r = {L, lua_gettop(L), 0, 0, 0, NULL, NULL, NULL};
  bee_error_t err;
  int rc = bee_engine_sql_query(engine, pool, sql, args, n, collect_row, &r, &err);
  if (rc == BEE_EINVAL) return luaL_error(L, "%s", err.message);
  if (rc != 0) return fail(L, &err);
  if (r.failed) return lua_error(L); /* the error object pushed by lua_pcall */
  lua_pushvalue(L, r.rows);
  return 1;
}

/* engine:schema_alters() -> array of { sql, safe, pool, table } | nil, err */
static int engine_schema_alters(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  bee_alter_t *alters;
  size_t count;
  bee_error_t err;
  if (bee_engine_schema_alters(engine, &alters, &count, &err) != 0) return fail(L, &err);
  /* Copy into a userdata-free Lua table; free the C array before anything can raise. */
  lua_createtable(L, (int)count, 0);
  for (size_t i = 0; i < count; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, alters[i].sql);
    lua_setfield(L, -2, "sql");
    lua_pushboolean(L, alters[i].safe);
    lua_setfield(L, -2, "safe");
    lua_pushstring(L, alters[i].pool);
    lua_setfield(L, -2, "pool");
    lua_pushstring(L, alters[i].table);
    lua_setfield(L, -2, "table");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  bee_alters_free(alters, count);
  return 1;
}

/* engine:sync_schema([{ unsafe = true }]) -> number of statements run | nil, err */
static int engine_sync_schema(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  int unsafe = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "unsafe");
    unsafe = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  size_t applied = 0;
  bee_error_t err;
  if (bee_engine_sync_schema(engine, unsafe, &applied, &err) != 0) return fail(L, &err);
  lua_pushinteger(L, (lua_Integer)applied);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                 */

static void set_int(lua_State *L, const char *key, lua_Integer value);
static void set_str(lua_State *L, const char *key, const char *value);

static lbee_context_t *to_context(lua_State *L) { return luaL_checkudata(L, 1, BEE_CONTEXT_MT); }

static bee_context_t *check_context(lua_State *L) {
  lbee_context_t *c = to_context(L);
  if (!c->ctx) luaL_error(L, "attempt to use a closed beeorm context");
  return c->ctx;
}

/* The engine behind context at index 1 (its userdata is user value 1). */
static bee_engine_t *context_engine(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  lbee_engine_t *e = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!e->engine || e->closing) luaL_error(L, "attempt to use a context of a closed beeorm engine");
  return e->engine;
}

/* engine:context() -> context */
static int engine_context(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  lbee_context_t *c = lua_newuserdatauv(L, sizeof *c, 4);
  c->ctx = NULL;
  luaL_setmetatable(L, BEE_CONTEXT_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 2);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 3);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 4);
  bee_error_t err;
  if (bee_engine_context(engine, &c->ctx, &err) != 0) return luaL_error(L, "beeorm: %s", err.message);
  to_engine(L)->contexts++;
  return 1;
}

static int context_gc(lua_State *L) {
  lbee_context_t *c = to_context(L);
  if (!c->ctx) return 0;
  bee_context_free(c->ctx);
  c->ctx = NULL;
  lua_getiuservalue(L, 1, 1);
  lbee_engine_t *e = lua_touserdata(L, -1);
  if (e && --e->contexts == 0 && e->closing) {
    bee_engine_free(e->engine);
    e->engine = NULL;
  }
  return 0;
}

/*
 * Pushes the metatable shared by the entity tables of entity e: { __name, __beeorm =
 * name, [1..n] = field names } (cached in the engine userdata, at stack index eng).
 */
static void push_entity_mt(lua_State *L, int eng, const bee_entity_t *e) {
  lua_getiuservalue(L, eng, 1);
  if (lua_rawgetp(L, -1, e) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  size_t n = bee_entity_field_count(e);
  lua_createtable(L, (int)n, 2);
  lua_pushstring(L, "beeorm.Entity");
  lua_setfield(L, -2, "__name");
  lua_pushstring(L, bee_entity_name(e));
  lua_setfield(L, -2, "__beeorm");
  for (size_t i = 0; i < n; i++) {
    bee_field_info_t info;
    bee_entity_field_info(e, i, &info);
    lua_pushstring(L, info.name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, e);
  lua_remove(L, -2);
}

/*
 * The entity named by argument arg of a context method, through a per-engine cache
 * (name -> light userdata) so hot loaders skip the name search. Raises if unknown.
 */
static const bee_entity_t *ctx_entity(lua_State *L, int arg) {
  luaL_checktype(L, arg, LUA_TSTRING);
  lua_getiuservalue(L, 1, 1); /* the engine userdata */
  lbee_engine_t *eng = lua_touserdata(L, -1);
  if (!eng->engine || eng->closing) luaL_error(L, "attempt to use a context of a closed beeorm engine");
  lua_getiuservalue(L, -1, 1);
  lua_pushvalue(L, arg);
  const bee_entity_t *e;
  if (lua_rawget(L, -2) == LUA_TLIGHTUSERDATA) {
    e = lua_touserdata(L, -1);
  } else {
    e = bee_engine_entity(eng->engine, lua_tostring(L, arg));
    if (!e) luaL_error(L, "unknown entity '%s'", lua_tostring(L, arg));
    lua_pushvalue(L, arg);
    lua_pushlightuserdata(L, (void *)e);
    lua_rawset(L, -4);
  }
  lua_pop(L, 3);
  return e;
}

static void push_id(lua_State *L, uint64_t id) {
  if (id <= (uint64_t)INT64_MAX) {
    lua_pushinteger(L, (lua_Integer)id);
  } else {
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)id);
    lua_pushstring(L, buf);
  }
}

/* Reads an id argument: a positive integer or a decimal string up to 2^64-1. */
static uint64_t check_id_arg(lua_State *L, int arg) {
  if (lua_isinteger(L, arg)) {
    lua_Integer v = lua_tointeger(L, arg);
    luaL_argcheck(L, v >= 1, arg, "ids are 1 or more");
    return (uint64_t)v;
  }
  luaL_argcheck(L, lua_type(L, arg) == LUA_TSTRING && check_id(L, arg), arg, "expected an id");
  return strtoull(lua_tostring(L, arg), NULL, 10);
}

/* The entity of an entity table (from its metatable), or raises. */
static const bee_entity_t *table_entity(lua_State *L, bee_engine_t *engine, int arg) {
  luaL_checktype(L, arg, LUA_TTABLE);
  const bee_entity_t *e = NULL;
  if (lua_getmetatable(L, arg)) {
    if (lua_getfield(L, -1, "__beeorm") == LUA_TSTRING) e = bee_engine_entity(engine, lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  luaL_argcheck(L, e != NULL, arg, "not an entity table of this engine (use ctx:new_entity or a loader)");
  return e;
}

/* Raises unless every key of the table at idx is "id" or a field of e. */
static void check_keys(lua_State *L, const bee_entity_t *e, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "entity '%s' values must have string keys", bee_entity_name(e));
    const char *key = lua_tostring(L, -1);
    if (strcmp(key, "id") && bee_entity_field_index(e, key) < 0)
      luaL_error(L, "entity '%s' has no field '%s'", bee_entity_name(e), key);
  }
}

/*
 * Tracking (docs/guarantees.md G8): a context tracks at most one table per row. Each tracked row
 * has an entry, a Lua table with the slots below; user value 2 of the context lists the
 * entries in the order their rows were first tracked (the order the flush feeds them),
 * user value 3 finds them by row: map[entity (light userdata)][id] = entry, the id in
 * its Lua form (push_id). Everything is Lua memory: nothing to free if a call raises.
 *
 * The baseline of an edit is an array by field index: the values the row had when
 * edit_entity copied it, then the values fed to the core by the last flush that wrote
 * the row (sets as their joined string, refs as the id), so a change made after that
 * flush, also inside a set list, is found by comparing canonical forms.
 */
enum { TRACK_DEAD, TRACK_NEW, TRACK_EDIT, TRACK_DELETE, TRACK_DROPPED };
/* TRACK_NEW: an insert not written yet; TRACK_EDIT: a row that exists (loaded, or
   written by this context), written where it differs from its baseline; TRACK_DELETE:
   a delete to write; TRACK_DROPPED: a new row deleted before its insert was written
   (writes nothing); TRACK_DEAD: forgotten by the flush that just wrote it. */
enum { ENTRY_KIND = 1, ENTRY_TABLE, ENTRY_BASE, ENTRY_ENTITY, ENTRY_ID, ENTRY_NAMES, ENTRY_SLOTS = ENTRY_NAMES };

/* The id in an entry's ENTRY_ID slot (an integer, or a decimal string above 2^63-1). */
static uint64_t entry_id(lua_State *L, int entry) {
  lua_rawgeti(L, entry, ENTRY_ID);
  uint64_t id = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : strtoull(lua_tostring(L, -1), NULL, 10);
  lua_pop(L, 1);
  return id;
}

static int entry_kind(lua_State *L, int entry) {
  lua_rawgeti(L, entry, ENTRY_KIND);
  int kind = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return kind;
}

static void set_entry_kind(lua_State *L, int entry, int kind) {
  lua_pushinteger(L, kind);
  lua_rawseti(L, entry, ENTRY_KIND);
}

static const bee_entity_t *entry_entity(lua_State *L, int entry) {
  lua_rawgeti(L, entry, ENTRY_ENTITY);
  const bee_entity_t *e = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return e;
}

/* Pushes the entry of row (e, the id at index key) in the context at index 1, or nil. */
static int find_entry(lua_State *L, const bee_entity_t *e, int key) {
  key = lua_absindex(L, key);
  lua_getiuservalue(L, 1, 3);
  if (lua_rawgetp(L, -1, e) != LUA_TTABLE) {
    lua_pop(L, 2);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  lua_pushvalue(L, key);
  int type = lua_rawget(L, -2);
  lua_replace(L, -3);
  lua_pop(L, 1);
  return type;
}

/*
 * Pushes a new entry { kind, table, base, e, id, names } and registers it: last in the
 * order, and in the map. table, base and names are stack indexes, 0 for none (names:
 * the entity's shared metatable, with its field names at 1..n; 0 looks it up); the id
 * is at key.
 */
static void add_entry(lua_State *L, int kind, const bee_entity_t *e, int key, int table, int base, int names) {
  key = lua_absindex(L, key);
  if (table) table = lua_absindex(L, table);
  if (base) base = lua_absindex(L, base);
  if (names) names = lua_absindex(L, names);
  lua_createtable(L, ENTRY_SLOTS, 0);
  int entry = lua_gettop(L);
  set_entry_kind(L, entry, kind);
  if (table) {
    lua_pushvalue(L, table);
    lua_rawseti(L, entry, ENTRY_TABLE);
  }
  if (base) {
    lua_pushvalue(L, base);
    lua_rawseti(L, entry, ENTRY_BASE);
  }
  lua_pushlightuserdata(L, (void *)e);
  lua_rawseti(L, entry, ENTRY_ENTITY);
  lua_pushvalue(L, key);
  lua_rawseti(L, entry, ENTRY_ID);
  if (names) {
    lua_pushvalue(L, names);
    lua_rawseti(L, entry, ENTRY_NAMES);
  } else {
    lua_getiuservalue(L, 1, 1);
    push_entity_mt(L, lua_gettop(L), e);
    lua_rawseti(L, entry, ENTRY_NAMES);
    lua_pop(L, 1);
  }
  lua_getiuservalue(L, 1, 3);
  if (lua_rawgetp(L, -1, e) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, e);
  }
  lua_pushvalue(L, key);
  lua_pushvalue(L, entry);
  lua_rawset(L, -3);
  lua_pop(L, 2);
  lua_getiuservalue(L, 1, 2);
  lua_pushvalue(L, entry);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* ctx:new_entity(name [, values]) -> entity table (tracked) | nil, err (no id could be had) */
static int context_new_entity(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2); /* the per-engine name cache */
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    check_keys(L, e, 3);
  }
  lua_settop(L, 3);
  uint64_t id;
  bee_error_t err;
  if (bee_context_new_id(ctx, e, &id, &err) != 0) return fail(L, &err);
  size_t n = bee_entity_field_count(e);
  lua_createtable(L, 0, (int)n + 1);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 4);
    }
  }
  push_id(L, id); /* 5: the id, also the entry's key */
  lua_pushvalue(L, 5);
  lua_setfield(L, 4, "id");
  lua_getiuservalue(L, 1, 1);
  push_entity_mt(L, lua_gettop(L), e); /* 7 */
  lua_pushvalue(L, 7);
  lua_setmetatable(L, 4);
  add_entry(L, TRACK_NEW, e, 5, 4, 0, 7);
  lua_settop(L, 4);
  return 1;
}

/* Pushes the id of the entity table at arg in its Lua form (push_id); raises if it has none. */
static void push_table_id(lua_State *L, int arg) {
  lua_getfield(L, arg, "id");
  luaL_argcheck(L, check_id(L, -1), arg, "the entity table has no valid id");
  uint64_t id = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : strtoull(lua_tostring(L, -1), NULL, 10);
  lua_pop(L, 1);
  push_id(L, id);
}

/*
 * ctx:edit_entity(entity) -> the tracked table of that row
 * A row the context already tracks (by new_entity or edit_entity) gives its tracked
 * table, whatever table was passed: the passed table's values are ignored. Otherwise
 * a copy of the passed table is tracked, with its values as the baseline. A row
 * tracked for deletion raises.
 */
static int context_edit_entity(lua_State *L) {
  check_context(L);
  bee_engine_t *engine = context_engine(L);
  const bee_entity_t *e = table_entity(L, engine, 2);
  lua_settop(L, 2);
  push_table_id(L, 2); /* 3 */
  if (find_entry(L, e, 3) == LUA_TTABLE) {
    int kind = entry_kind(L, 4);
    if (kind == TRACK_DELETE || kind == TRACK_DROPPED)
      return luaL_error(L, "entity '%s' id %s is deleted in this context", bee_entity_name(e), luaL_tolstring(L, 3, NULL));
    lua_rawgeti(L, 4, ENTRY_TABLE);
    return 1;
  }
  lua_pop(L, 1);
  lua_newtable(L); /* 4: the copy */
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, 4);
  }
  lua_getmetatable(L, 2);
  lua_setmetatable(L, 4);
  size_t n = bee_entity_field_count(e);
  lua_createtable(L, (int)n, 0); /* 5: the baseline */
  lua_getiuservalue(L, 1, 1);
  push_entity_mt(L, lua_gettop(L), e); /* 7: field names */
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 7, (lua_Integer)i);
    lua_rawget(L, 2);
    lua_rawseti(L, 5, (lua_Integer)i);
  }
  add_entry(L, TRACK_EDIT, e, 3, 4, 5, 7);
  lua_settop(L, 4);
  return 1;
}

/*
 * ctx:delete_entity(entity)
 * The delete replaces what the context tracks for the row; a new row whose insert was
 * not written yet is then written not at all.
 */
static int context_delete_entity(lua_State *L) {
  check_context(L);
  bee_engine_t *engine = context_engine(L);
  const bee_entity_t *e = table_entity(L, engine, 2);
  lua_settop(L, 2);
  push_table_id(L, 2); /* 3 */
  if (find_entry(L, e, 3) == LUA_TTABLE) {
    int kind = entry_kind(L, 4);
    if (kind == TRACK_NEW) set_entry_kind(L, 4, TRACK_DROPPED);
    else if (kind == TRACK_EDIT) set_entry_kind(L, 4, TRACK_DELETE);
    return 0;
  }
  add_entry(L, TRACK_DELETE, e, 3, 0, 0, 0);
  return 0;
}

/*
 * ctx:clear_flush(): forgets every tracked row (changes, baselines and the identity map),
 * every increment, and a flush_async whose outcome was unknown (the next one is new).
 */
static int context_clear_flush(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  bee_context_clear_flush(ctx);
  for (int uv = 2; uv <= 4; uv++) {
    lua_newtable(L);
    lua_setiuservalue(L, 1, uv);
  }
  return 0;
}

/*
 * ctx:increment(entity, id, field, delta): tracks `field = field + delta` (docs/guarantees.md G8),
 * written by the next flush or flush_async after the tracked rows' changes. Raises for
 * an unknown entity or field, a field that is neither int nor decimal, or a delta of
 * the wrong type (an integer for int fields; an integer or a decimal string for decimal
 * fields); a decimal with more digits than the field takes fails the flush (G7).
 * Increments are kept in user value 4 of the context: { entity, id, field index, delta }.
 */
static int context_increment(lua_State *L) {
  check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  check_id_arg(L, 3);
  const char *name = check_text(L, 4);
  int f = bee_entity_field_index(e, name);
  if (f < 0) return luaL_error(L, "entity '%s' has no field '%s'", bee_entity_name(e), name);
  bee_field_info_t info;
  bee_entity_field_info(e, (size_t)f, &info);
  if (info.type == BEE_FIELD_INT) {
    luaL_argexpected(L, lua_isinteger(L, 5), 5, "an integer (increment of an int field)");
  } else if (info.type == BEE_FIELD_DECIMAL) {
    luaL_argexpected(L, lua_isinteger(L, 5) || lua_type(L, 5) == LUA_TSTRING, 5,
                     "an integer or a decimal string (increment of a decimal field)");
  } else {
    return luaL_error(L, "field '%s' of '%s' is not an int or decimal field: it cannot be incremented", name,
                      bee_entity_name(e));
  }
  lua_getiuservalue(L, 1, 4);
  lua_createtable(L, 4, 0);
  lua_pushlightuserdata(L, (void *)e);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, f);
  lua_rawseti(L, -2, 3);
  lua_pushvalue(L, 5);
  lua_rawseti(L, -2, 4);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* Feeds the tracked increments (list at idx) to the core after the rows' changes. 0 or an error. */
static int feed_increments(lua_State *L, bee_context_t *ctx, int idx, bee_error_t *err) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, idx, k);
    int inc = lua_gettop(L);
    lua_rawgeti(L, inc, 1);
    const bee_entity_t *e = lua_touserdata(L, -1);
    lua_rawgeti(L, inc, 2);
    uint64_t id = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : strtoull(lua_tostring(L, -1), NULL, 10);
    lua_rawgeti(L, inc, 3);
    size_t field = (size_t)lua_tointeger(L, -1);
    lua_rawgeti(L, inc, 4);
    bee_value_t delta = {0};
    if (lua_isinteger(L, -1)) {
      delta.kind = BEE_VALUE_INT;
      delta.i = (int64_t)lua_tointeger(L, -1);
    } else {
      delta.kind = BEE_VALUE_STRING;
      delta.str = lua_tolstring(L, -1, &delta.len);
    }
    int rc = bee_context_increment(ctx, e, id, field, &delta, err);
    lua_settop(L, inc - 1);
    if (rc) return rc;
  }
  return 0;
}

static uint64_t table_id(lua_State *L, int idx) {
  lua_getfield(L, idx, "id");
  uint64_t id = 0;
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) id = (uint64_t)lua_tointeger(L, -1);
  else if (lua_type(L, -1) == LUA_TSTRING && check_id(L, -1)) id = strtoull(lua_tostring(L, -1), NULL, 10);
  lua_pop(L, 1);
  return id;
}

/* 1 when two canonical values are the same. */
static int same_value(const bee_value_t *a, const bee_value_t *b) {
  if (a->kind != b->kind) return 0;
  switch (a->kind) {
    case BEE_VALUE_NIL: return 1;
    case BEE_VALUE_INT:
    case BEE_VALUE_BOOL: return a->i == b->i;
    case BEE_VALUE_FLOAT: return a->f == b->f;
    case BEE_VALUE_STRING: return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
  }
  return 0;
}

/*
 * 0 when the tracked table of an edit entry (at entry) certainly equals its baseline:
 * the same id and every field raw-equal to it. Cheap (no conversion, no allocation):
 * it runs for every tracked row at each flush.
 */
static int edit_maybe_changed(lua_State *L, int entry, size_t n) {
  int top = lua_gettop(L);
  lua_rawgeti(L, entry, ENTRY_TABLE);
  lua_rawgeti(L, entry, ENTRY_BASE);
  lua_rawgeti(L, entry, ENTRY_NAMES);
  int t = top + 1, base = top + 2, names = top + 3, changed = 0;
  lua_getfield(L, t, "id");
  lua_rawgeti(L, entry, ENTRY_ID);
  changed = !lua_rawequal(L, -1, -2);
  for (size_t i = 1; i <= n && !changed; i++) {
    lua_settop(L, names);
    lua_rawgeti(L, names, (lua_Integer)i);
    lua_rawget(L, t);
    lua_rawgeti(L, base, (lua_Integer)i);
    changed = !lua_rawequal(L, -1, -2);
  }
  lua_settop(L, top);
  return changed;
}

/* 1 when the values at a and b (stack indexes) have the same canonical form for field i. */
static int same_canonical(lua_State *L, const bee_entity_t *e, size_t i, const bee_value_t *va, int b) {
  bee_value_t vb, ca, cb;
  bee_error_t ignored;
  int pushed = lua_field_value(L, e, i, b, &vb, &ignored);
  if (pushed < 0) return 0;
  char sa[256], sb[256];
  size_t na = va->len + 80, nb = vb.len + 80;
  char *ba = na <= sizeof sa ? sa : lua_newuserdatauv(L, na, 0);
  char *bb = nb <= sizeof sb ? sb : lua_newuserdatauv(L, nb, 0);
  int same = bee_entity_check_value(e, i, va, &ca, ba, na, &ignored) == 0 &&
             bee_entity_check_value(e, i, &vb, &cb, bb, nb, &ignored) == 0 && same_value(&ca, &cb);
  lua_pop(L, pushed + (ba != sa) + (bb != sb));
  return same;
}

/*
 * Converts the fields of the tracked table of a new or edit entry (at entry) for the
 * core: values[] and changed[] (all 1 for a new row; for an edit, 1 where the canonical
 * form differs from the baseline). With snap (a stack index, or 0) the converted values
 * go into that table by field index: it becomes the next baseline and keeps the
 * strings values[] points into alive. Returns 1 when there is something to write, 0
 * when not, -1 with err filled when a value cannot be converted or the id is not the
 * tracked one.
 */
static int entry_values(lua_State *L, int entry, const bee_entity_t *e, size_t n, bee_value_t *values,
                        unsigned char *changed, int snap, bee_error_t *err) {
  int top = lua_gettop(L);
  int edit = entry_kind(L, entry) == TRACK_EDIT;
  lua_rawgeti(L, entry, ENTRY_TABLE);
  lua_rawgeti(L, entry, ENTRY_BASE);
  lua_rawgeti(L, entry, ENTRY_NAMES);
  int t = top + 1, base = top + 2, names = top + 3;
  uint64_t want = entry_id(L, entry), id = table_id(L, t);
  if (id != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "the id of a tracked entity table cannot change (it is %llu)", (unsigned long long)want);
    field_error(err, e, "id",
                id ? msg : "id must be a positive integer (or a decimal string up to 18446744073709551615)");
    lua_settop(L, top);
    return -1;
  }
  int any = !edit;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, names, (lua_Integer)i + 1);
    lua_rawget(L, t);
    int pushed = lua_field_value(L, e, i, -1, &values[i], err);
    if (pushed < 0) {
      lua_settop(L, top);
      return -1;
    }
    /* top: the converted value (the raw one below it when a set or ref was converted) */
    changed[i] = 1;
    if (edit) {
      lua_rawgeti(L, base, (lua_Integer)i + 1);
      if (lua_rawequal(L, -1, -2) || same_canonical(L, e, i, &values[i], -1)) changed[i] = 0;
      lua_pop(L, 1);
      any |= changed[i];
    }
    if (snap) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, snap, (lua_Integer)i + 1);
    }
    lua_pop(L, 1 + pushed);
  }
  lua_settop(L, top);
  return any;
}

/* Scratch arrays for one row's values, grown on demand (Lua memory: nothing to free). */
typedef struct {
  int idx; /* the stack slot holding the userdata (nil until the first row) */
  size_t cap;
  bee_value_t *values;
  unsigned char *changed;
} scratch_t;

static void scratch_init(lua_State *L, scratch_t *s) {
  lua_pushnil(L);
  s->idx = lua_gettop(L);
  s->cap = 0;
  s->values = NULL;
  s->changed = NULL;
}

static void scratch_need(lua_State *L, scratch_t *s, size_t n) {
  if (s->values && s->cap >= n) return;
  size_t cap = n < 16 ? 16 : n;
  char *p = lua_newuserdatauv(L, cap * (sizeof *s->values + 1), 0);
  lua_replace(L, s->idx);
  s->cap = cap;
  s->values = (bee_value_t *)p;
  s->changed = (unsigned char *)(p + cap * sizeof *s->values);
}

/*
 * Feeds the tracked entries (list at order) to the core, in order. For each row written
 * appends to the list at fed: the entry, then its next baseline (or false for a row the
 * flush forgets: a delete, or a new row deleted before its insert). Returns 0 or an
 * error (err filled).
 */
static int feed_entries(lua_State *L, bee_context_t *ctx, int order, int fed, bee_error_t *err) {
  luaL_checkstack(L, LUA_MINSTACK, "tracked rows");
  lua_Integer count = (lua_Integer)lua_rawlen(L, order), nfed = 0;
  scratch_t s;
  scratch_init(L, &s);
  for (lua_Integer k = 1; k <= count; k++) {
    lua_rawgeti(L, order, k);
    int entry = lua_gettop(L), kind = entry_kind(L, entry), rc = 0;
    const bee_entity_t *e = entry_entity(L, entry);
    size_t n = bee_entity_field_count(e);
    if (kind == TRACK_DELETE || kind == TRACK_DROPPED) {
      if (kind == TRACK_DELETE) rc = bee_context_delete(ctx, e, entry_id(L, entry), err);
      lua_pushboolean(L, 0);
    } else if (kind == TRACK_NEW || (kind == TRACK_EDIT && edit_maybe_changed(L, entry, n))) {
      scratch_need(L, &s, n);
      lua_createtable(L, (int)n, 0);
      int any = entry_values(L, entry, e, n, s.values, s.changed, lua_gettop(L), err);
      if (any < 0) rc = BEE_EVALIDATION;
      else if (any && kind == TRACK_NEW) rc = bee_context_insert(ctx, e, entry_id(L, entry), s.values, err);
      else if (any) rc = bee_context_update(ctx, e, entry_id(L, entry), s.values, s.changed, err);
      else lua_pushnil(L); /* unchanged: keeps its baseline */
    } else {
      lua_pushnil(L);
    }
    if (rc) return rc;
    if (!lua_isnil(L, -1)) {
      lua_pushvalue(L, entry);
      lua_rawseti(L, fed, ++nfed);
      lua_rawseti(L, fed, ++nfed);
    }
    lua_settop(L, entry - 1);
  }
  return 0;
}

/*
 * After a flush that wrote (also when a cache update then failed): the rows written get
 * their new baselines, new rows become edits, deleted rows are forgotten. Allocates
 * nothing, so it cannot raise once the core has written.
 */
static void commit_fed(lua_State *L, int order, int fed) {
  lua_Integer nfed = (lua_Integer)lua_rawlen(L, fed);
  int forgot = 0;
  for (lua_Integer k = 1; k <= nfed; k += 2) {
    lua_rawgeti(L, fed, k);
    int entry = lua_gettop(L);
    lua_rawgeti(L, fed, k + 1);
    if (lua_istable(L, -1)) {
      lua_rawseti(L, entry, ENTRY_BASE);
      set_entry_kind(L, entry, TRACK_EDIT);
    } else {
      lua_pop(L, 1);
      lua_getiuservalue(L, 1, 3);
      lua_rawgeti(L, entry, ENTRY_ENTITY);
      if (lua_rawget(L, -2) == LUA_TTABLE) {
        lua_rawgeti(L, entry, ENTRY_ID);
        lua_pushnil(L);
        lua_rawset(L, -3);
      }
      lua_pop(L, 2);
      set_entry_kind(L, entry, TRACK_DEAD);
      forgot = 1;
    }
    lua_pop(L, 1);
  }
  if (!forgot) return;
  lua_Integer count = (lua_Integer)lua_rawlen(L, order), kept = 0;
  for (lua_Integer k = 1; k <= count; k++) {
    lua_rawgeti(L, order, k);
    if (entry_kind(L, lua_gettop(L)) != TRACK_DEAD) lua_rawseti(L, order, ++kept);
    else lua_pop(L, 1);
  }
  for (lua_Integer k = kept + 1; k <= count; k++) {
    lua_pushnil(L);
    lua_rawseti(L, order, k);
  }
}

/*
 * ctx:flush() -> true | nil, err (docs/guarantees.md G6, G7); ctx:flush_async() the same through the
 * queue (G1). Nothing written (a validation error, or the core kept its changes
 * pending): the tracking is left as it was. Written: the tracked tables stay tracked
 * with what was written as their baseline (G8), also when a cache update failed after
 * the write, which then returns nil, err.
 */
static int flush_with(lua_State *L, int (*run)(bee_context_t *, bee_error_t *)) {
  bee_context_t *ctx = check_context(L);
  context_engine(L);
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 2); /* 2: the entries, in order */
  lua_newtable(L);            /* 3: the entries fed, each with its next baseline */
  bee_error_t err;
  bee_context_drop_changes(ctx);
  lua_getiuservalue(L, 1, 4); /* 4: the increments, in order */
  int rc = feed_entries(L, ctx, 2, 3, &err);
  if (!rc) rc = feed_increments(L, ctx, 4, &err);
  if (rc) {
    bee_context_drop_changes(ctx);
    return fail(L, &err);
  }
  lua_settop(L, 4);
  rc = run(ctx, &err);
  if (rc && bee_context_pending(ctx)) { /* nothing written: keep tracking as it was */
    bee_context_drop_changes(ctx);
    return fail(L, &err);
  }
  commit_fed(L, 2, 3);
  for (lua_Integer k = (lua_Integer)lua_rawlen(L, 4); k >= 1; k--) { /* written: the increments are done */
    lua_pushnil(L); /* (emptied in place: nothing may raise once the core wrote) */
    lua_rawseti(L, 4, k);
  }
  if (rc) return fail(L, &err); /* written, but a cache could not be updated */
  lua_pushboolean(L, 1);
  return 1;
}

static int context_flush(lua_State *L) { return flush_with(L, bee_context_flush); }
static int context_flush_async(lua_State *L) { return flush_with(L, bee_context_flush_async); }

/*
 * "beeorm.Context (C tracked changes, R tracked rows)": C rows the next flush would
 * write (inserts, deletes, edits with a field that differs from the baseline in
 * canonical form), R rows tracked (what the context holds until clear_flush).
 */
static int context_tostring(lua_State *L) {
  lbee_context_t *c = to_context(L);
  if (!c->ctx) {
    lua_pushstring(L, "beeorm.Context (closed)");
    return 1;
  }
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 2);
  luaL_checkstack(L, LUA_MINSTACK, "tracked rows");
  lua_Integer rows = (lua_Integer)lua_rawlen(L, 2), changes = 0;
  scratch_t s;
  scratch_init(L, &s);
  for (lua_Integer k = 1; k <= rows; k++) {
    lua_rawgeti(L, 2, k);
    int entry = lua_gettop(L), kind = entry_kind(L, entry);
    const bee_entity_t *e = entry_entity(L, entry);
    size_t n = bee_entity_field_count(e);
    if (kind == TRACK_NEW || kind == TRACK_DELETE) {
      changes++;
    } else if (kind == TRACK_EDIT && edit_maybe_changed(L, entry, n)) {
      bee_error_t ignored;
      scratch_need(L, &s, n);
      if (entry_values(L, entry, e, n, s.values, s.changed, 0, &ignored) != 0) changes++;
    }
    lua_settop(L, entry - 1);
  }
  lua_getiuservalue(L, 1, 4);
  changes += (lua_Integer)lua_rawlen(L, -1); /* increments */
  lua_pushfstring(L, "beeorm.Context (%I tracked changes, %I tracked rows)", changes, rows);
  return 1;
}

/* Rows delivered by the core become Lua tables; each is built under lua_pcall so a
   memory error cannot unwind through the core. */
typedef struct {
  lua_State *L;
  int result, mt; /* stack indexes */
  int mode; /* 0: result[index+1] = row or false; 1: result[index+1] = row, skip NULL; 2: one row left on the stack */
  int failed;
  size_t fields;
  const bee_row_t *row;
  size_t index;
} lrows_t;

static int build_row(lua_State *L) {
  lrows_t *r = lua_touserdata(L, 1); /* 2: result table, 3: metatable */
  if (!r->row) {
    if (r->mode == 0) {
      lua_pushboolean(L, 0);
      lua_rawseti(L, 2, (lua_Integer)r->index + 1);
    }
    if (r->mode == 2) lua_pushnil(L);
    return r->mode == 2;
  }
  lua_createtable(L, 0, (int)r->fields + 1);
  push_id(L, r->row->id);
  lua_setfield(L, -2, "id");
  for (size_t i = 0; i < r->fields; i++) {
    const bee_value_t *v = &r->row->values[i];
    if (v->kind == BEE_VALUE_NIL) continue;
    lua_rawgeti(L, 3, (lua_Integer)i + 1);
    push_value(L, v);
    lua_rawset(L, -3);
  }
  lua_pushvalue(L, 3);
  lua_setmetatable(L, -2);
  if (r->mode == 2) return 1; /* single row: left on the caller's stack */
  lua_rawseti(L, 2, (lua_Integer)r->index + 1);
  return 0;
}

static int collect(void *ud, size_t index, const bee_row_t *row) {
  lrows_t *r = ud;
  r->row = row;
  r->index = index;
  return r->failed = protected_call(r->L, build_row, r, r->result, r->mt, r->mode == 2);
}

/* Pushes the result table and the entity metatable; fills r. */
static void rows_begin(lua_State *L, lrows_t *r, const bee_entity_t *e, int mode, int narr) {
  if (mode == 2) lua_pushnil(L); /* a single row needs no result table */
  else lua_createtable(L, narr, 0);
  r->result = lua_gettop(L);
  lua_getiuservalue(L, 1, 1);
  push_entity_mt(L, lua_gettop(L), e);
  lua_remove(L, -2);
  r->mt = lua_gettop(L);
  r->L = L;
  r->mode = mode;
  r->failed = 0;
  r->fields = bee_entity_field_count(e);
}

/* Common ending: error -> nil, err; Lua error while building -> re-raise. */
static int rows_end(lua_State *L, lrows_t *r, int rc, bee_error_t *err) {
  if (r->failed) return lua_error(L);
  if (rc == BEE_EINVAL) return luaL_error(L, "%s", err->message);
  if (rc) return fail(L, err);
  lua_pushvalue(L, r->result);
  return 1;
}

/* ctx:get_by_id(name, id) -> entity table | nil (not found) | nil, err */
static int context_get_by_id(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  uint64_t id = check_id_arg(L, 3);
  lua_settop(L, 3);
  lrows_t r;
  rows_begin(L, &r, e, 2, 0);
  bee_error_t err;
  int rc = bee_context_get_by_ids(ctx, e, &id, 1, collect, &r, &err);
  if (r.failed) return lua_error(L);
  if (rc == BEE_EINVAL) return luaL_error(L, "%s", err.message);
  if (rc) return fail(L, &err);
  return 1; /* the row (or nil) that collect left on the stack */
}

/* ctx:get_by_ids(name, { ids }) -> array in input order, false where missing | nil, err */
static int context_get_by_ids(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  uint64_t *ids = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ids, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, i);
    if (!check_id(L, -1)) return luaL_error(L, "ids[%d] is not an id", (int)i);
    ids[i - 1] = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : strtoull(lua_tostring(L, -1), NULL, 10);
    lua_pop(L, 1);
  }
  lrows_t r;
  rows_begin(L, &r, e, 0, (int)n);
  bee_error_t err;
  int rc = bee_context_get_by_ids(ctx, e, ids, (size_t)n, collect, &r, &err);
  return rows_end(L, &r, rc, &err);
}

/*
 * Reads lookup values: the arguments from index `first` to the top, or one table of
 * values there (its items are pushed, so their strings stay alive on the stack).
 */
static size_t lookup_values(lua_State *L, int first, bee_value_t *out, size_t max) {
  int top = lua_gettop(L);
  if (top == first && lua_istable(L, first)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, first);
    luaL_argcheck(L, n >= 1 && (size_t)n <= max, first, "expected 1 to 16 values");
    luaL_checkstack(L, (int)n, "too many values");
    for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, first, i);
    first = top + 1;
    top = lua_gettop(L);
  }
  size_t n = 0;
  for (int i = first; i <= top && n < max; i++) {
    if (to_value(L, i, &out[n]) != 0) luaL_argerror(L, i, "expected nil, boolean, number or string");
    n++;
  }
  return n;
}

/* ctx:get_by_unique_index(name, index, value...) -> entity table | nil | nil, err */
static int context_get_by_unique_index(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  const char *index = check_text(L, 3);
  bee_value_t values[16];
  size_t n = lookup_values(L, 4, values, 16);
  lrows_t r;
  rows_begin(L, &r, e, 1, 1);
  bee_error_t err;
  int rc = bee_context_get_by_unique(ctx, e, index, values, n, collect, &r, &err);
  if (rows_end(L, &r, rc, &err) == 2) return 2;
  lua_rawgeti(L, -1, 1);
  return 1;
}

/* ctx:get_by_reference(name, field, id) -> array ordered by id | nil, err */
static int context_get_by_reference(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  const char *field = check_text(L, 3);
  uint64_t id;
  if (lua_istable(L, 4)) {
    id = table_id(L, 4);
    luaL_argcheck(L, id != 0, 4, "the entity table has no valid id");
  } else {
    id = check_id_arg(L, 4);
  }
  lua_settop(L, 4);
  lrows_t r;
  rows_begin(L, &r, e, 1, 0);
  bee_error_t err;
  int rc = bee_context_get_by_reference(ctx, e, field, id, collect, &r, &err);
  return rows_end(L, &r, rc, &err);
}

/* ctx:get_by_index(name, index, value...) -> array ordered by id | nil, err */
static int context_get_by_index(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  const char *index = check_text(L, 3);
  bee_value_t values[16];
  size_t n = lookup_values(L, 4, values, 16);
  lrows_t r;
  rows_begin(L, &r, e, 1, 0);
  bee_error_t err;
  int rc = bee_context_get_by_index(ctx, e, index, values, n, collect, &r, &err);
  return rows_end(L, &r, rc, &err);
}

/* ctx:get_all(name) -> array ordered by id | nil, err */
static int context_get_all(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  lua_settop(L, 2);
  lrows_t r;
  rows_begin(L, &r, e, 1, 0);
  bee_error_t err;
  int rc = bee_context_get_all(ctx, e, collect, &r, &err);
  return rows_end(L, &r, rc, &err);
}

/* ctx:search(name, where [, args] [, { page = 1, size = 100 }]) -> array | nil, err */
static int context_search(lua_State *L) {
  bee_context_t *ctx = check_context(L);
  const bee_entity_t *e = ctx_entity(L, 2);
  const char *where = opt_text(L, 3, "");
  lua_settop(L, 5);
  size_t offset = 0, limit = 0;
  if (!lua_isnil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    lua_getfield(L, 5, "page");
    lua_getfield(L, 5, "size");
    lua_Integer page = luaL_optinteger(L, -2, 1), size = luaL_optinteger(L, -1, 100);
    luaL_argcheck(L, page >= 1 && size >= 1 && size <= 100000, 5, "page must be 1 or more and size 1 to 100000");
    offset = (size_t)((page - 1) * size);
    limit = (size_t)size;
    lua_pop(L, 2);
  }
  bee_value_t *args;
  size_t nargs = check_args(L, 4, &args);
  lrows_t r;
  rows_begin(L, &r, e, 1, 0);
  bee_error_t err;
  int rc = bee_context_search(ctx, e, where, args, nargs, offset, limit, collect, &r, &err);
  return rows_end(L, &r, rc, &err);
}

/* ------------------------------------------------------------------------ */
/* Consuming and inspecting queues                                          */

/* Pushes a failed event as { queue, stream_id, kind, entity, table, id, sql, args, values, error, ... }. */
static void push_failed_event(lua_State *L, const bee_failed_event_t *ev) {
  lua_createtable(L, 0, 14);
  lua_pushstring(L, ev->queue);
  lua_setfield(L, -2, "queue");
  lua_pushstring(L, ev->stream_id);
  lua_setfield(L, -2, "stream_id");
  lua_pushstring(L, ev->kind == 'I' ? "insert" : ev->kind == 'U' ? "update" : "delete");
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, ev->entity);
  lua_setfield(L, -2, "entity");
  lua_pushstring(L, ev->table);
  lua_setfield(L, -2, "table");
  push_id(L, ev->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, ev->sql);
  lua_setfield(L, -2, "sql");
  lua_pushinteger(L, (lua_Integer)ev->event + 1); /* places in the entry, 1-based */
  lua_setfield(L, -2, "event");
  lua_pushinteger(L, (lua_Integer)ev->failed_event + 1);
  lua_setfield(L, -2, "failed_event");
  lua_createtable(L, (int)ev->ncols, 0); /* args: the values in column order (nil holes: see n) */
  lua_createtable(L, 0, (int)ev->ncols); /* values: column -> value */
  for (size_t i = 0; i < ev->ncols; i++) {
    push_value(L, &ev->values[i]);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, ev->cols[i]);
    lua_rawseti(L, -3, (lua_Integer)i + 1);
  }
  lua_setfield(L, -3, "values");
  lua_pushinteger(L, (lua_Integer)ev->ncols);
  lua_setfield(L, -2, "n");
  lua_setfield(L, -2, "args");
  int incs = 0; /* increments: column -> true (its value is added, `col = col + value`) */
  for (size_t i = 0; i < ev->ncols; i++) incs |= ev->increments && ev->increments[i];
  if (incs) {
    lua_createtable(L, 0, 1);
    for (size_t i = 0; i < ev->ncols; i++)
      if (ev->increments[i]) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, ev->cols[i]);
      }
    lua_setfield(L, -2, "increments");
  }
  lua_createtable(L, 0, 2);
  if (ev->code < 0) lua_pushstring(L, bee_err_code(ev->code)); /* "malformed", "invalid" ... */
  else lua_pushinteger(L, ev->code);                          /* a MySQL errno */
  lua_setfield(L, -2, "code");
  lua_pushstring(L, ev->message);
  lua_setfield(L, -2, "message");
  lua_setfield(L, -2, "error");
  if (ev->resolver_error) {
    lua_pushstring(L, ev->resolver_error);
    lua_setfield(L, -2, "resolver_error");
  }
  if (ev->raw) { /* a malformed entry or record: its first 256 bytes, in hex */
    static const char hex[] = "0123456789abcdef";
    char buf[513];
    size_t n = ev->raw_len < 256 ? ev->raw_len : 256;
    for (size_t k = 0; k < n; k++) {
      buf[2 * k] = hex[(unsigned char)ev->raw[k] >> 4];
      buf[2 * k + 1] = hex[(unsigned char)ev->raw[k] & 15];
    }
    lua_pushlstring(L, buf, 2 * n);
    lua_setfield(L, -2, "raw");
    lua_pushinteger(L, (lua_Integer)ev->raw_len);
    lua_setfield(L, -2, "raw_len");
  }
  lua_pushinteger(L, ev->attempts);
  lua_setfield(L, -2, "attempts");
  lua_pushnumber(L, (lua_Number)ev->failed_at_ms / 1000.0);
  lua_setfield(L, -2, "failed_at");
  lua_pushinteger(L, (lua_Integer)ev->events);
  lua_setfield(L, -2, "events");
}

typedef struct {
  lua_State *L;
  int fn; /* stack index of the resolver function */
  const bee_failed_event_t *ev;
  bee_edit_t *edit;
  bee_resolution_t result;
} lresolve_t;

/* Runs the Lua resolver (under lua_pcall): "retry", "skip", "keep", or { values = { col = v } }. */
static int call_resolver(lua_State *L) {
  lresolve_t *r = lua_touserdata(L, 1); /* 2: the resolver function */
  lua_pushvalue(L, 2);
  push_failed_event(L, r->ev);
  lua_pushvalue(L, -1);
  lua_insert(L, -3); /* keep the event table below the call */
  lua_call(L, 1, 1);
  r->result = BEE_RESOLVE_KEEP;
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (!strcmp(s, "retry")) r->result = BEE_RESOLVE_RETRY;
    else if (!strcmp(s, "skip")) r->result = BEE_RESOLVE_SKIP;
    else if (strcmp(s, "keep") != 0) return luaL_error(L, "a resolver returns \"retry\", \"skip\", \"keep\" or an edited event, got \"%s\"", s);
  } else if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "values");
    if (!lua_istable(L, -1)) return luaL_error(L, "an edited event needs a values table");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      bee_value_t v;
      if (lua_type(L, -2) != LUA_TSTRING || to_value(L, -1, &v) != 0)
        return luaL_error(L, "edited values must map column names to nil, booleans, numbers or strings");
      /* only changed columns: the event table holds the originals */
      if (bee_failed_event_edit(r->edit, lua_tostring(L, -2), &v) != 0)
        return luaL_error(L, "the failed event has no column '%s'", lua_tostring(L, -2));
      lua_pop(L, 1);
    }
    r->result = BEE_RESOLVE_RETRY;
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "a resolver returns \"retry\", \"skip\", \"keep\" or an edited event");
  }
  return 0;
}

typedef struct {
  lua_State *L;
  int fn;
  int failed; /* the resolver raised: its message is kept at the top of the stack (as a string) */
} lconsumer_t;

/*
 * Message handler of resolver calls: the error as a string, followed by where it was
 * raised (the first Lua frame of the traceback, e.g. "resolver.lua:7: in function
 * 'fix'"), so a record says which line of which resolver failed.
 */
static int resolver_msgh(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, NULL, 1);
  const char *tb = lua_tostring(L, -1), *frame = NULL;
  for (const char *line = tb ? strchr(tb, '\n') : NULL; line; line = strchr(line + 1, '\n')) {
    const char *p = line + 1;
    while (*p == '\t' || *p == ' ') p++;
    if (*p && strncmp(p, "[C]", 3) != 0) {
      frame = p;
      break;
    }
  }
  if (frame) {
    const char *end = strchr(frame, '\n');
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, msg);
    luaL_addstring(&b, " (raised at: ");
    luaL_addlstring(&b, frame, end ? (size_t)(end - frame) : strlen(frame));
    luaL_addstring(&b, ")");
    luaL_pushresult(&b);
  } else {
    lua_pushstring(L, msg);
  }
  return 1;
}

static bee_resolution_t lua_resolver(void *ud, const bee_failed_event_t *ev, bee_edit_t *edit) {
  lconsumer_t *c = ud;
  lresolve_t r = {c->L, c->fn, ev, edit, BEE_RESOLVE_KEEP};
  lua_State *L = c->L;
  lua_pushcfunction(L, resolver_msgh);
  int msgh = lua_gettop(L);
  lua_pushcfunction(L, call_resolver);
  lua_pushlightuserdata(L, &r);
  lua_pushvalue(L, c->fn);
  int raised = lua_pcall(L, 2, 0, msgh) != LUA_OK;
  lua_remove(L, msgh);
  if (raised) {
    /* A resolver with a bug: the entry is kept with its message, and consumption goes on.
       The first message is kept for the stats (resolver_error). */
    if (!lua_isstring(L, -1)) { /* (resolver_msgh makes it one; only an error in it could not) */
      lua_pop(L, 1);
      lua_pushliteral(L, "the resolver raised a non-string error");
    }
    bee_failed_event_resolver_failed(edit, lua_tostring(L, -1));
    if (!c->failed) {
      c->failed = 1;
      lua_pushvalue(L, -1);
      lua_setfield(L, LUA_REGISTRYINDEX, "beeorm.resolver_error");
    }
    lua_pop(L, 1);
    return BEE_RESOLVE_KEEP;
  }
  return r.result;
}

static bee_engine_t *volatile signal_engine;
static void on_signal(int sig) {
  (void)sig;
  if (signal_engine) bee_engine_consume_stop(signal_engine);
}

/*
 * core.consume(engine_or_context, { block =, max_retries =, max_batch =, resolver = })
 * -> stats table | nil, err. Blocking mode stops on SIGINT/SIGTERM (handlers are
 * restored afterwards) or core.stop_consuming().
 */
static int core_consume(lua_State *L) {
  bee_engine_t *engine;
  if (luaL_testudata(L, 1, BEE_CONTEXT_MT)) {
    check_context(L);
    engine = context_engine(L);
  } else {
    engine = check_engine(L);
  }
  bee_consume_options_t opts;
  memset(&opts, 0, sizeof opts);
  lconsumer_t lc = {L, 0, 0};
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "block");
    opts.block = lua_toboolean(L, -1);
    lua_getfield(L, 2, "max_retries");
    opts.max_retries = (int)luaL_optinteger(L, -1, 5);
    lua_getfield(L, 2, "max_batch");
    opts.max_batch = (int)luaL_optinteger(L, -1, 200);
    lua_getfield(L, 2, "workers");
    if (!lua_isnil(L, -1)) { /* nil: the default (BEE_CONSUME_WORKERS, at most 2 per CPU) */
      lua_Integer workers = luaL_checkinteger(L, -1);
      luaL_argcheck(L, workers >= 1 && workers <= 256, 2, "workers must be 1 to 256");
      opts.workers = (int)workers;
    }
    lua_getfield(L, 2, "resolver");
    if (!lua_isnil(L, -1)) {
      luaL_argcheck(L, lua_isfunction(L, -1), 2, "resolver must be a function");
      lc.fn = lua_gettop(L);
      opts.resolver = lua_resolver;
      opts.resolver_ud = &lc;
    }
  }
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "beeorm.resolver_error");
  struct sigaction sa, old_int, old_term;
  if (opts.block) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    signal_engine = engine;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  bee_consume_stats_t stats;
  bee_error_t err;
  int rc = bee_engine_consume(engine, &opts, &stats, &err);
  if (opts.block) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    signal_engine = NULL;
  }
  if (rc) return fail(L, &err);
  lua_createtable(L, 0, 10);
  if (lc.failed) { /* the first resolver error; every entry it failed on is in the error list */
    lua_getfield(L, LUA_REGISTRYINDEX, "beeorm.resolver_error");
    lua_setfield(L, -2, "resolver_error");
  }
  set_int(L, "resolver_errors", (lua_Integer)stats.resolver_errors);
  set_int(L, "entries", (lua_Integer)stats.entries);
  set_int(L, "events", (lua_Integer)stats.events);
  set_int(L, "batches", (lua_Integer)stats.batches);
  set_int(L, "failed", (lua_Integer)stats.failed);
  set_int(L, "skipped", (lua_Integer)stats.skipped);
  set_int(L, "retried", (lua_Integer)stats.retried);
  set_int(L, "workers", (lua_Integer)stats.workers);
  set_int(L, "duplicates", (lua_Integer)stats.duplicates);
  return 1;
}

static int core_stop_consuming(lua_State *L) {
  (void)L;
  bee_engine_consume_stop(NULL);
  return 0;
}

/* core.set_error_class(errno, temporary | nil) */
static int core_set_error_class(lua_State *L) {
  lua_Integer code = luaL_checkinteger(L, 1);
  luaL_argcheck(L, code > 0 && code < 4096, 1, "expected a MySQL errno");
  bee_set_error_class((unsigned)code, lua_isnoneornil(L, 2) ? -1 : lua_toboolean(L, 2));
  return 0;
}

/* engine:queues() -> array of queue names ("pool:shard") */
static int engine_queues(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  size_t n = bee_engine_queue_count(engine);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    char name[128];
    bee_engine_queue_name(engine, i, name, sizeof name);
    lua_pushstring(L, name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static size_t check_queue(lua_State *L, bee_engine_t *engine, int arg) {
  lua_Integer i = luaL_checkinteger(L, arg);
  luaL_argcheck(L, i >= 1 && (size_t)i <= bee_engine_queue_count(engine), arg, "no such queue");
  return (size_t)i - 1;
}

/* engine:queue_stats(i) -> { len, oldest_event_seconds, lag, pending, errors } | nil, err */
static int engine_queue_stats(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  size_t i = check_queue(L, engine, 2);
  bee_queue_stats_t s;
  bee_error_t err;
  if (bee_engine_queue_stats(engine, i, &s, &err) != 0) return fail(L, &err);
  lua_createtable(L, 0, 5);
  set_int(L, "len", (lua_Integer)s.len);
  lua_pushnumber(L, s.oldest_event_seconds);
  lua_setfield(L, -2, "oldest_event_seconds");
  lua_pushnumber(L, s.lag);
  lua_setfield(L, -2, "lag");
  set_int(L, "pending", (lua_Integer)s.pending);
  set_int(L, "errors", (lua_Integer)s.errors);
  set_int(L, "applied_total", (lua_Integer)s.applied_total);
  set_int(L, "failed_total", (lua_Integer)s.failed_total);
  return 1;
}

static void push_worker(void *ud, const bee_consumer_worker_t *w) {
  lua_State *L = ud;
  lua_createtable(L, 0, 5);
  set_str(L, "token", w->token);
  set_str(L, "host", w->host);
  set_int(L, "pid", w->pid);
  lua_newtable(L);
  const char *p = w->queues;
  lua_Integer n = 0;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len) {
      lua_pushlstring(L, p, len);
      lua_rawseti(L, -2, ++n);
    }
    p += len + (comma ? 1 : 0);
  }
  lua_setfield(L, -2, "queues");
  lua_pushnumber(L, w->heartbeat_age_seconds);
  lua_setfield(L, -2, "heartbeat_age_seconds");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/*
 * engine:consumers() -> { workers = { { token, host, pid, queues = { ... },
 * heartbeat_age_seconds }, ... }, applied_per_second, applied_total, failed_total } | nil, err
 */
static int engine_consumers(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  lua_settop(L, 1);
  lua_newtable(L); /* 2: the workers */
  bee_consumers_t c;
  bee_error_t err;
  if (bee_engine_consumers(engine, &c, push_worker, L, &err) != 0) return fail(L, &err);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "workers");
  lua_pushnumber(L, c.applied_per_second);
  lua_setfield(L, -2, "applied_per_second");
  set_int(L, "applied_total", (lua_Integer)c.applied_total);
  set_int(L, "failed_total", (lua_Integer)c.failed_total);
  return 1;
}

typedef struct {
  lua_State *L;
  int result;
  lua_Integer n;
  int failed;
  const bee_failed_event_t *ev; /* the record being pushed */
} lerrors_t;

static int push_error_row(lua_State *L) {
  lerrors_t *e = lua_touserdata(L, 1); /* 2: the result table */
  push_failed_event(L, e->ev);
  lua_rawseti(L, 2, ++e->n);
  return 0;
}

static int collect_error(void *ud, const bee_failed_event_t *ev) {
  lerrors_t *e = ud;
  e->ev = ev;
  return e->failed = protected_call(e->L, push_error_row, e, e->result, 0, 0);
}

/*
 * engine:queue_errors(i [, max] [, { events = true }]) -> array of failed events, oldest
 * first | nil, err. With events = true, every event of each errored entry (ev.event its
 * place, ev.failed_event the failing one's); max counts entries.
 */
static int engine_queue_errors(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  size_t i = check_queue(L, engine, 2);
  lua_Integer max = luaL_optinteger(L, 3, 100);
  luaL_argcheck(L, max >= 1, 3, "expected 1 or more");
  int all = 0;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "events");
    all = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 4);
  lua_newtable(L);
  lerrors_t e = {L, lua_gettop(L), 0, 0, NULL};
  bee_error_t err;
  int rc = all ? bee_engine_queue_error_events(engine, i, (size_t)max, collect_error, &e, &err)
               : bee_engine_queue_errors(engine, i, (size_t)max, collect_error, &e, &err);
  if (e.failed) return lua_error(L);
  if (rc) return fail(L, &err);
  lua_pushvalue(L, e.result);
  return 1;
}

/*
 * engine:queue_retry(i, ev | stream_id [, { force = true }]) and
 * engine:queue_skip(i, ev | stream_id [, event]): skip drops the failing event, or event
 * `event` (1-based) of the entry; an ev of another than the failing event (listed with
 * events = true) names that event.
 */
static int queue_resolve(lua_State *L, int retry) {
  bee_engine_t *engine = check_engine(L);
  size_t i = check_queue(L, engine, 2);
  const char *id;
  lua_Integer event = 0; /* 0: the failing one */
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "stream_id");
    id = lua_tostring(L, -1);
    luaL_argcheck(L, id != NULL, 3, "the event has no stream_id");
    lua_getfield(L, 3, "event");
    lua_getfield(L, 3, "failed_event");
    if (lua_isinteger(L, -2) && lua_isinteger(L, -1) && lua_tointeger(L, -2) != lua_tointeger(L, -1))
      event = lua_tointeger(L, -2);
    lua_pop(L, 2);
  } else {
    id = check_text(L, 3);
  }
  if (!retry && !lua_isnoneornil(L, 4)) {
    event = luaL_checkinteger(L, 4);
    luaL_argcheck(L, event >= 1, 4, "an event's place in its entry, 1 or more");
  }
  int force = 0;
  if (retry && !lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "force");
    force = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  bee_error_t err;
  int rc = retry ? bee_engine_queue_retry(engine, i, id, force, &err)
           : event ? bee_engine_queue_skip_event(engine, i, id, (size_t)event - 1, &err)
                   : bee_engine_queue_skip(engine, i, id, &err);
  if (rc) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int engine_queue_retry(lua_State *L) { return queue_resolve(L, 1); }
static int engine_queue_skip(lua_State *L) { return queue_resolve(L, 0); }

/* engine:cache_stats(name) -> { hits, misses, evictions, inserts, stale_skips, entries, capacity, bytes } */
static int engine_cache_stats(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  const bee_entity_t *e = check_entity(L, engine, 2);
  bee_cache_stats_t s;
  bee_entity_cache_stats(engine, e, &s);
  lua_createtable(L, 0, 8);
  set_int(L, "hits", (lua_Integer)s.hits);
  set_int(L, "misses", (lua_Integer)s.misses);
  set_int(L, "evictions", (lua_Integer)s.evictions);
  set_int(L, "inserts", (lua_Integer)s.inserts);
  set_int(L, "stale_skips", (lua_Integer)s.stale_skips);
  set_int(L, "entries", (lua_Integer)s.entries);
  set_int(L, "capacity", (lua_Integer)s.capacity);
  set_int(L, "bytes", (lua_Integer)s.bytes);
  return 1;
}

/*
 * engine:clear_cache(entity [, { ids }]) -> true | nil, err
 * Drops what the caches hold of those rows (without ids: of the whole entity), in Redis
 * and in every process's local cache (docs/guarantees.md G8), after plain SQL changed them.
 */
static int engine_clear_cache(lua_State *L) {
  bee_engine_t *engine = check_engine(L);
  const bee_entity_t *e = check_entity(L, engine, 2);
  lua_settop(L, 3);
  uint64_t *ids = NULL;
  lua_Integer n = 0;
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, 3);
    ids = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ids, 0);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, 3, i);
      if (!check_id(L, -1)) return luaL_error(L, "ids[%d] is not an id", (int)i);
      ids[i - 1] = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : strtoull(lua_tostring(L, -1), NULL, 10);
      lua_pop(L, 1);
    }
  }
  bee_error_t err;
  if (bee_engine_clear_cache(engine, e, ids, (size_t)n, &err) != 0) return fail(L, &err);
  lua_pushboolean(L, 1);
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
  set_int(L, "connect_timeout_ms", s.connect_timeout_ms ? s.connect_timeout_ms : BEE_REDIS_CONNECT_TIMEOUT_MS);
  set_int(L, "timeout_ms", s.timeout_ms ? s.timeout_ms : BEE_REDIS_TIMEOUT_MS);
  set_int(L, "replicas", s.replicas);
  set_int(L, "wait_timeout_ms", s.wait_timeout_ms ? s.wait_timeout_ms : BEE_REDIS_WAIT_TIMEOUT_MS);
  char buf[2 * BEE_DSN_FIELD_MAX + 64];
  bee_redis_settings_describe(&s, buf, sizeof buf);
  set_str(L, "address", buf);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                   */

/* Lua states that loaded the module; the client libraries are released with the last. */
static atomic_int lbee_states;

/* core.monotonic() -> seconds from an arbitrary start, nanosecond resolution (for timing). */
static int monotonic(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

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
      {"register_redis_sentinel", registry_register_redis_sentinel},
      {"register_entity", registry_register_entity},
      {"load_yaml", registry_load_yaml},
      {"validate", registry_validate},
      {"close", registry_gc},
      {NULL, NULL},
  };
  static const luaL_Reg engine_methods[] = {
      {"pools", engine_pools},
      {"entities", engine_entities},
      {"check_values", engine_check_values},
      {"schema_alters", engine_schema_alters},
      {"sync_schema", engine_sync_schema},
      {"sql_exec", engine_sql_exec},
      {"context", engine_context},
      {"queues", engine_queues},
      {"queue_stats", engine_queue_stats},
      {"queue_errors", engine_queue_errors},
      {"consumers", engine_consumers},
      {"queue_retry", engine_queue_retry},
      {"queue_skip", engine_queue_skip},
      {"cache_stats", engine_cache_stats},
      {"clear_cache", engine_clear_cache},
      {"sql_query", engine_sql_query},
      {"close", engine_gc},
      {NULL, NULL},
  };
  static const luaL_Reg context_methods[] = {
      {"new_entity", context_new_entity},
      {"edit_entity", context_edit_entity},
      {"delete_entity", context_delete_entity},
      {"clear_flush", context_clear_flush},
      {"increment", context_increment},
      {"flush", context_flush},
      {"flush_async", context_flush_async},
      {"get_by_id", context_get_by_id},
      {"get_by_ids", context_get_by_ids},
      {"get_by_unique_index", context_get_by_unique_index},
      {"get_by_reference", context_get_by_reference},
      {"get_by_index", context_get_by_index},
      {"get_all", context_get_all},
      {"search", context_search},
      {"close", context_gc},
      {NULL, NULL},
  };
  static const luaL_Reg functions[] = {
      {"registry", registry_new},
      {"parse_mysql_dsn", parse_mysql_dsn},
      {"parse_redis_address", parse_redis_address},
      {"monotonic", monotonic},
      {"consume", core_consume},
      {"stop_consuming", core_stop_consuming},
      {"set_error_class", core_set_error_class},
      {NULL, NULL},
  };
  new_class(L, BEE_REGISTRY_MT, registry_methods, registry_gc, registry_tostring);
  new_class(L, BEE_ENGINE_MT, engine_methods, engine_gc, engine_tostring);
  new_class(L, BEE_CONTEXT_MT, context_methods, context_gc, context_tostring);
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
