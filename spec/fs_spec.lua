-- spec/fs_spec.lua: rill.fs: readers, writers, whole-file calls, their errors and descriptors.
local helper = require "spec.helper"
local io_helper = require "spec.io_helper"
local rill = helper.rill
local fs = require "rill.fs"
local stream = require "rill.stream"
local buffer = require "rill.buffer"

local run = helper.run

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
local function path(name) return tmp .. "/" .. name end

local function write(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Deterministic bytes, different at every offset so misplaced chunks show.
local function pattern(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 131 + (i >> 8) * 7) % 256) end
  return table.concat(t)
end

-- Collects every chunk of r, with the largest chunk size seen.
local function drain(r)
  local parts, max = {}, 0
  for c in r:chunks() do
    parts[#parts + 1] = tostring(c)
    if #c > max then max = #c end
  end
  return table.concat(parts), max
end

-- Waits for the first "error" event of s; returns the error value.
local function error_of(s)
  local got
  s:on("error", function(_, e) got = e end)
  s:resume()
  while not s.closed do rill.sleep(1) end
  return got
end

local big = pattern(300000)
write(path("big.bin"), big)

describe("rill.fs", function()
teardown(function() os.execute("rm -rf " .. tmp) end)

describe("fs.reader", function()
  it("reads a whole file, in chunks of at most chunk_size", function()
    run(function()
      local s, max = drain(fs.reader(path("big.bin")))
      assert.are.equal(#big, #s)
      assert.is_true(s == big)
      assert.is_true(max <= 65536)
      for _, size in ipairs({ 1, 7, 4096, 100000, 1 << 20 }) do
        s, max = drain(fs.reader(path("big.bin"), { chunk_size = size }))
        assert.is_true(s == big, "chunk_size " .. size)
        assert.is_true(max <= size, "chunk_size " .. size)
      end
    end)
  end)

  it("reads ranges given as string.sub positions", function()
    run(function()
      local function range(i, j)
        return (drain(fs.reader(path("big.bin"), { start = i, stop = j })))
      end
      assert.are.equal(big:sub(1, 10), range(1, 10))
      assert.are.equal(big:sub(11, 20), range(11, 20))
      assert.are.equal(big:sub(-100), range(-100, -1))
      assert.are.equal(big:sub(65530, 131080), range(65530, 131080))
      assert.are.equal("", range(5, 4))
      assert.are.equal(big:sub(299999, 500000), range(299999, 500000))
      assert.are.equal(big:sub(-500000, 3), range(-500000, 3))
      assert.are.equal(big:sub(100), range(100))
    end)
  end)

  it("gives lines handling \\n, \\r\\n and a last line without a break", function()
    write(path("lines.txt"), "a\r\nbb\n\nccc")
    run(function()
      local got = {}
      for l in fs.reader(path("lines.txt"), { chunk_size = 1 }):lines() do got[#got + 1] = l end
      assert.are.same({ "a", "bb", "", "ccc" }, got)
    end)
  end)

  it("reads an empty file as an empty stream", function()
    write(path("empty"), "")
    run(function()
      local events = {}
      local r = fs.reader(path("empty"))
      r:on("data", function() events[#events + 1] = "data" end)
      r:on("end", function() events[#events + 1] = "end" end)
      r:on("close", function() events[#events + 1] = "close" end)
      while not r.closed do rill.sleep(1) end
      assert.are.same({ "end", "close" }, events)
    end)
  end)

  it("fails a missing file with ENOENT carrying the path and syscall", function()
    run(function()
      local e = error_of(fs.reader(path("missing")))
      assert.are.equal("ENOENT", e.code)
      assert.are.equal("open", e.syscall)
      assert.are.equal(path("missing"), e.path)
      assert.matches("ENOENT: no such file or directory, open '.*missing'", tostring(e))
    end)
  end)

  it("fails a directory with EISDIR", function()
    run(function()
      local e = error_of(fs.reader(tmp))
      assert.are.equal("EISDIR", e.code)
      local r = fs.reader(tmp)
      local c, err = r:read()
      assert.is_nil(c)
      assert.are.equal("EISDIR", err.code)
    end)
  end)

  it("fails an unreadable file with EACCES (as an unprivileged user)", function()
    write(path("secret"), "x")
    os.execute("chmod 600 " .. path("secret") .. "; chmod 755 " .. tmp)
    local script = ([[
      local r = rill.fs.reader(%q)
      r:on("error", function(_, e) io.write(e.code, " ", e.syscall, "\n") end)
      r:resume()
      local b, e = rill.fs.read_file(%q)
      io.write(tostring(b), " ", e.code, "\n")
    ]]):format(path("secret"), path("secret"))
    local cmd = "setpriv --reuid=65534 --regid=65534 --clear-groups " .. helper.quote(helper.bin)
      .. " -e " .. helper.quote(script) .. " 2>&1"
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    if out:match("setpriv: ") then
      pending("setpriv cannot change user here: " .. out)
      return
    end
    assert.matches("nil EACCES", out)
    assert.matches("EACCES open", out)
  end)

  it("raises on misuse", function()
    assert.has_error(function() fs.reader({}) end)
    assert.has_error(function() fs.reader("x", 5) end)
    assert.has_error(function() fs.reader("x", { chunk_size = -1 }) end)
    assert.has_error(function() fs.reader("x", { start = "a" }) end)
    assert.has_error(function() fs.writer("x", { mode = -1 }) end)
  end)

  it("keeps memory bounded: a slow consumer stops the reader at its high-water mark", function()
    run(function()
      local r = fs.reader(path("big.bin"), { chunk_size = 4096 })
      local max = 0
      local got = 0
      for c in r:chunks() do
        got = got + #c
        if r.readable_length > max then max = r.readable_length end
        if got % 65536 < 4096 then rill.sleep(1) end
      end
      assert.are.equal(#big, got)
      assert.is_true(max <= 65536 + 65536, "buffered " .. max)
    end)
  end)

  it("follows a growing file across truncation and rotation", function()
    local p = path("follow.log")
    write(p, "one\n")
    run(function()
      local r = fs.reader(p, { follow = true, poll_ms = 5 })
      local seen = {}
      local step = 0
      for line in r:lines() do
        seen[#seen + 1] = line
        if line == "one" then
          local f = io.open(p, "ab"); f:write("two\n"); f:close()
        elseif line == "two" then
          write(p, "3\n") -- truncated, then shorter content
        elseif line == "3" then
          os.rename(p, p .. ".1")
          write(p, "four\n")
        elseif line == "four" then
          break
        end
        step = step + 1
      end
      assert.are.same({ "one", "two", "3", "four" }, seen)
      assert.is_true(r.destroyed)
    end)
  end)
end)

describe("fs.writer", function()
  it("writes, appends and sets the mode", function()
    run(function()
      local w = fs.writer(path("out.txt"), { mode = tonumber("600", 8) })
      for i = 1, 1000 do w:write("line " .. i .. "\n") end
      w:write(buffer.from("buf\n"))
      local finished = false
      w:close(function(err) finished = err == nil end)
      while not w.closed do rill.sleep(1) end
      assert.is_true(finished)
      local want = {}
      for i = 1, 1000 do want[i] = "line " .. i .. "\n" end
      assert.are.equal(table.concat(want) .. "buf\n", slurp(path("out.txt")))
      local st = fs.stat(path("out.txt"))
      assert.are.equal(tonumber("600", 8), st.mode & tonumber("777", 8))
      local a = fs.writer(path("out.txt"), { append = true })
      a:close("end\n")
      while not a.closed do rill.sleep(1) end
      assert.matches("buf\nend\n$", slurp(path("out.txt")))
    end)
  end)

  it("copies a file through a pipeline, byte for byte", function()
    run(function()
      assert.is_true(stream.pipeline(fs.reader(path("big.bin")), fs.writer(path("copy.bin"))))
      assert.is_true(slurp(path("copy.bin")) == big)
      -- with ranges (the native fast path honours them)
      assert.is_true(stream.pipeline(fs.reader(path("big.bin"), { start = 1001, stop = 250000 }),
        fs.writer(path("copy2.bin"))))
      assert.is_true(slurp(path("copy2.bin")) == big:sub(1001, 250000))
    end)
  end)

  it("reports ENOSPC from /dev/full to the pipeline, once", function()
    run(function()
      local calls, got = 0, nil
      local w = fs.writer("/dev/full")
      local errors = 0
      w:on("error", function() errors = errors + 1 end)
      stream.pipeline(stream.from(string.rep("x", 1 << 20)), w, function(err)
        calls = calls + 1
        got = err
      end)
      while calls == 0 do rill.sleep(1) end
      rill.sleep(5)
      assert.are.equal(1, calls)
      assert.are.equal(1, errors)
      assert.are.equal("ENOSPC", got.code)
      assert.are.equal("write", got.syscall)
      -- through the fast path too: a file into /dev/full
      local ok, err = stream.pipeline(fs.reader(path("big.bin")), fs.writer("/dev/full"))
      assert.is_nil(ok)
      assert.are.equal("ENOSPC", err.code)
    end)
  end)

  it("fails a path in a missing directory with ENOENT", function()
    run(function()
      local ok, err = stream.pipeline(stream.from("x"), fs.writer(path("no/such/dir/x")))
      assert.is_nil(ok)
      assert.are.equal("ENOENT", err.code)
      assert.are.equal("open", err.syscall)
      assert.are.equal(path("no/such/dir/x"), err.path)
    end)
  end)
end)

describe("fs whole-file calls", function()
  it("write_file, read_file and stat", function()
    run(function()
      assert.is_true(fs.write_file(path("w.txt"), "hello"))
      assert.is_true(fs.write_file(path("w.txt"), buffer.from(" world"), { append = true }))
      local b = fs.read_file(path("w.txt"))
      assert.is_true(buffer.is(b))
      assert.are.equal("hello world", tostring(b))
      local st = fs.stat(path("w.txt"))
      assert.are.equal(11, st.size)
      assert.are.equal("file", st.type)
      assert.is_true(st.is_file)
      assert.are.equal("directory", fs.stat(tmp).type)
      assert.are.equal(0, #fs.read_file(path("empty")))
    end)
  end)

  it("give nil, err for expected failures", function()
    run(function()
      local b, e = fs.read_file(path("missing"))
      assert.is_nil(b)
      assert.are.equal("ENOENT", e.code)
      assert.are.equal(path("missing"), e.path)
      b, e = fs.read_file(tmp)
      assert.are.equal("EISDIR", e.code)
      local ok
      ok, e = fs.write_file("/dev/full", "x")
      assert.is_nil(ok)
      assert.are.equal("ENOSPC", e.code)
      ok, e = fs.stat(path("missing"))
      assert.is_nil(ok)
      assert.are.equal("ENOENT", e.code)
      assert.are.equal("stat", e.syscall)
    end)
  end)

  it("must be called from a task", function()
    assert.has_error(function() fs.read_file("x") end)
    assert.has_error(function() fs.stat("x") end)
    assert.has_error(function() fs.write_file("x", "y") end)
  end)
end)

describe("fs under injected faults", function()
  -- EINTR and EAGAIN injected into reads and writes (strace -e inject) must not change a byte.
  local function have_strace()
    local ok = os.execute("command -v strace >/dev/null 2>&1")
    return ok == true or ok == 0
  end

  local function md5(cmd)
    local p = io.popen(cmd .. " | md5sum")
    local s = p:read("a")
    p:close()
    return s
  end

  it("keeps every byte through EINTR and EAGAIN", function()
    if not have_strace() then
      pending("strace is not installed")
      return
    end
    local src = path("big.bin")
    local want = md5("cat " .. src)
    -- (the sanitizer suite preloads libasan for lua5.4; strace must not get it)
    local cat = helper.quote(helper.bin) .. " scripts/cat.lua " .. src
    local plain_md5 = md5
    local function md5(cmd) return plain_md5("env -u LD_PRELOAD " .. cmd) end
    -- the engine's own reads and writes (no kernel fast path)
    assert.are.equal(want, md5("RILL_NO_FASTPATH=1 strace -f -o /dev/null"
      .. " -e inject=preadv2:error=EINTR:when=2+3 -e inject=writev:error=EAGAIN:when=2+3 " .. cat))
    assert.are.equal(want, md5("RILL_NO_FASTPATH=1 strace -f -o /dev/null"
      .. " -e inject=writev:error=EINTR:when=1+2 -e inject=preadv2:error=EAGAIN:when=3+4 " .. cat))
    -- the fast path's sendfile
    assert.are.equal(want, md5("strace -f -o /dev/null -e inject=sendfile:error=EINTR:when=1+2 "
      .. cat))
  end)
end)

describe("fs descriptors", function()
  it("are all closed after a thousand failures of each kind", function()
    run(function() fs.stat(tmp) end) -- warm up the threadpool (its own descriptors)
    collectgarbage()
    io_helper.settle()
    local before = io_helper.fds()
    run(function()
      for i = 1, 1000 do
        local r = fs.reader(i % 2 == 0 and path("missing") or tmp)
        r:on("error", function() end)
        r:resume()
        assert.is_nil((fs.read_file(path("missing"))))
        assert.is_nil((fs.stat(path("missing"))))
        if i % 10 == 0 then
          assert.is_nil((stream.pipeline(stream.from("abc"), fs.writer("/dev/full"))))
          assert.is_nil((stream.pipeline(stream.from("abc"), fs.writer(path("no/dir/x")))))
        end
      end
      rill.sleep(20)
    end)
    collectgarbage()
    collectgarbage()
    assert.are.same({}, io_helper.leaked(before))
  end)

  it("are closed when a reader or writer is dropped without being closed", function()
    io_helper.settle()
    local before = io_helper.fds()
    run(function()
      for _ = 1, 100 do
        local r = fs.reader(path("big.bin"))
        r:read()
        local w = fs.writer(path("dropped.txt"))
        w:write("x")
      end
      rill.sleep(10)
    end)
    collectgarbage()
    collectgarbage()
    run(function() rill.sleep(10) end)
    assert.are.same({}, io_helper.leaked(before))
  end)
end)

end)

describe("fast path from pipes (splice)", function()
  local function have_strace()
    local ok = os.execute("command -v strace >/dev/null 2>&1")
    return ok == true or ok == 0
  end
  local function sh(cmd)
    local p = io.popen("bash -c " .. helper.quote("unset LD_PRELOAD; " .. cmd))
    local s = p:read("a")
    local _, _, code = p:close()
    return s, code
  end
  local src = path("splice.bin")
  local rill_e = function(code) return helper.quote(helper.bin) .. " -e " .. helper.quote(code) end
  local copy = rill_e("rill.stream.pipeline(rill.stdin, rill.stdout)")

  setup(function()
    os.execute("mkdir -p " .. tmp) -- the describe above removed it
    local parts = {}
    for i = 1, 3000 do parts[i] = ("%07d "):format(i) .. string.rep(string.char(65 + i % 26), 1017) end
    write(src, table.concat(parts))
  end)
  teardown(function() os.execute("rm -rf " .. tmp) end)

  it("stdin (a pipe) into stdout (a pipe) and into a file: every byte, with splice(2)", function()
    if not have_strace() then
      pending("strace is not installed")
      return
    end
    local want = sh("md5sum < " .. src)
    local log = path("strace.log")
    assert.are.equal(want, (sh("cat " .. src .. " | strace -f -qq -e trace=splice -o " .. log
      .. " " .. copy .. " | cat | md5sum")))
    local calls = select(2, slurp(log):gsub("splice%(", ""))
    assert.is_true(calls > 0, "splice was used")
    -- the control: the same bytes without the fast path, and no splice
    assert.are.equal(want, (sh("cat " .. src .. " | RILL_NO_FASTPATH=1 strace -f -qq -e "
      .. "trace=splice -o " .. log .. " " .. copy .. " | cat | md5sum")))
    assert.are.equal(0, select(2, slurp(log):gsub("splice%(", "")))
    -- into a regular file
    local out = path("splice.out")
    sh("cat " .. src .. " | " .. rill_e("rill.stream.pipeline(rill.stdin, rill.fs.writer(rill.argv[1]))")
      .. " " .. out)
    assert.are.equal(want, (sh("md5sum < " .. out)))
  end)

  it("keeps every byte through EINTR and EAGAIN, and falls back to copying on EINVAL", function()
    if not have_strace() then
      pending("strace is not installed")
      return
    end
    local want = sh("md5sum < " .. src)
    local function through(inject)
      return (sh("cat " .. src .. " | strace -f -qq -o /dev/null " .. inject .. " " .. copy
        .. " | cat | md5sum"))
    end
    assert.are.equal(want, through("-e inject=splice:error=EINTR:when=2+3"))
    assert.are.equal(want, through("-e inject=splice:error=EAGAIN:when=1+2"))
    assert.are.equal(want, through("-e inject=splice:error=EINVAL:when=1"))
  end)

  it("a reader that goes away (EPIPE) ends rill quietly with status 0", function()
    local out, code = sh("cat " .. src .. " " .. src .. " " .. src .. " 2>/dev/null | " .. copy
      .. " | head -c 10; exit ${PIPESTATUS[1]}")
    assert.are.equal(10, #out)
    assert.are.equal(0, code)
  end)

  it("an empty stdin ends stdout at once", function()
    local out, code = sh(": | " .. copy .. " | wc -c")
    assert.are.equal(0, code)
    assert.are.equal(0, tonumber(out))
  end)
end)
