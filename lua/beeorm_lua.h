/*
 * beeorm_lua.h: embedding Lua 5.4 with beeorm in a C program.
 *
 *   lua_State *L = luaL_newstate();
 *   luaL_openlibs(L);
 *   bee_lua_preload(L);                 -- require "beeorm" now works, no files needed
 *   luaL_dostring(L, "local beeorm = require 'beeorm' ...");
 *
 * Link with libbeeorm_lua (this API, the Lua binding and the embedded Lua facade),
 * libbeeorm (the core) and Lua 5.4: `pkg-config --cflags --libs beeorm-lua`.
 */
#ifndef BEEORM_LUA_H
#define BEEORM_LUA_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Registers "beeorm.core" (the C binding) and the Lua facade modules ("beeorm", ...) in
 * package.preload of L. Call after luaL_openlibs. Returns 0. Nothing is loaded until a
 * script requires it; the facade's sources are compiled into the library.
 */
int bee_lua_preload(lua_State *L);

/* The C binding's opener, for hosts that register modules themselves. */
int luaopen_beeorm_core(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
