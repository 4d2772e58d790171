-- The benchmark: every scenario measured for beeorm, for the naive Lua peer and for the
-- raw limit, in one run on the same servers, then a table (terminal and Markdown), a
-- JSON file and a chart. `make bench` runs it against throwaway servers:
--   beeorm run bench/run.lua <mysql dsn> <redis host:port> <build dir> <output dir>
-- BENCH_QUICK=1 (`make bench QUICK=1`): one short run per scenario, small workloads, to
-- catch a crash quickly; its figures are not meant to be quoted.
--
-- The three sides are separate programs printing "RESULT <id> <value> <unit>" or
-- "SKIP <id> <reason>" per scenario:
--   beeorm     bench/beeorm.lua in the beeorm host
--   naive      bench/naive.lua under plain lua5.4: LuaSQL and redis-lua, one statement
--              or command per entity, as a Lua developer writes it by hand today
--   raw limit  bee_raw_limits --results: hiredis pipelining and libmariadb bulk binding
--              used directly from C, the best the servers give one connection
local beeorm = require("beeorm")

local mysql_dsn, redis_addr, build_dir, out_dir = arg[1], arg[2], arg[3], arg[4]
assert(mysql_dsn and redis_addr and build_dir and out_dir,
  "usage: beeorm run bench/run.lua <mysql dsn> <redis host:port> <build dir> <output dir>")
local bench_dir = arg[0]:match("^(.*)/") or "."
local quick = os.getenv("BENCH_QUICK") == "1"
local seconds = os.getenv("BENCH_SECONDS") or (quick and "0.1" or "0.5")

local SCENARIOS = {
  { id = "get_local", name = "get_by_id, local cache hit", unit = "gets/s" },
  { id = "get_redis", name = "get_by_id, Redis hit", unit = "gets/s" },
  { id = "get_many100", name = "get_by_ids of 100, Redis hits", unit = "entities/s" },
  { id = "flush1", name = "sync flush of 1 new entity", unit = "flushes/s" },
  { id = "flush100", name = "sync flush of 100 new entities", unit = "entities/s" },
  { id = "async1", name = "flush_async of 1 new entity", unit = "flushes/s" },
  { id = "async100", name = "flush_async of 100 new entities", unit = "entities/s" },
  { id = "async_incr", name = "increment via flush_async", unit = "increments/s" },
  { id = "consume_insert", name = "consumer: inserts", unit = "events/s" },
  { id = "consume_update", name = "consumer: updates", unit = "events/s" },
  { id = "consume_mixed", name = "consumer: 50/30/20 ins/upd/del", unit = "events/s" },
  { id = "memory_1m", name = quick and "memory per cached entity (100k)" or "memory per cached entity (1M)",
    unit = "bytes", lower_is_better = true },
}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a side's command; returns { id = { value = n } | { skip = reason } }, its
-- stderr (kept in a file) and whether it exited 0.
local function run_side(key, label, cmd)
  local log = out_dir .. "/" .. key .. ".log"
  io.stderr:write("== ", label, "\n")
  local t0 = beeorm.monotonic()
  local f = assert(io.popen(cmd .. " 2> " .. q(log)))
  local got = {}
  for line in f:lines() do
    local id, value = line:match("^RESULT (%S+) (%S+)")
    if id then
      got[id] = { value = tonumber(value) }
      io.stderr:write(string.format("   %-16s %s\n", id, value))
    else
      local sid, reason = line:match("^SKIP (%S+)%s*(.*)$")
      if sid then got[sid] = { skip = reason ~= "" and reason or "no equivalent" } end
    end
  end
  local ok = f:close()
  io.stderr:write(string.format("   (%s: %.1f s%s)\n", label, beeorm.monotonic() - t0,
    ok and "" or ", FAILED: see " .. log))
  return got, ok
end

os.execute("mkdir -p " .. q(out_dir))
local env = "BENCH_SECONDS=" .. seconds .. (quick and " BENCH_QUICK=1" or "")
local sides = {}
local all_ok = true
local function side(key, label, cmd)
  local got, ok = run_side(key, label, env .. " " .. cmd)
  sides[key] = got
  all_ok = all_ok and ok
end
side("raw", "raw limit", q(build_dir .. "/bee_raw_limits") .. " " .. q(redis_addr) .. " " .. q(mysql_dsn) .. " "
  .. seconds .. " --results")
side("beeorm", "beeorm", q(build_dir .. "/beeorm") .. " run " .. q(bench_dir .. "/beeorm.lua") .. " " .. q(mysql_dsn)
  .. " " .. q(redis_addr))
side("naive", "naive Lua peer", "env -u LUA_PATH -u LUA_CPATH lua5.4 " .. q(bench_dir .. "/naive.lua") .. " "
  .. q(mysql_dsn) .. " " .. q(redis_addr))
-- The machine, for the record.
local function first_line(cmd)
  local f = io.popen(cmd .. " 2>/dev/null")
  local s = f and f:read("l") or ""
  if f then f:close() end
  return s or ""
end
local machine = {
  cpu = first_line("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'"),
  cores = tonumber(first_line("nproc")) or 0,
  memory_gb = math.floor((tonumber(first_line("awk '/MemTotal/ {print $2}' /proc/meminfo")) or 0) / 1048576 + 0.5),
  os = first_line(". /etc/os-release && echo \"$PRETTY_NAME\""),
  lua = _VERSION,
}
do
  local registry = beeorm.registry()
  registry:register_mysql(mysql_dsn)
  registry:register_redis(redis_addr, 0)
  local engine = registry:validate()
  if engine then
    for _, p in ipairs(engine:pools()) do machine[p.kind] = p.server_version end
    engine:close()
  end
end

-- The table ---------------------------------------------------------------------------
local function cell(r)
  if not r then return "missing" end
  if r.skip then return "–" end
  return r.value
end

local rows = {}
for _, s in ipairs(SCENARIOS) do
  local b, n, r = sides.beeorm[s.id], sides.naive[s.id], sides.raw[s.id]
  local row = { id = s.id, name = s.name, unit = s.unit, lower_is_better = s.lower_is_better,
                beeorm = b and b.value, naive = n and n.value, raw = r and r.value,
                naive_skip = n and n.skip or (not n and "did not run"), raw_skip = r and r.skip or (not r and "did not run") }
  if row.beeorm and row.naive then row.vs_naive = row.beeorm / row.naive end
  if row.beeorm and row.raw then row.vs_raw = row.beeorm / row.raw end
  rows[#rows + 1] = row
  all_ok = all_ok and row.beeorm ~= nil
end

local function num(v)
  if type(v) ~= "number" then return tostring(v) end
  local s = string.format("%.0f", v)
  return s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end
local function ratio(v) return v and string.format("%.2f×", v) or "–" end

local lines = {
  "| scenario | unit | beeorm | naive Lua peer | raw limit | beeorm ÷ peer | beeorm ÷ limit |",
  "|---|---|---:|---:|---:|---:|---:|",
}
for _, r in ipairs(rows) do
  lines[#lines + 1] = string.format("| %s | %s | %s | %s | %s | %s | %s |", r.name, r.unit,
    r.beeorm and num(r.beeorm) or "missing", r.naive and num(r.naive) or "–", r.raw and num(r.raw) or "–",
    ratio(r.vs_naive), ratio(r.vs_raw))
end
local notes = {}
for _, r in ipairs(rows) do
  if r.naive_skip then notes[#notes + 1] = "- " .. r.name .. ", naive peer: " .. r.naive_skip end
  if r.raw_skip then notes[#notes + 1] = "- " .. r.name .. ", raw limit: " .. r.raw_skip end
end

-- The targets set by the earlier issues, checked against this run.
local by = {}
for _, r in ipairs(rows) do by[r.id] = r end
local function v(id, side_name) return by[id] and by[id][side_name] end
local targets = {}
local function target(text, ok, detail)
  targets[#targets + 1] = { text = text, met = ok, detail = detail }
end
local function check_abs(id, min, text)
  local b = v(id, "beeorm")
  target(text, b ~= nil and b >= min, b and num(b) .. "/s" or "missing")
end
local function check_ratio(id, peer, peer_name, min, text)
  local b = v(id, "beeorm")
  local r = b and peer and b / peer
  target(text, r ~= nil and r >= min, r and string.format("%.2f× %s", r, peer_name) or "missing")
end
check_abs("get_local", 1e6, "get_by_id local hit ≥ 1M/s")
check_ratio("get_redis", v("get_redis", "raw"), "raw GET", 0.8, "get_by_id Redis hit ≥ 0.8× a raw GET")
check_abs("get_many100", 3e5, "get_by_ids of 100 ≥ 300k entities/s")
check_abs("flush100", 5e4, "sync flush of 100 ≥ 50k entities/s")
check_abs("async100", 1e5, "flush_async of 100 ≥ 100k entities/s")
check_ratio("async1", v("async1", "raw"), "raw atomic enqueue", 0.8,
  "flush_async of 1 ≥ 0.8× the raw atomic enqueue (MULTI, XADD, SET, EXEC)")
check_ratio("async100", v("async100", "raw"), "its raw limit", 0.8, "flush_async of 100 ≥ 0.8× its raw limit")
check_ratio("consume_insert", v("consume_insert", "raw"), "raw bulk insert", 0.6, "consumer inserts ≥ 0.6× raw bulk insert")
check_ratio("consume_update", sides.raw.update_per_statement and sides.raw.update_per_statement.value,
  "raw UPDATE per statement", 4,
  "consumer updates ≥ 4× raw UPDATE per statement (tx of 1000)")

local title = string.format("%s, %d cores, %d GB; %s; MariaDB %s, Redis %s; %s%s", machine.cpu, machine.cores,
  machine.memory_gb, machine.os, machine.mysql or "?", machine.redis or "?", machine.lua,
  quick and " (QUICK: not for quoting)" or "")
local md = { "Machine: " .. title, "" }
for _, l in ipairs(lines) do md[#md + 1] = l end
if #notes > 0 then
  md[#md + 1] = ""
  for _, n in ipairs(notes) do md[#md + 1] = n end
end
md[#md + 1] = ""
md[#md + 1] = "Targets of the earlier issues:"
for _, t in ipairs(targets) do
  md[#md + 1] = string.format("- %s: %s (%s)", t.text, t.met and "met" or "NOT met", t.detail)
end
local text = table.concat(md, "\n") .. "\n"
io.write("\n", text)
local f = assert(io.open(out_dir .. "/results.md", "w"))
f:write(text)
f:close()

-- JSON ------------------------------------------------------------------------------
local function json(value)
  local t = type(value)
  if t == "table" then
    if #value > 0 or next(value) == nil then
      local parts = {}
      for i, x in ipairs(value) do parts[i] = json(x) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(value) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = json(tostring(k)) .. ":" .. json(value[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return math.type(value) == "integer" and tostring(value) or string.format("%.6g", value)
  elseif t == "boolean" then
    return tostring(value)
  end
  return "null"
end
f = assert(io.open(out_dir .. "/results.json", "w"))
f:write(json({ machine = machine, quick = quick, seconds_per_run = tonumber(seconds), scenarios = rows,
  targets = targets, update_per_statement = sides.raw.update_per_statement }), "\n")
f:close()

-- The chart: rates on a log scale, one cluster per scenario (memory is in the table). --
local dat = assert(io.open(out_dir .. "/chart.dat", "w"))
dat:write("scenario\tbeeorm\tnaive Lua peer\traw limit\n")
for _, r in ipairs(rows) do
  if not r.lower_is_better then
    local function val(x) return x and string.format("%.0f", x) or "NaN" end
    dat:write(string.format('%s\t%s\t%s\t%s\n', r.name, val(r.beeorm), val(r.naive),
      val(r.raw)))
  end
end
dat:close()
local chart_title = string.format("%s, %d cores; MariaDB %s, Redis %s%s", machine.cpu, machine.cores,
  (machine.mysql or "?"):match("^[%d.]+") or "?", machine.redis or "?", quick and " (QUICK run)" or ""):gsub('"', "'")
local gp = assert(io.open(out_dir .. "/chart.gp", "w"))
gp:write(string.format([[
set terminal svg size 1100,620 dynamic font "sans,11" background "#ffffff"
set output "%s/bench.svg"
set termoption noenhanced
set datafile separator "\t"
set title "beeorm, the naive Lua peer and the raw limit: operations per second (log scale)\n%s" font "sans,12"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set format y "10^%%L"
set yrange [100:*]
set grid ytics
set key top right
set bmargin 9
set rmargin 14
set xtics rotate by -35 left
set datafile missing "NaN"
plot "%s/chart.dat" using 2:xtic(1) title columnheader(2) lc rgb "#e69f00", \
     "" using 3 title columnheader(3) lc rgb "#999999", \
     "" using 4 title columnheader(4) lc rgb "#0072b2"
]], out_dir, chart_title, out_dir))
gp:close()
if os.execute("command -v gnuplot > /dev/null 2>&1") then
  local ok = os.execute("gnuplot " .. q(out_dir .. "/chart.gp") .. " 2> " .. q(out_dir .. "/gnuplot.log"))
  io.write(ok and ("chart: " .. out_dir .. "/bench.svg\n") or ("gnuplot failed: see " .. out_dir .. "/gnuplot.log\n"))
  all_ok = all_ok and ok
else
  io.write("no chart: gnuplot is not installed (make deps installs gnuplot-nox)\n")
end
io.write("table: ", out_dir, "/results.md, JSON: ", out_dir, "/results.json\n")
if not all_ok then
  io.write("a side failed or a beeorm figure is missing (see the logs in ", out_dir, ")\n")
  os.exit(1)
end
