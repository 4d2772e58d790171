/*
 * beeorm: the host program. A Lua 5.4 interpreter with beeorm preloaded (the C module
 * linked in, the Lua facade embedded), plus the operator subcommands consume, stats and
 * errors, implemented in Lua by the embedded module beeorm.cli (lua/beeorm/cli.lua).
 *
 * Exit codes: 0 success; 1 the script or operation failed; 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "beeorm.h"
#include "beeorm_lua.h"
#include "serve.h"

static const char *progname = "beeorm";

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s <command> [arguments]\n"
          "\n"
          "commands:\n"
          "  run [--] SCRIPT [ARGS...]   run a Lua 5.4 script with beeorm preloaded\n"
          "  consume --config FILE [--workers N] [--resolver FILE] [--once]\n"
          "                              apply the queued flush_async events to MySQL\n"
          "  stats --config FILE [--json]\n"
          "                              print the statistics of every queue\n"
          "  errors list|show|retry|skip --config FILE [--queue Q] [--code N] [--limit N]\n"
          "         [--id STREAM_ID] [--event N] [--force] [--json]\n"
          "                              list, show, retry or drop the parked entries\n"
          "  schema --config FILE --model MODEL.lua [--apply] [--unsafe] [--json]\n"
          "                              compare the model's tables with MySQL, and sync them\n"
          "  serve --config FILE [--listen HOST:PORT]\n"
          "                              serve /metrics (Prometheus), /api/stats and a page\n"
          "  version                     print the beeorm version\n"
          "  help [COMMAND]              print this help, or a command's\n"
          "\n"
          "'%s COMMAND --help' describes a command's options.\n"
          "\n"
          "exit codes: 0 success; 1 the script or operation failed (config unreadable or\n"
          "invalid, server unreachable, consuming failed); 2 bad usage; 3 (schema)\n"
          "statements pending\n",
          progname, progname);
}

static const char run_usage[] =
    "usage: %s run [--] SCRIPT [ARGS...]\n"
    "\n"
    "Runs a Lua 5.4 script with beeorm preloaded: require \"beeorm\" needs no files.\n"
    "arg[0] is SCRIPT and arg[1..n] the ARGS, which are also the chunk's varargs, as\n"
    "with lua. SCRIPT '-' reads the script from standard input. Everything after SCRIPT\n"
    "goes to the script untouched (beeorm run x.lua --help passes --help to x.lua); put\n"
    "-- before a SCRIPT whose name starts with '-'.\n"
    "\n"
    "exit codes: 0 the script ran to its end; 1 it raised an error (printed with a\n"
    "traceback on stderr) or could not be read; 2 bad usage\n";

/* Subcommands implemented in Lua by the embedded module beeorm.cli. */
static int is_cli_command(const char *cmd) {
  return !strcmp(cmd, "consume") || !strcmp(cmd, "stats") || !strcmp(cmd, "errors") || !strcmp(cmd, "schema");
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs script with args as `lua` does: arg[0] = script, arg[1..n], varargs too. */
static int run_script(lua_State *L, const char *script, int argc, char **argv) {
  lua_createtable(L, argc, 2);
  lua_pushstring(L, progname);
  lua_rawseti(L, -2, -1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  int base = lua_gettop(L);
  if (luaL_loadfile(L, strcmp(script, "-") == 0 ? NULL : script) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    return 1;
  }
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
  if (lua_pcall(L, argc, 0, base) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    return 1;
  }
  return 0;
}

/* Calls require("beeorm.cli").main(argv) (under lua_pcall); returns its exit code. */
static int cli_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "beeorm.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_call(L, 1, 1);
  lua_Integer rc = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 1;
  lua_pushinteger(L, rc >= 0 && rc <= 255 ? rc : 1);
  return 1;
}

/* Runs an operator subcommand: argv[0] is its name. */
static int run_cli(lua_State *L, int argc, char **argv) {
  lua_pushcfunction(L, cli_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    fprintf(stderr, "%s %s: %s\n", progname, argv[0], luaL_tolstring(L, -1, NULL));
    return 1;
  }
  int rc = (int)lua_tointeger(L, -1);
  fflush(stdout);
  return rc;
}

/* Lua 5.4 with its standard libraries and beeorm preloaded; NULL (said on stderr) when out of memory. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create a Lua state (out of memory)\n", progname);
    return NULL;
  }
  luaL_openlibs(L);
  bee_lua_preload(L);
  return L;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  int cli_argc = 0;
  char **cli_argv = NULL;
  static char help_flag[] = "--help";
  char *help_argv[2];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    if (argc >= 3 && is_cli_command(argv[2])) { /* help COMMAND */
      help_argv[0] = argv[2];
      help_argv[1] = help_flag;
      cli_argc = 2;
      cli_argv = help_argv;
    } else if (argc >= 3 && !strcmp(argv[2], "run")) { /* help run */
      printf(run_usage, progname);
      return 0;
    } else if (argc >= 3 && !strcmp(argv[2], "serve")) { /* help serve */
      fputs(serve_usage, stdout);
      return 0;
    } else if (argc >= 3 && strcmp(argv[2], "version") != 0 && strcmp(argv[2], "help") != 0) {
      fprintf(stderr, "%s: unknown command '%s' (try '%s help')\n", progname, argv[2], progname);
      return 2;
    } else {
      usage(stdout);
      return 0;
    }
  } else if (is_cli_command(cmd)) {
    cli_argc = argc - 1;
    cli_argv = argv + 1;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("beeorm %s (%s)\n", BEE_VERSION_STRING, LUA_RELEASE);
    return 0;
  }
  if (cli_argv) {
    lua_State *L = new_state();
    if (!L) return 1;
    int rc = run_cli(L, cli_argc, cli_argv);
    lua_close(L);
    return rc;
  }
  if (!strcmp(cmd, "serve")) return serve_main(argc - 2, argv + 2);
  if (strcmp(cmd, "run") != 0) {
    fprintf(stderr, "%s: unknown command '%s' (try '%s help')\n", progname, cmd, progname);
    return 2;
  }
  int at = 2; /* the script's position */
  if (argc > at && (!strcmp(argv[at], "--help") || !strcmp(argv[at], "-h"))) {
    printf(run_usage, progname);
    return 0;
  }
  if (argc > at && !strcmp(argv[at], "--")) {
    at++;
  } else if (argc > at && argv[at][0] == '-' && argv[at][1] != '\0') {
    fprintf(stderr, "%s run: unknown option '%s' (a SCRIPT whose name starts with '-' goes after --; try '%s run "
            "--help')\n", progname, argv[at], progname);
    return 2;
  }
  if (argc <= at) {
    fprintf(stderr, "%s run: missing SCRIPT (usage: %s run [--] SCRIPT [ARGS...])\n", progname, progname);
    return 2;
  }
  lua_State *L = new_state();
  if (!L) return 1;
  int rc = run_script(L, argv[at], argc - at - 1, argv + at + 1);
  lua_close(L);
  return rc;
}
