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
    BEEORM_LUA_LIBDIR = "$(LIBDIR)",
    BEEORM_LUA_LUADIR = "$(LUADIR)",
  },
}
