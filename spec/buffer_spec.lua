-- spec/buffer_spec.lua: rill.buffer: bounds, views, encodings, search, fill/write, pack/unpack.
local rill = require "rill"
local buffer = rill.buffer

-- Independent oracles, written plainly in Lua, to check the C codecs against.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function ref_base64(s, url)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 1, 4 do
      local idx = (n >> (6 * (4 - k))) & 63
      q[k] = B64:sub(idx + 1, idx + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  local r = table.concat(out)
  if url then r = r:gsub("+", "-"):gsub("/", "_"):gsub("=", "") end
  return r
end

local function ref_hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- The message of an error raised by fn (without the position prefix).
local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("rill.buffer", function()
  before_each(function() math.randomseed(42) end)
  after_each(function() collectgarbage(); collectgarbage() end)

  it("is reachable as rill.buffer and require 'rill.buffer'", function()
    assert.equals(buffer, require "rill.buffer")
    for _, k in ipairs { "alloc", "from", "concat", "is", "pack" } do
      assert.is_function(buffer[k])
    end
  end)

  describe("alloc", function()
    it("gives zero-filled buffers, alloc(0) included", function()
      local b = buffer.alloc(5)
      assert.equals(5, #b)
      assert.equals("\0\0\0\0\0", tostring(b))
      assert.equals(0, #buffer.alloc(0))
      assert.equals("", tostring(buffer.alloc(0)))
    end)

    it("fills with a byte, or repeats a string or buffer pattern", function()
      assert.equals("\255\255\255", tostring(buffer.alloc(3, 255)))
      assert.equals("abcabca", tostring(buffer.alloc(7, "abc")))
      assert.equals("xy", tostring(buffer.alloc(2, "xyz")))
      assert.equals("qqqq", tostring(buffer.alloc(4, buffer.from("q"))))
      assert.equals("", tostring(buffer.alloc(0, "abc")))
      assert.equals(string.rep("0123456789", 10000), tostring(buffer.alloc(100000, "0123456789")))
    end)

    -- CASE 40
    it("rejects negative, NaN, infinite, fractional and huge sizes without aborting", function()
      assert.has_error(function() buffer.alloc(-1) end)
      assert.has_error(function() buffer.alloc(0 / 0) end)
      assert.has_error(function() buffer.alloc(math.huge) end)
      assert.has_error(function() buffer.alloc(-math.huge) end)
      assert.has_error(function() buffer.alloc(2 ^ 62) end)
      assert.has_error(function() buffer.alloc(math.maxinteger) end)
      assert.has_error(function() buffer.alloc(math.mininteger) end)
      assert.has_error(function() buffer.alloc(1.5) end)
      assert.has_error(function() buffer.alloc("x") end)
      assert.has_error(function() buffer.alloc() end)
      assert.matches("bad argument #1 to '[%w.]*alloc' %(size out of range%)",
        errmsg(buffer.alloc, -1))
      assert.matches("bad argument #1 to '[%w.]*alloc' %(size out of range%)",
        errmsg(buffer.alloc, 2 ^ 62))
      assert.matches("bad argument #1 to '[%w.]*alloc' %(number has no integer representation%)",
        errmsg(buffer.alloc, 0 / 0))
    end)

    it("rejects bad fill values", function()
      assert.matches("fill value is empty", errmsg(buffer.alloc, 3, ""))
      assert.matches("byte value", errmsg(buffer.alloc, 3, 256))
      assert.matches("byte value", errmsg(buffer.alloc, 3, -1))
      assert.matches("byte value", errmsg(buffer.alloc, 3, 1.5))
      assert.matches("byte, string or buffer expected", errmsg(buffer.alloc, 3, {}))
    end)
  end)

  describe("from", function()
    it("copies strings, byte tables and buffers", function()
      assert.equals("abc", tostring(buffer.from("abc")))
      assert.equals("abc", tostring(buffer.from("abc", "binary")))
      assert.equals("\1\2\255", tostring(buffer.from({ 1, 2, 255 })))
      assert.equals("", tostring(buffer.from({})))
      local a = buffer.from("xyz")
      local b = buffer.from(a)
      b[1] = 65
      assert.equals("xyz", tostring(a)) -- a copy, not a view
      assert.equals("Ayz", tostring(b))
    end)

    it("rejects bad table contents and types", function()
      assert.matches("bad argument #1 to '[%w.]*from' %(byte value expected at index 2%)",
        errmsg(buffer.from, { 1, 256 }))
      assert.matches("index 1", errmsg(buffer.from, { -1 }))
      assert.matches("index 1", errmsg(buffer.from, { "1" }))
      assert.matches("index 3", errmsg(buffer.from, { 1, 2, 0.5 }))
      assert.matches("string, table or buffer expected", errmsg(buffer.from, 42))
      assert.matches("string, table or buffer expected", errmsg(buffer.from, nil))
    end)

    -- CASE 43
    it("decodes hex strictly: odd length and non-hex give nil, err; uppercase is fine", function()
      assert.equals("\171\205\239", tostring(buffer.from("abCDeF", "hex")))
      assert.equals("", tostring(buffer.from("", "hex")))
      for _, bad in ipairs { "abcdxx", "abc", "a", "zz", " ab", "ab ", "0x00", "ab\ncd", "g0" } do
        local b, err = buffer.from(bad, "hex")
        assert.is_nil(b, bad)
        assert.equals("ERR_INVALID_ENCODING", err.code)
        assert.is_string(err.message)
        assert.matches("^ERR_INVALID_ENCODING: invalid hex data", tostring(err))
      end
    end)

    -- CASE 44
    it("decodes base64 strictly", function()
      assert.equals("foobar", tostring(buffer.from("Zm9vYmFy", "base64")))
      assert.equals("fooba", tostring(buffer.from("Zm9vYmE=", "base64")))
      assert.equals("foob", tostring(buffer.from("Zm9vYg==", "base64")))
      assert.equals("\251\255", tostring(buffer.from("+/8=", "base64")))
      local bad = { "YQ=", "Y===", "YQ", "Y", "Zm9v=", "Zm=v", "=Zm9", "Zg==Zg==", "Zm9v\n",
        "Zm9v\r\n", " Zm9v", "Zm 9v", "Zm9\tv", "-_8=", "Zm9v*", "Zh==", "====", "Zg===" }
      for _, s in ipairs(bad) do
        local b, err = buffer.from(s, "base64")
        assert.is_nil(b, s)
        assert.equals("ERR_INVALID_ENCODING", err.code)
      end
    end)

    it("decodes base64url with or without padding, strictly otherwise", function()
      assert.equals("\251\255", tostring(buffer.from("-_8", "base64url")))
      assert.equals("\251\255", tostring(buffer.from("-_8=", "base64url")))
      assert.equals("f", tostring(buffer.from("Zg", "base64url")))
      for _, s in ipairs { "Z", "Zg=", "YQ=", "Y===", "+/8=", "Zm9v\n", "Zg==Zg", "Zh" } do
        local b, err = buffer.from(s, "base64url")
        assert.is_nil(b, s)
        assert.equals("ERR_INVALID_ENCODING", err.code)
      end
    end)

    it("decodes the bytes of a buffer too", function()
      assert.equals("hi", tostring(buffer.from(buffer.from("6869"), "hex")))
    end)

    -- CASE 45 (from)
    it("raises for an unknown encoding name", function()
      assert.matches("bad argument #2 to '[%w.]*from' %(unknown encoding 'utf16'%)",
        errmsg(buffer.from, "x", "utf16"))
      assert.has_error(function() buffer.from("x", "HEX") end)
      assert.has_error(function() buffer.from("x", 1) end)
      assert.has_error(function() buffer.from({ 1 }, "nope") end)
    end)
  end)

  describe("encodings", function()
    it("round-trip all 256 byte values through hex, base64 and base64url", function()
      local s = all_bytes()
      local b = buffer.from(s)
      assert.equals(ref_hex(s), b:tostring("hex"))
      assert.equals(ref_base64(s), b:tostring("base64"))
      assert.equals(ref_base64(s, true), b:tostring("base64url"))
      for _, enc in ipairs { "hex", "base64", "base64url", "binary" } do
        assert.equals(s, tostring(buffer.from(b:tostring(enc), enc)))
      end
    end)

    it("round-trip random buffers of every length from 0 to 1024", function()
      for n = 0, 1024 do
        local s = random_bytes(n)
        local b = buffer.from(s)
        local h, b64, url = b:tostring("hex"), b:tostring("base64"), b:tostring("base64url")
        if n <= 64 or n % 61 == 0 then -- the Lua oracles are slow; the C round trip is not
          assert.equals(ref_hex(s), h)
          assert.equals(ref_base64(s), b64)
          assert.equals(ref_base64(s, true), url)
        end
        assert.equals(s, tostring(buffer.from(h, "hex")))
        assert.equals(s, tostring(buffer.from(b64, "base64")))
        assert.equals(s, tostring(buffer.from(url, "base64url")))
        local padded_url = b64:gsub("+", "-"):gsub("/", "_")
        assert.equals(s, tostring(buffer.from(padded_url, "base64url"))) -- padding is fine
      end
    end)

    it("encode a range with tostring(enc, i, j) using sub's rules", function()
      local b = buffer.from("hello world")
      assert.equals("776f726c64", b:tostring("hex", 7))
      assert.equals("6c6c", b:tostring("hex", 3, 4))
      assert.equals("", b:tostring("hex", 5, 4))
      assert.equals("d29y", b:tostring("base64", 7, 9))
      assert.equals("hello", b:tostring(nil, 1, 5))
      assert.equals("world", b:tostring("binary", -5))
      assert.equals(ref_hex("hello world"), b:tostring("hex", math.mininteger, math.maxinteger))
    end)

    -- CASE 35
    it("encode the same under any chunking (padding only at the end)", function()
      local s = random_bytes(300)
      local b = buffer.from(s)
      local whole = b:tostring("base64")
      for cut = 0, 300, 3 do -- groups of 3 bytes encode independently
        assert.equals(whole, b:tostring("base64", 1, cut) .. b:tostring("base64", cut + 1))
      end
      for cut = 0, #whole, 4 do -- and 4-character groups decode independently
        local a = buffer.from(whole:sub(1, cut), "base64")
        local c = buffer.from(whole:sub(cut + 1), "base64")
        assert.equals(s, a .. c)
      end
      -- a padded group anywhere but at the end is an error
      local b1 = buffer.from("a"):tostring("base64")
      assert.is_nil(buffer.from(b1 .. b1, "base64"))
    end)

    -- CASE 45 (tostring)
    it("raise for an unknown encoding name in tostring", function()
      local b = buffer.from("x")
      assert.matches("unknown encoding 'latin9'", errmsg(function() return b:tostring("latin9") end))
      assert.has_error(function() b:tostring({}) end)
    end)
  end)

  describe("indexing", function()
    -- CASE 36
    it("reads bytes by 1-based and negative index; out of range raises", function()
      local b = buffer.from("abc")
      assert.equals(97, b[1])
      assert.equals(99, b[3])
      assert.equals(99, b[-1])
      assert.equals(97, b[-3])
      assert.equals(98, b[2.0])
      for _, i in ipairs { 0, 4, -4, math.maxinteger, math.mininteger } do
        assert.matches("bad argument #2 to '[_%w]*index' %(index out of range%)",
          errmsg(function() return b[i] end))
      end
      local e = buffer.alloc(0)
      assert.matches("index out of range", errmsg(function() return e[1] end))
      assert.matches("index out of range", errmsg(function() return e[-1] end))
      assert.matches("index out of range", errmsg(function() return e[0] end))
      assert.has_error(function() return b[1.5] end)
    end)

    it("gives methods for string keys and nil for unknown keys", function()
      local b = buffer.from("abc")
      assert.is_function(b.sub)
      assert.is_nil(b.nope)
      assert.is_nil(b[true])
      assert.has_error(function() return b["1"]:foo() end) -- "1" is not an index
    end)

    -- CASE 37
    it("stores bytes 0..255 and rejects anything else", function()
      local b = buffer.alloc(3)
      b[1] = 255
      b[-1] = 7
      b[2] = 0
      assert.equals("\255\0\7", tostring(b))
      for _, v in ipairs { 256, -1, 1.5, "x", "1", true, {} } do
        assert.matches("bad argument #3 to '[_%w]*newindex' %(byte value",
          errmsg(function() b[1] = v end))
      end
      assert.matches("byte value", errmsg(function() b[1] = nil end))
      assert.matches("index out of range", errmsg(function() b[4] = 1 end))
      assert.matches("index out of range", errmsg(function() b[0] = 1 end))
      assert.matches("index out of range", errmsg(function() b[-4] = 1 end))
      assert.matches("integer index expected", errmsg(function() b.x = 1 end))
      assert.matches("integer index expected", errmsg(function() b[1.5] = 1 end))
      assert.equals("\255\0\7", tostring(b)) -- failed stores changed nothing
    end)
  end)

  describe("metamethods", function()
    it("have the name rill.buffer", function()
      local mt = getmetatable(buffer.alloc(1))
      assert.equals("rill.buffer", mt.__name)
      assert.matches("rill.buffer expected", errmsg(function() buffer.alloc(1).sub("x", 1) end))
    end)

    it("compare with == by content", function()
      assert.is_true(buffer.from("abc") == buffer.from("abc"))
      assert.is_false(buffer.from("abc") == buffer.from("abd"))
      assert.is_false(buffer.from("abc") == buffer.from("ab"))
      assert.is_true(buffer.alloc(0) == buffer.from(""))
      assert.is_false(buffer.from("abc") == "abc") -- different types, as in Lua
    end)

    it("concatenate with strings, numbers and buffers into strings", function()
      local b = buffer.from("ab")
      assert.equals("abcd", b .. "cd")
      assert.equals("cdab", "cd" .. b)
      assert.equals("abab", b .. b)
      assert.equals("ab1", b .. 1)
      assert.equals("x.ab.y", "x." .. b .. ".y")
      assert.is_string(b .. b)
      assert.has_error(function() return b .. {} end)
      assert.has_error(function() return true .. b end)
    end)

    it("release at once with <close>, and __gc after that is harmless", function()
      local keep
      do
        local b <close> = buffer.from("data")
        keep = b
        assert.equals(4, #b)
      end
      assert.equals(0, #keep)
      assert.equals("", tostring(keep))
      assert.has_error(function() return keep[1] end)
      getmetatable(keep).__close(keep) -- idempotent
      getmetatable(keep).__gc(keep)
      keep = nil
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("is", function()
    it("is true only for buffers", function()
      assert.is_true(buffer.is(buffer.alloc(0)))
      assert.is_false(buffer.is("x"))
      assert.is_false(buffer.is(nil))
      assert.is_false(buffer.is({}))
      assert.is_false(buffer.is(io.stdout))
    end)
  end)

  describe("sub", function()
    it("follows string.sub's index rules", function()
      local s = "hello world"
      local b = buffer.from(s)
      local M, m = math.maxinteger, math.mininteger
      local cases = { { 1 }, { 7 }, { -5 }, { 0 }, { 3, 4 }, { 5, 2 }, { 2, 100 }, { -100, 3 },
        { 12 }, { 13 }, { -1, -1 }, { m }, { M }, { m, M }, { M, m }, { 1, m }, { m, m }, { M, M },
        { 0, 0 }, { -11, -11 }, { -12, 1 } }
      for _, c in ipairs(cases) do
        assert.equals(s:sub(c[1], c[2]), tostring(b:sub(c[1], c[2])),
          ("sub(%s, %s)"):format(c[1], c[2]))
      end
      assert.has_error(function() b:sub() end)
      assert.has_error(function() b:sub(1.5) end)
    end)

    it("shares memory with its parent, both ways", function()
      local b = buffer.from("abcdef")
      local v = b:sub(2, 4)
      v[1] = 66
      assert.equals("aBcdef", tostring(b))
      b[4] = 68
      assert.equals("BcD", tostring(v))
      local vv = v:sub(-1)
      vv[1] = 33
      assert.equals("aBc!ef", tostring(b))
    end)

    -- CASE 42
    it("outlives its parent", function()
      local b = buffer.from("0123456789")
      local v = b:sub(2, 5)
      b = nil
      collectgarbage()
      collectgarbage()
      assert.equals("1234", tostring(v))
      assert.equals(49, v[1])
      assert.equals("31323334", v:tostring("hex"))
      local vv = v:sub(2, 3)
      v = nil
      collectgarbage()
      collectgarbage()
      assert.equals("23", tostring(vv))
    end)
  end)

  describe("copy", function()
    it("copies a range into independent memory", function()
      local b = buffer.from("hello")
      local c = b:copy()
      c[1] = 72
      assert.equals("hello", tostring(b))
      assert.equals("Hello", tostring(c))
      assert.equals("ell", tostring(b:copy(2, 4)))
      assert.equals("lo", tostring(b:copy(-2)))
      assert.equals("", tostring(b:copy(4, 2)))
      assert.equals("hello", tostring(b:copy(math.mininteger, math.maxinteger)))
    end)
  end)

  describe("find", function()
    -- CASE 46
    it("follows string.find's rules for init and empty needles", function()
      local s = "abcabc\0xyz"
      local b = buffer.from(s)
      local needles = { "a", "bc", "abc", "c\0x", "\0", "xyz", "z", "q", "", "abcabc\0xyz",
        "abcabc\0xyzz", "cabca" }
      local inits = { nil, 1, 2, 3, 4, 7, 10, 11, 12, 100, 0, -1, -3, -10, -11, -100,
        math.mininteger, math.maxinteger }
      for _, n in ipairs(needles) do
        for k = 1, #inits + 1 do
          local init = inits[k]
          local ei, ej = s:find(n, init, true)
          local gi, gj = b:find(n, init)
          assert.equals(ei, gi, ("find(%q, %s)"):format(n, init))
          assert.equals(ej, gj, ("find(%q, %s)"):format(n, init))
          local bi, bj = b:find(buffer.from(n), init) -- a buffer needle
          assert.equals(ei, bi)
          assert.equals(ej, bj)
        end
      end
      local e = buffer.alloc(0)
      assert.same({ 1, 0 }, { e:find("") })
      assert.is_nil(e:find("a"))
      assert.is_nil(e:find("", 2))
      assert.has_error(function() b:find() end)
      assert.has_error(function() b:find(1) end)
    end)

    it("finds across a large buffer", function()
      local s = string.rep("a", 100000) .. "needle" .. string.rep("b", 1000)
      local b = buffer.from(s)
      assert.same({ s:find("needle", 1, true) }, { b:find("needle") })
      assert.same({ s:find("aneedleb", 1, true) }, { b:find("aneedleb") })
      assert.is_nil(b:find("needles"))
    end)
  end)

  describe("byte", function()
    -- CASE 41 (byte)
    it("follows string.byte", function()
      local s = "\0\1\127\128\255"
      local b = buffer.from(s)
      local M, m = math.maxinteger, math.mininteger
      local cases = { {}, { 1 }, { 5 }, { -1 }, { 1, -1 }, { 2, 4 }, { 4, 2 }, { 6 }, { 0 }, { 0, 2 },
        { -10, 10 }, { m, M }, { M }, { m }, { 3, m } }
      for _, c in ipairs(cases) do
        assert.same({ s:byte(c[1], c[2]) }, { b:byte(c[1], c[2]) })
      end
      assert.equals(0, select("#", b:byte(#b + 1)))
      assert.equals(0, select("#", buffer.alloc(0):byte()))
    end)
  end)

  describe("fill", function()
    it("fills all, a range, or from an index, with a byte or a pattern", function()
      local b = buffer.alloc(10)
      assert.equals(b, b:fill(120)) -- returns b for chaining
      assert.equals(string.rep("x", 10), tostring(b))
      b:fill("ab", 3, 7)
      assert.equals("xxababaxxx", tostring(b))
      b:fill(0, -3)
      assert.equals("xxababa\0\0\0", tostring(b))
      b:fill(buffer.from("123"), 1, -1)
      assert.equals("1231231231", tostring(b))
      b:fill("z", 4, 3) -- i = j + 1: an empty range
      assert.equals("1231231231", tostring(b))
      b:fill("Q", 11) -- empty range at the end
      buffer.alloc(0):fill(1)
    end)

    it("accepts a view of itself as the pattern", function()
      local b = buffer.from("abcdefgh")
      b:fill(b:sub(1, 3), 2)
      assert.equals("aabcabca", tostring(b))
    end)

    -- CASE 45
    it("raises for an empty pattern, a reversed or out-of-range range; never loops", function()
      local b = buffer.from("0123456789")
      assert.matches("bad argument #1 to 'fill' %(fill value is empty%)",
        errmsg(function() b:fill("") end))
      assert.matches("fill value is empty", errmsg(function() b:fill(buffer.alloc(0)) end))
      assert.matches("range ends before it starts", errmsg(function() b:fill(1, 5, 2) end))
      assert.matches("index out of range", errmsg(function() b:fill(1, 0) end))
      assert.matches("index out of range", errmsg(function() b:fill(1, 12) end))
      assert.matches("index out of range", errmsg(function() b:fill(1, 1, 11) end))
      assert.matches("index out of range", errmsg(function() b:fill(1, -12) end))
      assert.matches("index out of range", errmsg(function() b:fill(1, math.mininteger) end))
      assert.matches("index out of range", errmsg(function() b:fill(1, 1, math.maxinteger) end))
      assert.matches("byte value", errmsg(function() b:fill(256) end))
      assert.has_error(function() b:fill() end)
      assert.has_error(function() b:fill({}) end)
      assert.equals("0123456789", tostring(b)) -- failed fills changed nothing
    end)
  end)

  describe("write", function()
    it("copies a string or buffer in at an index and returns the count", function()
      local b = buffer.alloc(6, ".")
      assert.equals(2, b:write("ab"))
      assert.equals("ab....", tostring(b))
      assert.equals(3, b:write(buffer.from("xyz"), 4))
      assert.equals("ab.xyz", tostring(b))
      assert.equals(1, b:write("!", -1))
      assert.equals("ab.xy!", tostring(b))
      assert.equals(0, b:write("", 7)) -- empty at the end fits
      assert.equals(6, b:write(b:sub(1, 6)))
      b:write(b:sub(1, 3), 2) -- overlapping view of itself
      assert.equals("aab.y!", tostring(b))
    end)

    -- CASE 39
    it("raises when the data does not fit, writing nothing", function()
      local b = buffer.alloc(4, ".")
      local v = b:sub(2, 3)
      assert.matches("bad argument #1 to 'write' %(3 bytes do not fit at position 2 of a 2%-byte buffer%)",
        errmsg(function() v:write("abc", 2) end))
      assert.matches("do not fit", errmsg(function() v:write("abc") end))
      assert.equals("....", tostring(b)) -- nothing past the view, nothing at all
      assert.matches("index out of range", errmsg(function() v:write("a", 4) end))
      assert.matches("index out of range", errmsg(function() v:write("a", 0) end))
      assert.matches("index out of range", errmsg(function() v:write("a", math.mininteger) end))
      assert.matches("index out of range", errmsg(function() v:write("a", math.maxinteger) end))
      assert.matches("string or buffer expected", errmsg(function() v:write(5) end))
      assert.equals("....", tostring(b))
    end)
  end)

  describe("equals and compare", function()
    it("order bytes as unsigned values, a prefix first", function()
      local b = buffer.from("abc")
      assert.is_true(b:equals("abc"))
      assert.is_true(b:equals(buffer.from("abc")))
      assert.is_false(b:equals("abd"))
      assert.equals(0, b:compare("abc"))
      assert.equals(-1, b:compare("abd"))
      assert.equals(1, b:compare("abb"))
      assert.equals(1, b:compare("ab"))
      assert.equals(-1, b:compare("abcd"))
      assert.equals(-1, buffer.from("\1"):compare("\255"))
      assert.equals(0, buffer.alloc(0):compare(""))
      assert.equals(-1, buffer.alloc(0):compare("\0"))
      assert.has_error(function() b:compare(1) end)
      assert.has_error(function() b:equals() end)
    end)
  end)

  describe("concat", function()
    -- CASE 46
    it("joins strings and buffers; total truncates or zero-fills", function()
      local parts = { "ab", buffer.from("cd"), "", "e" }
      assert.equals("abcde", tostring(buffer.concat(parts)))
      assert.equals("abc", tostring(buffer.concat(parts, 3)))
      assert.equals("", tostring(buffer.concat(parts, 0)))
      assert.equals("abcde\0\0\0", tostring(buffer.concat(parts, 8)))
      assert.equals(0, #buffer.concat({}))
      assert.equals("\0\0", tostring(buffer.concat({}, 2)))
      assert.is_true(buffer.is(buffer.concat({ "x" })))
    end)

    it("rejects bad lists and totals", function()
      assert.matches("string or buffer expected at index 2, got number",
        errmsg(buffer.concat, { "a", 1 }))
      assert.has_error(function() buffer.concat("ab") end)
      assert.matches("size out of range", errmsg(buffer.concat, { "a" }, -1))
      assert.has_error(function() buffer.concat({ "a" }, 0 / 0) end)
      assert.matches("size out of range", errmsg(buffer.concat, { "a" }, 2 ^ 62))
    end)
  end)

  describe("pack and unpack", function()
    local formats = {
      { "b", -128 }, { "B", 255 }, { "<h", -2 }, { ">H", 65535 }, { "i", 123456 }, { ">i3", -5 },
      { "<I3", 0xabcdef }, { "j", math.mininteger }, { "J", -1 }, { "T", 12345 }, { "<f", 1.5 },
      { ">d", -0.1 }, { "n", math.pi }, { "z", "hello" }, { "s1", "abc" }, { ">s2", "" },
      { "c5", "ab" }, { "c0", "" }, { "<i16", -2 }, { ">I16", 7 }, { "!4 b i4", 1, 2 },
      { "!8 b Xd d", 1, 2.5 }, { "<!2 b h b i4", 1, 2, 3, 4 }, { "x b x", 9 },
      { " < i2 > i2 = i2 ", 1, 2, 3 }, { "bhijlnzs", 1, 2, 3, 4, 5, 6.5, "z", "s" },
      { "i7", 2 ^ 40 // 1 },
    }

    it("pack like string.pack, into a buffer", function()
      for _, f in ipairs(formats) do
        local b = buffer.pack(table.unpack(f))
        assert.is_true(buffer.is(b))
        assert.equals(string.pack(table.unpack(f)), tostring(b), f[1])
      end
      assert.equals(string.pack("s1", "abc"), tostring(buffer.pack("s1", buffer.from("abc"))))
      assert.equals(0, #buffer.pack(""))
    end)

    it("unpack like string.unpack, at every start position", function()
      for _, f in ipairs(formats) do
        local s = string.pack(table.unpack(f))
        local b = buffer.from("..." .. s .. "...")
        assert.same({ string.unpack(f[1], "..." .. s .. "...", 4) }, { b:unpack(f[1], 4) }, f[1])
        for pos = -#b - 2, #b + 2 do
          local ok1, r1 = pcall(function() return { string.unpack(f[1], tostring(b), pos) } end)
          local ok2, r2 = pcall(function() return { b:unpack(f[1], pos) } end)
          assert.equals(ok1, ok2, f[1] .. " at " .. pos)
          if ok1 then assert.same(r1, r2) end
        end
      end
    end)

    it("reads a view in place, bounded by the view", function()
      local b = buffer.from("\1\0\0\0\2\0\0\0")
      local v = b:sub(5, 8)
      assert.same({ 2, 5 }, { v:unpack("<i4") })
      b[5] = 3
      assert.same({ 3, 5 }, { v:unpack("<i4") })
      assert.matches("data string too short", errmsg(function() return v:unpack("<i8") end))
    end)

    -- CASE 41
    it("raises 'data string too short' near the end, never reading past it", function()
      local b = buffer.from("12345678")
      assert.matches("data string too short", errmsg(function() return b:unpack("i8", #b - 3) end))
      assert.matches("data string too short", errmsg(function() return b:unpack("s1", 8) end))
      assert.matches("data string too short", errmsg(function() return b:unpack("c9") end))
      assert.matches("data string too short",
        errmsg(function() return buffer.from("\255abc"):unpack("s1") end))
      assert.matches("unfinished string for format 'z'", errmsg(function() return b:unpack("z") end))
      assert.matches("initial position out of string", errmsg(function() return b:unpack("b", 10) end))
      assert.same({ 49, 2 }, { b:unpack("b", 0) }) -- Lua 5.4: 0 and before the start mean 1
      assert.same({ 49, 2 }, { b:unpack("b", -100) })
      assert.same({ 9 }, { b:unpack("", 9) })
      assert.matches("initial position out of string",
        errmsg(function() return b:unpack("b", math.maxinteger) end))
      assert.same({ 49, 2 }, { b:unpack("b", math.mininteger) }) -- clamps to 1 like Lua
    end)

    it("give Lua's error messages for bad formats", function()
      local bad = { { "i17", 1 }, { "i0", 1 }, { "c", "x" }, { "q", 1 }, { "X", 1 }, { "Xc1", 1 },
        { "!3 i4", 1 }, { "!17", 1 }, { "i2", 40000 }, { "I1", 256 }, { "I1", -1 }, { "c2", "abc" },
        { "z", "a\0b" }, { "s1", string.rep("x", 256) }, { "i", "x" }, { "b" }, { "d", "x" } }
      local function msg(fn, ...)
        local ok, e = pcall(fn, ...)
        assert.is_false(ok)
        return (tostring(e):match("%((.*)%)$") or tostring(e):gsub("^.-:%d+: ", ""))
      end
      for _, f in ipairs(bad) do
        assert.equals(msg(string.pack, table.unpack(f)), msg(buffer.pack, table.unpack(f)), f[1])
      end
      local s = string.rep("\255", 20)
      local b = buffer.from(s)
      for _, f in ipairs { "i17", "c", "q", "Xz", "!3i4", "<I9", "z", "s4", "i21" } do
        local ok, e = pcall(string.unpack, f, s)
        local ok2, e2 = pcall(b.unpack, b, f)
        assert.is_false(ok2, f)
        assert.equals(ok, ok2)
        assert.equals(e:match("%((.*)%)$") or e, e2:match("%((.*)%)$") or e2)
      end
      -- a sign-extended 9-byte integer that fits is fine
      assert.equals(-1, buffer.from(string.rep("\255", 9)):unpack("<i9"))
      assert.equals(1, buffer.from("\1" .. string.rep("\0", 15)):unpack("<i16"))
    end)

    it("raises 'too many results' rather than overflowing the stack", function()
      local b = buffer.alloc(1000000)
      assert.has_error(function() b:unpack(string.rep("b", 1000000)) end)
    end)
  end)

  describe("helpers for other modules", function()
    it("keep small buffers small and large ones correct", function()
      local t = {}
      for i = 1, 1000 do t[i] = buffer.from("x" .. i) end
      for i = 1, 1000 do assert.equals("x" .. i, tostring(t[i])) end
      local big = buffer.alloc(3 * 65536 + 5, "q")
      assert.equals(3 * 65536 + 5, #big)
      assert.equals(113, big[-1])
    end)
  end)
end)
