-- Entity definitions shared by spec/truth_spec.lua and its child processes
-- (spec/support/truth_child.lua): both sides register the same definitions so that they
-- share the Redis keys of an entity; "wide" is the second definition of `truth_two`.
local M = {}

-- Both caches on every entity but truth_person (Redis only, as issue 11 states it).
function M.main()
  return {
    {
      name = "truth_row",
      local_cache = true,
      redis_cache = true,
      fields = {
        { "n", "int" },
        { "m", "int" },
        { "name", "string", length = 50 },
        { "note", "string", length = 50 },
      },
    },
    {
      name = "truth_product",
      local_cache = true,
      redis_cache = true,
      fields = {
        { "name", "string", length = 50 },
        { "stock", "int" },
        { "price", "decimal", precision = 10, scale = 2 },
        { "tiny", "int", bits = 8, unsigned = true },
        { "label", "string", length = 50 },
      },
    },
    {
      name = "truth_person",
      redis_cache = true,
      fields = { { "name", "string", length = 50, unique = "name" } },
    },
    {
      name = "truth_cached",
      local_cache = true,
      redis_cache = true,
      cache_all = true,
      fields = {
        { "name", "string", length = 50, unique = "name" },
        { "note", "string", length = 50 },
      },
    },
    -- the narrow definition of truth_two (process A)
    {
      name = "truth_two",
      local_cache = true,
      redis_cache = true,
      fields = { { "name", "string", length = 50 }, { "n", "int", bits = 32 } },
    },
  }
end

-- The wide definition of truth_two (process B: a later deploy of the same table).
function M.wide()
  return {
    {
      name = "truth_two",
      local_cache = true,
      redis_cache = true,
      fields = { { "name", "string", length = 50 }, { "n", "int", bits = 64 }, { "extra", "string", length = 50 } },
    },
  }
end

-- A row cached on a Redis server that runs out of memory.
function M.oom()
  return {
    {
      name = "truth_oom",
      local_cache = true,
      redis_cache = true,
      fields = { { "name", "string", length = 50 }, { "n", "int" } },
    },
  }
end

--- One line for a loaded row: "nil", or its fields (without id) sorted by name,
--- "k=v k=v ..." (absent fields are left out).
function M.show(row)
  if row == nil then return "nil" end
  local keys = {}
  for k in pairs(row) do
    if k ~= "id" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(row[k]) end
  return table.concat(parts, " ")
end

return M
