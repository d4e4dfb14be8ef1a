-- spec/stream_spec.lua: rill.stream: Node's event orders, destroy, errors, backpressure, pipe and
-- pipeline, tasks, iterators (CASES.md 1-24, 27, 29, 70-71, 73, 75, 77, 80).
local helper = require "spec.helper"
local rill = helper.rill
local stream = require "rill.stream"
local buffer = require "rill.buffer"

local run = helper.run

-- Records the given events of s into log (tag prefix); data as "data:<bytes or value>".
local function record(s, names, log, tag)
  log = log or {}
  tag = tag or ""
  for _, ev in ipairs(names) do
    s:on(ev, function(_, a)
      if ev == "data" then
        log[#log + 1] = tag .. "data:" .. tostring(a)
      elseif ev == "error" then
        log[#log + 1] = tag .. "error:" .. (type(a) == "table" and tostring(a.code) or tostring(a))
      else
        log[#log + 1] = tag .. ev
      end
    end)
  end
  return log
end

local ALL = { "data", "end", "finish", "error", "close" }

-- A readable that pushes the given chunks, one per read call (synchronously), then nil.
local function source(items, opts)
  local i = 0
  opts = opts or {}
  opts.read = function(self)
    i = i + 1
    self:push(items[i])
  end
  return stream.readable(opts)
end

-- A writable that keeps what it gets (as strings, or values in object mode).
local function sink(opts)
  opts = opts or {}
  local got = {}
  opts.write = opts.write or function(_, c, done)
    got[#got + 1] = type(c) == "userdata" and tostring(c) or c
    done()
  end
  local w = stream.writable(opts)
  return w, got
end

local function with_uncaught(fn)
  local seen = {}
  rill.on("uncaught", function(e) seen[#seen + 1] = e end)
  local ok, err = pcall(fn)
  rill.on("uncaught", nil)
  if not ok then error(err, 0) end
  return seen
end

describe("readable", function()
  it("emits data x3, end, then close exactly once, and nothing after close (1)", function()
    local log
    run(function()
      local r = source { "a", "b", "c" }
      log = record(r, { "data", "end", "close", "error" })
      rill.sleep(5)
    end)
    assert.same({ "data:a", "data:b", "data:c", "end", "close" }, log)
  end)

  it("delivers nothing while paused and everything in order after resume (14)", function()
    local log
    run(function()
      local r = source { "1", "2", "3", "4" }
      log = record(r, { "data", "end" })
      r:pause()
      rill.sleep(100)
      assert.same({}, log)
      r:resume()
      rill.sleep(5)
    end)
    assert.same({ "data:1", "data:2", "data:3", "data:4", "end" }, log)
  end)

  it("an empty source ends and closes with no data; collect gives 0 bytes; HWM 0 flows (11)", function()
    run(function()
      local log = record(stream.from(""), { "data", "end", "close" })
      rill.sleep(1)
      assert.same({ "end", "close" }, log)
      local b = stream.from(""):collect()
      assert.is_true(buffer.is(b))
      assert.equals(0, #b)
      local r0 = source({ "x", "y" }, { high_water_mark = 0 })
      assert.equals("xy", tostring(r0:collect()))
    end)
  end)

  it("push after push(nil) fails once with ERR_STREAM_PUSH_AFTER_EOF, chunk not delivered (9)", function()
    local log
    run(function()
      local r = stream.readable {}
      log = record(r, { "data", "end", "error", "close" })
      r:push("a")
      r:push(nil)
      assert.is_false(r:push("b"))
      rill.sleep(5)
    end)
    assert.same({ "error:ERR_STREAM_PUSH_AFTER_EOF", "close" }, log)
  end)

  it("push(nil) then destroy(err) before end: no end, one error, close (5)", function()
    local log
    run(function()
      local r = stream.readable {}
      log = record(r, { "end", "error", "close" })
      r:push("a")
      r:push(nil)
      r:destroy("boom")
      rill.sleep(5)
    end)
    assert.same({ "error:boom", "close" }, log)
  end)

  it("read() in a task returns chunks, then nil at the end", function()
    local got = run(function()
      local r = stream.from("abc")
      local a, b = r:read(), r:read()
      return { tostring(a), b }
    end)
    assert.same({ "abc" }, got)
  end)

  it("read() waits for a slow source while other tasks run", function()
    local order = {}
    run(function()
      local r = stream.readable { read = function(self)
        rill.sleep(5) -- a hook may wait: it runs in a task
        self:push("late")
        self:push(nil)
      end }
      rill.spawn(function() order[#order + 1] = "other" end)
      order[#order + 1] = tostring(r:read())
      assert.is_nil(r:read())
    end)
    assert.same({ "other", "late" }, order)
  end)

  it("read() of a failed stream gives nil, err; of a destroyed one ERR_STREAM_PREMATURE_CLOSE", function()
    run(function()
      local r = stream.readable {}
      r:destroy({ code = "EX" })
      local v, err = r:read()
      assert.is_nil(v)
      assert.equals("EX", err.code)
      local r2 = stream.readable {}
      r2:destroy()
      v, err = r2:read()
      assert.is_nil(v)
      assert.equals("ERR_STREAM_PREMATURE_CLOSE", err.code)
    end)
  end)

  it("read() outside a task raises 'must be called from a task' (75)", function()
    local msg
    run(function()
      local r = stream.from("x")
      r:on("data", function(self)
        local ok, e = pcall(self.read, self)
        msg = not ok and tostring(e)
      end)
      rill.sleep(2)
    end)
    assert.matches("must be called from a task", msg)
    assert.has_error(function() stream.from("x"):read() end)
  end)
end)

describe("writable", function()
  it("calls both write callbacks, then the close callbacks, finish, close (2)", function()
    local log = {}
    run(function()
      local w = sink()
      record(w, { "finish", "close", "error" }, log)
      w:write("a", function(e) log[#log + 1] = "cb1:" .. tostring(e) end)
      w:write("b", function(e) log[#log + 1] = "cb2:" .. tostring(e) end)
      w:close(function(e) log[#log + 1] = "end1:" .. tostring(e) end)
      w:close(function(e) log[#log + 1] = "end2:" .. tostring(e) end)
      assert.same({}, log) -- nothing runs inside the calls
      rill.sleep(5)
    end)
    assert.same({ "cb1:nil", "cb2:nil", "end1:nil", "end2:nil", "finish", "close" }, log)
  end)

  it("write after close raises an error naming write; nothing is written (3)", function()
    local log, got
    run(function()
      local w
      w, got = sink()
      log = record(w, { "finish", "close", "error" })
      w:close()
      local ok, err = pcall(w.write, w, "x")
      assert.is_false(ok)
      assert.matches("write", tostring(err))
      assert.equals("ERR_STREAM_WRITE_AFTER_END", err.code)
      assert.has_error(function() w:close("y") end)
      rill.sleep(5)
    end)
    assert.same({}, got)
    assert.same({ "finish", "close" }, log)
  end)

  it("close(chunk) on a destroyed stream does not raise: its callback gets the error", function()
    local got
    run(function()
      local w = sink()
      w:destroy()
      w:close("late", function(e) got = e end)
      rill.sleep(2)
    end)
    assert.equals("ERR_STREAM_DESTROYED", got.code)
  end)

  it("destroy(e1), destroy(e2), destroy(): one error e1, one close, destroy hook once (4)", function()
    local log, hooks = nil, 0
    run(function()
      local w = stream.writable { write = function(_, _, done) done() end,
        destroy = function(_, err, done)
          hooks = hooks + 1
          done(err)
        end }
      log = record(w, { "error", "close" })
      w:destroy("e1")
      w:destroy("e2")
      w:destroy()
      rill.sleep(5)
      assert.is_true(w.destroyed)
      assert.is_true(w.closed)
    end)
    assert.same({ "error:e1", "close" }, log)
    assert.equals(1, hooks)
  end)

  it("destroy with 5 writes pending: each callback gets ERR_STREAM_DESTROYED once (6)", function()
    local codes = {}
    run(function()
      local w = stream.writable { write = function() end } -- never acknowledges
      for i = 1, 5 do
        w:write("x", function(e) codes[#codes + 1] = i .. ":" .. e.code end)
      end
      w:on("close", function() codes[#codes + 1] = "close" end)
      w:destroy()
      rill.sleep(5)
    end)
    assert.same({ "1:ERR_STREAM_DESTROYED", "2:ERR_STREAM_DESTROYED", "3:ERR_STREAM_DESTROYED",
      "4:ERR_STREAM_DESTROYED", "5:ERR_STREAM_DESTROYED", "close" }, codes)
  end)

  it("done() called twice fails the stream with ERR_MULTIPLE_CALLBACK (7)", function()
    local log
    run(function()
      local w = stream.writable { write = function(_, _, done)
        done()
        done()
      end }
      log = record(w, { "error", "close" })
      w:write("a")
      w:write("b")
      rill.sleep(5)
    end)
    assert.same({ "error:ERR_MULTIPLE_CALLBACK", "close" }, log)
  end)

  it("runs callbacks scheduled by a call after the call returns (8)", function()
    local log = {}
    run(function()
      local w = sink()
      w:destroy()
      local ret = w:write("x", function(e) log[#log + 1] = "cb:" .. e.code end)
      log[#log + 1] = "returned:" .. tostring(ret)
      rill.sleep(2)
      stream.finished(w, function(e) log[#log + 1] = "finished:" .. e.code end)
      log[#log + 1] = "after finished"
      rill.sleep(2)
    end)
    assert.same({ "returned:nil", "cb:ERR_STREAM_DESTROYED", "after finished",
      "finished:ERR_STREAM_PREMATURE_CLOSE" }, log)
  end)

  it("byte mode rejects nil, tables and numbers naming write and the type (10)", function()
    local w = sink()
    local function msg(v)
      local ok, e = pcall(function() w:write(v) end)
      assert.is_false(ok)
      return tostring(e)
    end
    assert.matches("'write'.*got nil", msg(nil))
    assert.matches("'write'.*got table", msg({}))
    assert.matches("'write'.*got number", msg(42))
    local o, got = sink { object_mode = true }
    run(function()
      assert.is_true(o:write({ 1 }))
      assert.is_true(o:write(42))
      assert.is_true(o:write(false))
      assert.has_error(function() o:write(nil) end)
    end)
    assert.equals(42, got[2])
    assert.is_false(got[3])
    w:destroy()
    o:destroy()
  end)

  it("write returns false at the HWM and emits exactly one drain; in a task it waits (23)", function()
    local drains, rets = 0, {}
    local pending = {}
    local w = stream.writable { high_water_mark = 4, write = function(_, _, done)
      pending[#pending + 1] = done
    end }
    w:on("drain", function() drains = drains + 1 end)
    rets[1] = w:write("ab")
    rets[2] = w:write("cd")
    rets[3] = w:write("ef")
    assert.same({ true, false, false }, rets)
    run(function()
      while w.writable_length > 0 do
        rill.sleep(1)
        local d = table.remove(pending, 1)
        if d then d() end
      end
      rill.sleep(2)
    end)
    assert.equals(1, drains)
    -- In a task: write suspends while full, then returns true; buffered stays within HWM + 1.
    local max = 0
    run(function()
      local w2 = stream.writable { high_water_mark = 8, write = function(self, c, done)
        if self.writable_length > max then max = self.writable_length end
        rill.sleep(1)
        done()
      end }
      for _ = 1, 20 do assert.is_true(w2:write("xyz")) end
      w2:close()
    end)
    assert.is_true(max <= 8 + 3)
  end)
end)

describe("duplex", function()
  it("closing the writable side leaves the readable open; close after both ends (13)", function()
    local log
    run(function()
      local d
      d = stream.duplex { read = function() end, write = function(_, _, done) done() end }
      log = record(d, { "finish", "end", "close" })
      d:write("x")
      d:close()
      rill.sleep(5)
      assert.same({ "finish" }, log)
      assert.is_false(d.closed)
      d:on("data", function() end)
      d:push("y")
      d:push(nil)
      rill.sleep(5)
    end)
    assert.same({ "finish", "end", "close" }, log)
  end)
end)

describe("finished", function()
  it("reports ERR_STREAM_PREMATURE_CLOSE for a stream destroyed before its end (12)", function()
    local got = {}
    run(function()
      local r = stream.readable {}
      stream.finished(r, function(e) got[#got + 1] = e and e.code or "ok" end)
      r:destroy()
      rill.sleep(2)
      local r2 = stream.from("abc")
      r2:on("data", function() end)
      rill.sleep(2)
      assert.is_true(r2.closed)
      stream.finished(r2, function(e) got[#got + 1] = e and e.code or "ok" end)
      rill.sleep(2)
    end)
    assert.same({ "ERR_STREAM_PREMATURE_CLOSE", "ok" }, got)
  end)
end)

describe("pipeline", function()
  it("a transform raising on its 3rd chunk: cb once with that error, all closed (15, 70)", function()
    local calls, err, got = 0, nil, nil
    local closes = 0
    run(function()
      local src = stream.from { "1", "2", "3", "4", "5" }
      local t = stream.transform { object_mode = true, transform = function(_, c, push)
        if c == "3" then error("boom") end
        push(c)
      end }
      local w
      w, got = sink { object_mode = true, high_water_mark = 1 }
      for _, s in ipairs { src, t, w } do s:on("close", function() closes = closes + 1 end) end
      stream.pipeline(src, t, w, function(e)
        calls = calls + 1
        err = e
      end)
      rill.sleep(10)
      assert.is_true(src.destroyed and w.destroyed)
    end)
    assert.equals(1, calls)
    assert.equals(3, closes)
    assert.matches("stream_spec.lua:%d+: boom", err)
    assert.matches("traceback", err)
    assert.is_true(#got <= 2)
  end)

  it("a sink failing on write 10 behind 6 transforms: cb once, 8 closes, source stops (16)", function()
    local calls, err, closes, reads = 0, nil, 0, 0
    run(function()
      local src = stream.readable { object_mode = true, read = function(self)
        reads = reads + 1
        self:push(reads)
      end }
      local all = { src }
      for _ = 1, 6 do
        all[#all + 1] = stream.transform { object_mode = true, transform = function(_, c, push) push(c) end }
      end
      local n = 0
      all[8] = stream.writable { object_mode = true, write = function(_, _, done)
        n = n + 1
        if n == 10 then done({ code = "ESINK" }) else done() end
      end }
      for _, s in ipairs(all) do s:on("close", function() closes = closes + 1 end) end
      all[#all + 1] = function(e)
        calls = calls + 1
        err = e
      end
      stream.pipeline(table.unpack(all))
      rill.sleep(20)
      local before = reads
      rill.sleep(10)
      assert.equals(before, reads)
    end)
    assert.equals(1, calls)
    assert.equals("ESINK", err.code)
    assert.equals(8, closes)
  end)

  it("errors raised in a source, a transform or a sink close every stage and call back once", function()
    for _, where in ipairs { "source", "transform", "sink" } do
      local calls, err, closes = 0, nil, 0
      run(function()
        local i = 0
        local src = stream.readable { read = function(self)
          i = i + 1
          if where == "source" and i == 3 then error("in " .. where) end
          self:push("x" .. i)
        end }
        local t = stream.transform { transform = function(_, c, push)
          if where == "transform" and tostring(c) == "x3" then error("in " .. where) end
          push(c)
        end }
        local w = stream.writable { write = function(_, c, done)
          if where == "sink" and tostring(c) == "x3" then error("in " .. where) end
          done()
        end }
        for _, s in ipairs { src, t, w } do s:on("close", function() closes = closes + 1 end) end
        stream.pipeline(src, t, w, function(e)
          calls = calls + 1
          err = e
        end)
        rill.sleep(10)
      end)
      assert.equals(1, calls)
      assert.equals(3, closes)
      assert.matches("in " .. where, err)
    end
  end)

  it("a source destroyed mid-stream without error gives ERR_STREAM_PREMATURE_CLOSE (17)", function()
    local err
    run(function()
      local src = stream.readable { read = function() end }
      local w = sink()
      stream.pipeline(src, w, function(e) err = e end)
      src:push("a")
      rill.sleep(2)
      src:destroy()
      rill.sleep(2)
    end)
    assert.equals("ERR_STREAM_PREMATURE_CLOSE", err.code)
  end)

  it("the pipeline callback raising is reported once as uncaught, not fed back (19)", function()
    local calls = 0
    local seen = with_uncaught(function()
      run(function()
        stream.pipeline(stream.from("abc"), sink(), function()
          calls = calls + 1
          error("cb failed")
        end)
        rill.sleep(5)
      end)
    end)
    assert.equals(1, calls)
    assert.equals(1, #seen)
    assert.matches("cb failed", tostring(seen[1]))
  end)

  it("without a callback, in a task, returns true or nil, err while other tasks run (20)", function()
    local other = false
    local ok, r2, e2 = run(function()
      rill.spawn(function() other = true end)
      local ok = stream.pipeline(stream.from("abc"), (sink()))
      local bad = stream.transform { transform = function() error({ code = "EBAD" }) end }
      local r, e = stream.pipeline(stream.from("abc"), bad, (sink()))
      return ok, r, e
    end)
    assert.is_true(ok)
    assert.is_nil(r2)
    assert.equals("EBAD", e2.code)
    assert.is_true(other)
    assert.has_error(function() stream.pipeline(stream.from("x"), (sink())) end)
  end)

  it("pipe and unpipe 10 times leave the listener counts as they were (21)", function()
    local r, w = stream.readable {}, sink()
    local pipes, unpipes = 0, 0
    w:on("pipe", function(_, src) if src == r then pipes = pipes + 1 end end)
    w:on("unpipe", function(_, src) if src == r then unpipes = unpipes + 1 end end)
    local before = { r:listener_count("data"), w:listener_count("drain") }
    for _ = 1, 10 do
      assert.equals(w, r:pipe(w))
      r:unpipe(w)
    end
    assert.same(before, { r:listener_count("data"), w:listener_count("drain") })
    assert.equals(10, pipes)
    assert.equals(10, unpipes)
    r:destroy()
    w:destroy()
    run(function() rill.sleep(1) end)
  end)

  it("one source into a fast and a slow writable: identical bytes, bounded buffering (22)", function()
    local fast, slow = {}, {}
    local max = 0
    run(function()
      local src = stream.from(string.rep("0123456789", 20000), 1000)
      local f = stream.writable { write = function(_, c, done)
        fast[#fast + 1] = tostring(c)
        done()
      end }
      local s = stream.writable { high_water_mark = 2000, write = function(self, c, done)
        slow[#slow + 1] = tostring(c)
        if src.readable_length > max then max = src.readable_length end
        rill.sleep(0)
        done()
      end }
      src:pipe(f)
      src:pipe(s)
      while not s.closed do rill.sleep(5) end
    end)
    assert.equals(table.concat(fast), table.concat(slow))
    assert.equals(200000, #table.concat(slow))
    assert.is_true(max <= 64 * 1024 + 1000)
  end)
end)

describe("backpressure", function()
  it("a fast producer never gets read calls at or above the HWM (24)", function()
    local maxbuf, total = 0, 0
    run(function()
      local n = 0
      local src = stream.readable { high_water_mark = 4096, read = function(self)
        -- what is buffered, minus the chunk being taken, is below the HWM (Node's rule)
        if self.readable_length > maxbuf then maxbuf = self.readable_length end
        n = n + 1
        if n > 200 then return self:push(nil) end
        self:push(string.rep("x", 1024))
      end }
      local w = stream.writable { high_water_mark = 2048, write = function(_, c, done)
        total = total + #c
        rill.sleep(0)
        done()
      end }
      assert.is_true(stream.pipeline(src, w))
    end)
    assert.equals(200 * 1024, total)
    assert.is_true(maxbuf < 4096 + 1024)
  end)

  it("a transform pushing 1000x its input pauses at the downstream HWM (27)", function()
    local maxr, total = 0, 0
    run(function()
      local src = stream.from(string.rep("y", 100), 1)
      local t
      t = stream.transform { high_water_mark = 4096, transform = function(self, c, push)
        push(string.rep(tostring(c), 1000))
        if not self.writable_ended and self.readable_length > maxr then maxr = self.readable_length end
      end }
      local w = stream.writable { high_water_mark = 1000, write = function(_, c, done)
        total = total + #c
        rill.sleep(0)
        done()
      end }
      assert.is_true(stream.pipeline(src, t, w))
    end)
    assert.equals(100 * 1000, total)
    assert.is_true(maxr <= 4096 + 1000)
  end)

  it("object mode counts items: HWM 16 by default; batch and take are exact (29)", function()
    run(function()
      local r = stream.readable { object_mode = true }
      assert.equals(16, r.readable_high_water_mark)
      local pushed = 0
      while r:push({}) do pushed = pushed + 1 end
      assert.equals(15, pushed) -- the 16th push reaches the HWM and returns false
      r:destroy()
      local items = {}
      for i = 1, 10 do items[i] = i end
      local out = stream.from(items):pipe(stream.batch(3)):collect()
      assert.same({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 }, { 10 } }, out)
      assert.same({ 1, 2, 3, 4 }, stream.from(items):pipe(stream.take(4)):collect())
      assert.same({}, stream.from(items):pipe(stream.take(0)):collect())
    end)
  end)
end)

describe("operators", function()
  it("map, filter and tap transform values; nil from map drops", function()
    local seen = {}
    local out = run(function()
      local r = stream.from { 1, 2, 3, 4, 5, 6 }
      local m = stream.map(function(x) if x ~= 3 then return x * 10 end end)
      local f = stream.filter(function(x) return x % 20 == 0 end)
      local t = stream.tap(function(x) seen[#seen + 1] = x end)
      r:pipe(m):pipe(f):pipe(t)
      return t:collect()
    end)
    assert.same({ 20, 40, 60 }, out)
    assert.same({ 20, 40, 60 }, seen)
  end)

  it("take(n) on an endless source stops the source and the pipeline succeeds", function()
    local reads, got = 0, nil
    local ok = run(function()
      local src = stream.readable { object_mode = true, read = function(self)
        reads = reads + 1
        self:push(reads)
      end }
      local w
      w, got = sink { object_mode = true }
      local r = stream.pipeline(src, stream.map(function(x) return x * 2 end), stream.take(5), w)
      assert.is_true(src.destroyed)
      return r
    end)
    assert.is_true(ok)
    assert.same({ 2, 4, 6, 8, 10 }, got)
    assert.is_true(reads < 100)
  end)

  it("lines() and split() give strings; bytes-like outputs feed byte sinks", function()
    run(function()
      assert.same({ "a", "b", "", "c" },
        stream.from("a\r\nb\n\nc"):pipe(stream.lines()):collect())
      assert.same({ "x", "y", "z" }, stream.from("x::y::z::"):pipe(stream.split("::")):collect())
      local up = stream.map(function(b) return tostring(b):upper() end)
      local out = stream.from("abc"):pipe(up):pipe(stream.transform { transform = function(_, c, push)
        push(c)
      end }):collect()
      assert.equals("ABC", tostring(out))
      -- a table into a byte stream fails it with a clear error
      local bad = stream.map(function() return {} end)
      local ok, err = stream.pipeline(stream.from("abc"), bad, (sink()))
      assert.is_nil(ok)
      assert.equals("ERR_INVALID_ARG_TYPE", err.code)
      assert.matches("table", err.message)
    end)
  end)

  it("object mode against byte mode: same content either way", function()
    run(function()
      local text = "one\ntwo\nthree\n"
      local bytes = stream.from(text):collect()
      assert.is_true(buffer.is(bytes))
      assert.equals(text, tostring(bytes))
      local objs = stream.from { "one\n", "two\n", "three\n" }:collect()
      assert.equals(text, table.concat(objs))
      local lines = {}
      for l in stream.from { "one\ntw", "o\nthree\n" }:lines() do lines[#lines + 1] = l end
      assert.same({ "one", "two", "three" }, lines)
    end)
  end)

  it("checks their arguments", function()
    assert.has_error(function() stream.map(1) end)
    assert.has_error(function() stream.batch(0) end)
    assert.has_error(function() stream.take(-1) end)
    assert.has_error(function() stream.split({}) end)
    assert.has_error(function() stream.writable {} end)
    assert.has_error(function() stream.transform {} end)
    assert.has_error(function() stream.readable { high_water_mark = -1 } end)
    assert.has_error(function() stream.from(42) end)
    assert.has_error(function() stream.readable {}:on("nope", print) end)
  end)
end)

describe("iterators", function()
  it("break out of for chunk in r:chunks() destroys the stream at once", function()
    local destroyed
    run(function()
      local r = stream.from(string.rep("z", 300000), 1000)
      local n = 0
      for c in r:chunks() do
        n = n + #c
        if n >= 3000 then break end
      end
      destroyed = r.destroyed
    end)
    assert.is_true(destroyed)
  end)

  it("break out of for line in r:lines() destroys the stream", function()
    run(function()
      local r = stream.from("a\nb\nc\n")
      for l in r:lines() do
        assert.equals("a", l)
        break
      end
      assert.is_true(r.destroyed)
    end)
  end)

  it("a loop that reads a duplex to its end leaves the writable side open", function()
    local wrote = {}
    run(function()
      local d = stream.duplex { read = function() end, write = function(_, c, done)
        wrote[#wrote + 1] = tostring(c)
        done()
      end }
      d:push("in")
      d:push(nil)
      for c in d:chunks() do assert.equals("in", tostring(c)) end
      assert.is_false(d.destroyed)
      d:close("reply")
      rill.sleep(2)
      assert.is_true(d.closed)
    end)
    assert.same({ "reply" }, wrote)
  end)

  it("an error in the stream is raised by the iterator", function()
    run(function()
      local r = stream.readable {}
      r:destroy({ code = "EITER" })
      local ok, err = pcall(function() for _ in r:chunks() do end end)
      assert.is_false(ok)
      assert.equals("EITER", err.code)
    end)
  end)
end)

describe("errors from Lua callbacks", function()
  it("non-string error values from a data handler reach the error event intact (71)", function()
    local values = {
      setmetatable({}, { __tostring = function() return "custom" end }),
      setmetatable({}, { __tostring = function() error("tostring fails") end }),
      {},
      42,
    }
    for _, v in ipairs(values) do
      local got
      run(function()
        local r = stream.from("x")
        r:on("error", function(_, e) got = e end)
        r:on("data", function() error(v) end)
        rill.sleep(2)
      end)
      if type(v) == "table" then
        assert.equals(v, got)
      else
        assert.matches("42", tostring(got))
      end
    end
    local got
    run(function()
      local r = stream.from("x")
      r:on("error", function(_, e) got = e end)
      r:on("data", function() error(nil) end)
      rill.sleep(2)
    end)
    assert.matches("nil value", tostring(got))
  end)

  it("an unhandled stream error is reported as uncaught once (72)", function()
    local seen = with_uncaught(function()
      run(function()
        local r = stream.from("x")
        r:on("data", function() error("handler failed") end)
        rill.sleep(2)
      end)
    end)
    assert.equals(1, #seen)
    assert.matches("handler failed", tostring(seen[1]))
  end)

  it("endless recursion in a transform is a stack overflow error, no crash (73)", function()
    local ok, err = run(function()
      local function rec(n) return rec(n + 1) + 1 end
      local t = stream.transform { transform = function(_, c) rec(1) end }
      return stream.pipeline(stream.from("abc"), t, (sink()))
    end)
    assert.is_nil(ok)
    assert.matches("stack overflow", tostring(err))
    -- the engine keeps working
    assert.is_true(run(function() return stream.pipeline(stream.from("abc"), (sink())) end))
  end)

  it("a hook may wait: a transform that sleeps and writes into another stream", function()
    local got = {}
    run(function()
      local side = sink { high_water_mark = 1, write = function(_, c, done)
        got[#got + 1] = "side:" .. tostring(c)
        rill.sleep(1)
        done()
      end }
      local t = stream.transform { transform = function(_, c, push)
        rill.sleep(1)
        side:write(c) -- waits while the side stream is full
        push(c)
      end }
      local w = sink { write = function(_, c, done)
        got[#got + 1] = "main:" .. tostring(c)
        done()
      end }
      assert.is_true(stream.pipeline(stream.from { "a", "b" }:pipe(stream.map(tostring)), t, w))
    end)
    assert.same({ "side:a", "main:a", "side:b", "main:b" }, got)
  end)
end)

describe("re-entrancy (77)", function()
  it("a callback destroying its own stream, and destroy inside destroy, are safe", function()
    local log, hooks = {}, 0
    run(function()
      local r = source { "a", "b", "c" }
      record(r, { "error", "close", "end" }, log)
      r:on("data", function(self, c)
        log[#log + 1] = "data:" .. tostring(c)
        self:destroy()
        self:destroy()
      end)
      local w
      w = stream.writable { write = function(_, _, done) done() end, destroy = function(self, err, done)
        hooks = hooks + 1
        self:destroy()
        done(err)
      end }
      w:destroy()
      rill.sleep(2)
      r = nil
      collectgarbage()
    end)
    assert.same({ "data:a", "close" }, log)
    assert.equals(1, hooks)
  end)
end)

describe("many chunks (80)", function()
  it("1e5 one-byte chunks through a 3-stage pipeline complete exactly", function()
    local total = 0
    run(function()
      local src = stream.from(string.rep("q", 100000), 1)
      local t = stream.transform { transform = function(_, c, push) push(c) end }
      local w = stream.writable { write = function(_, c, done)
        total = total + #c
        done()
      end }
      assert.is_true(stream.pipeline(src, t, w))
    end)
    assert.equals(100000, total)
  end)
end)

describe("lifetimes", function()
  it("a stream nobody references while it flows is kept alive until it closes", function()
    local closed = false
    run(function()
      do
        local src = stream.from(string.rep("k", 100000), 100)
        local w = sink()
        w:on("close", function() closed = true end)
        src:pipe(w)
      end
      collectgarbage()
      collectgarbage()
      rill.sleep(20)
    end)
    assert.is_true(closed)
  end)

  it("idle unreferenced streams are collected", function()
    local weak = setmetatable({}, { __mode = "v" })
    run(function()
      weak[1] = stream.readable {}
      weak[2] = sink()
      weak[3] = stream.from("abc")
      rill.sleep(1)
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)
end)
