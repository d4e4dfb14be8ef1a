-- lua/rill/repl.lua: the interactive prompt: evaluation, continuation lines, the value printer, completion.
local rill = require "rill"

local M = {}

local PROMPT, PROMPT2 = "> ", ">> "

local KEYWORDS = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}
local KEYWORD = {}
for _, k in ipairs(KEYWORDS) do KEYWORD[k] = true end

local function is_name(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and not KEYWORD[s]
end

---------------------------------------------------------------------------------------------
-- The printer
---------------------------------------------------------------------------------------------

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ["\\"] = "\\\\", ['"'] = '\\"',
                  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v" }

-- A string as Lua source: double quotes, escapes for control bytes (bytes >= 128 stay, so UTF-8
-- text reads as text).
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end
M.quote = quote

local function metafield(v, name)
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return nil end
  return rawget(mt, name)
end

-- The method m of v (through __index, which may run code: errors count as absent).
local function method(v, m)
  local ok, f = pcall(function() return v[m] end)
  if ok and type(f) == "function" then return f end
  return nil
end

local PREVIEW = 16

local function buffer_repr(b)
  local ok, n = pcall(function() return #b end)
  if not ok or math.type(n) ~= "integer" then return tostring(b) end
  if n == 0 then return "<rill.buffer 0 bytes>" end
  local k = math.min(n, PREVIEW)
  local bytes = ""
  if k > 0 then
    local got, s = pcall(b.tostring, b, "binary", 1, k)
    if not got or type(s) ~= "string" then return tostring(b) end
    bytes = s
  end
  local hex = bytes:gsub(".", function(c) return string.format("%02x ", c:byte()) end)
  local text = bytes:gsub("[^\32-\126]", ".")
  local more = n > k and "... " or ""
  return string.format("<rill.buffer %d byte%s: %s%s|%s%s|>", n, n == 1 and "" or "s",
    hex, more, text, n > k and "..." or "")
end

local inspect -- forward

local function field(v, k)
  local ok, x = pcall(function() return v[k] end)
  if ok then return x end
  return nil
end

-- The state a stream shows through its read-only fields (bindings/lstream.c): mode, flowing or
-- paused, bytes buffered, ended, finished, destroyed, the error. nil when it shows none.
local function stream_fields(s, head)
  local duplex = head:find("(duplex)", 1, true) ~= nil
  local readable = duplex or head:find("(readable)", 1, true) ~= nil
  local writable = duplex or head:find("(writable)", 1, true) ~= nil
  local st = {}
  local om = field(s, readable and "readable_object_mode" or "writable_object_mode")
  if type(om) == "boolean" then st.mode = om and "object" or "bytes" end
  if readable then
    st.flowing = field(s, "readable_flowing")
    st.buffered = field(s, "readable_length")
    st.ended = field(s, "readable_ended")
  end
  if writable then
    st[duplex and "write_buffered" or "buffered"] = field(s, "writable_length")
    st[duplex and "write_ended" or "ended"] = field(s, "writable_ended")
    st.finished = field(s, "writable_finished")
  end
  st.destroyed = field(s, "destroyed")
  local err = field(s, "errored")
  if err ~= nil then st.errored = tostring(err) end
  if next(st) == nil then return nil end
  return st
end

-- A stream shows what tostring gives, plus its state: what its inspect (or state) method
-- reports if it has one, else its state fields.
local function stream_repr(s, opts)
  local head = tostring(s)
  local st
  for _, m in ipairs { "inspect", "state" } do
    local f = method(s, m)
    if f then
      local ok, x = pcall(f, s)
      if ok and (type(x) == "table" or type(x) == "string") then
        st = x
        break
      end
    end
  end
  st = st or stream_fields(s, head)
  if type(st) == "table" then
    return "<" .. head .. " " .. inspect(st, { depth = 1, width = math.huge }) .. ">"
  elseif type(st) == "string" then
    return "<" .. head .. " " .. st .. ">"
  end
  return "<" .. head .. ">"
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (TYPE_ORDER[ta] or 9) < (TYPE_ORDER[tb] or 9) or
      ((TYPE_ORDER[ta] or 9) == (TYPE_ORDER[tb] or 9) and ta < tb) end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return tostring(a) < tostring(b)
end

local render

local function render_key(k, opts, seen, level)
  if is_name(k) then return k end
  if type(k) == "string" then return "[" .. quote(k) .. "]" end
  return "[" .. render(k, opts, seen, level, 0) .. "]"
end

local function render_table(t, opts, seen, level, indent)
  if seen[t] then return "<cycle>" end
  if next(t) == nil then return "{}" end
  if level >= opts.depth then return "{...}" end
  seen[t] = true
  local items, n = {}, 0
  -- The array part first, in order; then the other keys, sorted.
  local len = 0
  while rawget(t, len + 1) ~= nil do len = len + 1 end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= len) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  local limit = opts.max_items
  local total = len + #keys
  local shown = 0
  local pad = indent + 2
  for i = 1, len do
    if shown >= limit then break end
    shown = shown + 1
    n = n + 1
    items[n] = render(rawget(t, i), opts, seen, level + 1, pad)
  end
  for _, k in ipairs(keys) do
    if shown >= limit then break end
    shown = shown + 1
    n = n + 1
    items[n] = render_key(k, opts, seen, level + 1) .. " = " ..
        render(rawget(t, k), opts, seen, level + 1, pad)
  end
  if total > shown then
    n = n + 1
    items[n] = string.format("... (%d more)", total - shown)
  end
  seen[t] = nil
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if #one + indent <= opts.width and not one:find("\n", 1, true) then return one end
  local sp = string.rep(" ", pad)
  return "{\n" .. sp .. table.concat(items, ",\n" .. sp) .. "\n" .. string.rep(" ", indent) .. "}"
end

function render(v, opts, seen, level, indent)
  local tv = type(v)
  if tv == "string" then
    return quote(v)
  elseif tv == "table" or tv == "userdata" then
    local name = metafield(v, "__name")
    if name == "rill.buffer" then return buffer_repr(v) end
    if name == "rill.stream" then return stream_repr(v, opts) end
    if tv == "table" and metafield(v, "__tostring") == nil then
      local body = render_table(v, opts, seen, level, indent)
      if type(name) == "string" then return name .. " " .. body end
      return body
    end
    local ok, s = pcall(tostring, v)
    if not ok then return "<" .. tv .. ": __tostring failed: " .. tostring(s) .. ">" end
    if tv == "table" and type(name) == "string" and s:sub(1, #name) ~= name then
      return name .. ": " .. s
    end
    return s
  end
  return tostring(v)
end

-- inspect(v [, opts]) -> string: v as the REPL prints it. opts: depth (nesting shown, default
-- 4), width (line width before a table breaks into lines, default 80), max_items (per table,
-- default 100).
function inspect(v, opts)
  opts = opts or {}
  local o = { depth = opts.depth or 4, width = opts.width or 80, max_items = opts.max_items or 100 }
  return render(v, o, {}, 0, 0)
end
M.inspect = inspect

---------------------------------------------------------------------------------------------
-- Compiling input
---------------------------------------------------------------------------------------------

local function incomplete(err)
  return err ~= nil and err:sub(-5) == "<eof>"
end

-- compile(src) -> fn | nil, err, more: src as an expression first (`return src`), then as a
-- statement; more is true when the chunk is unfinished (its error is at <eof>), as lua.c decides.
function M.compile(src, chunkname)
  chunkname = chunkname or "=stdin"
  local src1 = src:match("^%s*=(.*)$") -- Lua 5.1's `=expr`
  local fexpr, eexpr = load("return " .. (src1 or src), chunkname, "t")
  if fexpr then return fexpr end
  local fstat, estat = load(src, chunkname, "t")
  if fstat then return fstat end
  if incomplete(estat) or incomplete(eexpr) then return nil, estat, true end
  return nil, estat, false
end

---------------------------------------------------------------------------------------------
-- Completion
---------------------------------------------------------------------------------------------

-- Adds the string keys of table t (and of what its metatable's __index leads to) to out.
local function collect(v, out, seen, depth, methods_only)
  if depth > 6 or v == nil or seen[v] then return end
  seen[v] = true
  if type(v) == "table" then
    for k, x in next, v do
      if is_name(k) and (not methods_only or type(x) == "function") then out[k] = true end
    end
  end
  local mt = getmetatable(v)
  if type(mt) ~= "table" then return end
  local idx = rawget(mt, "__index")
  if type(idx) == "table" then
    collect(idx, out, seen, depth + 1, methods_only)
  elseif type(idx) == "function" and debug and debug.getupvalue then
    -- A C __index (rill.buffer's, say) keeps its method table as an upvalue.
    for i = 1, 8 do
      local name, up = debug.getupvalue(idx, i)
      if name == nil then break end
      if type(up) == "table" then collect(up, out, seen, depth + 1, true) end
    end
  end
end

-- complete(word [, line]) -> array of the words that can replace word: globals and keywords,
-- or the fields (after `.`) or methods (after `:`) of the value a dotted name leads to.
function M.complete(word, line)
  local base, sep, partial = word:match("^(.-)([%.:]?)([%w_]*)$")
  if base == nil then return {} end
  local out = {}
  local prefix
  if sep == "" then
    if base ~= "" then return {} end
    collect(_G, out, {}, 0, false)
    for _, k in ipairs(KEYWORDS) do out[k] = true end
    prefix = ""
  else
    local v = _G
    for name in (base .. "."):gmatch("(.-)%.") do
      if not name:match("^[%a_][%w_]*$") then return {} end
      local ok, x = pcall(function() return v[name] end)
      if not ok or x == nil then return {} end
      v = x
    end
    if v == _G then return {} end
    collect(v, out, {}, 0, sep == ":")
    if type(v) == "string" then collect(string, out, {}, 0, true) end
    if v == rill then
      -- rill's submodules load on first use: offer them by name.
      for name in pairs(package.preload) do
        local sub = name:match("^rill%.([%a][%w_]*)$")
        if sub then out[sub] = true end
      end
    end
    prefix = base .. sep
  end
  local list = {}
  for k in pairs(out) do
    if k:sub(1, #partial) == partial then list[#list + 1] = prefix .. k end
  end
  table.sort(list)
  return list
end

---------------------------------------------------------------------------------------------
-- The session
---------------------------------------------------------------------------------------------

local C -- rill._repl, loaded by start()

-- rill.stdout and rill.stderr write at the end of the loop's turn: what the code wrote to them
-- goes out before what the REPL (or print) writes after it, and before the prompt.
local function sync_streams()
  local stdio = package.loaded["rill.stdio"]
  if stdio then stdio.flush() end
end

local function write(s, fd)
  sync_streams()
  return C.write(s, fd)
end

local function read(prompt)
  sync_streams()
  return C.read(prompt)
end
local pending -- lines of an unfinished chunk
local current -- the evaluation in progress: { abandoned = bool }

local function errmsg(e)
  local s = C.errstring(e)
  if type(e) == "table" and metafield(e, "__tostring") == nil then
    local shown = {}
    for k, v in next, e do
      if k ~= "traceback" then shown[k] = v end -- printed below as it is
    end
    local first, rest = s:match("^([^\n]*)(.*)$")
    s = first .. " " .. inspect(shown, { depth = 2 }) .. rest
  end
  -- The evaluation's own frame adds nothing to read.
  s = s:gsub("\n\t%(%.%.%.tail calls%.%.%.%)$", "")
  return s
end

local function show_results(res)
  if res.n <= 1 then return end
  local out, width = {}, C.columns()
  for i = 2, res.n do out[#out + 1] = inspect(res[i], { width = width }) end
  write(table.concat(out, "\t") .. "\n")
end

local function evaluate(fn)
  local ev = {}
  current = ev
  local task = rill.spawn(function()
    C.running()
    return fn()
  end)
  rill.spawn(function()
    local res = table.pack(pcall(task.join, task))
    if ev.abandoned then return end
    current = nil
    if not res[1] and C.is_exit(res[2]) then error(res[2], 0) end -- rill.exit(): let it unwind
    local ok, perr = pcall(function()
      if res[1] then
        show_results(res)
      else
        write(errmsg(res[2]) .. "\n", 2)
      end
    end)
    if not ok then write("repl: cannot print the result: " .. tostring(perr) .. "\n", 2) end
    read(PROMPT)
  end)
end

local function quit()
  rill.exit(0)
end

local function on_line(line, tty)
  if line == nil then -- end of input (Ctrl-D on an empty line)
    write("\n")
    if pending then
      local _, err = M.compile(pending)
      pending = nil
      write(tostring(err) .. "\n", 2)
    end
    return quit()
  end
  if tty and line:find("%S") then C.add_history(line) end
  local src = pending and (pending .. "\n" .. line) or line
  local fn, err, more = M.compile(src)
  if more then
    pending = src
    return read(PROMPT2)
  end
  pending = nil
  if not fn then
    write(err .. "\n", 2)
    return read(PROMPT)
  end
  evaluate(fn)
end

local function on_interrupt(kind)
  if kind == "running" and current then
    -- The code is waiting (a sleep, a read): it cannot be stopped from outside, so it is left
    -- to finish on its own, unseen, and the prompt comes back.
    current.abandoned = true
    current = nil
    write("interrupted! (the task goes on waiting in the background; its results will not be shown)\n", 2)
  end
  pending = nil
  read(PROMPT)
end

-- Routes print, io.write and writes to io.stdout / io.stderr through C.write, which erases the
-- prompt first and has it redrawn after: output from timers and streams while a line is being
-- typed does not garble it.
local function route_output()
  local stdout, stderr = io.stdout, io.stderr
  print = function(...)
    local n = select("#", ...)
    local t = table.pack(...)
    for i = 1, n do t[i] = tostring(t[i]) end
    write(table.concat(t, "\t", 1, n) .. "\n")
  end
  local methods = getmetatable(stdout).__index
  local fwrite = methods.write
  methods.write = function(f, ...)
    if f ~= stdout and f ~= stderr then return fwrite(f, ...) end
    local n = select("#", ...)
    local t = table.pack(...)
    for i = 1, n do
      local v = t[i]
      if math.type(v) == "integer" then
        t[i] = string.format("%d", v)
      elseif math.type(v) == "float" then
        t[i] = string.format("%.14g", v)
      elseif type(v) ~= "string" then
        error(string.format("bad argument #%d to 'write' (string expected, got %s)", i,
          type(v)), 2)
      end
    end
    write(table.concat(t, "", 1, n), f == stderr and 2 or 1)
    return f
  end
  io.write = function(...) return stdout:write(...) end
end

-- start([opts]): runs the REPL on stdin until Ctrl-D or rill.exit(). opts.history: the history
-- file (default $RILL_HISTORY, else ~/.rill_history; "" for none).
function M.start(opts)
  opts = opts or {}
  C = require "rill._repl"
  local history = opts.history
  if history == nil then history = os.getenv("RILL_HISTORY") end
  if history == nil then
    local home = os.getenv("HOME")
    if home and home ~= "" then history = home .. "/.rill_history" end
  end
  if history == "" then history = nil end
  local tty
  tty = C.open {
    on_line = function(line) return on_line(line, tty) end,
    on_interrupt = on_interrupt,
    complete = M.complete,
    history = history,
  }
  if tty then route_output() end
  rill.on("uncaught", function(e) write(errmsg(e) .. "\n", 2) end)
  write(string.format("rill %s (%s); Ctrl-D exits, Ctrl-C interrupts\n", rill.version,
    _VERSION))
  read(PROMPT)
end

return M
