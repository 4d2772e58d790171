-- Entity definitions shared by the consumer specs and their child processes
-- (spec/support/async_consumer.lua): both sides register the same definitions.
local M = {}

-- consumer_kill_spec: rows changed by random inserts, updates and deletes; two cached
-- lists (all rows, rows by note) that readers check while the consumers run.
function M.kill()
  return {
    {
      name = "ck_item",
      local_cache = 2000,
      redis_cache = true,
      cache_all = true,
      fields = {
        { "name", "string", length = 40, required = true },
        { "code", "string", length = 40, unique = true },
        { "n", "int" },
        { "note", "string", length = 40 },
      },
      indexes = { by_note = { "note", cached = true } },
    },
  }
end

-- consumer_faults_spec: rows a blocking consumer applies across a MariaDB restart; the
-- cached lists must drop what a failed event would have changed.
function M.faults()
  return {
    {
      name = "cf_item",
      local_cache = 100,
      redis_cache = true,
      cache_all = true,
      fields = {
        { "name", "string", length = 50, required = true, unique = true },
        { "note", "string", length = 50 },
        { "n", "int" },
      },
      indexes = { by_note = { "note", cached = true } },
    },
  }
end

-- No definitions at all: a consumer needs no application code (README, C API).
function M.none()
  return {}
end

return M
