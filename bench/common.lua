-- Shared by the bench/*.lua scripts: medians, the raw peer measured in the same run,
-- and the result table. Loaded with dofile next to the script (see the scripts' heads).
local M = {}

--- The median of three calls of fn.
function M.median3(fn)
  local r = { fn(), fn(), fn() }
  table.sort(r)
  return r[2]
end

--- Runs bee_raw_limits (hiredis and libmariadb directly) and returns { scenario = rate }.
function M.raw_limits(build_dir, redis_addr, mysql_dsn, seconds)
  local raw = {}
  local f = assert(io.popen(("%s/bee_raw_limits '%s' '%s' %s"):format(build_dir, redis_addr, mysql_dsn, seconds)))
  for line in f:lines() do
    local name, value = line:match("^(%S+) (%S+)$")
    if name then raw[name] = tonumber(value) end
  end
  assert(f:close(), "bee_raw_limits failed")
  return raw
end

--- Runs ours and one raw hiredis run alternately, three times each, and returns the
--- medians: ours, raw GET, raw atomic XADD + SET. A busy moment of the machine then
--- weighs on both sides alike.
function M.interleaved_with_redis_get(build_dir, redis_addr, mysql_dsn, seconds, ours)
  local a, b, x = {}, {}, {}
  for i = 1, 3 do
    local f = assert(io.popen(("%s/bee_raw_limits '%s' '%s' %s redis_get_once"):format(build_dir, redis_addr,
      mysql_dsn, seconds)))
    local out = f:read("a") or ""
    b[i] = tonumber(out:match("redis_get (%S+)"))
    x[i] = tonumber(out:match("redis_xadd_set (%S+)"))
    assert(f:close() and b[i] and x[i], "bee_raw_limits redis_get_once failed")
    a[i] = ours()
  end
  table.sort(a)
  table.sort(b)
  table.sort(x)
  return a[2], b[2], x[2]
end

--- Prints results { name, value, peer_name, peer, ratio_target | target, target_text }:
-- a ratio target is met by value / peer, a plain target by the value itself.
function M.report(results)
  print(("%-38s %14s  %-42s %12s %7s  %s"):format("scenario", "beeorm", "peer (same run)", "peer", "ratio", "target"))
  for _, r in ipairs(results) do
    local ratio = r.peer and r.value / r.peer
    local met
    if r.ratio_target then met = ratio and ratio >= r.ratio_target elseif r.target then met = r.value >= r.target end
    print(("%-38s %10.0f/s  %-42s %10s/s %7s  %s %s"):format(r.name, r.value, r.peer_name or "-",
      r.peer and ("%.0f"):format(r.peer) or "-", ratio and ("%.2fx"):format(ratio) or "-", r.target_text,
      met == nil and "" or met and "(met)" or "(NOT met)"))
  end
end

return M
