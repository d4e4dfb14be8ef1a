-- spec/soak_spec.lua: randomized lossless pipelines: random sources, chains of transforms, hops
-- through processes, files and sockets, slow sinks; the output must equal the input, byte for
-- byte. Every case is a pure function of its seed, printed on failure.
--
--   RILL_SOAK=heavy       the heavy tier (more, bigger, longer cases; a fresh seed each run)
--   RILL_SOAK_SEED=n      the first case's seed (case i uses n + i - 1)
--   RILL_SOAK_CASES=n     how many cases
local helper = require "spec.helper"
local rill = helper.rill
local stream = require "rill.stream"
local buffer = require "rill.buffer"

local function optional(name)
  local ok, m = pcall(require, name)
  return ok and m or nil
end
local fs, process, net, zlib =
  optional "rill.fs", optional "rill.process", optional "rill.net", optional "rill.zlib"

local heavy = os.getenv("RILL_SOAK") == "heavy"
local base_seed = tonumber(os.getenv("RILL_SOAK_SEED") or "")
  or (heavy and os.time() or 20240611)
local ncases = tonumber(os.getenv("RILL_SOAK_CASES") or "") or (heavy and 400 or 160)
local max_size = heavy and 32 << 20 or 4 << 20 -- the largest input of the tier
local max_stages = heavy and 9 or 5
local watchdog_ms = tonumber(os.getenv("RILL_SOAK_WATCHDOG_MS") or "") or (heavy and 300000 or 60000)

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. helper.quote(tmp)))

-- ---- a deterministic generator (splitmix64), independent of math.random ----

local function new_rng(seed)
  local s = seed
  local r = {}
  local function next64()
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  r.next64 = next64
  function r.int(a, b) return a + (next64() >> 1) % (b - a + 1) end
  function r.chance(p) return (next64() >> 11) / (1 << 53) < p end
  function r.pick(t) return t[r.int(1, #t)] end
  -- Sizes spread over every scale: 0, a few bytes, a few KiB, up to max.
  function r.size(max)
    local top = 0
    while (1 << (top + 1)) <= max do top = top + 1 end
    local bits = r.int(0, top)
    return math.min(max, r.int((1 << bits) >> 1, 1 << bits))
  end
  return r
end

-- ---- inputs ----

local printable = {}
for i = 32, 126 do printable[#printable + 1] = string.char(i) end
-- Longer than the longest line (5000 bytes): a line is a slice of it.
printable = table.concat(printable):rep(5000 // 95 + 1)

local inputs = {
  binary = function(r, n)
    local t = {}
    for i = 1, (n + 7) // 8 do t[i] = string.pack("<i8", r.next64()) end
    return table.concat(t):sub(1, n)
  end,
  -- Lines of printable bytes, each ending in "\n", no "\r": the `lines` operator may split and
  -- re-join them without a loss.
  text = function(r, n)
    local t, len = {}, 0
    while len < n do
      local l = r.int(0, r.chance(0.05) and 5000 or 120)
      local at = r.int(1, #printable - l)
      local line = printable:sub(at, at + l - 1) .. "\n"
      t[#t + 1] = line
      len = len + #line
    end
    return table.concat(t)
  end,
  -- Highly compressible: a short random unit repeated.
  repeats = function(r, n)
    local unit = {}
    for i = 1, r.int(1, 64) do unit[i] = string.char(r.int(0, 255)) end
    unit = table.concat(unit)
    return unit:rep(n // #unit + 1):sub(1, n)
  end,
}

local function is_text(s)
  return not s:find("\r", 1, true) and (s == "" or s:sub(-1) == "\n")
end

-- ---- the parts of a case ----
-- A plan is a list of names drawn from these tables; building it makes the streams. Every
-- stage gets its own generator so that its random choices do not shift when another stage's
-- chunking does.

local function bytes_of(c)
  if type(c) == "string" then return c end
  return tostring(c)
end

-- Sleeps at most `budget` times for 0-3 ms: slow enough to make backpressure bite, bounded so
-- that a case with many chunks stays quick.
local function sleeper(r, budget, p)
  return function()
    if budget > 0 and r.chance(p) then
      budget = budget - 1
      rill.sleep(r.int(0, 3))
    end
  end
end

-- At most about 5000 chunks from a source: 1-byte chunks of 4 MiB would test patience, not rill.
local function chunk_floor(case, n)
  return math.max(n, case.size // 5000)
end

local function hwm(r)
  return r.pick({ 0, 1, 16, 1000, 16384, 65536, 1 << 20 })
end

local sources = {
  memory = { make = function(_, data) return stream.from(data) end },
  lua = { make = function(r, data, case)
    local pos, nap = 1, sleeper(r, 40, 0.1)
    local max = chunk_floor(case, r.pick({ 1, 7, 100, 4096, 65536, 300000 }))
    return stream.readable{ high_water_mark = hwm(r), read = function(self)
      nap()
      if pos > #data then
        self:push(nil)
        return
      end
      local n = r.int(1, max)
      self:push(data:sub(pos, pos + n - 1))
      pos = pos + n
    end }
  end },
  iterator = { make = function(r, data, case)
    local pos, max = 1, chunk_floor(case, r.pick({ 3, 1000, 70000 }))
    return stream.from(function()
      if pos > #data then return nil end
      local n = r.int(1, max)
      local s = data:sub(pos, pos + n - 1)
      pos = pos + n
      return s
    end)
  end },
  file = { needs = "fs", make = function(r, data, case)
    local p = case.dir .. "/src"
    local f = assert(io.open(p, "wb"))
    f:write(data)
    f:close()
    return fs.reader(p,
      { chunk_size = chunk_floor(case, r.pick({ 1, 13, 4096, 65536, 100000, 1 << 20 })) })
  end },
  process = { needs = "process", make = function(_, data, case)
    local p = case.dir .. "/src"
    local f = assert(io.open(p, "wb"))
    f:write(data)
    f:close()
    local child = assert(process.spawn("cat", { p }))
    case.children[#case.children + 1] = child
    return child.stdout
  end },
  tcp = { needs = "net", make = function(_, data, case)
    local srv = case.server(function(sock)
      sock:on("error", function() end) -- the client side reports the outcome
      sock:resume()                    -- sees the client's end, so the socket closes
      stream.pipeline(stream.from(data), sock, function() end)
    end)
    return case.connect(srv.port)
  end },
}

-- Transforms: make returns the streams to put in the chain. `text` says the stage needs text
-- input (and keeps text text).
local transforms = {
  rechunk = { make = function(r)
    local nap, carry = sleeper(r, 30, 0.05), nil
    return { stream.transform{
      readable_high_water_mark = hwm(r), writable_high_water_mark = hwm(r),
      transform = function(_, c, push)
        nap()
        local s = bytes_of(c)
        if carry then
          s = carry .. s
          carry = nil
        end
        local i = 1
        while i <= #s do
          local n = r.int(1, #s - i + 1)
          if i + n > #s and r.chance(0.3) then
            carry = s:sub(i) -- hold the tail back until the next chunk or the end
            break
          end
          push(s:sub(i, i + n - 1))
          i = i + n
        end
      end,
      flush = function(_, push)
        if carry then push(carry) end
        carry = nil
      end } }
  end },
  map = { make = function(r)
    local as_string = r.chance(0.5)
    return { stream.map(function(c) return as_string and bytes_of(c) or c end) }
  end },
  filter = { make = function() return { stream.filter(function() return true end) } end },
  batch = { make = function(r)
    return { stream.batch(r.int(1, 9)), stream.map(function(list)
      for i = 1, #list do list[i] = bytes_of(list[i]) end
      return table.concat(list)
    end) }
  end },
  -- Any bytes through lines(): each chunk travels as one hex line.
  hexlines = { make = function()
    return {
      stream.transform{ transform = function(_, c, push)
        local b = buffer.is(c) and c or buffer.from(c)
        push(b:tostring("hex") .. "\n")
      end },
      stream.lines(),
      stream.map(function(l) return assert(buffer.from(bytes_of(l), "hex")) end),
    }
  end },
  -- Any bytes through split(sep): each chunk travels as one base64 record.
  b64split = { make = function()
    return {
      stream.transform{ transform = function(_, c, push)
        local b = buffer.is(c) and c or buffer.from(c)
        push(b:tostring("base64") .. ";;")
      end },
      stream.split(";;"),
      stream.map(function(l) return assert(buffer.from(bytes_of(l), "base64")) end),
    }
  end },
  lines = { text = true, make = function()
    return { stream.lines(), stream.map(function(l) return l .. "\n" end) }
  end },
  gzip = { needs = "zlib", make = function(r)
    return { zlib.gzip{ level = r.int(0, 9) }, zlib.gunzip() }
  end },
  deflate = { needs = "zlib", make = function(r)
    return { zlib.deflate{ level = r.int(0, 9) }, zlib.inflate() }
  end },
}

-- Hops leave the process or the loop: the chain ends at one stream and goes on from another.
-- start(r, case) returns the writable to end the current segment with, the readable to go on
-- from, and optionally a function to call (in the task) before the next segment may start.
local hops = {
  cat = { needs = "process", start = function(_, case)
    local child = assert(process.spawn("cat"))
    case.children[#case.children + 1] = child
    return child.stdin, child.stdout
  end },
  tcp = { needs = "net", start = function(r, case)
    local srv = case.server(function(sock)
      -- An echo, through a Lua transform (pipeline refuses one stream at both ends).
      local t = stream.transform{ writable_high_water_mark = hwm(r),
        transform = function(_, c, push) push(c) end }
      sock:on("error", function() end)
      t:on("error", function() end)
      sock:pipe(t):pipe(sock)
    end)
    local sock = case.connect(srv.port)
    return sock, sock
  end },
  -- A file written whole, then read: the rest of the chain waits for the writer.
  file = { needs = "fs", sequential = true, start = function(r, case)
    case.nfile = case.nfile + 1
    local p = ("%s/hop%d"):format(case.dir, case.nfile)
    return fs.writer(p), function()
      return fs.reader(p, { chunk_size = chunk_floor(case, r.pick({ 7, 4096, 65536, 200000 })) })
    end
  end },
}

local sinks = {
  memory = { make = function(r)
    local parts, nap, timers = {}, sleeper(r, 40, 0.1), 40
    local mode = r.pick({ "sync", "timer", "sleep" })
    local w = stream.writable{ high_water_mark = hwm(r), write = function(_, c, done)
      parts[#parts + 1] = bytes_of(c)
      if mode == "timer" and timers > 0 and r.chance(0.1) then
        timers = timers - 1
        rill.timeout(r.int(0, 2), function() done() end)
      else
        if mode == "sleep" then nap() end
        done()
      end
    end }
    return w, function() return table.concat(parts) end
  end },
  file = { needs = "fs", make = function(_, case)
    local p = case.dir .. "/out"
    return fs.writer(p), function()
      local f = assert(io.open(p, "rb"))
      local s = f:read("a")
      f:close()
      return s
    end
  end },
  process = { needs = "process", make = function(_, case)
    local p = case.dir .. "/out"
    local child = assert(process.spawn("sh", { "-c", 'exec cat > "$0"', p }))
    case.children[#case.children + 1] = child
    return child.stdin, function()
      assert(child:wait() == 0)
      local f = assert(io.open(p, "rb"))
      local s = f:read("a")
      f:close()
      return s
    end
  end },
  tcp = { needs = "net", make = function(_, case)
    local parts, ended = {}, false
    local srv = case.server(function(sock)
      for c in sock:chunks() do parts[#parts + 1] = tostring(c) end
      ended = true
      sock:close()
    end)
    -- pipeline(..., sock) waits for both sides of the socket to end (Node waits only for the
    -- writable side of the last stream): read the server's end so that it can finish.
    local sock = case.connect(srv.port)
    sock:resume()
    return sock, function()
      while not ended do rill.sleep(1) end
      return table.concat(parts)
    end
  end },
}

local modules = { fs = fs, process = process, net = net, zlib = zlib }

local function names(t)
  local out = {}
  for k, v in pairs(t) do
    if not v.needs or modules[v.needs] then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

-- ---- plans ----

local function plan(seed)
  local r = new_rng(seed)
  local p = { seed = seed }
  p.input = r.pick({ "binary", "text", "text", "repeats" })
  p.size = r.chance(0.05) and 0 or r.size(r.chance(0.25) and max_size or max_size // 4)
  p.source = r.pick(names(sources))
  p.sink = r.pick(names(sinks))
  p.stages = {}
  local tnames, hnames = names(transforms), names(hops)
  local nhops = 0
  for _ = 1, r.int(0, max_stages) do
    if #hnames > 0 and nhops < 3 and r.chance(0.2) then
      nhops = nhops + 1
      p.stages[#p.stages + 1] = { hop = r.pick(hnames) }
    else
      p.stages[#p.stages + 1] = { transform = r.pick(tnames) }
    end
  end
  p.data_seed = r.next64()
  return p
end

local function describe_plan(p)
  local t = { ("%s:%s(%d B)"):format(p.source, p.input, p.size) }
  for _, s in ipairs(p.stages) do t[#t + 1] = s.hop and ("hop:" .. s.hop) or s.transform end
  t[#t + 1] = "sink:" .. p.sink
  return table.concat(t, " -> ")
end

-- ---- running one case ----

local totals = { cases = 0, bytes = 0, lost = 0, failed = 0 }

-- The first offset where a and b differ (1-based), or nil.
local function first_diff(a, b)
  if a == b then return nil end
  local lo, hi = 0, math.min(#a, #b)
  while lo < hi do -- the longest common prefix, by halving
    local mid = (lo + hi + 1) // 2
    if a:sub(1, mid) == b:sub(1, mid) then lo = mid else hi = mid - 1 end
  end
  return lo + 1
end

local function run_case(p)
  local r = new_rng(p.data_seed)
  local data = inputs[p.input](r, p.size)
  local text = is_text(data)
  local case = { dir = ("%s/case%d"):format(tmp, p.seed), children = {}, servers = {},
    sockets = {}, nfile = 0, size = #data }
  assert(os.execute("mkdir -p " .. helper.quote(case.dir)))
  function case.server(on_connection)
    local srv = assert(net.listen{ port = 0, on_connection = on_connection })
    case.servers[#case.servers + 1] = srv
    return srv
  end
  function case.connect(port)
    local sock = assert(net.connect("127.0.0.1", port))
    case.sockets[#case.sockets + 1] = sock
    return sock
  end
  local all = {} -- every stream, for the watchdog
  local function note(s)
    all[#all + 1] = s
    return s
  end

  local watchdog = rill.timeout(watchdog_ms, function()
    case.hung = true
    for _, s in ipairs(all) do s:destroy() end
    for _, c in ipairs(case.children) do pcall(c.kill, c, "SIGKILL") end
  end)

  local errors, out = {}, ""
  local ok, err = pcall(function()
    local seg = { note(sources[p.source].make(new_rng(r.next64()), data, case)) }
    local tasks = {}
    for _, st in ipairs(p.stages) do
      local sr = new_rng(r.next64())
      if st.hop then
        local h = hops[st.hop]
        local w, nxt = h.start(sr, case)
        seg[#seg + 1] = note(w)
        if h.sequential then
          local ok, err = stream.pipeline(table.unpack(seg))
          tasks[#tasks + 1] = { join = function() return ok, err end }
          seg = { note(nxt()) }
        else
          tasks[#tasks + 1] = rill.spawn(stream.pipeline, table.unpack(seg))
          seg = { note(nxt) }
        end
      else
        local tr = transforms[st.transform]
        if not tr.text or text then
          for _, s in ipairs(tr.make(sr)) do seg[#seg + 1] = note(s) end
        end
      end
    end
    local w, result = sinks[p.sink].make(new_rng(r.next64()), case)
    seg[#seg + 1] = note(w)
    tasks[#tasks + 1] = rill.spawn(stream.pipeline, table.unpack(seg))
    for i, t in ipairs(tasks) do
      local ok, err = t:join()
      if not ok then errors[#errors + 1] = ("segment %d: %s"):format(i, tostring(err)) end
    end
    if #errors == 0 then out = result() end
  end)
  if not ok then errors[#errors + 1] = "raised: " .. tostring(err) end
  -- Clean up whatever happened: a case must not leave the loop alive or a descriptor open.
  for _, c in ipairs(case.children) do
    if not ok or #errors > 0 then pcall(c.kill, c, "SIGKILL") end
    local code, sig = c:wait()
    if code ~= 0 then errors[#errors + 1] = ("child exited %s %s"):format(code, sig) end
    c.stdin:destroy() -- unused stdio would keep its descriptors until collected
    c.stderr:destroy()
  end
  for _, s in ipairs(case.sockets) do s:destroy() end
  for _, srv in ipairs(case.servers) do srv:close() end
  watchdog:stop()
  if case.hung then errors[#errors + 1] = "hung: the watchdog fired after " .. watchdog_ms .. " ms" end
  os.execute("rm -rf " .. helper.quote(case.dir))

  totals.cases = totals.cases + 1
  totals.bytes = totals.bytes + #data
  local at = first_diff(data, out)
  if at or #errors > 0 then
    totals.failed = totals.failed + 1
    totals.lost = totals.lost + math.max(0, #data - (at and at - 1 or #data))
    error(("soak case failed, seed %d (rerun: RILL_SOAK_SEED=%d RILL_SOAK_CASES=1 busted " ..
      "spec/soak_spec.lua)\n  plan: %s\n  in %d bytes, out %d bytes, first difference at %s\n  %s")
      :format(p.seed, p.seed, describe_plan(p), #data, #out, tostring(at),
        table.concat(errors, "\n  ")), 0)
  end
end

local settled_fd_count = helper.fd_count

describe("soak: randomized lossless pipelines" .. (heavy and " (heavy tier)" or ""), function()
  local fds_before, started
  setup(function()
    -- libuv opens a few descriptors once per loop (a spare for accepting under EMFILE at the
    -- first listen, the SIGCHLD pipe at the first spawn): open them before counting.
    helper.run(function()
      if net then net.listen{ port = 0, on_connection = function() end }:close() end
      if process then
        local c = assert(process.spawn("true"))
        c.stdin:close()
        c.stdout:collect()
        c.stderr:collect()
        c:wait()
      end
    end)
    fds_before = settled_fd_count()
    started = os.clock()
  end)
  teardown(function()
    os.execute("rm -rf " .. helper.quote(tmp))
    io.stderr:write(("\n[soak] seeds %d..%d: %d pipelines, %d bytes in, %d bytes lost, %d failed, " ..
      "%.1f s CPU\n"):format(base_seed, base_seed + ncases - 1, totals.cases, totals.bytes,
      totals.lost, totals.failed, os.clock() - started))
  end)

  for kind, m in pairs({ ["rill.fs"] = fs, ["rill.process"] = process, ["rill.net"] = net,
    ["rill.zlib"] = zlib }) do
    if not m then
      it("uses " .. kind, function() pending(kind .. " is not built: its kinds are left out") end)
    end
  end

  for i = 1, ncases do
    local p = plan(base_seed + i - 1)
    it(("seed %d: %s"):format(p.seed, describe_plan(p)), function()
      helper.run(run_case, p)
    end)
  end

  it("leaves no descriptor open and no child unreaped", function()
    local now = settled_fd_count()
    if now ~= fds_before then
      local ls = io.popen("ls -l /proc/" .. helper.pid() .. "/fd")
      local list = ls:read("a")
      ls:close()
      error(("%d descriptors open after the soak, %d before:\n%s"):format(now, fds_before, list))
    end
    -- Children from /proc (no `ps`: under the sanitizer run it inherits LD_PRELOAD=libasan and
    -- can hang).
    local pid = helper.pid()
    local f = io.open(("/proc/%s/task/%s/children"):format(pid, pid))
    for child in (f and f:read("a") or ""):gmatch("%d+") do
      local st = io.open("/proc/" .. child .. "/stat")
      local state = st and st:read("a"):match("%) (%a)")
      if st then st:close() end
      assert.are_not.equal("Z", state, "child " .. child .. " is a zombie")
    end
    if f then f:close() end
  end)
end)
