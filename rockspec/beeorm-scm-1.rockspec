-- From a checkout (offline; luarocks builds in ./build.luarocks):
--   luarocks --lua-version=5.4 --tree=DIR make rockspec/beeorm-scm-1.rockspec
-- installs beeorm/core.so (the C engine) and the Lua facade (beeorm/*.lua) into DIR,
-- and the host program as DIR/bin/beeorm. The C libraries, headers and pkg-config files
-- stay inside the rock's own folder (c/lib, c/include), out of the Lua paths.
package = "beeorm"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "A data layer for Lua 5.4 over MySQL/MariaDB and Redis, with its engine in C",
  license = "MIT",
}
dependencies = { "lua >= 5.4" }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    BEEORM_TESTS = "OFF",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "bin",
    CMAKE_INSTALL_LIBDIR = "c/lib",
    CMAKE_INSTALL_INCLUDEDIR = "c/include",
    BEEORM_LUA_LIBDIR = "$(LIBDIR)",
    BEEORM_LUA_LUADIR = "$(LUADIR)",
  },
}
