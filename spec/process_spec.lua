-- spec/process_spec.lua: rill.process: spawn, stdio streams, wait, kill, cwd, env, failures.
local helper = require "spec.helper"
local io_helper = require "spec.io_helper"
local rill = helper.rill
local process = require "rill.process"
local stream = require "rill.stream"
local fs = require "rill.fs"

local run = helper.run

local function collect(r)
  local parts = {}
  for c in r:chunks() do parts[#parts + 1] = tostring(c) end
  return table.concat(parts)
end

-- Children of this process that are zombies (spawned, exited, never reaped).
local function zombies()
  -- (without LD_PRELOAD: under the sanitizer suite ps would run with libasan preloaded, and hang)
  local p = io.popen("env -u LD_PRELOAD ps -o stat= --ppid " .. helper.pid())
  local n = 0
  for l in p:lines() do
    if l:match("^Z") then n = n + 1 end
  end
  p:close()
  return n
end

describe("rill.process", function()
  it("spawns a program and reads its stdout; wait gives the exit code", function()
    run(function()
      local child = assert(process.spawn("echo", { "hello", "world" }))
      assert.is_true(child.pid > 0)
      assert.are.equal("hello world\n", collect(child.stdout))
      assert.are.equal(0, child:wait())
      assert.are.equal(0, child:wait()) -- again, at once
      local c2 = assert(process.spawn("sh", { "-c", "echo err >&2; exit 3" }))
      assert.are.equal("err\n", collect(c2.stderr))
      assert.are.equal(3, c2:wait())
    end)
  end)

  it("writes the child's stdin, byte for byte, with backpressure", function()
    run(function()
      local child = assert(process.spawn("cat"))
      local data = {}
      for i = 1, 20000 do data[i] = ("%08d\n"):format(i) end
      local text = table.concat(data)
      local reader = rill.spawn(collect, child.stdout)
      for i = 1, #text, 4096 do child.stdin:write(text:sub(i, i + 4095)) end
      child.stdin:close()
      assert.is_true(reader:join() == text)
      assert.are.equal(0, child:wait())
    end)
  end)

  it("pipes natively from a process to a file", function()
    local out = os.tmpname()
    run(function()
      local child = assert(process.spawn("seq", { 1, 50000 }))
      assert.is_true(stream.pipeline(child.stdout, fs.writer(out)))
      assert.are.equal(0, child:wait())
    end)
    local p = io.popen("seq 1 50000 | cmp - " .. out .. " && echo same")
    assert.are.equal("same\n", p:read("a"))
    p:close()
    os.remove(out)
  end)

  it("honours cwd and env", function()
    run(function()
      local c = assert(process.spawn("pwd", {}, { cwd = "/tmp" }))
      assert.are.equal("/tmp\n", collect(c.stdout))
      c = assert(process.spawn("sh", { "-c", "echo $FOO-$HOME" }, { env = { FOO = "bar" } }))
      assert.are.equal("bar-\n", collect(c.stdout))
      c = assert(process.spawn("true", {}, { stdio = "ignore" }))
      assert.is_nil(c.stdout)
      assert.is_nil(c.stdin)
      assert.are.equal(0, c:wait())
      c = assert(process.spawn("true", {}, { stdio = { "pipe", "ignore", "inherit" } }))
      assert.is_not_nil(c.stdin)
      assert.is_nil(c.stdout)
      assert.are.equal(0, c:wait())
    end)
  end)

  it("kills a child: wait gives the signal; its stdout ends and closes", function()
    run(function()
      local child = assert(process.spawn("sh", { "-c", "while true; do echo y; done" }))
      local events = {}
      child.stdout:on("end", function() events[#events + 1] = "end" end)
      child.stdout:on("close", function() events[#events + 1] = "close" end)
      child.stdout:resume() -- "end" comes only once the data is consumed
      rill.sleep(20)
      assert.is_true(child:kill("SIGKILL"))
      local code, sig = child:wait()
      assert.is_nil(code)
      assert.are.equal("SIGKILL", sig)
      for _ = 1, 1000 do
        if child.stdout.closed then break end
        rill.sleep(1)
      end
      assert.are.same({ "end", "close" }, events)
      local ok, err = child:kill()
      assert.is_nil(ok)
      assert.are.equal("ESRCH", err.code)
    end)
  end)

  it("gives EPIPE on stdin only when the child stops reading; wait still gives 0", function()
    run(function()
      local child = assert(process.spawn("head", { "-c", "10" }))
      local err
      child.stdin:on("error", function(_, e) err = e end)
      local out = rill.spawn(collect, child.stdout)
      local chunk = string.rep("z", 65536)
      for _ = 1, 160 do
        if not child.stdin:write(chunk) then break end
      end
      assert.are.equal(string.rep("z", 10), out:join())
      assert.are.equal(0, child:wait())
      while not child.stdin.closed do rill.sleep(1) end
      assert.are.equal("EPIPE", err.code)
    end)
  end)

  it("a missing program is ENOENT with path and syscall, leaving no fd and no zombie", function()
    -- The first spawn opens the loop's child-signal pipe, which stays: warm it up.
    run(function() process.spawn("true"):wait() end)
    collectgarbage()
    io_helper.settle()
    local before = io_helper.fds()
    run(function()
      for _ = 1, 1000 do
        local c, err = process.spawn("does-not-exist-rill")
        assert.is_nil(c)
        assert.are.equal("ENOENT", err.code)
        assert.are.equal("spawn", err.syscall)
        assert.are.equal("does-not-exist-rill", err.path)
      end
    end)
    collectgarbage()
    collectgarbage()
    assert.are.same({}, io_helper.leaked(before))
    assert.are.equal(0, zombies())
  end)

  it("leaves no descriptor behind after many runs", function()
    run(function() local c = process.spawn("true"); c:wait() end)
    collectgarbage()
    collectgarbage()
    io_helper.settle()
    local before = io_helper.fds()
    run(function()
      for _ = 1, 50 do
        local c = assert(process.spawn("echo", { "x" }))
        collect(c.stdout)
        c:wait()
      end
    end)
    collectgarbage()
    collectgarbage()
    run(function() rill.sleep(5) end)
    assert.are.same({}, io_helper.leaked(before))
    assert.are.equal(0, zombies())
  end)

  it("a slow reader stops a fast child at the pipe (memory bounded)", function()
    run(function()
      local child = assert(process.spawn("yes"))
      local max, n = 0, 0
      for c in child.stdout:chunks() do
        n = n + 1
        if child.stdout.readable_length > max then max = child.stdout.readable_length end
        rill.sleep(1)
        if n == 50 then break end
      end
      child:kill()
      child:wait()
      assert.is_true(max <= 2 * 65536, "buffered " .. max)
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() process.spawn() end)
    assert.has_error(function() process.spawn("x", "y") end)
    assert.has_error(function() process.spawn("x", {}, { stdio = "bogus" }) end)
    assert.has_error(function() process.spawn("x", { {} }) end)
    assert.has_error(function()
      local c = process.spawn("sleep", { "5" })
      local ok, e = pcall(function() c:wait() end)
      c:kill("SIGKILL")
      error(e)
    end)
  end)
end)
