/*
 * embed.c: a C program embedding Lua 5.4 with beeorm preloaded, using only the
 * installed <beeorm_lua.h>. Built by spec/packaging_spec.lua with
 *   cc embed.c $(pkg-config --cflags --libs --static beeorm-lua)
 *
 * usage: embed CHUNK [ARGS...]   runs CHUNK (Lua source) with ARGS as its `...`;
 * exits 0, or prints the error and exits 1.
 */
#include <stdio.h>
#include <string.h>

#include <beeorm_lua.h>
#include <lauxlib.h>
#include <lualib.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CHUNK [ARGS...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "embed: cannot create a Lua state\n");
    return 1;
  }
  luaL_openlibs(L);
  bee_lua_preload(L);
  int rc = luaL_loadbuffer(L, argv[1], strlen(argv[1]), "=chunk");
  if (rc == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    rc = lua_pcall(L, argc - 2, 0, 0);
  }
  if (rc != LUA_OK) fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return rc == LUA_OK ? 0 : 1;
}
