-- spec/faults_spec.lua: fault injection: descriptor exhaustion, buffer allocation failure, a child
-- process killed mid-pipeline, a socket reset mid-write. Each must fail one stream with a clear
-- error, never the process, and leave no descriptor behind.
local helper = require "spec.helper"
local rill = helper.rill
local stream = require "rill.stream"
local process = require "rill.process"
local net = require "rill.net"
local fs = require "rill.fs"

local run, q = helper.run, helper.quote

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. q(tmp)))

local fd_count = helper.fd_count

-- Runs the rill command on a script (text) in a shell with an optional descriptor limit and
-- environment; returns stdout, stderr, and how it ended ("exit" or "signal") with the number.
-- `timeout` turns a hang into status 124 instead of a stuck suite.
local nscript = 0
local function child(script, o)
  o = o or {}
  nscript = nscript + 1
  local path = ("%s/script%d.lua"):format(tmp, nscript)
  local f = assert(io.open(path, "wb"))
  f:write(script)
  f:close()
  local env = {}
  for k, v in pairs(o.env or {}) do env[#env + 1] = q(k .. "=" .. v) end
  table.sort(env)
  local args = {}
  for _, a in ipairs(o.args or {}) do args[#args + 1] = q(a) end
  local cmd = ("%sexec env %s timeout -k 5 %d %s %s %s <%s >%s 2>%s"):format(
    o.ulimit and ("ulimit -n %d; "):format(o.ulimit) or "", table.concat(env, " "),
    o.timeout or 120, q(helper.bin), q(path), table.concat(args, " "), "/dev/null",
    q(path .. ".out"), q(path .. ".err"))
  local _, how, code = os.execute("sh -c " .. q(cmd))
  os.remove(path)
  return helper.take_file(path .. ".out"), helper.take_file(path .. ".err"), how, code
end

-- Asserts that a child ran to its end with status 0 (no crash, no hang, no uncaught error).
local function assert_clean(out, err, how, code)
  assert(how == "exit" and code == 0,
    ("child ended by %s %s\nstdout:\n%s\nstderr:\n%s"):format(how, code, out, err))
end

-- Counts "key value" lines of a child's output into a table.
local function fields(out)
  local t = {}
  for k, v in out:gmatch("(%S+) ([^\n]*)\n") do t[k] = v end
  return t
end

-- Whether the rill command was built with -DRILL_FAULT_INJECTION (core/buf.c): with the hook,
-- RILL_FAULT_SLAB_SIZE makes a buffer of that size fail to allocate.
local fault_build
local function has_fault_hook()
  if fault_build == nil then
    local out = child([[print(pcall(require("rill.buffer").alloc, 100003))]],
      { env = { RILL_FAULT_SLAB_SIZE = "100003" } })
    fault_build = out:match("^false") ~= nil
  end
  return fault_build
end

-- The child's own descriptor count, as a Lua function in child scripts (nil when even that
-- cannot open a descriptor).
local FDS = [[
local function fds()
  collectgarbage()
  collectgarbage()
  local st = io.open("/proc/self/stat")
  if not st then return nil end
  local pid = st:read("n")
  st:close()
  local p = io.popen("ls /proc/" .. pid .. "/fd")
  if not p then return nil end
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1
end
]]

describe("faults", function()
  teardown(function() os.execute("rm -rf " .. q(tmp)) end)

  describe("descriptor exhaustion (ulimit -n 32)", function()
    it("gives EMFILE errors naming the call, and everything works again once fds are freed",
      function()
        local out, err, how, code = child(FDS .. [[
local fs, net, process = require "rill.fs", require "rill.net", require "rill.process"
local dir = rill.argv[1]
-- libuv keeps descriptors per loop from the first listen on (a spare for its accept-under-EMFILE
-- trick) and the first spawn on (its SIGCHLD pipe): make them exist before counting.
local srv0 = assert(net.listen{ port = 0, on_connection = function() end })
srv0:close()
-- Under valgrind (.ci/valgrind sets RILL_VALGRIND) with this limit, a spawn forks valgrind
-- itself, whose failures libuv 1.44 answers with abort(): spawns are left to the other runs.
local valgrind = os.getenv("RILL_VALGRIND") ~= nil
local function run_true()
  if valgrind then return nil, { code = "SKIPPED", syscall = "valgrind" } end
  local c, e = process.spawn("true")
  if c then
    c.stdin:close()
    c.stdout:collect()
    c.stderr:collect()
    c:wait()
  end
  return c, e
end
run_true()
rill.sleep(5)
local start = fds()
print("start " .. start)
-- Hold writers open until the limit is reached: the first failure is an "error" event.
local held, failed = {}, nil
for i = 1, 200 do
  local w = fs.writer(dir .. "/hold" .. i)
  local done, e
  w:on("error", function(_, x) e = x end)
  w:write("x", function() done = true end)
  while not done and not e do rill.sleep(1) end
  if e then failed = e break end
  held[#held + 1] = w
end
print("held " .. #held)
print("writer " .. failed.code .. " " .. tostring(failed.syscall) .. " " .. tostring(failed))
local function show(name, v, e)
  print(name .. " " .. (v and "ok" or (e.code .. " " .. tostring(e.syscall))))
end
show("read_file", fs.read_file("/proc/self/stat"))
if valgrind then
  show("spawn", run_true())
else
  show("spawn", process.spawn("true"))
end
show("connect", net.connect("127.0.0.1", 9))
show("listen", net.listen{ port = 0, on_connection = function() end })
local r = fs.reader("/proc/self/stat")
local re
r:on("error", function(_, x) re = x end)
r:resume()
while not r.closed do rill.sleep(1) end
print("reader " .. (re and re.code or "none"))
-- Free them: each call works again.
for _, w in ipairs(held) do w:close() end
for _, w in ipairs(held) do while not w.closed do rill.sleep(1) end end
show("read_file_after", fs.read_file("/proc/self/stat"))
show("spawn_after", run_true())
local srv = assert(net.listen{ port = 0, on_connection = function(s)
  s:close()
  s:collect()
end })
local s, e = net.connect("127.0.0.1", srv.port)
show("connect_after", s, e)
if s then s:collect() end
srv:close()
-- Closing is asynchronous (slow under valgrind): give it up to 2 s to settle.
local n = fds()
for _ = 1, 200 do
  if n <= start then break end
  rill.sleep(10)
  n = fds()
end
print("end " .. n)
]], { ulimit = 32, args = { tmp } })
        assert_clean(out, err, how, code)
        local f = fields(out)
        assert.is_true(tonumber(f.held) > 5 and tonumber(f.held) < 32, out)
        assert.matches("^EMFILE open EMFILE: too many open files, open '", f.writer)
        local vg = os.getenv("RILL_VALGRIND") ~= nil
        for _, k in ipairs({ "read_file", "spawn", "connect", "listen", "reader" }) do
          assert.matches(vg and k == "spawn" and "^SKIPPED" or "^EMFILE", f[k], 1, false)
        end
        for _, k in ipairs({ "read_file_after", "spawn_after", "connect_after" }) do
          assert.are.equal(vg and k == "spawn_after" and "SKIPPED valgrind" or "ok", f[k], k)
        end
        -- A leak leaves more descriptors at the end. Fewer is not a leak: under the sanitizer
        -- runtime a descriptor it held at the first count can be gone by the last (seen in CI).
        assert.is_true(tonumber(f["end"]) <= tonumber(f.start),
          "descriptors at the start " .. f.start .. " and at the end " .. f["end"])
      end)

    it("a server stays up, idle, while accepts fail, and serves again once fds are freed",
      function()
        local script = tmp .. "/server.lua"
        local f = assert(io.open(script, "wb"))
        f:write([[
local fs, net, stream = require "rill.fs", require "rill.net", require "rill.stream"
local served = 0
local srv = assert(net.listen{ port = 0, on_connection = function(sock)
  served = served + 1
  sock:pipe(stream.transform{ transform = function(_, c, push) push(c) end }):pipe(sock)
end })
print("port " .. srv.port)
local held = {}
while true do
  local w = fs.writer(rill.argv[1] .. "/shold" .. #held)
  local done, e
  w:on("error", function(_, x) e = x end)
  w:write("x", function() done = true end)
  while not done and not e do rill.sleep(1) end
  if e then break end
  held[#held + 1] = w
end
print("full " .. #held)
local cpu0 = os.clock()
for line in rill.stdin:lines() do
  if line == "stats" then
    print(("stats %d %.3f"):format(served, os.clock() - cpu0))
  elseif line == "free" then
    for _, w in ipairs(held) do w:close() end
    for _, w in ipairs(held) do while not w.closed do rill.sleep(1) end end
    print("freed")
  end
end
srv:close()
]])
        f:close()
        run(function()
          local c = assert(process.spawn("sh", { "-c", 'ulimit -n 32; exec "$0" "$@"', helper.bin,
            script, tmp }))
          local lines = c.stdout:lines()
          local port = tonumber(assert(lines()):match("^port (%d+)$"))
          assert.matches("^full %d+$", lines())
          -- 100 connections while the server has no descriptor to accept them with: libuv's
          -- reserve-fd trick accepts and closes each, so clients see an empty, closed stream.
          local echoed = 0
          for _ = 1, 100 do
            local s, e = net.connect("127.0.0.1", port)
            assert.is_truthy(s, tostring(e))
            s:write("ping")
            s:close()
            local got = s:collect()
            if got and #got > 0 then echoed = echoed + 1 end
          end
          assert.are.equal(0, echoed)
          rill.sleep(500)
          c.stdin:write("stats\n")
          local served, cpu = assert(lines()):match("^stats (%d+) ([%d.]+)$")
          assert.are.equal("0", served)
          assert.is_true(tonumber(cpu) < 0.25, "the server spun on accept: " .. cpu .. " s CPU")
          c.stdin:write("free\n")
          assert.are.equal("freed", lines())
          for _ = 1, 5 do
            local s = assert(net.connect("127.0.0.1", port))
            s:write("ping")
            s:close()
            assert.are.equal("ping", tostring(s:collect()))
          end
          c.stdin:write("stats\n")
          assert.matches("^stats 5 ", lines())
          c.stdin:close()
          assert.are.equal(0, c:wait())
        end)
      end)
  end)

  describe("buffer allocation failure (builds with -DRILL_FAULT_INJECTION)", function()
    it("fails the one stream whose buffer could not be made; the others finish exactly",
      function()
        if not has_fault_hook() then
          pending("the rill command was built without -DRILL_FAULT_INJECTION")
          return
        end
        local data = {}
        for i = 1, 30000 do data[i] = ("%07d\n"):format(i) end
        local f = assert(io.open(tmp .. "/alloc.in", "wb"))
        f:write(table.concat(data))
        f:close()
        local out, err, how, code = child([[
local fs, stream, buffer = require "rill.fs", require "rill.stream", require "rill.buffer"
local path = rill.argv[1]
local function count(opts)
  local n = 0
  local w = stream.writable{ write = function(_, c, done) n = n + #c; done() end }
  local ok, err = stream.pipeline(fs.reader(path, opts), w)
  return ok, err, n
end
-- 100003-byte reads fail to get a buffer; 64 KiB reads in the same loop go on.
local a = rill.spawn(count, { chunk_size = 100003 })
local b = rill.spawn(count, { chunk_size = 4096 })
local ok, e, n = a:join()
print("a " .. tostring(ok) .. " " .. (e and e.code or "-") .. " " .. (e and e.syscall or "-"))
ok, e, n = b:join()
print("b " .. tostring(ok) .. " " .. n)
local okb, eb = pcall(buffer.alloc, 100003)
print("alloc " .. tostring(okb) .. " " .. tostring(eb))
-- The engine is unharmed: a second failing stream, then a working one.
print("again " .. tostring((count({ chunk_size = 100003 }))))
ok, e, n = count({})
print("c " .. tostring(ok) .. " " .. n)
]], { env = { RILL_FAULT_SLAB_SIZE = "100003" }, args = { tmp .. "/alloc.in" } })
        assert_clean(out, err, how, code)
        local t = fields(out)
        assert.are.equal("nil ENOMEM read", t.a)
        assert.are.equal("true 240000", t.b)
        assert.are.equal("false not enough memory", t.alloc)
        assert.are.equal("nil", t.again)
        assert.are.equal("true 240000", t.c)
      end)

    -- Each part runs alone in a child with the k-th buffer request of the process failing, for k
    -- from 1 past the last request the part makes: every run must end with status 0 and either
    -- the exact bytes or a clean error (never a crash, a hang, or silently wrong output).
    local parts = {
      zlib = [[
        local w, got = sink()
        local ok, err = stream.pipeline(stream.from(data),
          stream.transform{ transform = function(_, c, push) push(c) end },
          zlib.gzip(), zlib.gunzip(), stream.lines(),
          stream.map(function(l) return l .. "\n" end), w)
        report(ok, err, got)]],
      lua = [[
        local pos = 1
        local src = stream.readable{ high_water_mark = 1000, read = function(self)
          if pos > #data then return self:push(nil) end
          local n = 1 + (pos * 7919) % 3000
          self:push(data:sub(pos, pos + n - 1))
          pos = pos + n
        end }
        local w, got = sink()
        local ok, err = stream.pipeline(src, stream.split("\n"), stream.batch(7),
          stream.map(function(b)
            for i = 1, #b do b[i] = tostring(b[i]) end
            return table.concat(b, "\n") .. "\n"
          end),
          stream.transform{ high_water_mark = 100, transform = function(_, c, push)
            for i = 1, #c, 1000 do push(c:sub(i, i + 999)) end
          end }, w)
        report(ok, err, got)]],
      -- Through a Lua hop: file to file straight would take the kernel's fast path, which
      -- makes no buffers.
      file = [[
        local ok, err = stream.pipeline(fs.reader(dir .. "/in", { chunk_size = 5000 }),
          stream.transform{ transform = function(_, c, push) push(c) end },
          fs.writer(dir .. "/out"))
        if not ok then return report(ok, err) end
        local got, e2 = fs.read_file(dir .. "/out")
        if not got then return report(nil, e2) end
        report(true, nil, function() return tostring(got) end)]],
      process = [[
        local child, err = process.spawn("cat")
        if not child then return report(nil, err) end
        local good, e = pcall(function()
          local w, got = sink()
          local t = rill.spawn(stream.pipeline, child.stdout, w)
          local ok1, e1 = stream.pipeline(stream.from(data), child.stdin)
          local ok2, e2 = t:join()
          child:wait()
          report(ok1 and ok2, e1 or e2, got)
        end)
        if not good then child:kill("SIGKILL"); child:wait(); error(e, 0) end]],
      tcp = [[
        local srv, err = net.listen{ port = 0, on_connection = function(sock)
          -- The echo side's errors (ENOBUFS when its read buffer cannot be made) are handled
          -- here: the client side reports the outcome.
          local t = stream.transform{ transform = function(_, c, push) push(c) end }
          sock:on("error", function() end)
          t:on("error", function() end)
          sock:pipe(t):pipe(sock)
        end }
        if not srv then return report(nil, err) end
        local sock
        local good, e = pcall(function()
          local e
          sock, e = net.connect("127.0.0.1", srv.port)
          if not sock then return report(nil, e) end
          local w, got = sink()
          local t = rill.spawn(stream.pipeline, sock, w)
          local ok1, e1 = stream.pipeline(stream.from(data), sock)
          local ok2, e2 = t:join()
          report(ok1 and ok2, e1 or e2, got)
        end)
        srv:close()
        -- An open socket keeps the loop alive, as in Node: a script that gives up destroys it.
        if not good then
          if sock then sock:destroy() end
          error(e, 0)
        end]],
    }
    local prelude = [[
local fs, stream, zlib, net, process =
  require "rill.fs", require "rill.stream", require "rill.zlib", require "rill.net",
  require "rill.process"
local dir = rill.argv[1]
local data = {}
for i = 1, 3000 do data[i] = ("line %d %s\n"):format(i, ("x"):rep(i % 50)) end
data = table.concat(data)
local function sink()
  local parts = {}
  return stream.writable{ write = function(_, c, done) parts[#parts + 1] = tostring(c); done() end },
    function() return table.concat(parts) end
end
local function report(ok, err, got)
  if ok then
    local s = got()
    print(s == data and "result ok" or ("result WRONG " .. #s .. " of " .. #data .. " bytes"))
  else
    print("result error " .. tostring(err and err.code or err))
  end
end
local ok, e = pcall(function()
]]
    local names = { "zlib", "lua", "file", "process", "tcp" }
    it("the k-th buffer request failing never crashes, hangs or corrupts: " ..
      table.concat(names, ", "), function()
      if not has_fault_hook() then
        pending("the rill command was built without -DRILL_FAULT_INJECTION")
        return
      end
      local samples = tonumber(os.getenv("RILL_FAULT_SAMPLES") or "") or 40
      local function attempt(name, k)
        local env = k and { RILL_FAULT_SLAB_NTH = tostring(k) } or { RILL_FAULT_SLAB_COUNT = "1" }
        local out, err, how, code = child(prelude .. parts[name] .. "\nend)\n" ..
          "if not ok then print('result raised ' .. tostring(e)) end\n",
          { env = env, args = { tmp }, timeout = 30 })
        local ctx = ("part %s, RILL_FAULT_SLAB_NTH=%s\nstdout:\n%s\nstderr:\n%s"):format(name,
          tostring(k), out, err)
        assert(how == "exit" and code == 0, ("ended by %s %s, %s"):format(how, code, ctx))
        local res = out:match("result ([^\n]*)")
        assert(res, "no result, " .. ctx)
        assert(not res:match("^WRONG"), "wrong output, " .. ctx)
        return res, tonumber(err:match("rill%-fault: slab requests (%d+)"))
      end
      -- The file part's input: the same bytes as the prelude's data.
      local t = {}
      for i = 1, 3000 do t[i] = ("line %d %s\n"):format(i, ("x"):rep(i % 50)) end
      local f = assert(io.open(tmp .. "/in", "wb"))
      f:write(table.concat(t))
      f:close()
      local runs, failed, ranges = 0, 0, {}
      for _, name in ipairs(names) do
        -- A clean run says how many buffer requests the part makes: every one of them is tried
        -- when there are few, else the first ones and evenly spread ones up to the last.
        local res, total = attempt(name, nil)
        assert.are.equal("ok", res)
        assert.is_true(total and total > 0, "no count of buffer requests for " .. name)
        ranges[#ranges + 1] = ("%s %d"):format(name, total)
        local ks = {}
        for k = 1, math.min(total, samples // 2) do ks[#ks + 1] = k end
        local first = #ks
        local rest = math.min(samples, total) - first
        for i = 1, rest do ks[#ks + 1] = first + (total - first) * i // rest end
        for _, k in ipairs(ks) do
          runs = runs + 1
          if attempt(name, k) ~= "ok" then failed = failed + 1 end
        end
      end
      -- Faults must have been hit, or this test tests nothing.
      assert.is_true(failed > 0)
      io.stderr:write(("\n[faults] %d runs with one buffer request failing (requests per part: %s):" ..
        " %d failed cleanly, %d absorbed, 0 crashes or wrong outputs\n"):format(runs,
        table.concat(ranges, ", "), failed, runs - failed))
    end)
  end)

  describe("a child process killed mid-pipeline", function()
    it("ends its stdout, fails its stdin with EPIPE, reports the signal, and frees its fds",
      function()
        local before = fd_count()
        run(function()
          local child = assert(process.spawn("cat"))
          -- An endless source into cat; its output into a counting sink that kills cat at 1 MiB.
          local block = ("0123456789abcdef"):rep(4096)
          local sent = 0
          local src = stream.readable{ read = function(self)
            sent = sent + #block
            self:push(block)
          end }
          local got, killed = {}, false
          local n = 0
          local sink = stream.writable{ write = function(_, c, done)
            got[#got + 1] = tostring(c)
            n = n + #c
            if n >= 1 << 20 and not killed then
              killed = true
              assert(child:kill("SIGKILL"))
            end
            done()
          end }
          local t = rill.spawn(stream.pipeline, child.stdout, sink)
          local ok1, e1 = stream.pipeline(src, child.stdin)
          local ok2, e2 = t:join()
          local code, sig = child:wait()
          assert.is_nil(code)
          assert.are.equal("SIGKILL", sig)
          assert.is_nil(ok1)
          assert.are.equal("EPIPE", e1.code)
          -- Whatever came out before the kill is an exact prefix of what went in.
          assert.is_true(ok2, tostring(e2))
          local s = table.concat(got)
          assert.is_true(#s >= 1 << 20)
          assert.is_true(s == block:rep(#s // #block) .. block:sub(1, #s % #block))
          assert.is_true(child.stdout.closed and child.stdin.closed)
        end)
        assert.are.equal(before, fd_count())
      end)

    it("a reader of `yes` sees the end, not an error, when yes is killed", function()
      local before = fd_count()
      run(function()
        local child = assert(process.spawn("yes"))
        local n = 0
        for c in child.stdout:chunks() do
          n = n + #c
          if n > 256 * 1024 then child:kill("SIGKILL") end
          rill.sleep(1)
        end
        assert.is_true(n > 256 * 1024)
        assert.are.same({ nil, "SIGKILL" }, { child:wait() })
      end)
      assert.are.equal(before, fd_count())
    end)
  end)

  describe("a socket reset mid-write", function()
    -- An endless source: a writer into a reset peer must stop with an error, not hang.
    local function endless()
      local block = ("x"):rep(65536)
      return stream.readable{ read = function(self) self:push(block) end }
    end

    it("fails the writer's pipeline once with ECONNRESET or EPIPE and closes its fd", function()
      local before = fd_count()
      run(function()
        local srv = assert(net.listen{ port = 0, on_connection = function(sock)
          -- Take a little, then reset (SO_LINGER 0).
          local c = sock:read()
          assert(c)
          sock:reset()
        end })
        local sock = assert(net.connect("127.0.0.1", srv.port))
        local calls, err = 0, nil
        local done = false
        stream.pipeline(endless(), sock, function(e)
          calls = calls + 1
          err = e
          done = true
        end)
        while not done do rill.sleep(5) end
        rill.sleep(20)
        assert.are.equal(1, calls)
        assert.is_truthy(err)
        assert.is_truthy(err.code == "ECONNRESET" or err.code == "EPIPE", tostring(err))
        assert.is_true(sock.closed)
        srv:close()
      end)
      assert.are.equal(before, fd_count())
    end)

    it("a server writing to a client that resets gets the error and keeps serving", function()
      local before = fd_count()
      run(function()
        local results = {}
        local srv = assert(net.listen{ port = 0, on_connection = function(sock)
          results[#results + 1] = { stream.pipeline(endless(), sock) }
        end })
        local sock = assert(net.connect("127.0.0.1", srv.port))
        local n = 0
        while n < 1 << 20 do n = n + #assert(sock:read()) end
        sock:reset()
        while #results == 0 do rill.sleep(5) end
        local ok, e = table.unpack(results[1])
        assert.is_nil(ok)
        assert.is_truthy(e.code == "ECONNRESET" or e.code == "EPIPE", tostring(e))
        -- The server still accepts and serves.
        local s2 = assert(net.connect("127.0.0.1", srv.port))
        n = 0
        while n < 100000 do n = n + #assert(s2:read()) end
        s2:destroy()
        while #results < 2 do rill.sleep(5) end
        assert.is_nil(results[2][1])
        srv:close()
      end)
      assert.are.equal(before, fd_count())
    end)
  end)
end)
