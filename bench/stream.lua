-- bench/stream.lua: chunks/s through a Lua transform and lines/s through `for line in
-- r:lines()`, both in memory, against Node.js (bench/node_stream.js, same run) and lua5.4's
-- io.lines over the same data in a tmp file.
-- Run: build/rill bench/stream.lua [chunks [MiB]]  or  LUA_CPATH="build/?.so;;" lua5.4 bench/stream.lua
-- Prints "name value unit" lines, then the ratios. Times are CPU seconds (user + system), the
-- best of 3 runs, so that other work on the machine disturbs them least.
local rill = rawget(_G, "rill") or require "rill"
local stream = require "rill.stream"
local buffer = require "rill.buffer"

local N = tonumber(arg and arg[1]) or 200000 -- 4 KiB chunks
local MIB = tonumber(arg and arg[2]) or 64   -- MiB of log lines
local RUNS = 3
local here = (arg and arg[0] or "bench/stream.lua"):match("^(.*)/[^/]*$") or "."

local function best(fn)
  local t = math.huge
  local r
  for _ = 1, RUNS do
    collectgarbage()
    local t0 = os.clock()
    r = fn()
    local dt = os.clock() - t0
    if dt < t then t = dt end
  end
  return t, r
end

local function figure(name, value, unit)
  print(("%-34s %12.0f %s"):format(name, value, unit))
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

-- Runs a command RUNS times; its last output line is "name count seconds": best seconds.
local function best_cmd(cmd)
  local t, count = math.huge, nil
  for _ = 1, RUNS do
    local name, n, s = sh(cmd):match("(%S+) (%d+) ([%d.e-]+)%s*$")
    if not name then return nil end
    count = tonumber(n)
    if tonumber(s) < t then t = tonumber(s) end
  end
  return t, count
end

local function main()
  -- ---- 1. chunks through a Lua transform ----
  local chunk = buffer.alloc(4096, 120)
  local t_rill = best(function()
    local i, bytes = 0, 0
    local src = stream.readable { read = function(self)
      while i < N do
        i = i + 1
        if not self:push(chunk) then return end
      end
      self:push(nil)
    end }
    local t = stream.transform { transform = function(_, c, push)
      bytes = bytes + #c
      push(c)
    end }
    local w = stream.writable { write = function(_, _, done) done() end }
    assert(stream.pipeline(src, t, w))
    assert(bytes == N * 4096)
  end)
  local node = sh("command -v node"):match("%S+")
  local t_node = node and best_cmd(("node %s/node_stream.js chunks %d"):format(here, N))
  figure("chunks/s rill Lua transform", N / t_rill, "chunks/s")
  if t_node then figure("chunks/s node Transform", N / t_node, "chunks/s") end

  -- ---- 2. lines ----
  local words = { "alpha", "beta", "gamma", "delta", "request", "response", "user", "session",
    "cache", "miss", "hit", "timeout", "retry", "omega", "sigma", "kappa" }
  local levels = { "INFO", "DEBUG", "WARN", "ERROR", "INFO", "INFO", "DEBUG", "TRACE" }
  math.randomseed(7)
  local lines, size = {}, 0
  while size < MIB * 1024 * 1024 do
    local w = {}
    for k = 1, math.random(3, 19) do w[k] = words[math.random(#words)] end
    local l = ("2026-11-27T05:%02d:%02d.%03dZ %s [svc-%d] %s\n"):format(math.random(0, 59),
      math.random(0, 59), math.random(0, 999), levels[math.random(#levels)], math.random(0, 31),
      table.concat(w, " "))
    lines[#lines + 1] = l
    size = size + #l
  end
  local data = table.concat(lines)
  local nlines = #lines
  lines = nil
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()

  local t_lines, n = best(function()
    local count = 0
    for _ in stream.from(data):lines() do count = count + 1 end
    return count
  end)
  assert(n == nlines, "line count")
  figure("lines/s rill for line in r:lines()", nlines / t_lines, "lines/s")
  local t_rl = node and best_cmd(("node %s/node_stream.js readline %s"):format(here, path))
  local t_tf = node and best_cmd(("node %s/node_stream.js transform %s"):format(here, path))
  if t_rl then figure("lines/s node readline", nlines / t_rl, "lines/s") end
  if t_tf then figure("lines/s node Transform splitter", nlines / t_tf, "lines/s") end
  local lua = sh("command -v lua5.4"):match("%S+")
  local t_io = lua and best_cmd(("%s -e 'local t=os.clock() local n=0 for _ in io.lines(%q) do "
    .. "n=n+1 end io.write(\"io.lines \", n, \" \", os.clock()-t, \"\\n\")'"):format(lua, path))
  if t_io then figure("lines/s lua5.4 io.lines (tmp file)", nlines / t_io, "lines/s") end
  os.remove(path)

  print("-- ratios (> 1: rill is faster)")
  if t_node then print(("rill/node chunks through a transform   %.2fx"):format(t_node / t_rill)) end
  if t_rl then print(("rill/node readline lines               %.2fx"):format(t_rl / t_lines)) end
  if t_tf then print(("rill/node Transform splitter lines     %.2fx"):format(t_tf / t_lines)) end
  if t_io then print(("rill/lua5.4 io.lines                   %.2fx"):format(t_io / t_lines)) end
end

if rawget(_G, "rill") then
  main() -- the rill command runs the script as a task
else
  local task = rill.spawn(main)
  rill.run()
  task:join()
end
