-- The first app's model: the entity definitions, as registry:register_entity takes them.
-- `beeorm schema --config beeorm.yaml --model model.lua --apply` creates their tables;
-- app.lua registers the same list, so the schema and the app never disagree.
return {
  {
    name = "customer",
    redis_cache = true,
    local_cache = true,
    fields = {
      { "name", "string", length = 100, required = true },
      { "email", "string", length = 150, unique = "email" },
    },
  },
  {
    name = "order",
    table = "orders",
    redis_cache = true,
    fields = {
      { "customer", "ref", entity = "customer", required = true },
      { "total", "decimal", precision = 10, scale = 2 },
      { "status", "enum", values = { "new", "paid", "shipped" } },
    },
  },
}
