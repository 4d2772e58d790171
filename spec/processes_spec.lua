-- Several OS processes on the same servers (docs/guarantees.md G8, G9): a row cached in another
-- process's local cache follows this process's flushes, and concurrent processes never
-- share an id, also after Redis lost the id counter.
local servers = require("support.servers")
local util = require("support.orm_util")
local defs = require("support.orm_defs")

local REDIS_DB = 4
local ITEM, SEQ = "orm_proc_item", "orm_proc_seq"

describe("processes", function()
  local engine

  setup(function()
    servers.need()
    engine = util.engine(REDIS_DB, defs.proc())
    util.drop(engine, { ITEM, SEQ })
    util.flushdb(REDIS_DB)
    assert.equal(2, engine:sync_schema())
  end)

  teardown(function()
    engine = nil
    collectgarbage()
  end)

  describe("a row in another process's local cache", function()
    local reader

    after_each(function()
      if reader then reader:close() end
      reader = nil
    end)

    it("is seen updated and then deleted by that process once this process's flush returned", function()
      local ctx = engine:context()
      local t = ctx:new_entity(ITEM, { name = "v0", note = "x" })
      assert.is_true(ctx:flush())
      reader = util.start_reader("proc", REDIS_DB)
      local get = "look " .. ITEM .. " " .. t.id
      assert.equal("row v0|x miss", reader:send(get))
      assert.equal("row v0|x hit", reader:send(get)) -- in the reader's local cache now
      local retries, first_stale = {}, 0
      local rounds = 20
      for i = 1, rounds do
        local e = ctx:edit_entity(ctx:get_by_id(ITEM, t.id))
        e.name = "v" .. i
        assert.is_true(ctx:flush())
        local answer = reader:send("wait " .. ITEM .. " " .. t.id .. " v" .. i .. " 200")
        local status, n = answer:match("^(%S+) (%d+)")
        retries[i] = tonumber(n)
        if retries[i] > 0 then first_stale = first_stale + 1 end
        assert.equal("ok", status, "update " .. i .. " not seen within 200 ms: " .. answer
          .. " (retries per update so far: " .. table.concat(retries, ",") .. ")")
        -- cached again in the reader before the next update (so each round tests an invalidation);
        -- a read while the invalidation is still being applied bypasses the local cache, so
        -- allow a few reads for the row to settle in it
        local cached
        for _ = 1, 5 do
          cached = reader:send(get)
          if cached == "row v" .. i .. "|x hit" then break end
        end
        assert.equal("row v" .. i .. "|x hit", cached,
          "round " .. i .. ": the reader did not keep the row in its local cache")
      end
      if os.getenv("BEEORM_SPEC_VERBOSE") then
        io.stderr:write("\nprocesses_spec: retries per update in the reader: " .. table.concat(retries, ",") .. "\n")
      end
      -- A flush returns only after every subscribed process acknowledged its invalidation
      -- (G8): the reader's first read after each flush must already be fresh.
      assert.equal(0, first_stale,
        first_stale .. " of " .. rounds .. " first reads after the flush were stale (retries per update: "
        .. table.concat(retries, ",") .. ")")
      ctx:delete_entity(t)
      assert.is_true(ctx:flush())
      local answer = reader:send("wait " .. ITEM .. " " .. t.id .. " - 200")
      assert.matches("^ok %d+ nil$", answer)
      assert.equal("nil hit", reader:send(get)) -- the miss is cached in the reader, and true
    end)
  end)

  it("never hands out one id twice: 2 processes x 300 entities, Redis db flushed, 2 x 300 more", function()
    local script = servers.root .. "/spec/support/orm_writer.lua"
    local seen, all = {}, {}
    local function round(r)
      local procs = {}
      for _, w in ipairs({ "p1", "p2" }) do -- both run at once
        procs[w] = assert(io.popen(string.format("%s lua5.4 %s proc %d %s %s 300 50 2>&1", util.child_env(),
          util.shell_quote(script), REDIS_DB, SEQ, w .. "-" .. r)))
      end
      for _, w in ipairs({ "p1", "p2" }) do
        local out = procs[w]:read("a")
        local ok = procs[w]:close()
        assert(ok, "writer " .. w .. " of round " .. r .. " failed: " .. out)
        local list = out:match("^ids ([%d,]+)\n$")
        assert(list, "writer " .. w .. " of round " .. r .. " printed: " .. out)
        local n = 0
        for id in list:gmatch("%d+") do
          n = n + 1
          assert(not seen[id], "id " .. id .. " handed out twice (to " .. tostring(seen[id]) .. " and to "
            .. w .. "-" .. r .. ")")
          seen[id] = w .. "-" .. r
          all[#all + 1] = id
        end
        assert.equal(300, n)
      end
    end
    round(1)
    util.flushdb(REDIS_DB) -- loses the id counter and its limit (they live in the entity's Redis pool)
    assert.same({}, util.redis_keys(REDIS_DB, "bee:{" .. util.database() .. "." .. SEQ .. "}:*"))
    round(2)
    assert.equal(1200, #all)
    assert.same({ { n = "1200", d = "1200" } },
      engine:sql_query("SELECT COUNT(*) AS n, COUNT(DISTINCT `id`) AS d FROM `" .. SEQ .. "`"))
    local per = assert(engine:sql_query("SELECT `writer`, COUNT(*) AS n FROM `" .. SEQ
      .. "` GROUP BY `writer` ORDER BY `writer`"))
    assert.same({ { writer = "p1-1", n = "300" }, { writer = "p1-2", n = "300" }, { writer = "p2-1", n = "300" },
      { writer = "p2-2", n = "300" } }, per)
  end)
end)
