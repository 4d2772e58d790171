-- A child process for spec/truth_spec.lua:
--   lua5.4 truth_child.lua MODE DEFS REDIS_DB REDIS_ADDR [ARGS...]
-- Builds an engine with the definitions support.truth_defs[DEFS] (MySQL from
-- BEEORM_TEST_MYSQL; Redis REDIS_ADDR on db REDIS_DB, "-" for BEEORM_TEST_REDIS), then:
--
--   peer                      reads commands from stdin, one per line, and writes one
--                             answer line per command to stdout ("ready" first):
--     get ENTITY ID                        -> "row <show>" | "nil"
--     unique ENTITY INDEX VALUE            -> "row <id> <show>" | "nil"  (VALUE: the rest of
--                                             the line, trailing spaces included)
--     all ENTITY                           -> "ids <id>:<name>,..." (get_all, sorted by id)
--     set ENTITY ID FIELD VALUE sync|async -> "ok" | "error <code> <message>": edit_entity of
--                                             a get_by_id, one field set, flushed (VALUE is
--                                             an integer when it looks like one, "nil": nil)
--     inc ENTITY ID FIELD DELTA sync|async -> "ok" | "error ...": ctx:increment, flushed
--     quit                                 -> "bye", exits
--                             Any failure is answered "error <message>".
--   get ENTITY ID             prints "row <show>" or "nil" (a fresh process's first read)
--   columns ENTITY ID FIELD N sync|async READY GO
--                             writes READY, waits for the file GO, then N times:
--                             t = edit_entity(get_by_id); t[FIELD] = i; flush; reads back
--                             get_by_id(...)[FIELD] at once. Prints
--                             "done <mismatches> <first mismatch i:got or ->" or "error ...".
--   increments ENTITY ID FIELD COUNT sync|async READY GO
--                             like columns: COUNT times ctx:increment(ENTITY, ID, FIELD, 1) and
--                             a flush. Prints "done <count>" or "error ...".
-- (<show> is support.truth_defs.show of the row.)
local beeorm = require("beeorm")
local defs = require("support.truth_defs")

local mode, which, db, addr = arg[1], arg[2], tonumber(arg[3]), arg[4]
assert(mode and which and db and addr, "usage: truth_child.lua MODE DEFS REDIS_DB REDIS_ADDR [ARGS...]")
if addr == "-" then addr = os.getenv("BEEORM_TEST_REDIS") end

local function say(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end

local r = beeorm.registry()
assert(r:register_mysql(os.getenv("BEEORM_TEST_MYSQL")))
assert(r:register_redis(addr, db))
for _, def in ipairs(defs[which]()) do assert(r:register_entity(def)) end
local engine, verr = r:validate()
if not engine then
  say("error validate " .. tostring(verr))
  os.exit(1)
end
local ctx = engine:context()

local function int(s)
  return math.tointeger(tonumber(s))
end

local function flush(how)
  if how == "sync" then return ctx:flush() end
  assert(how == "async", "flush mode must be sync or async, got " .. tostring(how))
  return ctx:flush_async()
end

local function failed(err)
  return "error " .. tostring(err and err.code) .. " " .. tostring(err):gsub("\n", " ")
end

local function barrier(ready, go)
  local f = assert(io.open(ready, "w"))
  f:close()
  local deadline = os.time() + 60
  while true do
    local g = io.open(go)
    if g then
      g:close()
      return
    end
    assert(os.time() < deadline, "no go file after 60 s")
    os.execute("sleep 0.002")
  end
end

if mode == "get" then
  local row, err = ctx:get_by_id(arg[5], int(arg[6]))
  if err then
    say(failed(err))
    os.exit(1)
  end
  say(row and ("row " .. defs.show(row)) or "nil")
  os.exit(0)
end

if mode == "columns" or mode == "increments" then
  local entity, id, field, n, how = arg[5], int(arg[6]), arg[7], int(arg[8]), arg[9]
  local ok, err = pcall(function()
    barrier(arg[10], arg[11])
    local mismatches, first = 0, nil
    for i = 1, n do
      if mode == "columns" then
        local row, lerr = ctx:get_by_id(entity, id)
        if not row then error("get_by_id at " .. i .. ": " .. tostring(lerr)) end
        local t = ctx:edit_entity(row)
        t[field] = i
      else
        ctx:increment(entity, id, field, 1)
      end
      local fok, ferr = flush(how)
      if not fok then error("flush at " .. i .. ": " .. failed(ferr)) end
      if mode == "columns" then
        local row, lerr = ctx:get_by_id(entity, id)
        local got = row and row[field]
        if lerr then got = "error:" .. tostring(lerr) end
        if got ~= i then
          mismatches = mismatches + 1
          first = first or (i .. ":" .. tostring(got))
        end
      end
    end
    if mode == "columns" then
      say("done " .. mismatches .. " " .. (first or "-"))
    else
      say("done " .. n)
    end
  end)
  if not ok then
    say("error " .. tostring(err):gsub("\n", " "))
    os.exit(1)
  end
  os.exit(0)
end

assert(mode == "peer", "unknown mode " .. tostring(mode))

local function value(s)
  if s == "nil" then return nil end
  if s:match("^%-?%d+$") then return int(s) end
  return s
end

local handlers = {}

function handlers.get(line)
  local entity, id = line:match("^get (%S+) (%d+)$")
  local row, err = ctx:get_by_id(entity, int(id))
  if err then return failed(err) end
  return row and ("row " .. defs.show(row)) or "nil"
end

function handlers.unique(line)
  local entity, index, v = line:match("^unique (%S+) (%S+) (.*)$")
  local row, err = ctx:get_by_unique_index(entity, index, v)
  if err then return failed(err) end
  return row and ("row " .. tostring(row.id) .. " " .. defs.show(row)) or "nil"
end

function handlers.all(line)
  local entity = line:match("^all (%S+)$")
  local rows, err = ctx:get_all(entity)
  if not rows then return failed(err) end
  table.sort(rows, function(a, b) return a.id < b.id end)
  local parts = {}
  for _, row in ipairs(rows) do parts[#parts + 1] = tostring(row.id) .. ":" .. tostring(row.name) end
  return "ids " .. table.concat(parts, ",")
end

function handlers.set(line)
  local entity, id, field, v, how = line:match("^set (%S+) (%d+) (%S+) (%S+) (%S+)$")
  local row, err = ctx:get_by_id(entity, int(id))
  if not row then return "error get_by_id " .. tostring(err) end
  local t = ctx:edit_entity(row)
  t[field] = value(v)
  local ok, ferr = flush(how)
  if not ok then return failed(ferr) end
  return "ok"
end

function handlers.inc(line)
  local entity, id, field, delta, how = line:match("^inc (%S+) (%d+) (%S+) (%S+) (%S+)$")
  ctx:increment(entity, int(id), field, value(delta))
  local ok, ferr = flush(how)
  if not ok then return failed(ferr) end
  return "ok"
end

say("ready")
for line in io.lines() do
  local cmd = line:match("^(%S+)")
  if cmd == "quit" then
    say("bye")
    os.exit(0)
  end
  local h = handlers[cmd]
  local ok, answer = pcall(function()
    if not h then return "error unknown command " .. tostring(cmd) end
    return h(line)
  end)
  if ok then say(answer) else say("error " .. tostring(answer):gsub("\n", " ")) end
end
