-- spec/stream_lines_spec.lua: r:lines(), stream.lines() and stream.split(sep) give the same
-- records however the input is chunked (CASES.md 30-32): every split into up to 3 pieces of
-- short inputs, and random chunkings of longer ones.
local helper = require "spec.helper"
local stream = require "rill.stream"

local run = helper.run

-- The oracle: one-shot splitting, byte by byte (lines: "\n", a "\r" before it dropped).
local function oracle(s, sep)
  local out, start, i = {}, 1, 1
  local lines = sep == nil
  sep = sep or "\n"
  local k = #sep
  while i + k - 1 <= #s do
    if s:sub(i, i + k - 1) == sep then
      local rec = s:sub(start, i - 1)
      if lines and rec:sub(-1) == "\r" then rec = rec:sub(1, -2) end
      out[#out + 1] = rec
      i = i + k
      start = i
    else
      i = i + 1
    end
  end
  if start <= #s then out[#out + 1] = s:sub(start) end
  return out
end

local function pieces_of(s, cuts)
  local p, last = {}, 0
  for _, c in ipairs(cuts) do
    p[#p + 1] = s:sub(last + 1, c)
    last = c
  end
  p[#p + 1] = s:sub(last + 1)
  return p
end

-- The three ways to split, each fed the pieces as separate chunks.
local function by_method(pieces)
  local out = {}
  for l in stream.from(pieces):lines() do out[#out + 1] = l end
  return out
end

local function by_operator(pieces, sep)
  local src = stream.from(pieces):pipe(stream.map(function(x) return x end))
  local t = sep and stream.split(sep) or stream.lines()
  return src:pipe(t):collect()
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function check_all_splits(s, sep)
  local want = oracle(s, sep)
  local n = #s
  for i = 0, n do
    for j = i, n do
      local p = pieces_of(s, { i, j })
      local got = sep and by_operator(p, sep) or by_method(p)
      if not same(want, got) then
        error(("input %q cut at %d,%d: got {%s}, want {%s}"):format(s, i, j,
          table.concat(got, "|"), table.concat(want, "|")))
      end
    end
  end
end

describe("line splitting", function()
  it("r:lines() gives the one-shot lines for every cut into up to 3 pieces (30, 31)", function()
    local inputs = {
      "", "\n", "a", "a\n", "a\r\nb", "\r\n\r\n", "x\r", "\rx\n", "one\n\ntwo\r\n\r\nthree",
      "é\nü\r\n€ last", "a\r\r\nb\n\r",
    }
    run(function()
      for _, s in ipairs(inputs) do check_all_splits(s) end
    end)
  end)

  it("\\r ending one chunk and \\n starting the next make one line break (31)", function()
    run(function()
      assert.same({ "a", "b" }, by_method { "a\r", "\nb" })
      assert.same({ "a", "b" }, by_operator { "a\r", "\nb" })
      assert.same({ "a\r", "b" }, by_method { "a\r\r", "\nb" })
    end)
  end)

  it("stream.lines() matches under random chunkings of a long mixed corpus (30)", function()
    math.randomseed(12345)
    local parts = {}
    for i = 1, 400 do
      local r = math.random(6)
      if r == 1 then parts[#parts + 1] = "\r\n"
      elseif r == 2 then parts[#parts + 1] = "\n"
      elseif r == 3 then parts[#parts + 1] = "\r"
      elseif r == 4 then parts[#parts + 1] = "ü€"
      else parts[#parts + 1] = string.rep(string.char(96 + i % 26), math.random(0, 30)) end
    end
    parts[#parts + 1] = string.rep("L", 1024 * 1024) -- a 1 MiB line
    parts[#parts + 1] = "\nend without break"
    local text = table.concat(parts)
    local want = oracle(text)
    run(function()
      for trial = 1, 30 do
        local pieces, at = {}, 0
        while at < #text do
          local len = math.random(1, trial % 3 == 0 and 70000 or 300)
          pieces[#pieces + 1] = text:sub(at + 1, at + len)
          at = at + len
        end
        assert.is_true(same(want, by_method(pieces)), "r:lines() trial " .. trial)
        assert.is_true(same(want, by_operator(pieces)), "stream.lines() trial " .. trial)
      end
      -- and from one byte-mode source cut into 1-byte chunks
      local small = text:sub(1, 5000)
      local out = {}
      for l in stream.from(small .. "\n"):lines() do out[#out + 1] = l end
      assert.is_true(same(oracle(small .. "\n"), out))
    end)
  end)

  it("stream.split(sep) with a 4-byte separator straddling chunks, every cut (32)", function()
    run(function()
      for _, s in ipairs { "ab<-->cd<-->", "<--><-->x", "a<-->b<--", "<-><--><---->" } do
        check_all_splits(s, "<-->")
      end
      -- separator split 1+3, 2+2, 3+1 across chunks
      for k = 1, 3 do
        local sep = "<-->"
        local p = { "x" .. sep:sub(1, k), sep:sub(k + 1) .. "y" }
        assert.same({ "x", "y" }, by_operator(p, sep))
      end
    end)
  end)

  it("max_line_length fails the stream with ERR_LINE_TOO_LONG", function()
    run(function()
      local ok, err = pcall(function()
        for _ in stream.from("short\n" .. string.rep("x", 100) .. "\n"):lines(10) do end
      end)
      assert.is_false(ok)
      assert.equals("ERR_LINE_TOO_LONG", err.code)
      local t = stream.lines { max_line_length = 10 }
      local r, e = stream.from("ok\n" .. string.rep("y", 50)):pipe(t):collect()
      assert.is_nil(r)
      assert.equals("ERR_LINE_TOO_LONG", e.code)
    end)
  end)
end)

describe("r:lines() iterator", function()
  it("takes buffers and strings from an object-mode stream; anything else raises", function()
    local buffer = require "rill.buffer"
    run(function()
      local got = {}
      for l in stream.from({ buffer.from("a\nb"), "c\r", buffer.from("\nd") }):lines() do
        got[#got + 1] = l
      end
      assert.same({ "a", "bc", "d" }, got)
      local ok, err = pcall(function()
        for _ in stream.from({ "x\n", 42 }):lines() do end
      end)
      assert.is_false(ok)
      assert.matches("string or buffer expected", tostring(err), 1, true)
    end)
  end)

  it("raises the error a stream fails with, after the lines before it", function()
    run(function()
      local r = stream.readable { read = function() end }
      r:push("one\ntwo\nthr")
      helper.rill.timeout(5, function() r:destroy(setmetatable({ code = "EBOOM" }, {})) end)
      local got = {}
      local ok, err = pcall(function()
        for l in r:lines() do got[#got + 1] = l end
      end)
      assert.same({ "one", "two" }, got)
      assert.is_false(ok)
      assert.equals("EBOOM", err.code)
    end)
  end)

  it("a loop left before the end releases the chunk it held (no leak, stream destroyed)", function()
    run(function()
      local fs = require "rill.fs"
      local p = os.tmpname()
      local f = assert(io.open(p, "wb"))
      f:write(string.rep("line\n", 100000))
      f:close()
      for _ = 1, 200 do
        local r = fs.reader(p)
        for _ in r:lines() do break end
        assert.is_true(r.destroyed)
      end
      collectgarbage()
      collectgarbage()
      os.remove(p)
    end)
  end)
end)
