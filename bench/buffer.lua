-- bench/buffer.lua: codec throughput (hex, base64) and b:find against string.find over 64 MiB.
-- Run: build/rill bench/buffer.lua  or  LUA_CPATH="build/?.so;;" lua5.4 bench/buffer.lua [MiB]
-- Prints one figure per line: name value unit. MB/s counts the raw (decoded) bytes, 1 MB = 1e6.
local rill = rawget(_G, "rill") or require "rill"
local buffer = rill.buffer

local mib = tonumber(arg and arg[1]) or 64
local size = mib * 1024 * 1024
local runs = 3

-- Best of a few runs of fn (CPU seconds): the least disturbed by other work on the machine.
local function best(fn)
  local t = math.huge
  for _ = 1, runs do
    collectgarbage()
    local t0 = os.clock()
    fn()
    local dt = os.clock() - t0
    if dt < t then t = dt end
  end
  return t
end

local function figure(name, value, unit)
  print(("%s %.1f %s"):format(name, value, unit))
end

local function mbps(bytes, secs) return bytes / secs / 1e6 end

-- Incompressible-looking bytes: a 64 KiB block of pseudo-random bytes, repeated.
math.randomseed(1)
local block = {}
for i = 1, 65536 do block[i] = string.char(math.random(0, 255)) end
local data = buffer.from(string.rep(table.concat(block), size // 65536))
assert(#data == size)

for _, enc in ipairs { "base64", "hex" } do
  local text
  local te = best(function() text = data:tostring(enc) end)
  local back
  local td = best(function() back = assert(buffer.from(text, enc)) end)
  assert(back == data, enc .. " round trip differs")
  figure(enc .. "_encode", mbps(size, te), "MB/s")
  figure(enc .. "_decode", mbps(size, td), "MB/s")
  text, back = nil, nil
end

-- Search: text without the needle, the needle once at the very end.
local line = "GET /index.html HTTP/1.1 200 1043 0.002 Mozilla/5.0 (X11; Linux x86_64)\n"
local hay = string.rep(line, size // #line) .. "needle-in-the-haystack"
local hb = buffer.from(hay)
local i1, i2
local tb = best(function() i1 = hb:find("needle-in-the-haystack") end)
local ts = best(function() i2 = string.find(hay, "needle-in-the-haystack", 1, true) end)
assert(i1 == i2 and i1 == #hay - 21, "find results differ")
figure("buffer_find", mbps(#hay, tb), "MB/s")
figure("string_find_plain", mbps(#hay, ts), "MB/s")
figure("find_speedup", ts / tb, "x")
