/*
 * embed_host.c: a C program that embeds Lua 5.4 with beeorm preloaded and runs a
 * flush_async consumer whose error resolver is a Lua script.
 *
 *   bee_embed_host MYSQL_DSN REDIS_ADDR RESOLVER_LUA [--once]
 *
 *   MYSQL_DSN     e.g. 'app:secret@tcp(127.0.0.1:3306)/app'
 *   REDIS_ADDR    the Redis holding the queues: 127.0.0.1:6379 or 127.0.0.1:6379:5 (db 5)
 *   RESOLVER_LUA  a Lua file returning function(ev) (e.g. examples/resolver.lua)
 *   --once        drain what is queued and exit; without it, keep consuming until
 *                 SIGINT or SIGTERM
 *
 * It prints its consumer's stats on stdout and exits 0; 1 when the resolver cannot be
 * loaded, the servers cannot be reached or consuming fails (message on stderr); 2 on
 * bad arguments (with a usage line). A resolver that raises while consuming stops
 * nothing: the entries it failed on stay in the error list with its message, which is
 * printed on stderr, and the host exits 0.
 *
 * Build: the CMake target bee_embed_host links beeorm_embed (lua/beeorm_lua.h: the Lua
 * binding and the embedded facade), which brings the core library and Lua 5.4. Outside
 * this tree: cc embed_host.c $(pkg-config --cflags --libs beeorm-lua).
 *
 * The shape is the one of lua.c: main() creates the state and calls one C function,
 * host_main, under lua_pcall, so every Lua error (a bad argument, a resolver that
 * raises, out of memory) lands in one place with a traceback. host_main drives the
 * beeorm Lua API from C with the stack API: require, registry, register_mysql,
 * register_redis, validate, engine:consumer, consumer:run, queue stats. Failed
 * operations return nil, err (beeorm's convention) and are reported with tostring(err).
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "beeorm_lua.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static const char *progname = "bee_embed_host";

static void usage(FILE *out) {
  fprintf(out, "usage: %s MYSQL_DSN REDIS_ADDR RESOLVER_LUA [--once]\n", progname);
}

/* What main hands to host_main (through a light userdata) and gets back. */
typedef struct {
  const char *mysql_dsn, *redis_address, *resolver_path;
  int once;
  int status; /* exit status decided by host_main */
} host_args_t;

/* The consumer's counters, summed over the runs (drain, then blocking). */
typedef struct {
  lua_Integer entries, events, batches, failed, skipped, retried, workers, resolver_errors;
  char resolver_error[512]; /* the last message of a resolver that raised, "" if none */
} consume_stats_t;

/* lua_pcall message handler: the error message with a traceback. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) { /* an error object that is not a string (a beeorm error table ...) */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/*
 * Calls obj:method(args...) with the nargs arguments on top of the stack; leaves
 * nresults results. Raises like any Lua call (host_main runs under lua_pcall).
 */
static void call_method(lua_State *L, int obj, const char *method, int nargs, int nresults) {
  obj = lua_absindex(L, obj);
  lua_getfield(L, obj, method);
  lua_pushvalue(L, obj);
  lua_rotate(L, -(nargs + 2), 2); /* function, self below the arguments */
  lua_call(L, nargs + 1, nresults);
}

/*
 * After a call that returns `value` or `nil, err` (2 results on the stack): returns 1
 * and leaves the value, or prints "progname: what: <err>" to stderr and returns 0.
 */
static int check_result(lua_State *L, const char *what) {
  if (!lua_isnil(L, -2)) {
    lua_pop(L, 1);
    return 1;
  }
  fprintf(stderr, "%s: %s: %s\n", progname, what, luaL_tolstring(L, -1, NULL)); /* tostring(err): one line */
  lua_pop(L, 3);
  return 0;
}

static lua_Integer int_field(lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  lua_Integer v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/*
 * consumer:run { block = block } and adds its stats to total. Returns 1, or 0 after
 * reporting the error.
 */
static int run_consumer(lua_State *L, int consumer, int block, consume_stats_t *total, lua_Integer *events) {
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, block);
  lua_setfield(L, -2, "block");
  call_method(L, consumer, "run", 1, 2); /* stats | nil, err */
  if (!check_result(L, block ? "consuming failed" : "draining the queues failed")) return 0;
  int st = lua_gettop(L);
  *events = int_field(L, st, "events");
  total->entries += int_field(L, st, "entries");
  total->events += *events;
  total->batches += int_field(L, st, "batches");
  total->failed += int_field(L, st, "failed");
  total->skipped += int_field(L, st, "skipped");
  total->retried += int_field(L, st, "retried");
  lua_Integer w = int_field(L, st, "workers");
  if (w > total->workers) total->workers = w;
  total->resolver_errors += int_field(L, st, "resolver_errors");
  if (lua_getfield(L, st, "resolver_error") == LUA_TSTRING)
    snprintf(total->resolver_error, sizeof total->resolver_error, "%s", lua_tostring(L, -1));
  lua_pop(L, 2); /* resolver_error, stats */
  return 1;
}

/* Everything with a Lua state; runs under lua_pcall. Arguments: the host_args_t. */
static int host_main(lua_State *L) {
  host_args_t *a = lua_touserdata(L, 1);
  a->status = EXIT_FAILED;

  /* 1. The resolver: a Lua file that returns function(ev). */
  if (luaL_loadfile(L, a->resolver_path) != LUA_OK) {
    fprintf(stderr, "%s: cannot load the resolver: %s\n", progname, lua_tostring(L, -1));
    return 0;
  }
  lua_call(L, 0, 1); /* runs the file: an error there propagates with its traceback */
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "%s: the resolver %s must return a function, not a %s\n", progname, a->resolver_path,
            luaL_typename(L, -1));
    return 0;
  }
  int resolver = lua_gettop(L);

  /* 2. beeorm = require("beeorm"): found in package.preload (bee_lua_preload). */
  lua_getglobal(L, "require");
  lua_pushstring(L, "beeorm");
  lua_call(L, 1, 1);
  int beeorm = lua_gettop(L);

  /* 3. registry = beeorm.registry(); register the pools; engine = registry:validate(). */
  lua_getfield(L, beeorm, "registry");
  lua_call(L, 0, 1);
  int registry = lua_gettop(L);
  lua_pushstring(L, a->mysql_dsn);
  call_method(L, registry, "register_mysql", 1, 2); /* true | nil, err (a malformed DSN) */
  if (!check_result(L, "bad MYSQL_DSN")) {
    usage(stderr);
    a->status = EXIT_USAGE;
    return 0;
  }
  lua_pop(L, 1);
  lua_pushstring(L, a->redis_address);
  call_method(L, registry, "register_redis", 1, 2); /* db from the address, else 0 */
  if (!check_result(L, "bad REDIS_ADDR")) {
    usage(stderr);
    a->status = EXIT_USAGE;
    return 0;
  }
  lua_pop(L, 1);
  call_method(L, registry, "validate", 0, 2); /* connects: engine | nil, err */
  if (!check_result(L, "cannot connect")) return 0;
  int engine = lua_gettop(L);
  lua_getfield(L, beeorm, "_VERSION");
  printf("%s: beeorm %s on %s; resolver %s\n", progname, lua_tostring(L, -1), LUA_RELEASE, a->resolver_path);
  lua_pop(L, 1);

  /* 4. consumer = engine:consumer { resolver = <the resolver function> } */
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, resolver);
  lua_setfield(L, -2, "resolver");
  call_method(L, engine, "consumer", 1, 1);
  int consumer = lua_gettop(L);

  /* 5. Drain what is queued, then (unless --once) block until SIGINT/SIGTERM: the
   * binding installs handlers for those two while a blocking run is in progress and
   * returns the stats after finishing the batch in hand. */
  consume_stats_t total = {0};
  lua_Integer events;
  if (!run_consumer(L, consumer, 0, &total, &events)) return 0;
  printf("%s: drained %lld event(s) at start-up\n", progname, (long long)events);
  if (!a->once) {
    printf("%s: waiting for events (SIGINT or SIGTERM stops)\n", progname);
    fflush(stdout);
    if (!run_consumer(L, consumer, 1, &total, &events)) return 0;
  }

  /* 6. What the queues hold now: q:stats() of every queue. */
  lua_Integer queues = 0, waiting = 0, errors = 0;
  call_method(L, engine, "read_async_flush_events", 0, 1);
  int list = lua_gettop(L);
  for (lua_Integer i = 1; lua_geti(L, list, i) != LUA_TNIL; i++) {
    call_method(L, -1, "stats", 0, 2); /* { len, oldest_event_seconds, lag, pending, errors } | nil, err */
    if (!check_result(L, "reading queue stats failed")) return 0;
    queues++;
    waiting += int_field(L, -1, "len");
    errors += int_field(L, -1, "errors");
    lua_pop(L, 2); /* stats, queue */
  }
  lua_pop(L, 2); /* nil, list */

  if (total.resolver_errors > 0)
    fprintf(stderr, "%s: the resolver failed on %lld entr%s (kept in the error list): %s\n", progname,
            (long long)total.resolver_errors, total.resolver_errors == 1 ? "y" : "ies", total.resolver_error);
  printf("%s: consumed %lld event(s) in %lld entries and %lld batch(es); failed %lld, skipped %lld, "
         "retried %lld; workers %lld; queues %lld, waiting %lld, errors %lld\n",
         progname, (long long)total.events, (long long)total.entries, (long long)total.batches,
         (long long)total.failed, (long long)total.skipped, (long long)total.retried, (long long)total.workers,
         (long long)queues, (long long)waiting, (long long)errors);
  fflush(stdout);

  call_method(L, engine, "close", 0, 0); /* or leave it to lua_close */
  a->status = EXIT_OK;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    usage(stdout);
    return EXIT_OK;
  }
  if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "--once") != 0)) {
    if (argc == 5) fprintf(stderr, "%s: unknown option '%s'\n", progname, argv[4]);
    else fprintf(stderr, "%s: expected 3 arguments, got %d\n", progname, argc - 1);
    usage(stderr);
    return EXIT_USAGE;
  }
  host_args_t a = {argv[1], argv[2], argv[3], argc == 5, EXIT_FAILED};

  lua_State *L = luaL_newstate(); /* the standard allocator */
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state (out of memory)\n", progname);
    return EXIT_FAILED;
  }
  luaL_openlibs(L);    /* the standard libraries a resolver may use */
  bee_lua_preload(L);  /* require "beeorm" now works, with no file on disk */

  /* The rest runs under lua_pcall: errors come back here, with a traceback. */
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, host_main);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    a.status = EXIT_FAILED;
  }
  lua_close(L); /* closes the engine and its connections (its __gc), frees everything */
  return a.status;
}
