-- lua/rill/stream.lua: rill.stream: constructors, from, iterators, collect, events, operators,
-- pipeline. The state machines are in C (core/stream.c); this is the friendly layer.
local C = require "rill._stream"
local buffer = require "rill.buffer"

local M = {}
local methods = C.methods
local is_exit, answer, dead = C.is_exit, C.answer, C.dead
local xpcall, type, error, select = xpcall, type, error, select
local traceback = debug.traceback

-- ---- running Lua hooks: pooled worker tasks (so a hook may wait: sleep, write, read) ----

-- Like the engine's message handler: string errors get a traceback, tables a traceback field.
local function handler(e)
  if is_exit(e) then return e end
  if type(e) == "string" then return traceback(e, 2) end
  if type(e) == "table" and rawget(e, "traceback") == nil then
    rawset(e, "traceback", traceback("", 2))
  end
  return e
end

-- rill.exit() unwinds through hooks untouched; anything else becomes the stream's error.
local function settle(self, kind, ok, err)
  if not ok and is_exit(err) then error(err, 0) end
  answer(self, kind, ok, err)
end

local runners = {}

function runners.read(fn, self, size)
  if dead(self) then return end
  local ok, err = xpcall(fn, handler, self, size)
  if not ok then settle(self, "r", ok, err) end
end

function runners.write(fn, self, chunk, done)
  if dead(self) then return end
  local ok, err = xpcall(fn, handler, self, chunk, done)
  if not ok then settle(self, "r", ok, err) end
end

function runners.final(fn, self, done)
  local ok, err = xpcall(fn, handler, self, done)
  if not ok then settle(self, "r", ok, err) end
end

function runners.destroy(fn, self, err, done)
  local ok, e = xpcall(fn, handler, self, err, done)
  if not ok then
    if is_exit(e) then error(e, 0) end
    done(e)
  end
end

function runners.transform(fn, self, chunk, push)
  if dead(self) then return end
  settle(self, "t", xpcall(fn, handler, self, chunk, push))
end

function runners.flush(fn, self, push)
  settle(self, "f", xpcall(fn, handler, self, push))
end

local wait_job = C.wait_job
local function worker()
  while true do
    local run, a, b, c, d = wait_job()
    if run == nil then return end
    run(a, b, c, d)
  end
end
C.set_worker(worker, runners)

-- ---- constructors ----

local function opt_table(o, fname)
  if o == nil then return {} end
  if type(o) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(o)), 3)
  end
  return o
end

local function hwm(o, side, fname)
  local v = o[side .. "_high_water_mark"]
  if v == nil then v = o.high_water_mark end
  if v == nil then return -1 end
  if math.type(v) ~= "integer" or v < 0 then
    error(("%s: high_water_mark must be a non-negative integer"):format(fname), 3)
  end
  return v
end

local function object_mode(o, side)
  local v = o[side .. "_object_mode"]
  if v == nil then v = o.object_mode end
  return v and true or false
end

local function need_fn(o, name, fname)
  if type(o[name]) ~= "function" then
    error(("%s: option '%s' (a function) is required"):format(fname, name), 3)
  end
end

function M.readable(o)
  o = opt_table(o, "readable")
  local flags = "r" .. (object_mode(o, "readable") and "o" or "")
  return C.new(flags, hwm(o, "readable", "readable"), -1, { read = o.read, destroy = o.destroy })
end

function M.writable(o)
  o = opt_table(o, "writable")
  need_fn(o, "write", "writable")
  local flags = "w" .. (object_mode(o, "writable") and "O" or "")
  return C.new(flags, -1, hwm(o, "writable", "writable"),
    { write = o.write, final = o.final, destroy = o.destroy })
end

function M.duplex(o)
  o = opt_table(o, "duplex")
  local flags = "d" .. (object_mode(o, "readable") and "o" or "")
    .. (object_mode(o, "writable") and "O" or "") .. (o.allow_half_open == false and "h" or "")
  return C.new(flags, hwm(o, "readable", "duplex"), hwm(o, "writable", "duplex"),
    { read = o.read, write = o.write, final = o.final, destroy = o.destroy })
end

function M.transform(o)
  o = opt_table(o, "transform")
  need_fn(o, "transform", "transform")
  local flags = "t" .. (object_mode(o, "readable") and "o" or "")
    .. (object_mode(o, "writable") and "O" or "")
  local s = C.new(flags, hwm(o, "readable", "transform"), hwm(o, "writable", "transform"),
    { transform = o.transform, flush = o.flush, destroy = o.destroy })
  C.bind_push(s)
  return s
end

-- stream.from(x): bytes give a byte-mode readable (native, no copy per chunk); an array or an
-- iterator function gives an object-mode readable of its values (Node's Readable.from).
function M.from(x)
  local t = type(x)
  if t == "string" or buffer.is(x) then return C.from_bytes(x) end
  if t == "table" then
    local i = 0
    return M.readable { object_mode = true, read = function(self)
      repeat
        i = i + 1
        local v = x[i]
        if v == nil then
          self:push(nil)
          return
        end
      until not self:push(v)
    end }
  end
  if t == "function" then
    return M.readable { object_mode = true, read = function(self)
      repeat
        local v = x()
        if v == nil then
          self:push(nil)
          return
        end
      until not self:push(v)
    end }
  end
  error(("bad argument #1 to 'from' (string, buffer, table or function expected, got %s)")
    :format(t), 2)
end

-- ---- events ----

local events = {
  data = true, ["end"] = true, readable = true, drain = true, finish = true, error = true,
  close = true, pipe = true, unpipe = true, pause = true, resume = true, prefinish = true,
}
local once_of = setmetatable({}, { __mode = "k" }) -- once wrapper -> the listener it wraps

local function check_listener(ev, fn, fname)
  if not events[ev] then
    error(("bad argument #1 to '%s' (unknown event '%s')"):format(fname, tostring(ev)), 3)
  end
  if type(fn) ~= "function" then
    error(("bad argument #2 to '%s' (function expected, got %s)"):format(fname, type(fn)), 3)
  end
end

-- Listener arrays are copied on change, so a dispatch in progress keeps its snapshot.
local function add(self, ev, fn)
  local ls = C.listeners(self)
  local old, new = ls[ev], {}
  local n = old and #old or 0
  for i = 1, n do new[i] = old[i] end
  new[n + 1] = fn
  ls[ev] = new
  C.watch(self, ev, 1, n + 1)
  return self
end

function methods:on(ev, fn)
  check_listener(ev, fn, "on")
  return add(self, ev, fn)
end

function methods:once(ev, fn)
  check_listener(ev, fn, "once")
  local w
  w = function(...)
    self:off(ev, w)
    return fn(...)
  end
  once_of[w] = fn
  return add(self, ev, w)
end

function methods:off(ev, fn)
  check_listener(ev, fn, "off")
  local ls = C.listeners(self)
  local old = ls[ev]
  if not old then return self end
  local new, found = {}, false
  for i = 1, #old do
    local l = old[i]
    if not found and (l == fn or once_of[l] == fn) then
      found = true
    else
      new[#new + 1] = l
    end
  end
  if found then
    ls[ev] = #new > 0 and new or nil
    C.watch(self, ev, -1, #new)
  end
  return self
end

function methods:listener_count(ev)
  local l = C.listeners(self)[ev]
  return l and #l or 0
end

-- ---- consuming ----

function methods:pipe(w, opts)
  local e = true
  if opts ~= nil then
    if type(opts) ~= "table" then
      error(("bad argument #2 to 'pipe' (table expected, got %s)"):format(type(opts)), 2)
    end
    if opts.close == false then e = false end
  end
  return C.pipe(self, w, e)
end

-- The closing value of chunks() and lines(): a break or an error destroys the stream at once;
-- running to the end does not (a socket read to its end may still be written to).
local closer_mt = {
  __close = function(c)
    if not c.done then c.stream:destroy() end
  end,
}

-- for chunk in r:chunks() do ... end: break (or an error) destroys the stream at once.
function methods:chunks()
  C.task_check("chunks")
  local closer = setmetatable({ stream = self, done = false }, closer_mt)
  local function iter()
    local c, err = self:read()
    if c == nil then
      if err ~= nil then error(err, 0) end
      closer.done = true
    end
    return c
  end
  return iter, nil, nil, closer
end

-- for line in r:lines() do ... end: lines without their "\n" or "\r\n", the same however the
-- input was chunked. The iterator is C (C.lines_iter): a line per call, straight from the chunk
-- at hand; it calls read (and may wait) only when no chunk is ready.
function methods:lines(max_line_length)
  C.task_check("lines")
  local closer = setmetatable({ stream = self, done = false }, closer_mt)
  return C.lines_iter(self, self.read, closer, max_line_length), nil, nil, closer
end

-- r:collect(): the whole stream as one buffer (an array table in object mode), or nil, err.
function methods:collect()
  C.task_check("collect")
  local parts, n = {}, 0
  while true do
    local c, err = self:read()
    if c == nil then
      if err ~= nil then return nil, err end
      break
    end
    n = n + 1
    parts[n] = c
  end
  if self.readable_object_mode then return parts end
  return buffer.concat(parts)
end

-- ---- composition ----

-- pipeline(s1, ..., sn [, cb]): with cb, returns at once and calls cb(err) once; without, in a
-- task, waits and returns true or nil, err.
function M.pipeline(...)
  local n = select("#", ...)
  local list = { ... }
  local cb = list[n]
  if type(cb) == "function" then
    list[n] = nil
    n = n - 1
  else
    cb = nil
  end
  for i = 1, n do
    if list[i] == nil then
      error(("bad argument #%d to 'pipeline' (stream expected, got nil)"):format(i), 2)
    end
  end
  return C.pipeline(list, cb)
end

function M.finished(s, cb)
  return C.finished(s, cb)
end

-- ---- operators: each returns a transform ----

local function check_fn(fn, name)
  if type(fn) ~= "function" then
    error(("bad argument #1 to '%s' (function expected, got %s)"):format(name, type(fn)), 3)
  end
end

local function check_count(n, name)
  if math.type(n) ~= "integer" or n < 0 then
    error(("bad argument #1 to '%s' (non-negative integer expected)"):format(name), 3)
  end
end

-- map(fn): fn(chunk) -> value; nil drops the chunk.
function M.map(fn)
  check_fn(fn, "map")
  return M.transform { object_mode = true, transform = function(_, chunk, push)
    local v = fn(chunk)
    if v ~= nil then push(v) end
  end }
end

function M.filter(fn)
  check_fn(fn, "filter")
  return M.transform { object_mode = true, transform = function(_, chunk, push)
    if fn(chunk) then push(chunk) end
  end }
end

function M.tap(fn)
  check_fn(fn, "tap")
  return M.transform { object_mode = true, transform = function(_, chunk, push)
    fn(chunk)
    push(chunk)
  end }
end

-- lines(): bytes in, one string per line out (native: no Lua per chunk).
function M.lines(opts)
  local max = opts and opts.max_line_length or nil
  return C.split_stream(nil, max)
end

-- stream.progress([{total = bytes, label = s}]): a native pass-through that draws a progress bar
-- with rate and ETA on stderr when stderr is a terminal (force = true draws anyway).
function M.progress(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #1 to 'progress' (table expected, got %s)"):format(type(opts)), 2)
  end
  return require("rill._progress").new(opts)
end

function M.split(sep, opts)
  if type(sep) ~= "string" and not buffer.is(sep) then
    error(("bad argument #1 to 'split' (string expected, got %s)"):format(type(sep)), 2)
  end
  local max = opts and opts.max_line_length or nil
  return C.split_stream(sep, max)
end

-- batch(n): arrays of n chunks (the last may be shorter).
function M.batch(n)
  check_count(n, "batch")
  if n == 0 then error("bad argument #1 to 'batch' (positive integer expected)", 2) end
  local cur = {}
  return M.transform { object_mode = true, transform = function(_, chunk, push)
    cur[#cur + 1] = chunk
    if #cur == n then
      local b = cur
      cur = {}
      push(b)
    end
  end, flush = function(_, push)
    if #cur > 0 then push(cur) end
    cur = {}
  end }
end

-- take(n): the first n chunks, then the end; the streams upstream are stopped (an endless
-- source stops, and a pipeline counts that as success).
function M.take(n)
  check_count(n, "take")
  local count, ended = 0, false
  return M.transform { object_mode = true, transform = function(self, chunk, push)
    if count < n then
      count = count + 1
      push(chunk)
    end
    if count >= n and not ended then
      ended = true
      push(nil)
      C.stop_sources(self)
      self:close()
    end
  end }
end

-- parallel(n, fn [, opts]): fn in n worker threads, outputs in input order (bindings/lparallel.c).
function M.parallel(...)
  return (require("rill._parallel").new(...))
end

M.methods = methods
return M
