/*
 * beeorm: the host program. A Lua 5.4 interpreter with beeorm preloaded (the C module
 * linked in, the Lua facade embedded), plus operator subcommands as they land.
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

static const char *progname = "beeorm";

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s <command> [arguments]\n"
          "\n"
          "commands:\n"
          "  run SCRIPT [ARGS...]   run a Lua 5.4 script with beeorm preloaded\n"
          "  version                print the beeorm version\n"
          "  help                   print this help\n"
          "\n"
          "exit codes: 0 success, 1 the script failed, 2 bad usage\n",
          progname);
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

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("beeorm %s (%s)\n", BEE_VERSION_STRING, LUA_RELEASE);
    return 0;
  }
  if (strcmp(cmd, "run") != 0) {
    fprintf(stderr, "%s: unknown command '%s' (try '%s help')\n", progname, cmd, progname);
    return 2;
  }
  if (argc < 3) {
    fprintf(stderr, "%s run: missing SCRIPT (usage: %s run SCRIPT [ARGS...])\n", progname, progname);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create a Lua state (out of memory)\n", progname);
    return 1;
  }
  luaL_openlibs(L);
  bee_lua_preload(L);
  int rc = run_script(L, argv[2], argc - 3, argv + 3);
  lua_close(L);
  return rc;
}
