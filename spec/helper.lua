-- spec/helper.lua: shared spec helpers: run code as a task with the loop, run the rill command.
local rill = require "rill"

local helper = {}

-- The sanitizer run preloads libasan into lua5.4 (it loads an instrumented rill.so). Tools the
-- specs start through a shell (ps, curl, gzip...) must not inherit that: some hang under it.
-- Commands that run lua5.4 keep it: they load the instrumented module too.
if (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
  local popen, execute = io.popen, os.execute
  local function clean(cmd)
    if cmd:find("lua5.4", 1, true) then return cmd end
    return "unset LD_PRELOAD; " .. cmd
  end
  io.popen = function(cmd, ...) return popen(clean(cmd), ...) end
  os.execute = function(cmd, ...)
    if cmd == nil then return execute() end
    return execute(clean(cmd), ...)
  end
end

helper.rill = rill
helper.bin = os.getenv("RILL_BIN") or "build/rill"

-- Runs fn(...) as a task, then the loop until no work is left; returns fn's results or raises
-- its error (with its traceback). Checks that the task finished: a task left suspended when the
-- loop ran dry is a hang in disguise.
function helper.run(fn, ...)
  local task = rill.spawn(fn, ...)
  rill.run()
  assert(task:status() ~= "suspended", "the task was still waiting when the loop ran out of work")
  collectgarbage()
  collectgarbage()
  return task:join()
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.quote = shell_quote

-- The contents of the file at path, which is removed.
function helper.take_file(path)
  local h = assert(io.open(path, "rb"))
  local s = h:read("a")
  h:close()
  os.remove(path)
  return s
end

-- Runs the rill command with the given argument list (and optional stdin text); returns
-- stdout, stderr, exit status.
function helper.cli(args, stdin)
  local dir = os.tmpname()
  local out, err, inp = dir .. ".out", dir .. ".err", dir .. ".in"
  local cmd = { shell_quote(helper.bin) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = shell_quote(a) end
  local f = assert(io.open(inp, "wb"))
  f:write(stdin or "")
  f:close()
  local line = table.concat(cmd, " ") .. " <" .. inp .. " >" .. out .. " 2>" .. err
  local ok, how, code = os.execute(line)
  os.remove(inp)
  os.remove(dir)
  local status = how == "exit" and code or 128 + code
  return helper.take_file(out), helper.take_file(err), status
end

-- Number of open file descriptors of this process, once garbage is collected and the loop has
-- turned (a collected stream closes its handle in the loop). Counted with lstat of
-- /proc/self/fd/N: a popen'd `ls` races with the popen's own pipe.
function helper.fd_count()
  for _ = 1, 2 do
    collectgarbage()
    collectgarbage()
    helper.run(function() rill.sleep(1) end)
  end
  return helper.run(function()
    local n = 0
    for fd = 0, 1023 do
      if rill.fs.lstat("/proc/self/fd/" .. fd) then n = n + 1 end
    end
    return n
  end)
end

function helper.pid()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("a")
  f:close()
  return s:match("^(%d+)")
end

return helper
