-- spec/zlib_spec.lua: rill.zlib against real gzip and python3 zlib peers; errors; chunking; bombs.
local helper = require "spec.helper"
local rill = helper.rill
local stream = require "rill.stream"
local zlib = require "rill.zlib"

local run = helper.run

local function tmpfile(data)
  local name = os.tmpname()
  if data then
    local f = assert(io.open(name, "wb"))
    f:write(data)
    f:close()
  end
  return name
end

local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Output of a shell command fed with data (through a file, so nothing can block).
local function filter(cmd, data)
  local inp = tmpfile(data)
  -- Not with the sanitizer run's LD_PRELOAD of libasan.
  local p = assert(io.popen("env -u LD_PRELOAD " .. cmd .. " <" .. helper.quote(inp), "r"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(inp)
  return out, ok
end

-- A readable giving s in pieces whose sizes come from cut(i) (i = 1, 2, ...).
local function pieces(s, cut)
  local at, i = 1, 0
  return stream.readable{
    read = function(self)
      if at > #s then
        self:push(nil)
        return
      end
      i = i + 1
      local n = cut(i)
      self:push(s:sub(at, at + n - 1))
      at = at + n
    end,
  }
end

-- Runs src through the given streams and collects the output: returns the string, or nil, err.
local function through(src, ...)
  local parts = {}
  local sink = stream.writable{
    write = function(self, chunk, done)
      parts[#parts + 1] = tostring(chunk)
      done()
    end,
  }
  local args = { src, ... }
  args[#args + 1] = sink
  local ok, err = stream.pipeline(table.unpack(args))
  if not ok then return nil, err end
  return table.concat(parts)
end

local function text(n)
  local t, words, x = {}, { "rill ", "stream ", "gzip ", "of ", "the ", "data\n", "42 " }, 7
  local len = 0
  while len < n do
    x = (x * 1103515245 + 12345) % 2147483648
    local w = words[x // 65536 % #words + 1]
    t[#t + 1] = w
    len = len + #w
  end
  return table.concat(t):sub(1, n)
end

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("rill.zlib", function()
  it("round-trips gzip and deflate at every level, past 1 MiB", function()
    run(function()
      local big = text(1536 * 1024 + 3)
      for _, level in ipairs{ 0, 1, 6, 9 } do
        local gz = assert(through(stream.from(big), zlib.gzip{ level = level }))
        assert.are.equal(big, assert(through(stream.from(gz), zlib.gunzip())))
        local df = assert(through(stream.from(big), zlib.deflate{ level = level }))
        assert.are.equal(big, assert(through(stream.from(df), zlib.inflate())))
      end
      -- Higher levels compress text better.
      local g1 = assert(through(stream.from(big), zlib.gzip{ level = 1 }))
      local g9 = assert(through(stream.from(big), zlib.gzip{ level = 9 }))
      assert.is_true(#g9 < #g1)
      -- Empty input still makes a valid (empty) gzip member.
      local e = assert(through(stream.from(""), zlib.gzip()))
      assert.are.equal("", assert(through(stream.from(e), zlib.gunzip())))
    end)
  end)

  it("writes gzip that gzip -d reads, and reads what gzip writes", function()
    run(function()
      local data = text(300000)
      local gz = assert(through(stream.from(data), zlib.gzip()))
      assert.are.equal("\31\139", gz:sub(1, 2))
      local out, ok = filter("gzip -dc", gz)
      assert.is_true(ok)
      assert.are.equal(data, out)
      for _, lvl in ipairs{ "-1", "-9" } do
        local theirs = filter("gzip -c " .. lvl, data)
        assert.are.equal(data, assert(through(stream.from(theirs), zlib.gunzip())))
      end
    end)
  end)

  it("writes zlib streams that python3's zlib reads, and reads its output", function()
    run(function()
      local data = text(100000)
      local df = assert(through(stream.from(data), zlib.deflate{ level = 9 }))
      local py = "python3 -c 'import sys,zlib; sys.stdout.buffer.write(zlib.%s(sys.stdin.buffer.read()))'"
      local out, ok = filter(py:format("decompress"), df)
      assert.is_true(ok)
      assert.are.equal(data, out)
      local theirs = filter(py:format("compress"), data)
      assert.are.equal(data, assert(through(stream.from(theirs), zlib.inflate())))
    end)
  end)

  it("gives every member of concatenated gzip input, ignoring zero padding", function()
    run(function()
      local a, b = text(5000), "second member\n"
      local multi = filter("gzip -c", a) .. filter("gzip -c", b) .. filter("gzip -c", "")
      assert.are.equal(a .. b, assert(through(stream.from(multi), zlib.gunzip())))
      local padded = multi .. string.rep("\0", 100)
      assert.are.equal(a .. b, assert(through(stream.from(padded), zlib.gunzip())))
    end)
  end)

  it("fails on trailing garbage instead of dropping data", function()
    run(function()
      local gz = filter("gzip -c", "payload")
      for _, junk in ipairs{ "garbage!", "\0\0\1", "\31\139\255\255" .. string.rep("\0", 8) } do
        local out, err = through(stream.from(gz .. junk), zlib.gunzip())
        assert.is_nil(out)
        assert.are.equal("ERR_ZLIB", err.code)
      end
      local out, err = through(stream.from(gz .. "garbage!"), zlib.gunzip())
      assert.is_nil(out)
      assert.are.equal("incorrect header check", err.message)
    end)
  end)

  it("fails a truncated or empty input with 'unexpected end of file'", function()
    run(function()
      local gz = filter("gzip -c", text(20000))
      for _, input in ipairs{ gz:sub(1, #gz // 2), gz:sub(1, #gz - 1), gz:sub(1, 5), "" } do
        local out, err = through(stream.from(input), zlib.gunzip())
        assert.is_nil(out)
        assert.are.equal("Z_BUF_ERROR", err.code)
        assert.are.equal("unexpected end of file", err.message)
      end
      local df = assert(through(stream.from("abc"), zlib.deflate()))
      local _, err = through(stream.from(df:sub(1, -2)), zlib.inflate())
      assert.are.equal("Z_BUF_ERROR", err.code)
    end)
  end)

  it("fails corrupt input with zlib's message, never success", function()
    run(function()
      local gz = filter("gzip -c", text(20000))
      local function flip(s, i)
        return s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1)
      end
      local cases = {
        { flip(gz, #gz - 7), "incorrect data check" },   -- CRC32
        { flip(gz, #gz), "incorrect length check" },     -- ISIZE
        { gz:sub(1, 2) .. "\7" .. gz:sub(4), "unknown compression method" },
        { gz:sub(1, 3) .. "\224" .. gz:sub(5), "unknown header flags set" },
        { "not gzip at all", "incorrect header check" },
      }
      for _, c in ipairs(cases) do
        local out, err = through(stream.from(c[1]), zlib.gunzip())
        assert.is_nil(out)
        assert.are.equal("ERR_ZLIB", err.code)
        assert.are.equal(c[2], err.message)
      end
      local _, err = through(stream.from(gz), zlib.inflate())
      assert.are.equal("incorrect header check", err.message)
    end)
  end)

  it("gives identical output for 1-byte, 7-byte, 64 KiB and random slices (CASES 33)", function()
    run(function()
      local data = text(200000)
      local gz = filter("gzip -c", data)
      math.randomseed(5)
      local cuts = {
        function() return 1 end,
        function() return 7 end,
        function() return 65536 end,
        function() return math.random(1, 5000) end,
      }
      for _, cut in ipairs(cuts) do
        assert.are.equal(data, assert(through(pieces(gz, cut), zlib.gunzip())))
      end
      -- The compressor does not depend on how its input is cut either.
      local g1 = assert(through(pieces(data, cuts[2]), zlib.gzip()))
      local g2 = assert(through(stream.from(data), zlib.gzip()))
      assert.are.equal(g2, g1)
    end)
  end)

  it("inflates a bomb at the consumer's pace with bounded memory (CASES 95)", function()
    run(function()
      -- 256 MiB of zeros, gzipped by rill itself from a source that makes them on demand.
      local zeros, left = string.rep("\0", 65536), 256 * 1024 * 1024
      local src = stream.readable{
        read = function(self)
          if left == 0 then return self:push(nil) end
          left = left - #zeros
          self:push(zeros)
        end,
      }
      local bomb = assert(through(src, zlib.gzip{ level = 9 }))
      assert.is_true(#bomb < 1024 * 1024)
      collectgarbage()
      local before = rss_kib()
      local total, peak, n = 0, 0, 0
      local g = zlib.gunzip()
      local sink = stream.writable{
        write = function(self, chunk, done)
          -- Close the buffer at once: the garbage collector does not see the 64 KiB slab behind
          -- a buffer, so a sink that leaves them to __gc holds many of them for a while.
          local c <close> = chunk
          total = total + #c
          n = n + 1
          if n % 64 == 0 then
            peak = math.max(peak, rss_kib() - before)
            rill.sleep(0) -- a slower consumer than the inflater
          end
          done()
        end,
      }
      assert(stream.pipeline(stream.from(bomb), g, sink))
      assert.are.equal(256 * 1024 * 1024, total)
      local bytes_in, bytes_out = zlib.stats(g)
      assert.are.equal(#bomb, bytes_in)
      assert.are.equal(total, bytes_out)
      assert.is_true(peak < 64 * 1024, "RSS grew by " .. peak .. " KiB")
    end)
  end)

  it("stops at max_output with an error instead of growing", function()
    run(function()
      local gz = filter("gzip -c", string.rep("z", 1000000))
      local got = 0
      local sink = stream.writable{
        write = function(self, chunk, done)
          got = got + #chunk
          done()
        end,
      }
      local ok, err = stream.pipeline(stream.from(gz), zlib.gunzip{ max_output = 100000 }, sink)
      assert.is_nil(ok)
      assert.are.equal("ERR_BUFFER_TOO_LARGE", err.code)
      -- The error destroys the stream: what it had buffered is not delivered (as in Node).
      assert.is_true(got > 0 and got <= 100000)
      -- Exactly at the limit is fine.
      local out = assert(through(stream.from(gz), zlib.gunzip{ max_output = 1000000 }))
      assert.are.equal(1000000, #out)
    end)
  end)

  it("can be read with read() and collect()", function()
    run(function()
      local data = text(70000)
      local g = zlib.gzip()
      g:write(data)
      g:close()
      local gz = tostring(g:collect())
      local u = zlib.gunzip()
      stream.from(gz):pipe(u)
      local parts = {}
      for chunk in u:chunks() do parts[#parts + 1] = tostring(chunk) end
      assert.are.equal(data, table.concat(parts))
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() zlib.gzip{ level = 10 } end)
    assert.has_error(function() zlib.gzip{ level = 1.5 } end)
    assert.has_error(function() zlib.deflate{ level = "high" } end)
    assert.has_error(function() zlib.gunzip{ level = 1 } end)
    assert.has_error(function() zlib.gunzip{ max_output = 0 } end)
    assert.has_error(function() zlib.gzip("fast") end)
    assert.has_error(function() zlib.stats(stream.from("x")) end)
    assert.has_error(function() zlib.stats(42) end)
    local ok, err = pcall(zlib.gzip, { level = 10 })
    assert.is_false(ok)
    assert.matches("gzip", tostring(err))
  end)
end)
