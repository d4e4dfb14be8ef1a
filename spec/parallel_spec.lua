-- spec/parallel_spec.lua: stream.parallel: worker threads with Lua states of their own; order,
-- nil drops, errors with tracebacks, values that cross (and those that cannot), the module form,
-- destroy mid-stream, buffers without copies, backpressure.
local helper = require "spec.helper"
local rill = helper.rill
local stream = rill.stream
local buffer = rill.buffer
local P = require "rill._parallel"

-- An object-mode sink that keeps what it gets.
local function sink(out)
  return stream.writable { object_mode = true, write = function(_, c, done)
    out[#out + 1] = c
    done()
  end }
end

-- Runs input (an array or an iterator) through parallel(n, fn, opts) into a sink; returns the
-- outputs and pipeline's results.
local function run_through(input, n, fn, opts)
  local out = {}
  local ok, err = helper.run(function()
    return stream.pipeline(stream.from(input), stream.parallel(n, fn, opts), sink(out))
  end)
  return out, ok, err
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err))
end

describe("stream.parallel", function()
  it("keeps input order under random per-item durations, with every worker taking part", function()
    -- Durations from 0 to 2.4 ms that do not follow the input order.
    local fn = function(x)
      local t = os.clock() + ((x * 7919) % 13) * 0.0002
      while os.clock() < t do end
      return { x = x, w = _G.rill.worker }
    end
    local out, ok, err = run_through(range(300), 3, fn)
    assert.is_true(ok, tostring(err))
    assert.equals(300, #out)
    local workers = {}
    for i = 1, 300 do
      assert.equals(i, out[i].x)
      workers[out[i].w] = true
    end
    assert.is_true(workers[1] and workers[2] and workers[3])
  end)

  it("drops a chunk when fn returns nil", function()
    local out, ok = run_through(range(20), 2, function(x)
      if x % 2 == 1 then return nil end
      return x
    end)
    assert.is_true(ok)
    assert.same({ 2, 4, 6, 8, 10, 12, 14, 16, 18, 20 }, out)
  end)

  it("ends with its source when there is nothing at all", function()
    local out, ok = run_through({}, 2, function(x) return x end)
    assert.is_true(ok)
    assert.same({}, out)
  end)

  it("gives each worker the standard libraries, require and rill.buffer", function()
    local out, ok, err = run_through({ "abc" }, 3, function(s)
      local r = _G.rill -- the worker's own rill (a local of this file would be an upvalue)
      return { up = require("string").upper(s), n = r.workers, b = r.buffer.from(s, "binary"),
        hex = r.buffer.from(s):tostring("hex") }
    end)
    assert.is_true(ok, tostring(err))
    assert.equals("ABC", out[1].up)
    assert.equals(3, out[1].n)
    assert.is_true(buffer.is(out[1].b))
    assert.equals("abc", tostring(out[1].b))
    assert.equals("616263", out[1].hex)
  end)

  it("uses one worker per core for n = 0", function()
    local p = io.popen("nproc")
    local cores = tonumber(p:read("a"))
    p:close()
    local s = stream.parallel(0, function(x) return x end)
    local inflight, cap, n = P.in_flight(s)
    assert.equals(cores, n)
    assert.equals(0, inflight)
    assert.equals(8 * cores, cap)
    s:destroy()
    helper.run(function() end)
  end)

  describe("values", function()
    it("copy tables of plain values, with shared tables and cycles kept", function()
      local t = { i = 42, f = 1.5, s = "a\0b", yes = true, no = false, arr = { 1, 2, 3 },
        nested = { deep = { deeper = { "x" } } }, [7] = "seven", [2.5] = "float key" }
      t.self = t
      t.again = t.arr
      t[t.arr] = "table key"
      local out, ok, err = run_through({ t }, 1, function(v)
        v.seen_in_worker = _G.rill.worker
        return v
      end)
      assert.is_true(ok, tostring(err))
      local r = out[1]
      assert.are_not.equal(t, r)
      assert.is_nil(t.seen_in_worker) -- a copy went over, not the table itself
      assert.equals(1, r.seen_in_worker)
      assert.equals(42, r.i)
      assert.equals("integer", math.type(r.i))
      assert.equals("float", math.type(r.f))
      assert.equals("a\0b", r.s)
      assert.is_true(r.yes)
      assert.is_false(r.no)
      assert.same({ 1, 2, 3 }, r.arr)
      assert.equals("x", r.nested.deep.deeper[1])
      assert.equals("seven", r[7])
      assert.equals("float key", r[2.5])
      assert.equals(r, r.self)
      assert.equals(r.arr, r.again)
      assert.equals("table key", r[r.arr])
    end)

    it("leave metatables behind", function()
      local v = setmetatable({ a = 1 }, { __index = function() return "dflt" end })
      local out = run_through({ v }, 1, function(x) return { mt = getmetatable(x) ~= nil, a = x.a } end)
      assert.same({ mt = false, a = 1 }, out[1])
    end)

    it("pass buffers without copying them, both ways", function()
      local b = buffer.from("hello")
      local out, ok, err = run_through({ b }, 1, function(x)
        x[1] = string.byte("J") -- writes into the caller's memory
        return x
      end)
      assert.is_true(ok, tostring(err))
      assert.equals("Jello", tostring(b))
      assert.is_true(buffer.is(out[1]))
      out[1][2] = string.byte("A") -- the output is that same memory too
      assert.equals("JAllo", tostring(b))
    end)

    it("pass slices of a byte stream's chunks as views of the same memory", function()
      local b = buffer.from(string.rep("a", 100))
      local out, ok = run_through(b, 2, function(x) return x:sub(1, 1) end)
      assert.is_true(ok)
      assert.equals(1, #out)
      out[1][1] = string.byte("z")
      assert.equals("z", tostring(b):sub(1, 1))
    end)

    it("give string results to a byte sink as bytes", function()
      local parts = {}
      local ok = helper.run(function()
        return stream.pipeline(stream.from({ "a", "b", "c" }),
          stream.parallel(2, function(s) return s:upper() end),
          stream.writable { write = function(_, c, done)
            parts[#parts + 1] = tostring(c)
            done()
          end })
      end)
      assert.is_true(ok)
      assert.equals("ABC", table.concat(parts))
    end)

    local bad_inputs = {
      { "a function", function() end, "fn's argument is a function value" },
      { "a coroutine", coroutine.create(function() end), "fn's argument is a thread %(coroutine%) value" },
      { "a userdata", io.stdout, "fn's argument is a userdata %(FILE%*%) value" },
      { "a function in a table", { a = { b = print } }, "fn's argument holds a function value," },
      { "a function as a key", { [print] = 1 }, "holds a function value as a table key" },
    }
    for _, case in ipairs(bad_inputs) do
      it("fail the stream with an error naming the type: " .. case[1], function()
        local out, ok, err = run_through({ case[2] }, 1, function(x) return 1 end)
        assert.is_nil(ok)
        assert.same({}, out)
        assert.matches(case[3], tostring(err))
        assert.matches("only nil, booleans, numbers, strings, buffers and tables", tostring(err))
      end)
    end

    it("fail the stream when fn returns a value that cannot cross", function()
      local _, ok, err = run_through({ 1 }, 1, function() return print end)
      assert.is_nil(ok)
      assert.matches("fn's result is a function value", tostring(err))
      _, ok, err = run_through({ 1 }, 1, function() return { co = coroutine.create(print) } end)
      assert.is_nil(ok)
      assert.matches("fn's result holds a thread %(coroutine%) value", tostring(err))
    end)

    it("refuse tables nested too deep instead of overflowing the C stack", function()
      local deep = {}
      local cur = deep
      for _ = 1, 150 do
        cur.next = {}
        cur = cur.next
      end
      local _, ok, err = run_through({ deep }, 1, function(x) return 1 end)
      assert.is_nil(ok)
      assert.matches("nested more than 100 deep", tostring(err))
    end)

    it("fail a byte sink with a clear error for a non-string result", function()
      local ok, err = helper.run(function()
        return stream.pipeline(stream.from({ "a" }), stream.parallel(1, function() return 42 end),
          stream.writable { write = function(_, _, done) done() end })
      end)
      assert.is_nil(ok)
      assert.matches("a number value cannot be written to a byte stream", tostring(err))
    end)
  end)

  describe("errors", function()
    it("fail the pipeline with the worker's message and traceback", function()
      local out, ok, err = run_through(range(10), 2, function(x)
        if x == 3 then error("boom at three") end
        return x
      end)
      assert.is_nil(ok)
      assert.equals("ERR_CALLBACK", err.code)
      local msg = tostring(err)
      assert.matches("parallel_spec%.lua:%d+: boom at three", msg)
      assert.matches("stack traceback:", msg)
      assert.matches("in function 'error'", msg)
      -- Outputs stop at the error: never the 3rd, at most the two before it.
      assert.is_true(#out <= 2)
      for i, v in ipairs(out) do assert.equals(i, v) end
    end)

    it("report error objects through __tostring, and others by their type", function()
      local _, ok, err = run_through({ 1 }, 1, function()
        error(setmetatable({}, { __tostring = function() return "custom object" end }))
      end)
      assert.is_nil(ok)
      assert.matches("custom object", tostring(err))
      _, ok, err = run_through({ 1 }, 1, function() error(nil) end)
      assert.is_nil(ok)
      assert.matches("error object is a nil value", tostring(err))
    end)

    it("turn endless recursion in fn into a stack overflow error", function()
      local _, ok, err = run_through({ 1 }, 1, function(x)
        local function r(n) return r(n + 1) + 1 end
        return r(x)
      end)
      assert.is_nil(ok)
      assert.matches("stack overflow", tostring(err))
    end)

    it("reject fn with upvalues other than _ENV, naming the variable", function()
      local k = 3
      raises("fn uses 'k', a local variable from outside itself", stream.parallel, 2,
        function(x) return x * k end)
      raises("bad argument #2 to 'parallel'", stream.parallel, 2, function(x) return x * k end)
    end)

    it("reject C functions and wrong arguments", function()
      raises("a C function cannot be copied", stream.parallel, 1, print)
      raises("bad argument #2 to 'parallel' %(function or module name expected, got number%)",
        stream.parallel, 1, 42)
      raises("bad argument #1 to 'parallel'", stream.parallel, -1, function() end)
      raises("bad argument #1 to 'parallel'", stream.parallel, 1.5, function() end)
      raises("bad argument #1 to 'parallel'", stream.parallel, 257, function() end)
      raises("per_worker must be an integer", stream.parallel, 1, function() end, { per_worker = 0 })
      raises("bad argument #3 to 'parallel' %(table expected%)", stream.parallel, 1,
        function() end, 5)
    end)

    it("report a function that fails to load in the worker at construction", function()
      raises("cannot set up a worker: .*module 'no.such.module' not found", stream.parallel, 1,
        "no.such.module")
    end)
  end)

  describe("module-name form", function()
    it("requires the module in each worker and calls the function it returns", function()
      local out, ok, err = run_through(range(50), 2, "spec.fixtures.parallel_double")
      assert.is_true(ok, tostring(err))
      assert.equals(50, #out)
      for i = 1, 50 do assert.equals(2 * i, out[i].x) end
    end)

    it("rejects a module that returns no function", function()
      raises("module 'spec.fixtures.parallel_not_fn' returned a table, not a function",
        stream.parallel, 1, "spec.fixtures.parallel_not_fn")
    end)
  end)

  describe("lifetime", function()
    it("destroy mid-stream stops workers stuck in endless loops, without a hang", function()
      local out = {}
      local p
      local ok, err = helper.run(function()
        p = stream.parallel(2, function(x)
          if x > 5 then while true do end end
          return x
        end)
        local i = 0
        local src = stream.from(function()
          i = i + 1
          return i
        end)
        local stop = setmetatable({}, { __tostring = function() return "stopped" end })
        local dst = stream.writable { object_mode = true, write = function(_, c, done)
          out[#out + 1] = c
          done()
          -- Once the 5th output is in, the workers are (or soon are) in endless loops.
          if c == 5 then rill.timeout(50, function() p:destroy(stop) end) end
        end }
        return stream.pipeline(src, p, dst)
      end)
      assert.is_nil(ok)
      assert.equals("stopped", tostring(err))
      assert.same({ 1, 2, 3, 4, 5 }, out)
      -- The pool is closed, and helper.run returned: the loop ran dry, so the threads were
      -- interrupted, joined and their states freed.
      assert.same({ 0, 0, 2 }, { P.in_flight(p) })
    end)

    it("does not keep the loop alive while idle, and is freed by the collector", function()
      local s = stream.parallel(2, function(x) return x end)
      helper.run(function() end) -- returns: an idle pool holds no reference on the loop
      s = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      helper.run(function() end) -- the closed pool frees itself
    end)
  end)

  describe("backpressure", function()
    it("keeps at most per_worker * n jobs in flight while fn is slow", function()
      local max_seen, cap_seen = 0, nil
      local out = {}
      local ok = helper.run(function()
        local p = stream.parallel(2, function(x)
          local t = os.clock() + 0.002
          while os.clock() < t do end
          return x
        end, { per_worker = 2 })
        local sampler = rill.interval(1, function()
          local f, cap = P.in_flight(p)
          cap_seen = cap
          if f > max_seen then max_seen = f end
        end)
        local r1, r2 = stream.pipeline(stream.from(range(100)), p, sink(out))
        sampler:stop()
        return r1, r2
      end)
      assert.is_true(ok)
      assert.equals(100, #out)
      assert.equals(4, cap_seen)
      assert.equals(4, max_seen) -- the pool filled up and never went past its capacity
    end)

    it("a stalled sink stops the source: nothing more is pulled, memory stays flat", function()
      local pulled, got = 0, 0
      helper.run(function()
        local src = stream.readable { object_mode = true, read = function(self)
          pulled = pulled + 1
          self:push(pulled)
        end }
        local p = stream.parallel(2, function(x) return x end, { per_worker = 2 })
        local held
        local dst = stream.writable { object_mode = true, high_water_mark = 1,
          write = function(_, _, done)
            got = got + 1
            held = done -- never acknowledged: the sink is stuck
          end }
        src:pipe(p):pipe(dst)
        -- Wait until the pipeline has settled (slow under valgrind): no pull for 5 samples.
        local last, quiet = -1, 0
        for _ = 1, 500 do
          rill.sleep(10)
          if pulled == last then
            quiet = quiet + 1
            if quiet == 5 then break end
          else
            last, quiet = pulled, 0
          end
        end
        assert.equals(5, quiet) -- stalled
        -- Buffers on the way (items): source 16, parallel's writable 16, pool 4, parallel's
        -- readable 16, the sink's 1 and its write in flight: about 54.
        assert.is_true(pulled <= 60, "pulled " .. pulled)
        assert.equals(1, got)
        local f = P.in_flight(p)
        assert.equals(0, f)
        src:destroy()
        p:destroy()
        dst:destroy()
        held = nil -- luacheck: ignore
      end)
      assert.is_true(pulled > 16)
    end)
  end)
end)
