-- Entity definitions shared by specs and the child processes they start
-- (spec/support/orm_reader.lua, spec/support/orm_writer.lua): both sides must register
-- exactly the same definitions so they share the Redis keys of an entity.
local M = {}

-- cache_spec: every cache on one entity.
function M.cache()
  return {
    { name = "orm_cache_parent", fields = { { "name", "string", length = 50 } } },
    {
      name = "orm_cache_item",
      local_cache = 1000,
      redis_cache = true,
      cache_all = true,
      fields = {
        { "name", "string", length = 50, required = true, unique = true },
        { "status", "enum", values = { "active", "blocked" }, required = true },
        { "parent", "ref", entity = "orm_cache_parent", cached = true },
        { "note", "string", length = 50 },
      },
      indexes = { by_status = { "status", cached = true } },
    },
  }
end

-- processes_spec: a row read through local caches of two processes, and ids.
function M.proc()
  return {
    {
      name = "orm_proc_item",
      local_cache = 1000,
      redis_cache = true,
      fields = { { "name", "string", length = 50, required = true }, { "note", "string", length = 50 } },
    },
    {
      name = "orm_proc_seq",
      redis_cache = true,
      fields = { { "writer", "string", length = 20, required = true }, { "n", "int" } },
    },
  }
end

return M
