-- resolver: an error resolver for the flush_async consumer, as a module to copy and adapt.
--
-- A consumer calls its resolver for each queued entry that failed with a *permanent*
-- MySQL error (duplicate key, data too long, unknown column, ...; temporary errors such
-- as deadlocks or a lost connection are retried by the consumer itself and never reach
-- the resolver). An entry is what one flush_async queued: its events are applied
-- together, in one transaction. The resolver looks at the failing event and answers:
--
--   "retry"                    apply the entry again now (after fixing the cause elsewhere)
--   { values = { col = v } }   change those columns of the failing event, then retry
--   "skip"                     drop the failing event only: it never reaches MySQL; the
--                              entry's other events are applied (together)
--   "keep"  (or nil)           park the whole entry in its queue's error list, for an
--                              operator (`q:errors()`, `q:retry(ev)`, `q:skip(ev)`):
--                              none of its events is applied until then
--
-- A retry that fails again on the same event calls the resolver again, with ev.attempts
-- one higher (attempts count per event); after 3 attempts the consumer stops asking and
-- keeps the entry. A resolver that raises keeps the entry too (ev.resolver_error says
-- why); the consumer goes on with the others.
--
-- The event (see README, "flush_async and the consumer"):
--   ev.kind           "insert", "update" or "delete"
--   ev.entity, ev.table, ev.id
--   ev.values         column -> value of the failing event (an update: the changed columns)
--   ev.sql            the failing statement, for people
--   ev.error.code     MySQL errno (1062 duplicate key, 1406 data too long, ...)
--   ev.error.message  ends with the server's text, e.g. "applying events failed on
--                     mysql://app@db:3306/app: Duplicate entry 'Cars' for key 'name'"
--   ev.attempts       1 on the first call for this event, 2 after one failed retry, ...
--   ev.queue, ev.stream_id, ev.failed_at, ev.events
--
-- Use it:
--   local resolver = dofile("examples/resolver.lua")
--   engine:consumer { resolver = resolver }:run { block = true }
-- or from the command line: beeorm run examples/consumer.lua MYSQL_DSN REDIS_ADDR,
-- or from C: examples/embed_host.c loads it with luaL_loadfile.
--
-- Calls are single-threaded from Lua's point of view: the consumer's C worker threads
-- hand every resolver call to the thread that runs the Lua state, one at a time, so a
-- resolver may keep plain Lua state (counters, caches of lookups ...).
--
-- What this one does:
--   * an insert that hits a duplicate key on a text column: rename the value, appending
--     " (2)", then " (3)" ..., and retry (think user names, slugs, titles);
--   * anything else it cannot fix (another error, a duplicate on a number, a name still
--     taken after MAX_RENAMES tries): UNFIXABLE, "keep" here: nothing is lost and an
--     operator decides later (`beeorm errors list`, then retry or skip). "skip" drops
--     such events for good (and applies the rest of their entry): change UNFIXABLE below
--     only if losing them is acceptable.

local MAX_RENAMES = 2      -- " (2)" and " (3)"; the consumer asks at most 3 times per event
local UNFIXABLE = "keep"   -- or "skip"
local LOG = true           -- report each decision on stderr (false: silent)

local function log(fmt, ...)
  if LOG then io.stderr:write(("resolver: " .. fmt .. "\n"):format(...)) end
end

-- The column holding the duplicate value, and that value. The message ends with the
-- server's text, which MariaDB and MySQL write as
--   Duplicate entry 'Cars' for key 'name'           (MariaDB, MySQL 5.7)
--   Duplicate entry 'Cars' for key 'category.name'  (MySQL 8)
-- The key is an index name, which is not always a column name, so the column is the
-- text column of the event whose value is the duplicate one (the key name breaks ties).
local function duplicate_column(ev)
  local dup, key = tostring(ev.error.message):match("Duplicate entry '(.*)' for key '([^']*)'")
  if not dup then return nil end
  key = key:match("([^.]+)$")
  if type(ev.values[key]) == "string" and ev.values[key] == dup then return key, dup end
  local found
  for col, v in pairs(ev.values) do
    if type(v) == "string" and v == dup then
      if found then return nil end -- two text columns hold it: which one collided is unclear
      found = col
    end
  end
  if found then return found, dup end
  return nil
end

-- The value before our renames. On attempt 1 it is the value as flushed, whatever it
-- looks like ("Room (2)" stays "Room (2)"). On attempt k > 1 it holds our rename of the
-- previous attempt, ending in " (k)": that suffix is ours and comes off.
local function original_value(value, attempts)
  if attempts > 1 then
    local suffix = (" (%d)"):format(attempts)
    if value:sub(-#suffix) == suffix then return value:sub(1, -#suffix - 1) end
  end
  return value
end

local function unfixable(ev, why)
  log("%s %s of %s #%s (%s): %s", UNFIXABLE, ev.kind, ev.entity, tostring(ev.id), why,
    tostring(ev.error.message))
  return UNFIXABLE
end

local function resolve(ev)
  if ev.error.code ~= 1062 then
    return unfixable(ev, "error " .. tostring(ev.error.code))
  end
  if ev.kind ~= "insert" then
    -- An update to a taken value: renaming is a guess about what the user wanted.
    return unfixable(ev, "duplicate on " .. ev.kind)
  end
  if ev.attempts > MAX_RENAMES then
    return unfixable(ev, "still a duplicate after " .. MAX_RENAMES .. " renames")
  end
  local column, value = duplicate_column(ev)
  if not column then
    return unfixable(ev, "duplicate not on a text column")
  end
  -- attempts 1 -> "Cars (2)", attempts 2 -> "Cars (3)" (not "Cars (2) (3)").
  local renamed = ("%s (%d)"):format(original_value(value, ev.attempts), ev.attempts + 1)
  log("rename %s #%s: %s '%s' is taken, retrying as '%s'", ev.entity, tostring(ev.id), column, value, renamed)
  return { values = { [column] = renamed } }
end

-- The module is the function itself: what a consumer's `resolver` option takes.
return resolve
