-- spec/core_spec.lua: the loop, tasks, timers, next_tick/immediate ordering, uncaught errors.
local helper = require "spec.helper"
local rill = helper.rill

describe("rill", function()
  it("has a version string", function()
    assert.is_string(rill.version)
    assert.matches("^%d+%.%d+%.%d+", rill.version)
  end)

  it("exposes the environment", function()
    assert.equals(os.getenv("PATH"), rill.env.PATH)
  end)

  it("loads submodules lazily and caches them", function()
    assert.equals(rill.buffer, rill.buffer)
    assert.is_nil(rill.no_such_module)
  end)
end)

describe("tasks", function()
  it("run the function with its arguments and join returns its results", function()
    local a, b = helper.run(function(x, y) return x + y, "z" end, 40, 2)
    assert.equals(42, a)
    assert.equals("z", b)
  end)

  it("suspend in sleep while other tasks run", function()
    local order = {}
    helper.run(function()
      local t1 = rill.spawn(function() rill.sleep(20); order[#order + 1] = "slow" end)
      local t2 = rill.spawn(function() rill.sleep(1); order[#order + 1] = "fast" end)
      t1:join()
      t2:join()
    end)
    assert.same({ "fast", "slow" }, order)
  end)

  it("a task woken by a timer runs before a timer due later in the same pass", function()
    local order = {}
    rill.timeout(5, function() order[#order + 1] = "timer" end)
    rill.spawn(function() rill.sleep(1); order[#order + 1] = "task" end)
    local t0 = os.clock()
    while os.clock() - t0 < 0.02 do end -- both are due when the loop first runs its timers
    rill.run()
    assert.same({ "task", "timer" }, order)
  end)

  it("join re-raises the task's error object", function()
    local obj = setmetatable({}, { __tostring = function() return "custom" end })
    local caught
    helper.run(function()
      local t = rill.spawn(function() rill.sleep(1); error(obj) end)
      local ok, e = pcall(t.join, t)
      assert.is_false(ok)
      caught = e
    end)
    assert.equals(obj, caught)
    assert.is_string(obj.traceback)
  end)

  it("join on a finished task returns at once, also outside a task", function()
    local t = rill.spawn(function() return 1, 2, 3 end)
    assert.same({ 1, 2, 3 }, { t:join() })
    assert.equals("done", t:status())
  end)

  it("a string error gets a traceback", function()
    local t = rill.spawn(function() error("boom") end)
    local ok, e = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("core_spec.lua:%d+: boom\nstack traceback:", e)
  end)

  it("waiting outside a task raises a clear error", function()
    assert.has_error(function() rill.sleep(1) end,
      "sleep: must be called from a task (use rill.spawn, or run the script with rill)")
    local t = rill.spawn(function() rill.sleep(1) end)
    assert.has_error(function() t:join() end)
    rill.run()
  end)

  it("a coroutine inside a task cannot wait on the task's behalf", function()
    local ok, err = helper.run(function()
      return pcall(coroutine.wrap(function() rill.sleep(1) end))
    end)
    assert.is_false(ok)
    assert.matches("must be called from a task", err)
  end)

  it("a bare coroutine.yield in a task is an error, not a silent hang", function()
    local t = rill.spawn(function() coroutine.yield() end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("coroutine.yield called directly in a task", err)
  end)

  it("an unjoined failing task is reported to the uncaught hook once", function()
    local seen = {}
    rill.on("uncaught", function(e) seen[#seen + 1] = e end)
    rill.spawn(function() rill.sleep(1); error("lost") end)
    rill.run()
    rill.on("uncaught", nil)
    assert.equals(1, #seen)
    assert.matches("lost", seen[1])
  end)

  it("without a hook, an uncaught error stops rill.run with the error", function()
    rill.spawn(function() rill.sleep(1); error("stops the loop") end)
    local ok, err = pcall(rill.run)
    assert.is_false(ok)
    assert.matches("stops the loop", err)
    rill.run() -- the engine is usable afterwards
  end)
end)

describe("timers", function()
  it("timeout fires once; stop cancels", function()
    local fired, cancelled = 0, 0
    rill.timeout(1, function() fired = fired + 1 end)
    local t = rill.timeout(5, function() cancelled = cancelled + 1 end)
    assert.is_true(t:active())
    t:stop()
    t:stop() -- idempotent
    assert.is_false(t:active())
    rill.run()
    assert.equals(1, fired)
    assert.equals(0, cancelled)
  end)

  it("interval repeats until stopped", function()
    local n = 0
    local iv
    iv = rill.interval(1, function()
      n = n + 1
      if n == 3 then iv:stop() end
    end)
    rill.run()
    assert.equals(3, n)
  end)

  it("reject bad arguments", function()
    assert.has_error(function() rill.timeout(-1, function() end) end)
    assert.has_error(function() rill.timeout(0 / 0, function() end) end)
    assert.has_error(function() rill.timeout(1, 42) end)
    assert.has_error(function() rill.interval("x", function() end) end)
  end)

  it("an error in a timer callback is uncaught, and the loop goes on with a hook", function()
    local seen, after = 0, false
    rill.on("uncaught", function() seen = seen + 1 end)
    rill.timeout(1, function() error("in timer") end)
    rill.timeout(3, function() after = true end)
    rill.run()
    rill.on("uncaught", nil)
    assert.equals(1, seen)
    assert.is_true(after)
  end)

  it("stopped timers are collected without leaking handles", function()
    for _ = 1, 1000 do rill.timeout(1000, function() end):stop() end
    collectgarbage()
    collectgarbage()
    rill.run()
  end)
end)

describe("queues", function()
  it("order: sync, next_tick, then timers, then immediate", function()
    local order = {}
    rill.immediate(function() order[#order + 1] = "immediate" end)
    rill.timeout(0, function() order[#order + 1] = "timeout" end)
    rill.next_tick(function() order[#order + 1] = "tick" end)
    order[#order + 1] = "sync"
    rill.run()
    assert.same({ "sync", "tick", "timeout", "immediate" }, order)
  end)

  it("ticks queued by ticks run before any immediate", function()
    local order = {}
    rill.immediate(function() order[#order + 1] = "imm" end)
    rill.next_tick(function()
      order[#order + 1] = "t1"
      rill.next_tick(function() order[#order + 1] = "t2" end)
    end)
    rill.run()
    assert.same({ "t1", "t2", "imm" }, order)
  end)

  it("immediates queued by immediates run on the next turn", function()
    local order = {}
    rill.immediate(function()
      order[#order + 1] = "a"
      rill.immediate(function() order[#order + 1] = "c" end)
    end)
    rill.immediate(function() order[#order + 1] = "b" end)
    rill.run()
    assert.same({ "a", "b", "c" }, order)
  end)

  it("reject non-functions", function()
    assert.has_error(function() rill.next_tick(1) end)
    assert.has_error(function() rill.immediate() end)
  end)
end)

describe("signals", function()
  it("on_signal runs the handler for each signal and stop lets the loop end", function()
    local n = 0
    local h
    h = rill.on_signal("SIGUSR1", function(name)
      assert.equals("SIGUSR1", name)
      n = n + 1
      if n == 3 then h:stop() end
    end)
    local pid = helper.pid()
    local function kick()
      os.execute("kill -USR1 " .. pid)
    end
    rill.timeout(1, kick)
    rill.timeout(20, kick)
    rill.timeout(40, kick)
    rill.run()
    assert.equals(3, n)
  end)

  it("rejects unknown signal names", function()
    assert.has_error(function() rill.on_signal("SIGNOPE", function() end) end,
      "bad argument #1 to 'on_signal' (unknown signal 'SIGNOPE')")
  end)
end)

describe("on", function()
  it("rejects unknown events", function()
    assert.has_error(function() rill.on("nope", function() end) end)
  end)
end)
