-- A writer process for the id specs: lua5.4 orm_writer.lua DEFS REDIS_DB ENTITY WRITER COUNT BATCH
--
-- Builds a fresh engine (support.orm_defs[DEFS], Redis db REDIS_DB), creates COUNT new
-- entities of ENTITY ({ writer = WRITER, n = i }) and flushes them BATCH at a time.
-- Prints one line: "ids <id>,<id>,..." when every flush succeeded, or
-- "error <code> <message>" at the first failure (then exits 1).
local beeorm = require("beeorm")
local defs = require("support.orm_defs")

local which, db, entity, writer = arg[1], tonumber(arg[2]), arg[3], arg[4]
local count, batch = tonumber(arg[5]), tonumber(arg[6])
assert(which and db and entity and writer and count and batch,
  "usage: orm_writer.lua DEFS REDIS_DB ENTITY WRITER COUNT BATCH")

local r = beeorm.registry()
assert(r:register_mysql(os.getenv("BEEORM_TEST_MYSQL")))
assert(r:register_redis(os.getenv("BEEORM_TEST_REDIS"), db))
for _, def in ipairs(defs[which]()) do assert(r:register_entity(def)) end
local engine = assert(r:validate())
local ctx = engine:context()

local ids = {}
for i = 1, count do
  local t, err = ctx:new_entity(entity, { writer = writer, n = i })
  if not t then
    print("error " .. tostring(err and err.code) .. " " .. tostring(err))
    os.exit(1)
  end
  ids[#ids + 1] = tostring(t.id)
  if i % batch == 0 or i == count then
    local ok, ferr = ctx:flush()
    if not ok then
      print("error " .. tostring(ferr.code) .. " " .. tostring(ferr))
      os.exit(1)
    end
  end
end
print("ids " .. table.concat(ids, ","))
