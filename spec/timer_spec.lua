-- spec/timer_spec.lua: 0 ms timers started from timer callbacks (sleep(0) loops, a timeout(0)
-- that re-arms itself) wait for the next loop iteration: I/O and other timers keep running.
local helper = require "spec.helper"
local rill = helper.rill
local net = require "rill.net"

-- Bounded spins: if 0 ms timers starved the loop again, the spin ends at the bound and the
-- assertions fail instead of hanging the suite.
local BOUND = 200000

describe("0 ms timers from timer callbacks", function()
  it("a task looping on sleep(0) lets a due timer run", function()
    local fired, spins = false, 0
    helper.run(function()
      rill.sleep(1) -- from inside the loop, whose clock is then current
      rill.timeout(5, function() fired = true end)
      while not fired and spins < BOUND do
        spins = spins + 1
        rill.sleep(0)
      end
    end)
    assert.is_true(fired)
    assert.is_true(spins > 1 and spins < BOUND) -- the timer ended the spin
  end)

  it("a task looping on sleep(0) lets I/O run: a TCP connection is accepted and echoed", function()
    local got, spins = nil, 0
    helper.run(function()
      local srv = assert(net.listen {
        port = 0,
        on_connection = function(sock)
          for c in sock:chunks() do sock:write(c) end
          sock:close()
        end,
      })
      rill.spawn(function()
        local c = assert(net.connect("127.0.0.1", srv.port))
        c:close("ping")
        local parts = {}
        for chunk in c:chunks() do parts[#parts + 1] = tostring(chunk) end
        got = table.concat(parts)
      end)
      while got == nil and spins < BOUND do
        spins = spins + 1
        rill.sleep(0)
      end
      srv:close()
    end)
    assert.equals("ping", got)
  end)

  it("a timeout(0) that re-arms itself lets other timers and immediates run", function()
    local n, stop, imm = 0, false, false
    local function again()
      n = n + 1
      if not stop and n < BOUND then rill.timeout(0, again) end
    end
    rill.timeout(1, function() -- from inside the loop, whose clock is then current
      rill.timeout(0, again)
      rill.immediate(function() imm = true end)
      rill.timeout(5, function() stop = true end)
    end)
    rill.run()
    assert.is_true(stop)
    assert.is_true(imm)
    assert.is_true(n > 1 and n < BOUND)
  end)

  it("run on the next iteration: after an immediate queued by the same callback", function()
    local order = {}
    rill.timeout(0, function()
      rill.timeout(0, function() order[#order + 1] = "timeout" end)
      rill.immediate(function() order[#order + 1] = "immediate" end)
      order[#order + 1] = "callback"
    end)
    rill.run()
    assert.same({ "callback", "immediate", "timeout" }, order)
  end)

  it("keep their order among themselves", function()
    local order = {}
    rill.timeout(0, function()
      for i = 1, 5 do rill.timeout(0, function() order[#order + 1] = i end) end
    end)
    rill.run()
    assert.same({ 1, 2, 3, 4, 5 }, order)
  end)

  it("a 0 ms timer stopped before its iteration never runs; the others still do", function()
    local ran = {}
    local t
    rill.timeout(0, function()
      rill.timeout(0, function() ran[#ran + 1] = "a" end)
      t = rill.timeout(0, function() ran[#ran + 1] = "stopped" end)
      rill.timeout(0, function() ran[#ran + 1] = "c" end)
      assert.is_true(t:active())
      t:stop()
      assert.is_false(t:active())
    end)
    rill.run()
    assert.same({ "a", "c" }, ran)
  end)

  it("a stopped, collected 0 ms timer leaves nothing queued", function()
    local ran = false
    rill.timeout(0, function()
      for _ = 1, 100 do rill.timeout(0, function() ran = true end):stop() end
      collectgarbage()
      collectgarbage()
    end)
    rill.run()
    assert.is_false(ran)
  end)

  it("interval(0) keeps repeating without starving a timer due later", function()
    local n, fired = 0, false
    rill.timeout(1, function()
      local iv
      iv = rill.interval(0, function()
        n = n + 1
        if fired or n >= BOUND then iv:stop() end
      end)
      rill.timeout(5, function() fired = true end)
    end)
    rill.run()
    assert.is_true(fired)
    assert.is_true(n > 1 and n < BOUND)
  end)
end)
