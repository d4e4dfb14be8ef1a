-- spec/zlib_threads_spec.lua: zlib.gzip{threads = n}: blocks compressed on worker threads make
-- one gzip member that gzip(1) and rill's gunzip read back exactly; bounded memory; teardown.
local helper = require "spec.helper"
local rill = helper.rill
local stream = require "rill.stream"
local zlib = require "rill.zlib"

local run = helper.run
local BLOCK = 128 * 1024

local function tmpname(data)
  local name = os.tmpname()
  local f = assert(io.open(name, "wb"))
  f:write(data or "")
  f:close()
  return name
end

-- gzip(1)'s view of data: the decompressed bytes and whether it found the member valid.
local function gzip_d(data)
  local inp = tmpname(data)
  local p = assert(io.popen("env -u LD_PRELOAD gzip -dc <" .. helper.quote(inp) .. " 2>/dev/null"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(inp)
  return out, ok
end

local function random_bytes(n, seed)
  math.randomseed(seed)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- Log-like lines that vary, so that compression ratios are typical (about 4:1).
local function text(n)
  math.randomseed(n)
  local words = { "GET", "POST", "/api/v1/items", "/login", "status=200", "status=404", "INFO", "WARN" }
  local t, len = {}, 0
  while len < n do
    local line = ("2026-11-%02dT%02d:%02d:%02dZ %s %s %s ms=%d id=%08x\n"):format(math.random(1, 28),
      math.random(0, 23), math.random(0, 59), math.random(0, 59), words[math.random(#words)],
      words[math.random(#words)], words[math.random(#words)], math.random(1, 999), math.random(0, 1 << 30))
    t[#t + 1] = line
    len = len + #line
  end
  return table.concat(t):sub(1, n)
end

-- Compresses data given in pieces of `cut` bytes; returns the gzip bytes.
local function compress(data, opts, cut)
  return run(function()
    local parts, at = {}, 1
    local src = stream.readable {
      read = function(self)
        if at > #data then return self:push(nil) end
        self:push(data:sub(at, at + cut - 1))
        at = at + cut
      end,
    }
    local sink = stream.writable { write = function(_, c, done) parts[#parts + 1] = tostring(c); done() end }
    assert(stream.pipeline(src, zlib.gzip(opts), sink))
    return table.concat(parts)
  end)
end

local function gunzip(gz)
  return run(function()
    local out = stream.from(gz):pipe(zlib.gunzip()):collect()
    return tostring(out)
  end)
end

describe("zlib.gzip{threads = n}", function()
  local sizes = { 0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17 }
  for _, n in ipairs(sizes) do
    it("round-trips " .. n .. " bytes through gzip(1) and gunzip, whatever the chunking", function()
      local data = random_bytes(n, n)
      for _, cut in ipairs({ 1 + n // 3, 7000, 65536 * 3 }) do
        if n < 100000 or cut > 1000 then
          local gz = compress(data, { threads = 2 }, cut)
          assert.are.equal("\31\139\8", gz:sub(1, 3))
          local back, ok = gzip_d(gz)
          assert.is_truthy(ok)
          assert.is_true(back == data, "gzip -dc differs")
          assert.is_true(gunzip(gz) == data, "gunzip differs")
        end
      end
    end)
  end

  it("works at every level and thread count, within 1% of one zlib stream's size on text", function()
    local data = text(1024 * 1024 + 5)
    for _, level in ipairs({ 0, 1, 6, 9 }) do
      local single = #compress(data, { level = level }, 65536)
      for _, threads in ipairs({ 0, 1, 2, 5 }) do
        local gz = compress(data, { level = level, threads = threads }, 65536)
        assert.is_true(gunzip(gz) == data)
        if level > 0 then
          assert.is_true(#gz <= single * 1.01 + 64, ("level %d threads %d: %d vs %d"):format(level, threads, #gz, single))
        end
      end
    end
  end)

  it("writes a trailer with the CRC-32 and length gzip -l reports", function()
    local data = text(1000000)
    local gz = compress(data, { threads = 2 }, 30000)
    local name = tmpname(gz)
    local p = assert(io.popen("env -u LD_PRELOAD gzip -lv " .. helper.quote(name)))
    local listing = p:read("a")
    p:close()
    os.remove(name)
    assert.matches(" 1000000 ", listing, 1, true)
    assert.are.equal(1000000, string.unpack("<I4", gz, #gz - 3))
  end)

  it("stops taking input while nobody reads its output", function()
    run(function()
      local g = zlib.gzip { threads = 2, level = 0 }
      local chunk = random_bytes(65536, 7)
      local accepted = 0
      local function offer() -- outside a task, write says false instead of waiting
        for _ = 1, 200 do -- 12.5 MiB offered
          if not g:write(chunk) then return end
          accepted = accepted + #chunk
        end
      end
      rill.next_tick(offer)
      g:on("drain", offer)
      rill.sleep(100)
      local taken = zlib.stats(g)
      -- Blocks in flight (2 per thread) plus the block being filled, the readable side's
      -- high-water mark and the writable side's: nowhere near all 12.5 MiB.
      assert.is_true(taken < 2 * 1024 * 1024, "took " .. taken)
      assert.is_true(accepted < 2 * 1024 * 1024)
      g:destroy()
    end)
  end)

  it("can be destroyed with blocks in flight, and fails a pipeline cleanly", function()
    run(function()
      local data = random_bytes(BLOCK * 6, 3)
      local g = zlib.gzip { threads = 2 }
      local closed = false
      g:on("close", function() closed = true end)
      rill.next_tick(function() g:destroy() end)
      local ok, err = g:write(data) -- waits for room: the destroy ends the wait
      assert.is_nil(ok)
      assert.are.equal("ERR_STREAM_DESTROYED", err.code)
      rill.sleep(20)
      assert.is_true(closed)
      -- A consumer that destroys it from its first "data": the blocks still coming are dropped.
      local g2 = zlib.gzip { threads = 2 }
      local seen, closed2 = 0, false
      g2:on("data", function() seen = seen + 1; g2:destroy() end)
      g2:on("close", function() closed2 = true end)
      g2:close(data)
      for _ = 1, 200 do
        if closed2 then break end
        rill.sleep(10)
      end
      assert.is_true(closed2)
      assert.are.equal(1, seen)
      local boom = stream.transform {
        transform = function() error("stop here") end,
      }
      ok, err = stream.pipeline(stream.from(data), zlib.gzip { threads = 2 }, boom,
        stream.writable { write = function(_, _, done) done() end })
      assert.is_nil(ok)
      assert.matches("stop here", tostring(err))
    end)
  end)

  it("needs no other module loaded first", function()
    local out, err, status = helper.cli({ "-e", [[
      local gz = rill.zlib.gzip { threads = 1 }
      local ok = rill.stream.pipeline(rill.stream.from("hello"), gz, rill.zlib.gunzip(), rill.stdout)
      assert(ok)
    ]] })
    assert.are.equal("", err)
    assert.are.equal(0, status)
    assert.are.equal("hello", out)
  end)

  it("rejects bad thread counts and levels, naming the option", function()
    for _, bad in ipairs({ -1, 1.5, "two", 100000 }) do
      local ok, err = pcall(zlib.gzip, { threads = bad })
      assert.is_false(ok)
      assert.matches("threads must be an integer from 0 to", err, 1, true)
    end
    local ok, err = pcall(zlib.gzip, { threads = 2, level = 10 })
    assert.is_false(ok)
    assert.matches("level must be an integer from 0 to 9", err, 1, true)
  end)
end)
