-- busted output handler: busted's plain terminal output, then one line
-- "lua specs: N passed, N failed, N skipped" that scripts/test.sh adds up.
return function(options)
  local busted = require("busted")
  local handler = require("busted.outputHandlers.plainTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    local failed = handler.failuresCount + handler.errorsCount
    io.write(string.format("lua specs: %d passed, %d failed, %d skipped\n",
      handler.successesCount, failed, handler.pendingsCount))
    io.flush()
    return nil, true
  end)
  return handler
end
