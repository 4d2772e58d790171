/*
 * beeorm_core.c: the Lua 5.4 binding (module "beeorm.core"). A client of beeorm.h only.
 *
 * Rules (STYLE.md): argument errors raise; failed operations return nil, err where err
 * is a table { code, message, temporary, pool, entity, field } with a shared metatable
 * whose __tostring gives one line. No malloc'd memory is held across a call that can
 * raise. Userdata are born closed, have one idempotent __gc/__close and two checkers.
 */
#include <stdarg.h>
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
static int check_field_value(lua_State *L, const bee_entity_t *e, size_t field, int idx, bee_error_t *err) {
  bee_field_info_t info;
  bee_entity_field_info(e, field, &info);
  idx = lua_absindex(L, idx);
  int pushed = 0;
  if (lua_istable(L, idx) && info.type == BEE_FIELD_SET) {
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      count++;
    }
    if (count != (lua_Integer)lua_rawlen(L, idx)) {
      bee_error_clear(err);
      err->code = BEE_EVALIDATION;
      snprintf(err->message, sizeof err->message, "set members must be given as a list of strings");
      goto named;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_rawgeti(L, idx, i) != LUA_TSTRING) {
        lua_pop(L, 1);
        luaL_pushresult(&b);
        lua_pop(L, 1);
        bee_error_clear(err);
        err->code = BEE_EVALIDATION;
        snprintf(err->message, sizeof err->message, "set members must be strings (item %d is not)", (int)i);
        goto named;
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
      bee_error_clear(err);
      err->code = BEE_EVALIDATION;
      snprintf(err->message, sizeof err->message, "the referenced entity table has no id");
      goto named;
    }
    idx = lua_gettop(L);
    pushed = 1;
  } else if (lua_type(L, idx) != LUA_TNIL && lua_type(L, idx) != LUA_TBOOLEAN && lua_type(L, idx) != LUA_TNUMBER &&
             lua_type(L, idx) != LUA_TSTRING) {
    bee_error_clear(err);
    err->code = BEE_EVALIDATION;
    snprintf(err->message, sizeof err->message, "expected %s %s value, got %s",
             strchr("aeiou", info.type_name[0]) ? "an" : "a", info.type_name, luaL_typename(L, idx));
    goto named;
  }
  bee_value_t in, out;
  to_value(L, idx, &in);
  size_t need = in.len + 80;
  char small[256];
  char *buf = need <= sizeof small ? small : lua_newuserdatauv(L, need, 0);
  int rc = bee_entity_check_value(e, field, &in, &out, buf, need, err);
  if (rc == 0) push_value(L, &out);
  if (buf != small) lua_remove(L, rc == 0 ? -2 : -1);
  if (pushed) lua_remove(L, rc == 0 ? -2 : -1);
  return rc == 0;
named:
  snprintf(err->entity, sizeof err->entity, "%s", bee_entity_name(e));
  snprintf(err->field, sizeof err->field, "%s", info.name);
  if (pushed) lua_pop(L, 1);
  return 0;
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
 * Validates a whole entity table as a flush will (DESIGN G7): unknown fields raise;
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
  lua_pushcfunction(r->L, push_row);
  lua_pushlightuserdata(r->L, r);
  lua_pushvalue(r->L, r->rows);
  if (lua_pcall(r->L, 2, 0, 0) != LUA_OK) {
    r->failed = 1;
    return 1;
  }
  return 0;
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
      {"sql_query", engine_sql_query},
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
