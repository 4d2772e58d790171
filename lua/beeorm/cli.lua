-- beeorm.cli: the operator subcommands of the `beeorm` host (consume, stats, errors, schema).
--
--   local code = require("beeorm.cli").main({ "stats", "--config", "beeorm.yaml" })
--
-- main(argv) takes the command line after the program name (argv[1] is the
-- subcommand), prints to io.stdout / io.stderr and returns the exit code: 0 success,
-- 1 the operation failed (config unreadable or invalid, a server unreachable, consuming
-- failed), 2 bad usage. Errors are one line on stderr naming the command and what was
-- wrong. Nothing here prints a connection string: messages about pools come from the
-- library, which never includes a password.
local beeorm = require("beeorm")

local M = {}

local OK, FAILED, USAGE = 0, 1, 2
M.EXIT_OK, M.EXIT_FAILED, M.EXIT_USAGE = OK, FAILED, USAGE

-- The exit-code paragraph of a usage text; extra1/extra2 add command-specific causes.
local function exit_codes(extra1, extra2)
  return "exit codes:\n"
    .. "  0  success\n"
    .. "  1  the operation failed: config unreadable or invalid, server unreachable" .. (extra1 or "") .. "\n"
    .. "  2  bad usage: unknown command or option, missing or bad option value,\n"
    .. "     missing --config" .. (extra2 or "") .. "\n"
end

M.usage = {
  schema = [[
usage: beeorm schema --config FILE --model MODEL.lua [--apply] [--unsafe] [--json]

Compares the tables of the entities MODEL.lua defines with what MySQL holds, and prints
the statements that would make them match, in the order to run them, each after a line
saying whether it is safe (no stored value can be lost or changed) and which table it
changes. MODEL.lua is a Lua file returning a list of entity definitions, the tables
registry:register_entity takes. Tables that no entity defines are never touched.

options:
  --config FILE     the YAML config with the pools the entities use
  --model FILE      the Lua file returning the entity definitions
  --apply           run the safe statements (all of them with --unsafe), then say what
                    is left
  --unsafe          with --apply: run the unsafe ones too (dropping columns, narrowing
                    or converting columns of non-empty tables)
  --json            one JSON object: {"alters":[{"pool":...,"table":...,"safe":true,
                    "sql":...}],"applied":N,"pending":N}
  -h, --help        print this help

]] .. exit_codes(",\n     the model cannot be loaded or defines a bad entity") .. [[
  3  statements are pending: without --apply, any; after --apply, the unsafe
     ones it did not run (so a CI step can fail when the schema is behind)
]],
  consume = [[
usage: beeorm consume --config FILE [--workers N] [--resolver FILE] [--once]

Applies the events queued by flush_async to MySQL. Needs no entity definitions: the
events carry their tables, columns and values.

options:
  --config FILE     the YAML config with the pools (MySQL and the Redis of the queues)
  --workers N       worker threads, 1 to 256 (default: 11, at most twice the CPUs,
                    never more than the queues)
  --resolver FILE   a Lua file returning function(ev), called for each event failing
                    with a permanent error; it returns "retry", "skip" (drop that event,
                    apply the entry's others), "keep" (park the entry in the error list)
                    or { values = { column = value, ... } } (edit and retry). Without a
                    resolver such events are parked.
  --once            apply what is queued now, then exit (default: keep consuming until
                    SIGINT or SIGTERM, then finish the batch in hand and exit)
  -h, --help        print this help

When it stops it prints one line:
  consumed: entries=N events=N batches=N failed=N skipped=N retried=N workers=N
(followed by " duplicates=N" when entries queued twice after an unknown outcome were
applied once). A resolver that raises does not stop it: the entries it failed on are
kept in the error list with its message, which is also printed on stderr.

]] .. exit_codes(",\n     resolver unusable (cannot be loaded), consuming failed"),

  stats = [[
usage: beeorm stats --config FILE [--json]

Prints the statistics of every queue: one row per queue with a header, or with --json
one JSON object:
  {"queues":[{"name":"default:0","len":0,"oldest_event_seconds":0,"lag":0,"pending":0,"errors":0},...],
   "redis":[{"name":"default","address":"redis://127.0.0.1:6379/0"},...]}
A Redis pool behind Sentinel also shows the master it found ("master":"host:port"; in
the table form, a line after the queues).

Then one line on the consumers of every process (live workers, events applied per
second over the last minute, applied and failed in all), and a row per live blocking
worker (its token, host, pid, the queues it holds, seconds since its heartbeat).

columns:
  len       entries waiting
  oldest_s  age of the oldest waiting entry, in seconds
  lag_s     seconds between the oldest and the newest waiting entry
  pending   entries a consumer is applying now
  errors    entries in the queue's error list

options:
  --config FILE     the YAML config with the pools
  --json            print JSON instead of a table
  -h, --help        print this help

]] .. exit_codes(),

  errors = [[
usage: beeorm errors list|show|retry|skip --config FILE [--queue Q] [--code N] [--limit N]
                     [--id STREAM_ID] [--event N] [--force] [--json]

Operates on the error lists of the queues: entries parked after a permanent error. An
entry is what one flush_async queued for one queue; all its events apply together.
  list    prints every event of the matching entries, one row each (an entry of three
          rows: three rows with its stream id, "2/3" the second of three), oldest first
          per queue; the failing event has the error, the others wait with it
  show    prints the whole record of the entry --id names: every event with its values,
          the failing statement, the error, attempts, times, the resolver's error
  retry   puts each matching entry back at the end of its queue (after fixing the
          cause); a stale entry (a row of it got a newer change applied since it was
          parked) is refused, so a retry never undoes a newer write, unless --force
  skip    drops the failing event of each matching entry (or event --event N of entry
          --id) for good; the other events go back to the queue; a malformed record is
          dropped whole
retry and skip print how many entries (error records) they handled.

options:
  --config FILE     the YAML config with the pools
  --queue Q         only queue Q ("pool:shard", e.g. default:3), or every queue of a
                    MySQL pool ("default")
  --code N          only entries whose error code is N: a MySQL error (e.g. 1062)
                    or a name ("malformed")
  --limit N         handle at most N entries (default 100)
  --id STREAM_ID    show, retry, skip: only the entry with this stream id (as list
                    prints it); with several queues holding one, add --queue
  --event N         skip --id: drop event N (1-based, as list numbers them) instead of
                    the failing one
  --force           retry: retry stale entries too (their parked values overwrite
                    the newer ones)
  --json            list and show: one JSON object with every field (including sql,
                    values, resolver_error and raw)
  -h, --help        print this help

]] .. exit_codes(",\n     a retry or skip failed", ", unknown queue"),
}

-- ------------------------------------------------------------------------
-- Output helpers

local function out(...)
  io.stdout:write(...)
end

-- An error raised to main's caller: { code = exit code, message = one line }.
local Fail = {}
Fail.__index = Fail

local function fail(code, fmt, ...)
  error(setmetatable({ code = code, message = string.format(fmt, ...) }, Fail), 0)
end

-- One line, control characters shown as spaces (server messages are one line, but
-- nothing printed to a terminal should be able to move the cursor).
local function one_line(s)
  return (tostring(s):gsub("[%c]", " "))
end

-- A library error table as one line: pool and message, code at the end.
local function describe(err)
  if type(err) ~= "table" then return one_line(err) end
  local msg = one_line(err.message or tostring(err))
  if err.pool and err.pool ~= "" and not msg:find("pool '" .. err.pool .. "'", 1, true) then
    msg = "pool '" .. err.pool .. "': " .. msg
  end
  if math.type(err.code) == "integer" then msg = msg .. " (mysql " .. err.code .. ")" end
  return msg
end

-- ------------------------------------------------------------------------
-- JSON (output only): strings escaped, invalid UTF-8 bytes as \u00XX, integers exact,
-- non-finite numbers as null, arrays for sequences (tables with `_array`, or a
-- non-empty sequence), objects otherwise with the keys in the given order.

local json = {}

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

-- Valid UTF-8 kept, any other byte as \u00XX (read as Latin-1): JSON text must be UTF-8.
local function utf8_safe(s)
  if utf8.len(s) then return s end
  local parts, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC2 and 2 or 0
    local piece = len > 0 and s:sub(i, i + len - 1)
    if piece and #piece == len and utf8.len(piece) == 1 then
      parts[#parts + 1] = piece
      i = i + len
    else
      parts[#parts + 1] = string.format("\\u%04x", c)
      i = i + 1
    end
  end
  return table.concat(parts)
end

function json.string(s)
  local escaped = tostring(s):gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. utf8_safe(escaped) .. '"'
end

function json.number(n)
  if math.type(n) == "integer" then return string.format("%d", n) end
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return string.format("%d", math.tointeger(n)) end
  for digits = 15, 16 do -- the shortest form that reads back as the same number
    local s = string.format("%." .. digits .. "g", n)
    if tonumber(s) == n then return s end
  end
  return string.format("%.17g", n)
end

-- value: nil, boolean, number, string, or a table: { _keys = { ordered keys }, ... }
-- for objects, or an array (with _array = true when it may be empty).
function json.encode(v)
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then return json.number(v) end
  if t == "string" then return json.string(v) end
  if t ~= "table" then return json.string(tostring(v)) end
  if v._array or (v[1] ~= nil and not v._keys) then
    local parts = {}
    for i = 1, (v.n or #v) do parts[i] = json.encode(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = v._keys
  if not keys then
    keys = {}
    for k in pairs(v) do if type(k) == "string" and k:sub(1, 1) ~= "_" then keys[#keys + 1] = k end end
    table.sort(keys)
  end
  local parts = {}
  for _, k in ipairs(keys) do
    if v[k] ~= nil then parts[#parts + 1] = json.string(k) .. ":" .. json.encode(v[k]) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

M.json = json

-- ------------------------------------------------------------------------
-- Tables for humans

local function print_table(header, rows, right)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      local len = utf8.len(cell) or #cell
      if len > widths[i] then widths[i] = len end
    end
  end
  local function line(cells)
    local parts = {}
    for i, cell in ipairs(cells) do
      local pad = string.rep(" ", widths[i] - (utf8.len(cell) or #cell))
      if i == #cells then
        parts[i] = right[i] and pad .. cell or cell -- no trailing blanks
      else
        parts[i] = right[i] and pad .. cell or cell .. pad
      end
    end
    out(table.concat(parts, "  "), "\n")
  end
  line(header)
  for _, row in ipairs(rows) do line(row) end
end

local function seconds(x)
  if math.type(x) == "integer" then return tostring(x) end
  return string.format("%.3f", x)
end

-- ------------------------------------------------------------------------
-- Command lines

-- Parses args (argv after the subcommand) against spec: { ["--name"] = "value" | "flag" }.
-- Returns options (name without dashes -> string or true) and positional arguments, or
-- "help" when -h/--help was given. Raises a usage Fail for anything else.
local function parse(cmd, args, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then return "help" end
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    end
    if a:sub(1, 1) == "-" and a ~= "-" then
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local kind = spec[name]
      if not kind then fail(USAGE, "beeorm %s: unknown option '%s' (try 'beeorm %s --help')", cmd, one_line(name), cmd) end
      if kind == "flag" then
        if value then fail(USAGE, "beeorm %s: %s takes no value", cmd, name) end
        opts[name:sub(3)] = true
      else
        if not value then
          value = args[i + 1]
          -- `--config --once`: the next word is an option, not this one's value
          if value and (spec[value:match("^(%-%-[^=]+)") or ""] or value == "-h" or value == "--help") then
            value = nil
          end
          i = i + 1
        end
        if value == nil or value == "" then fail(USAGE, "beeorm %s: missing value for %s %s", cmd, name, kind) end
        opts[name:sub(3)] = value
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

-- An integer option within [lo, hi] (hi may be nil).
local function integer_option(cmd, opts, name, lo, hi, default)
  local s = opts[name]
  if s == nil then return default end
  local n = s:match("^%s*[+]?%d+%s*$") and math.tointeger(tonumber(s))
  if not n or n < lo or (hi and n > hi) then
    if hi then
      fail(USAGE, "beeorm %s: --%s must be an integer from %d to %d, got '%s'", cmd, name, lo, hi, one_line(s))
    end
    fail(USAGE, "beeorm %s: --%s must be an integer of %d or more, got '%s'", cmd, name, lo, one_line(s))
  end
  return n
end

local function no_positional(cmd, pos)
  if pos[1] then fail(USAGE, "beeorm %s: unexpected argument '%s' (try 'beeorm %s --help')", cmd, one_line(pos[1]), cmd) end
end

local function need_config(cmd, opts)
  if not opts.config then fail(USAGE, "beeorm %s: missing --config FILE (try 'beeorm %s --help')", cmd, cmd) end
  return opts.config
end

-- Loads the config into a registry and connects: the engine, or a Fail.
-- before_validate(registry), when given, registers what the command needs (entities).
local function connect(cmd, path, before_validate)
  local registry = beeorm.registry()
  local ok, err = registry:load_yaml(path)
  if not ok then
    local msg = one_line(err and err.message or tostring(err))
    local why = msg:match("^cannot read .-: ([^:]+)$")
    if why then fail(FAILED, "beeorm %s: cannot read config '%s': %s", cmd, one_line(path), why) end
    fail(FAILED, "beeorm %s: invalid config '%s': %s", cmd, one_line(path), msg)
  end
  if before_validate then before_validate(registry) end
  local engine
  engine, err = registry:validate()
  if not engine then
    local code = type(err) == "table" and err.code
    if type(err) == "table" and (err.temporary or math.type(code) == "integer" or code == "redis" or code == "timeout") then
      fail(FAILED, "beeorm %s: cannot connect: %s", cmd, describe(err))
    end
    fail(FAILED, "beeorm %s: invalid config '%s': %s", cmd, one_line(path), describe(err))
  end
  return engine, registry
end

-- The engine's queues; a Fail when the config has no Redis pool to hold them.
local function queues(cmd, engine)
  local qs = engine:read_async_flush_events()
  if #qs == 0 then
    fail(FAILED, "beeorm %s: the config has no queues (they need a MySQL pool and a Redis pool)", cmd)
  end
  return qs
end

-- ------------------------------------------------------------------------
-- consume

local function load_resolver(path)
  local chunk, err = loadfile(path, "t")
  if not chunk then fail(FAILED, "beeorm consume: cannot load resolver '%s': %s", one_line(path), one_line(err)) end
  local ok, fn = pcall(chunk)
  if not ok then fail(FAILED, "beeorm consume: resolver '%s' raised: %s", one_line(path), one_line(fn)) end
  if type(fn) ~= "function" then
    fail(FAILED, "beeorm consume: resolver '%s' must return a function(ev), returned a %s", one_line(path), type(fn))
  end
  return fn
end

function M.consume(args)
  local opts, pos = parse("consume", args, { ["--config"] = "FILE", ["--workers"] = "N",
    ["--resolver"] = "FILE", ["--once"] = "flag" })
  if opts == "help" then
    out(M.usage.consume)
    return OK
  end
  no_positional("consume", pos)
  local workers = integer_option("consume", opts, "workers", 1, 256, nil)
  local config = need_config("consume", opts)
  local resolver = opts.resolver and load_resolver(opts.resolver)
  local engine = connect("consume", config)
  queues("consume", engine)
  local consumer = engine:consumer { workers = workers, resolver = resolver }
  local ok, st, err = pcall(consumer.run, consumer, { block = not opts.once })
  if not ok then
    fail(FAILED, "beeorm consume: %s", opts.resolver and ("resolver '" .. one_line(opts.resolver) .. "' failed: "
      .. one_line(st)) or one_line(st))
  end
  if not st then fail(FAILED, "beeorm consume: consuming failed: %s", describe(err)) end
  if st.resolver_error then -- the entries it failed on are parked; consuming went on
    io.stderr:write(string.format("beeorm consume: resolver '%s' failed on %d entr%s (kept in the error list): %s\n",
      one_line(opts.resolver or "?"), st.resolver_errors, st.resolver_errors == 1 and "y" or "ies",
      one_line(st.resolver_error)))
  end
  out(string.format("consumed: entries=%d events=%d batches=%d failed=%d skipped=%d retried=%d workers=%d%s\n",
    st.entries, st.events, st.batches, st.failed, st.skipped, st.retried, st.workers,
    st.duplicates > 0 and (" duplicates=" .. st.duplicates) or ""))
  engine:close()
  return OK
end

-- ------------------------------------------------------------------------
-- stats

local STAT_KEYS = { "name", "len", "oldest_event_seconds", "lag", "pending", "errors", "applied_total",
  "failed_total" }
local WORKER_KEYS = { "token", "host", "pid", "queues", "heartbeat_age_seconds" }

function M.stats(args)
  local opts, pos = parse("stats", args, { ["--config"] = "FILE", ["--json"] = "flag" })
  if opts == "help" then
    out(M.usage.stats)
    return OK
  end
  no_positional("stats", pos)
  local engine = connect("stats", need_config("stats", opts))
  local list = { _array = true }
  for _, q in ipairs(queues("stats", engine)) do
    local s, err = q:stats()
    if not s then fail(FAILED, "beeorm stats: cannot read queue %s: %s", q.name, describe(err)) end
    list[#list + 1] = { _keys = STAT_KEYS, name = q.name, len = s.len, oldest_event_seconds = s.oldest_event_seconds,
      lag = s.lag, pending = s.pending, errors = s.errors, applied_total = s.applied_total,
      failed_total = s.failed_total }
  end
  -- The consumers of every process, from their heartbeats and counters.
  local cs, cerr = engine:consumers()
  if not cs then fail(FAILED, "beeorm stats: cannot read the consumers: %s", describe(cerr)) end
  local workers = { _array = true }
  for i, w in ipairs(cs.workers) do
    local qs = { _array = true }
    for k, name in ipairs(w.queues) do qs[k] = name end
    workers[i] = { _keys = WORKER_KEYS, token = w.token, host = w.host, pid = w.pid, queues = qs,
      heartbeat_age_seconds = w.heartbeat_age_seconds }
  end
  -- The Redis pools, with the master a Sentinel pool found (addresses carry no password).
  local redis = { _array = true }
  for _, p in ipairs(engine:pools()) do
    if p.kind == "redis" then
      redis[#redis + 1] = { _keys = { "name", "address", "master" }, name = p.name, address = p.address,
        master = p.master }
    end
  end
  if opts.json then
    out(json.encode({ _keys = { "queues", "consumers", "redis" }, queues = list,
      consumers = { _keys = { "workers", "applied_per_second", "applied_total", "failed_total" }, workers = workers,
        applied_per_second = cs.applied_per_second, applied_total = cs.applied_total, failed_total = cs.failed_total },
      redis = redis }), "\n")
  else
    local rows = {}
    for i, s in ipairs(list) do
      rows[i] = { s.name, tostring(s.len), seconds(s.oldest_event_seconds), seconds(s.lag), tostring(s.pending),
        tostring(s.errors) }
    end
    print_table({ "queue", "len", "oldest_s", "lag_s", "pending", "errors" }, rows,
      { false, true, true, true, true, true })
    out(string.format("consumers: %s; applied %.1f events/s over the last minute; %d applied, %d failed in all\n",
      #workers == 0 and "no live worker" or (#workers .. " live worker" .. (#workers == 1 and "" or "s")),
      cs.applied_per_second, cs.applied_total, cs.failed_total))
    if #workers > 0 then
      local wrows = {}
      for i, w in ipairs(workers) do
        wrows[i] = { w.token, one_line(w.host), tostring(w.pid), #w.queues > 0 and table.concat(w.queues, ",") or "-",
          string.format("%.1f", w.heartbeat_age_seconds) }
      end
      print_table({ "worker", "host", "pid", "queues", "heartbeat_s" }, wrows, { false, false, true, false, true })
    end
    for _, p in ipairs(redis) do
      if p.master then out(string.format("redis pool '%s': master %s (%s)\n", p.name, p.master, p.address)) end
    end
  end
  engine:close()
  return OK
end

-- ------------------------------------------------------------------------
-- errors

local ERROR_KEYS = { "queue", "stream_id", "event", "failed_event", "kind", "entity", "table", "id", "code",
  "message", "attempts", "failed_at", "events", "sql", "values", "resolver_error", "raw", "raw_len" }

local function utc(t)
  if type(t) ~= "number" then return "-" end
  return os.date("!%Y-%m-%d %H:%M:%S", math.floor(t))
end

-- The matching error records as { q, ev } pairs, at most limit entries; with expand,
-- every event of each entry (one pair per event, the entry's error on its failing one).
local function matching(engine, opts, limit, code, expand)
  local qs = queues("errors", engine)
  local selected = {}
  if opts.queue then
    for _, q in ipairs(qs) do
      if q.name == opts.queue or q.name:match("^(.*):%d+$") == opts.queue then selected[#selected + 1] = q end
    end
    if #selected == 0 then
      local names = {}
      for _, q in ipairs(qs) do names[#names + 1] = q.name end
      fail(USAGE, "beeorm errors: no queue '%s' (queues: %s)", one_line(opts.queue), table.concat(names, ", "))
    end
  else
    selected = qs
  end
  local found, entries = {}, 0
  for _, q in ipairs(selected) do
    if entries >= limit then break end
    -- with a code filter every record must be looked at; without, the first ones do
    local want = limit - entries
    if code then
      local s, err = q:stats()
      if not s then fail(FAILED, "beeorm errors: cannot read queue %s: %s", q.name, describe(err)) end
      want = math.max(s.errors, 1)
    end
    local list, err = q:errors(want, expand and { events = true } or nil)
    if not list then fail(FAILED, "beeorm errors: cannot read the error list of %s: %s", q.name, describe(err)) end
    local last
    for _, ev in ipairs(list) do
      if ev.stream_id ~= last then
        if entries >= limit then break end
        last = ev.stream_id
        if not code or ev.error.code == code then entries = entries + 1 else last = nil end
      end
      if last then found[#found + 1] = { q = q, ev = ev } end
    end
  end
  return found
end

-- The JSON object of one listed event.
local function event_json(ev)
  local values = { _keys = {} }
  for k, v in pairs(ev.values or {}) do
    values[k] = v
    values._keys[#values._keys + 1] = k
  end
  table.sort(values._keys)
  return { _keys = ERROR_KEYS, queue = ev.queue, stream_id = ev.stream_id, event = ev.event,
    failed_event = ev.failed_event, kind = ev.kind, entity = ev.entity, table = ev.table, id = ev.id,
    code = ev.error.code, message = ev.error.message, attempts = ev.attempts, failed_at = ev.failed_at,
    events = ev.events, sql = ev.sql ~= "" and ev.sql or nil, values = values, resolver_error = ev.resolver_error,
    raw = ev.raw, raw_len = ev.raw_len }
end

local function failing(ev) return ev.event == ev.failed_event end

-- "2/3": the event's place in its entry ("-" for a record that cannot be read).
local function place(ev)
  if not ev.events or ev.events == 0 then return "-" end
  return string.format("%d/%d", ev.event, ev.events)
end

local function list_errors(found, as_json)
  if as_json then
    local arr = { _array = true }
    for i, m in ipairs(found) do arr[i] = event_json(m.ev) end
    out(json.encode({ _keys = { "errors" }, errors = arr }), "\n")
    return
  end
  local rows = {}
  for i, m in ipairs(found) do
    local ev = m.ev
    local f = failing(ev)
    rows[i] = { ev.queue, ev.stream_id, place(ev), ev.kind, tostring(ev.entity), tostring(ev.id),
      f and tostring(ev.error.code) or "-", f and tostring(ev.attempts) or "-", utc(ev.failed_at),
      f and one_line(ev.error.message) or string.format("(applies with its entry; event %d failed)", ev.failed_event) }
  end
  print_table({ "queue", "stream_id", "event", "kind", "entity", "id", "code", "attempts", "failed_at", "message" },
    rows, { false, false, true, false, false, false, true, true, false, false })
end

-- A value as show prints it: strings quoted, others as Lua writes them.
local function show_value(v)
  if type(v) == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  return tostring(v)
end

-- Every event of one entry (found: { q, ev } of each event, in order).
local function show_record(found, as_json)
  local first = found[1].ev
  local failed
  for _, m in ipairs(found) do if failing(m.ev) then failed = m.ev end end
  failed = failed or first
  if as_json then
    local arr = { _array = true }
    for i, m in ipairs(found) do arr[i] = event_json(m.ev) end
    out(json.encode({ _keys = { "queue", "stream_id", "code", "message", "attempts", "failed_at", "failed_event",
      "resolver_error", "raw", "raw_len", "events" }, queue = first.queue, stream_id = first.stream_id,
      code = failed.error.code, message = failed.error.message, attempts = failed.attempts,
      failed_at = failed.failed_at, failed_event = failed.failed_event, resolver_error = failed.resolver_error,
      raw = failed.raw, raw_len = failed.raw_len, events = arr }), "\n")
    return
  end
  out(string.format("queue:          %s\nstream_id:      %s\n", first.queue, first.stream_id))
  out(string.format("error:          %s %s\n", tostring(failed.error.code), one_line(failed.error.message)))
  out(string.format("attempts:       %s\nfailed_at:      %s UTC\n", tostring(failed.attempts), utc(failed.failed_at)))
  if failed.resolver_error then out("resolver_error: ", one_line(failed.resolver_error), "\n") end
  if failed.raw then out(string.format("raw (%d bytes, hex): %s\n", failed.raw_len or 0, failed.raw)) end
  for _, m in ipairs(found) do
    local ev = m.ev
    if ev.events and ev.events > 0 then
      out(string.format("event %s: %s %s id %s%s\n", place(ev), ev.kind, tostring(ev.entity), tostring(ev.id),
        failing(ev) and "  <- failed" or ""))
      local cols = {}
      for k in pairs(ev.values or {}) do cols[#cols + 1] = k end
      table.sort(cols)
      for _, k in ipairs(cols) do
        out(string.format("  %s%s = %s\n", k, ev.increments and ev.increments[k] and " +" or "",
          one_line(show_value(ev.values[k]))))
      end
      if ev.sql and ev.sql ~= "" then out("  sql: ", one_line(ev.sql), "\n") end
    end
  end
end

-- The events of the entry with stream id `id` (in --queue, or in whichever queue holds it).
local function find_entry(engine, opts, id)
  local qs = queues("errors", engine)
  local hits, where = {}, {}
  for _, q in ipairs(qs) do
    if not opts.queue or q.name == opts.queue or q.name:match("^(.*):%d+$") == opts.queue then
      local s, err = q:stats()
      if not s then fail(FAILED, "beeorm errors: cannot read queue %s: %s", q.name, describe(err)) end
      if s.errors > 0 then
        local list, lerr = q:errors(s.errors, { events = true })
        if not list then fail(FAILED, "beeorm errors: cannot read the error list of %s: %s", q.name, describe(lerr)) end
        local mine = {}
        for _, ev in ipairs(list) do if ev.stream_id == id then mine[#mine + 1] = { q = q, ev = ev } end end
        if #mine > 0 then
          hits = mine
          where[#where + 1] = q.name
        end
      end
    end
  end
  if #where == 0 then fail(FAILED, "beeorm errors: no parked entry %s%s", one_line(id),
    opts.queue and (" in " .. one_line(opts.queue)) or "") end
  if #where > 1 then
    fail(USAGE, "beeorm errors: entry %s is in several queues (%s): add --queue", one_line(id), table.concat(where, ", "))
  end
  return hits
end

function M.errors(args)
  local opts, pos = parse("errors", args, { ["--config"] = "FILE", ["--queue"] = "Q", ["--code"] = "N",
    ["--limit"] = "N", ["--json"] = "flag", ["--force"] = "flag", ["--id"] = "STREAM_ID", ["--event"] = "N" })
  if opts == "help" then
    out(M.usage.errors)
    return OK
  end
  local action = pos[1]
  if not action then
    fail(USAGE, "beeorm errors: missing action: list, show, retry or skip (try 'beeorm errors --help')")
  end
  if action ~= "list" and action ~= "show" and action ~= "retry" and action ~= "skip" then
    fail(USAGE, "beeorm errors: unknown action '%s' (expected list, show, retry or skip)", one_line(action))
  end
  if pos[2] then fail(USAGE, "beeorm errors: unexpected argument '%s'", one_line(pos[2])) end
  if opts.json and action ~= "list" and action ~= "show" then
    fail(USAGE, "beeorm errors: --json applies to 'errors list' and 'errors show' only")
  end
  if opts.force and action ~= "retry" then fail(USAGE, "beeorm errors: --force applies to 'errors retry' only") end
  if action == "show" and not opts.id then fail(USAGE, "beeorm errors: show needs --id STREAM_ID") end
  if opts.id and action == "list" then fail(USAGE, "beeorm errors: --id applies to show, retry and skip") end
  if opts.id and not opts.id:match("^%d+%-%d+$") then
    fail(USAGE, "beeorm errors: --id must be a stream id such as 1700000000000-0, got '%s'", one_line(opts.id))
  end
  if opts.event and (action ~= "skip" or not opts.id) then
    fail(USAGE, "beeorm errors: --event applies to 'errors skip --id' only (a retry puts the whole entry back)")
  end
  if opts.id and (opts.code or opts.limit) then
    fail(USAGE, "beeorm errors: --id names one entry: --code and --limit do not apply")
  end
  local code
  if opts.code == "malformed" then code = opts.code -- junk in a queue (not a MySQL error)
  elseif opts.code and not opts.code:match("^%s*[+]?%d+%s*$") then
    fail(USAGE, "beeorm errors: --code must be a MySQL error number or 'malformed', got '%s'", one_line(opts.code))
  else code = integer_option("errors", opts, "code", 1, nil, nil) end
  local limit = integer_option("errors", opts, "limit", 1, nil, 100)
  local event = integer_option("errors", opts, "event", 1, nil, nil)
  local engine = connect("errors", need_config("errors", opts))
  if action == "list" then
    list_errors(matching(engine, opts, limit, code, true), opts.json)
  elseif action == "show" then
    show_record(find_entry(engine, opts, opts.id), opts.json)
  else
    local found
    if opts.id then
      local all = find_entry(engine, opts, opts.id)
      found = { all[1] } -- a malformed record is listed once
      for _, m in ipairs(all) do if failing(m.ev) then found[1] = m end end
      if event and event > (found[1].ev.events or 0) then
        fail(USAGE, "beeorm errors: entry %s has %d event%s: there is no event %d", one_line(opts.id),
          found[1].ev.events or 0, found[1].ev.events == 1 and "" or "s", event)
      end
    else
      found = matching(engine, opts, limit, code)
    end
    local done = 0
    for _, m in ipairs(found) do
      local ok, err
      if action == "retry" then ok, err = m.q:retry(m.ev, { force = opts.force or nil })
      else ok, err = m.q:skip(m.ev, event) end
      if not ok then
        out(string.format("%s %d of %d error records\n", action == "retry" and "retried" or "skipped", done, #found))
        fail(FAILED, "beeorm errors: %s of %s %s failed: %s", action, m.ev.queue, m.ev.stream_id, describe(err))
      end
      done = done + 1
    end
    out(string.format("%s %d error record%s\n", action == "retry" and "retried" or "skipped", done,
      done == 1 and "" or "s"))
  end
  engine:close()
  return OK
end

-- ------------------------------------------------------------------------
-- schema

local PENDING = 3
local ALTER_KEYS = { "pool", "table", "safe", "sql" }

-- The entity definitions MODEL.lua returns (a Fail when it cannot be loaded or is not a list).
local function load_model(path)
  local chunk, err = loadfile(path, "t")
  if not chunk then fail(FAILED, "beeorm schema: cannot load model '%s': %s", one_line(path), one_line(err)) end
  local ok, defs = pcall(chunk)
  if not ok then fail(FAILED, "beeorm schema: model '%s' raised: %s", one_line(path), one_line(defs)) end
  if type(defs) ~= "table" or #defs == 0 then
    fail(FAILED, "beeorm schema: model '%s' must return a list of entity definitions, got %s", one_line(path),
      type(defs) == "table" and "an empty table" or type(defs))
  end
  return defs
end

function M.schema(args)
  local opts, pos = parse("schema", args, { ["--config"] = "FILE", ["--model"] = "FILE", ["--apply"] = "flag",
    ["--unsafe"] = "flag", ["--json"] = "flag" })
  if opts == "help" then
    out(M.usage.schema)
    return OK
  end
  no_positional("schema", pos)
  local config = need_config("schema", opts)
  if not opts.model then fail(USAGE, "beeorm schema: missing --model FILE (try 'beeorm schema --help')") end
  if opts.unsafe and not opts.apply then fail(USAGE, "beeorm schema: --unsafe applies to --apply only") end
  local defs = load_model(opts.model)
  local engine = connect("schema", config, function(registry)
    for i, def in ipairs(defs) do
      local ok, err = registry:register_entity(def)
      if not ok then
        fail(FAILED, "beeorm schema: model '%s': entity %d: %s", one_line(opts.model), i, describe(err))
      end
    end
  end)
  local function alters()
    local list, err = engine:schema_alters()
    if not list then fail(FAILED, "beeorm schema: cannot compare the schema: %s", describe(err)) end
    return list
  end
  local list = alters()
  local applied = 0
  if opts.apply and #list > 0 then
    local n, err = engine:sync_schema({ unsafe = opts.unsafe or nil })
    if not n then fail(FAILED, "beeorm schema: applying failed: %s", describe(err)) end
    applied = n
    list = alters()
  end
  if opts.json then
    local arr = { _array = true }
    for i, a in ipairs(list) do
      arr[i] = { _keys = ALTER_KEYS, pool = a.pool, table = a.table, safe = a.safe, sql = a.sql }
    end
    out(json.encode({ _keys = { "alters", "applied", "pending" }, alters = arr, applied = applied,
      pending = #list }), "\n")
  else
    if opts.apply then out(string.format("applied %d statement%s\n", applied, applied == 1 and "" or "s")) end
    local unsafe = 0
    for _, a in ipairs(list) do
      if not a.safe then unsafe = unsafe + 1 end
      out(string.format("-- %s: %s.%s\n%s;\n", a.safe and "safe" or "UNSAFE", a.pool, a.table, a.sql))
    end
    if #list == 0 then
      out("nothing pending: the tables match the model\n")
    else
      out(string.format("%d statement%s pending (%d safe, %d unsafe)%s\n", #list, #list == 1 and "" or "s",
        #list - unsafe, unsafe, opts.apply and "; run with --apply --unsafe to run the unsafe ones" or
        "; run with --apply to run the safe ones"))
    end
  end
  engine:close()
  return #list > 0 and PENDING or OK
end

-- ------------------------------------------------------------------------

M.commands = { consume = M.consume, stats = M.stats, errors = M.errors, schema = M.schema }

--- Runs a subcommand: argv = { "consume" | "stats" | "errors" | "schema", args... }. Returns the
-- exit code. Usage problems and failed operations are reported on stderr; anything
-- else raised (a bug) propagates to the host.
function M.main(argv)
  local cmd = argv[1]
  local fn = M.commands[cmd]
  if not fn then
    io.stderr:write(string.format("beeorm: unknown command '%s' (try 'beeorm help')\n", one_line(cmd)))
    return USAGE
  end
  local args = table.move(argv, 2, #argv, 1, {})
  local ok, res = pcall(fn, args)
  if ok then
    io.stdout:flush()
    return res
  end
  if getmetatable(res) == Fail then
    io.stdout:flush()
    io.stderr:write(res.message, "\n")
    return res.code
  end
  error(res, 0)
end

return M
