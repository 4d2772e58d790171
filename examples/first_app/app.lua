-- The first app: a customer and their orders, written through the queue.
--
-- Run: beeorm run examples/first_app/app.lua CONFIG [N]
--   CONFIG  the YAML config (make servers writes one: build/dev-servers/beeorm.yaml)
--   N       how many orders to place (default 10)
--
-- It registers the entities of model.lua (beside this script), writes one customer with
-- flush (MySQL now) and N orders with flush_async (the caches at once, MySQL when a
-- consumer applies the queue: `beeorm consume --config CONFIG`), then reads them back
-- through the caches. Exit 1 with one line on stderr when something fails.
local beeorm = require("beeorm")

local config, n = arg[1], math.tointeger(tonumber(arg[2] or "10"))
if not config or not n or n < 0 then
  io.stderr:write("usage: beeorm run examples/first_app/app.lua CONFIG [N]\n")
  os.exit(2)
end

local function check(ok, err, ...)
  if not ok then
    io.stderr:write("app: ", tostring(err), "\n")
    os.exit(1, true)
  end
  return ok, err, ...
end

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local registry = beeorm.registry()
check(registry:load_yaml(config))
for _, def in ipairs(dofile(here .. "/model.lua")) do check(registry:register_entity(def)) end
local engine = check(registry:validate())

local ctx = engine:context()
-- one customer, now: flush writes MySQL in one transaction, then the caches
local email = string.format("ada-%d@example.com", os.time())
local customer = ctx:new_entity("customer", { name = "Ada", email = email })
check(ctx:flush())
print(string.format("customer %d: %s <%s>", customer.id, customer.name, customer.email))

-- N orders, through the queue: flush_async returns once Redis holds them
local ids = {}
for i = 1, n do
  local order = ctx:new_entity("order", { customer = customer.id, total = string.format("%d.50", i * 10) })
  ids[#ids + 1] = order.id
end
check(ctx:flush_async())
print(string.format("%d orders queued; a consumer writes them to MySQL", n))

-- read back through the caches: the queued orders are there before MySQL has them
local orders = check(engine:context():get_by_ids("order", ids))
local sum = 0
for _, o in ipairs(orders) do sum = sum + tonumber(o.total) end
print(string.format("read back %d orders through the caches, total %.2f", #orders, sum))
engine:close()
