-- A reader process for the ORM specs: lua5.4 orm_reader.lua DEFS REDIS_DB OUT_FILE
--
-- Builds an engine with the definitions support.orm_defs[DEFS] (MySQL and Redis from
-- BEEORM_TEST_MYSQL / BEEORM_TEST_REDIS, Redis db REDIS_DB), then reads commands from
-- stdin, one per line, and appends one answer line per command to OUT_FILE, numbered
-- from 1 ("0 ready" once the engine is up):
--   get ENTITY ID                       -> "N row <name>|<note>" or "N nil"
--   look ENTITY ID                      -> like get, with " hit" or " miss" appended: whether
--                                          the local cache answered (its hit count moved)
--   wait ENTITY ID NAME|- LIMIT_MS      -> reads until name is NAME (or the row is gone
--                                          for "-"): "N ok|timeout <retries> <last>"
--   stats ENTITY                        -> "N stats <hits> <misses> <entries> <stale_skips>"
--   quit                                -> "N bye", exits
-- Errors are answered as "N error <message>".
local beeorm = require("beeorm")
local defs = require("support.orm_defs")

local which, db, out_path = arg[1], tonumber(arg[2]), arg[3]
assert(which and db and out_path, "usage: orm_reader.lua DEFS REDIS_DB OUT_FILE")

local out = assert(io.open(out_path, "a"))
local function answer(n, text)
  out:write(n, " ", text, "\n")
  out:flush()
end

local r = beeorm.registry()
assert(r:register_mysql(os.getenv("BEEORM_TEST_MYSQL")))
assert(r:register_redis(os.getenv("BEEORM_TEST_REDIS"), db))
for _, def in ipairs(defs[which]()) do assert(r:register_entity(def)) end
local engine = assert(r:validate())
local ctx = engine:context()

local function now()
  local f = assert(io.open("/proc/uptime"))
  local s = f:read("n")
  f:close()
  return s
end

local function show(row)
  if not row then return "nil" end
  return "row " .. tostring(row.name) .. "|" .. tostring(row.note)
end

answer(0, "ready")
local n = 0
for line in io.lines() do
  n = n + 1
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local ok, err = pcall(function()
    local cmd = words[1]
    if cmd == "get" then
      answer(n, show(ctx:get_by_id(words[2], math.tointeger(tonumber(words[3])))))
    elseif cmd == "look" then
      local before = engine:cache_stats(words[2]).hits
      local row = ctx:get_by_id(words[2], math.tointeger(tonumber(words[3])))
      answer(n, show(row) .. (engine:cache_stats(words[2]).hits > before and " hit" or " miss"))
    elseif cmd == "wait" then
      local id, want, limit = math.tointeger(tonumber(words[3])), words[4], tonumber(words[5]) / 1000
      local deadline, retries, row = now() + limit, 0, nil
      while true do
        row = ctx:get_by_id(words[2], id)
        local match
        if want == "-" then match = row == nil else match = row ~= nil and row.name == want end
        if match then
          answer(n, "ok " .. retries .. " " .. show(row))
          break
        end
        if now() > deadline then
          answer(n, "timeout " .. retries .. " " .. show(row))
          break
        end
        retries = retries + 1
        os.execute("sleep 0.005")
      end
    elseif cmd == "stats" then
      local s = engine:cache_stats(words[2])
      answer(n, string.format("stats %d %d %d %d", s.hits, s.misses, s.entries, s.stale_skips))
    elseif cmd == "quit" then
      answer(n, "bye")
      os.exit(0)
    else
      answer(n, "error unknown command " .. tostring(cmd))
    end
  end)
  if not ok then answer(n, "error " .. tostring(err):gsub("\n", " ")) end
end
