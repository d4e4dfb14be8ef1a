-- spec/repl_spec.lua: the REPL: printer, compiler and completion in process; the prompt itself in a real terminal (tmux).
local helper = require "spec.helper"
local rill = require "rill"
local repl = require "rill.repl"

local inspect = repl.inspect

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. shell_quote(d)))
  return d
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

---------------------------------------------------------------------------------------------
-- A terminal: the rill command in a tmux pane, read back with capture-pane. Every wait is for
-- expected screen text, polled every 20 ms, bounded by WAIT seconds.
---------------------------------------------------------------------------------------------

local WAIT = 5
local Term = {}
Term.__index = Term
local seq = 0

local function have_tmux()
  return os.execute("command -v tmux >/dev/null 2>&1")
end

-- Term.start(args [, home [, stderr]]): rill args in an 100x50 pane with HOME = home (a new
-- temp dir by default), its stderr sent to the file stderr if given. After rill exits the pane prints "[exit N]" and "[tty sane]" or "[tty raw]".
function Term.start(args, home, stderr)
  assert(have_tmux(), "tmux not found: install the Debian package 'tmux' (or run .ci/setup)")
  seq = seq + 1
  local self = setmetatable({}, Term)
  self.sock = string.format("rill-repl-spec-%s-%d", helper.pid(), seq)
  self.home = home or tmpdir()
  local cmd = { "env", "-u", "RILL_HISTORY", "HOME=" .. self.home, helper.bin }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = a end
  for i, a in ipairs(cmd) do cmd[i] = shell_quote(a) end
  if stderr then cmd[#cmd + 1] = "2>" .. shell_quote(stderr) end
  -- The shell traps SIGINT (a handler: rill still starts with the default) so that it outlives
  -- a rill that a Ctrl-C ends, and reports how it ended.
  local script = "trap : INT; " .. table.concat(cmd, " ") .. '; echo "[exit $?]"; ' ..
      'case "$(stty -a)" in *-icanon*) echo "[tty raw]";; *) echo "[tty sane]";; esac; read x'
  local out, ok = sh(string.format("TMUX= tmux -L %s -f /dev/null new-session -d -s t -x 100 -y 50 %s",
    self.sock, shell_quote(script)))
  assert(ok, "tmux new-session failed: " .. out)
  self.path = self:tmux("display-message -p '#{socket_path}'"):match("[^\n]+")
  return self
end

-- Term.shell(): an interactive bash with job control (prompt "$ "), for Ctrl-Z and fg.
function Term.shell()
  assert(have_tmux(), "tmux not found: install the Debian package 'tmux' (or run .ci/setup)")
  seq = seq + 1
  local self = setmetatable({}, Term)
  self.sock = string.format("rill-repl-spec-%s-%d", helper.pid(), seq)
  self.home = tmpdir()
  local script = "env -u RILL_HISTORY HOME=" .. shell_quote(self.home) ..
      " PS1='$ ' bash --norc --noprofile -i"
  local out, ok = sh(string.format("TMUX= tmux -L %s -f /dev/null new-session -d -s t -x 100 -y 50 %s",
    self.sock, shell_quote(script)))
  assert(ok, "tmux new-session failed: " .. out)
  self.path = self:tmux("display-message -p '#{socket_path}'"):match("[^\n]+")
  return self
end

function Term:tmux(args)
  return sh(string.format("TMUX= tmux -L %s %s", self.sock, args))
end

function Term:kill()
  self:tmux("kill-server")
  if self.path then os.remove(self.path) end
end

-- The whole pane, scrollback included, wrapped lines joined, trailing blank lines dropped.
function Term:screen()
  local s = self:tmux("capture-pane -p -J -S - -t t")
  return (s:gsub("%s+$", ""))
end

local function last_line(s)
  return s:match("([^\n]*)$")
end

-- Waits until pred(screen) is true (a string: a plain substring); returns the screen.
function Term:wait(pred, what)
  if type(pred) == "string" then
    local sub = pred
    pred = function(s) return s:find(sub, 1, true) ~= nil end
    what = what or sub
  end
  local deadline = os.time() + WAIT + 1
  local s
  repeat
    s = self:screen()
    if pred(s) then return s end
    os.execute("sleep 0.02")
  until os.time() > deadline
  error(string.format("timed out waiting for %s; the screen:\n%s", what or "a condition", s), 2)
end

function Term:send(text)
  self:tmux("send-keys -t t -l " .. shell_quote(text))
end

function Term:key(name)
  self:tmux("send-keys -t t " .. name)
end

local function count_prompts(s)
  local n = 0
  for l in (s .. "\n"):gmatch("(.-)\n") do
    if l == ">" or l:sub(1, 2) == "> " then n = n + 1 end
  end
  return n
end

-- Waits for a fresh primary prompt (more prompt lines than `before`, the last line empty).
function Term:wait_prompt(before)
  return self:wait(function(s)
    return count_prompts(s) > before and last_line(s) == ">"
  end, "a new prompt")
end

-- Types code and Enter, waits until the last line shows `started` (what the code prints as it
-- starts), presses Ctrl-C and waits for the prompt to come back; returns the screen then.
function Term:interrupt(code, started)
  local before = count_prompts(self:screen())
  self:send(code)
  self:key("Enter")
  self:wait(function(s) return last_line(s) == started end, "the code to start")
  self:key("C-c")
  return self:wait_prompt(before)
end

-- Types line and Enter at the prompt; waits for the next prompt; returns what was printed in
-- between (without the echoed line).
function Term:run(line)
  local before = count_prompts(self:wait(function(s) return last_line(s) == ">" end, "the prompt"))
  self:send(line)
  self:key("Enter")
  local s = self:wait_prompt(before)
  local lines = {}
  for l in (s .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local from = #lines - 1
  while from > 0 and not (lines[from] == ">" or lines[from]:sub(1, 2) == "> ") do
    from = from - 1
  end
  return table.concat(lines, "\n", from + 1, #lines - 1)
end

-- Waits until the terminal is in its normal mode (lines, echo): the REPL's prompt is down.
function Term:wait_cooked()
  local tty = self:tmux("display-message -p -t t '#{pane_tty}'"):match("[^\n]+")
  local deadline = os.time() + WAIT + 1
  repeat
    local mode = sh("stty -a -F " .. shell_quote(tty))
    if mode:find("%f[%w-]icanon") then return end
    os.execute("sleep 0.02")
  until os.time() > deadline
  error("timed out waiting for the terminal's normal mode", 2)
end

-- Waits for the command to end; returns its exit status and the screen.
function Term:exit_status()
  local s = self:wait(function(s) return s:find("%[tty %a+%]") end, "the command to exit")
  return tonumber(s:match("%[exit (%d+)%]")), s
end

---------------------------------------------------------------------------------------------

describe("the REPL's printer", function()
  it("prints scalars and quotes strings with escapes", function()
    assert.equals("nil", inspect(nil))
    assert.equals("true", inspect(true))
    assert.equals("42", inspect(42))
    assert.equals("1.5", inspect(1.5))
    assert.equals('"a\\nb\\t\\"q\\" \\\\ \\000\\127"', inspect('a\nb\t"q" \\ \0\127'))
    assert.equals('"héllo"', inspect("héllo"))
  end)

  it("prints nested tables with the array part first and sorted keys", function()
    local t = { 3, 2, 1, zeta = 1, alpha = { b = true, a = "x" }, [10] = "ten", [1.5] = 0,
      ["with space"] = 1, [false] = 0, ["end"] = 2 }
    assert.equals('{ 3, 2, 1, [1.5] = 0, [10] = "ten", alpha = { a = "x", b = true }, ' ..
      '["end"] = 2, ["with space"] = 1, zeta = 1, [false] = 0 }', inspect(t, { width = 200 }))
    assert.equals("{}", inspect({}))
  end)

  it("marks cycles and stops at the depth limit", function()
    local t = { name = "root" }
    t.self = t
    t.child = { parent = t }
    assert.equals('{ child = { parent = <cycle> }, name = "root", self = <cycle> }', inspect(t))
    local deep = { a = { b = { c = { d = { e = {} } } } } }
    assert.equals("{ a = { b = { c = { d = {...} } } } }", inspect(deep))
    assert.equals("{ a = {...} }", inspect(deep, { depth = 1 }))
    -- a table seen twice but not inside itself is printed twice
    local shared = { 1 }
    assert.equals("{ { 1 }, { 1 } }", inspect({ shared, shared }))
  end)

  it("breaks wide tables into indented lines and elides long ones", function()
    local t = {}
    for i = 1, 30 do t["key" .. string.format("%02d", i)] = i end
    local s = inspect(t)
    assert.matches("^{\n  key01 = 1,\n  key02 = 2,\n", s)
    assert.matches("\n  key30 = 30\n}$", s)
    local long = {}
    for i = 1, 150 do long[i] = i end
    assert.matches(", 100, %.%.%. %(50 more%) }$", inspect(long, { width = 10000 }))
  end)

  it("prints buffers as their length with a hex and text preview", function()
    assert.equals("<rill.buffer 6 bytes: 68 65 6c 6c 6f 01 |hello.|>",
      inspect(rill.buffer.from("hello\1")))
    assert.equals("<rill.buffer 1 byte: 41 |A|>", inspect(rill.buffer.from("A")))
    assert.equals("<rill.buffer 0 bytes>", inspect(rill.buffer.alloc(0)))
    local big = inspect(rill.buffer.alloc(1000, 0x61))
    assert.equals("<rill.buffer 1000 bytes: " .. string.rep("61 ", 16) .. "... |" ..
      string.rep("a", 16) .. "...|>", big)
    assert.equals("{ data = <rill.buffer 2 bytes: 00 ff |..|> }",
      inspect({ data = rill.buffer.from("\0\255") }))
  end)

  it("prints streams with tostring and the state their inspect method reports", function()
    local mt = { __name = "rill.stream", __tostring = function() return "rill.stream (readable)" end }
    mt.__index = { inspect = function() return { mode = "bytes", flowing = false, buffered = 12,
      ended = false, destroyed = false } end }
    assert.equals('<rill.stream (readable) { buffered = 12, destroyed = false, ended = false, ' ..
      'flowing = false, mode = "bytes" }>', inspect(setmetatable({}, mt)))
    local plain = setmetatable({}, { __name = "rill.stream",
      __tostring = function() return "rill.stream (writable)" end })
    assert.equals("<rill.stream (writable)>", inspect(plain))
  end)

  it("prints real streams with mode, flowing or paused, bytes buffered, ended, destroyed", function()
    local stream = rill.stream
    local r = stream.readable { read = function() end }
    r:push("hello")
    assert.matches("^<rill%.stream %(readable%): 0x%x+ { buffered = 5, destroyed = false, " ..
      'ended = false, flowing = false, mode = "bytes" }>$', inspect(r))
    local o = stream.from({ 1, 2 })
    assert.matches('mode = "object"', inspect(o))
    local w = stream.writable { write = function(_, _, done) done() end }
    assert.matches("^<rill%.stream %(writable%): 0x%x+ { buffered = 0, destroyed = false, " ..
      'ended = false, finished = false, mode = "bytes" }>$', inspect(w))
    r:on("error", function() end)
    r:destroy("gone")
    assert.matches('destroyed = true, ended = false, errored = "gone"', inspect(r))
    w:destroy()
    helper.rill.run()
  end)

  it("uses __tostring, and names tables with a __name", function()
    local e = setmetatable({}, { __tostring = function() return "custom" end })
    assert.equals("custom", inspect(e))
    assert.equals("point { x = 1 }", inspect(setmetatable({ x = 1 }, { __name = "point" })))
    local bad = setmetatable({}, { __tostring = function() error("oops") end })
    assert.matches("__tostring failed", inspect(bad))
    assert.matches("^function: ", inspect(print))
  end)
end)

describe("the REPL's compiler", function()
  it("tries an expression first, then a statement", function()
    local f = assert(repl.compile("1 + 1"))
    assert.equals(2, f())
    f = assert(repl.compile("local x = 2 return x * 3"))
    assert.equals(6, f())
    f = assert(repl.compile("=3"))
    assert.equals(3, f())
  end)

  it("asks for more input when the chunk ends early, as lua.c does", function()
    for _, src in ipairs { "for i = 1, 2 do", "function f()", "t = {", "x = ", "print(",
      "if x then", "s = [[", "--[[ open comment" } do
      local f, err, more = repl.compile(src)
      assert.is_nil(f, src)
      assert.is_true(more, src)
      assert.matches("<eof>$", err)
    end
    assert(repl.compile("for i = 1, 2 do\nend"))
    assert(repl.compile("t = {\n1}"))
  end)

  it("reports a syntax error that more input cannot fix", function()
    local f, err, more = repl.compile("x = = 1")
    assert.is_nil(f)
    assert.is_false(more)
    assert.matches("^stdin:1: unexpected symbol near '='", err)
    f, err, more = repl.compile("end")
    assert.is_false(more)
    assert.matches("<eof>'? expected near 'end'", err)
  end)
end)

describe("the REPL's completion", function()
  after_each(function() _G.REPL_SPEC_T, _G.REPL_SPEC_B, _G.REPL_SPEC_S = nil, nil, nil end)

  it("completes globals and keywords", function()
    assert.same({ "string" }, repl.complete("stri"))
    local r = repl.complete("whil")
    assert.same({ "while" }, r)
    local all = repl.complete("")
    assert.truthy(#all > 20)
  end)

  it("completes fields after a dot, through nested tables", function()
    assert.same({ "string.format" }, repl.complete("string.fo"))
    _G.REPL_SPEC_T = { alpha = { beta = 1, bravo = 2 }, ["not a name"] = 1 }
    assert.same({ "REPL_SPEC_T.alpha.beta", "REPL_SPEC_T.alpha.bravo" },
      repl.complete("REPL_SPEC_T.alpha.b"))
    assert.same({ "REPL_SPEC_T.alpha" }, repl.complete("REPL_SPEC_T."))
    assert.same({}, repl.complete("REPL_SPEC_T.nothing.x"))
    assert.same({}, repl.complete("no_such_global."))
  end)

  it("completes methods through metatables, C __index functions included", function()
    _G.REPL_SPEC_S = "text"
    assert.same({ "REPL_SPEC_S:upper" }, repl.complete("REPL_SPEC_S:up"))
    _G.REPL_SPEC_B = rill.buffer.from("x")
    assert.same({ "REPL_SPEC_B:equals" }, repl.complete("REPL_SPEC_B:eq"))
    local obj = setmetatable({ own = 1 }, { __index = { meth = function() end, field = 1 } })
    _G.REPL_SPEC_T = obj
    assert.same({ "REPL_SPEC_T.field", "REPL_SPEC_T.meth", "REPL_SPEC_T.own" },
      repl.complete("REPL_SPEC_T."))
    assert.same({ "REPL_SPEC_T:meth" }, repl.complete("REPL_SPEC_T:"))
  end)

  it("offers rill's submodules before they are loaded", function()
    _G.REPL_SPEC_T = rill
    local r = repl.complete("REPL_SPEC_T.")
    local set = {}
    for _, k in ipairs(r) do set[k] = true end
    assert.truthy(set["REPL_SPEC_T.buffer"])
    assert.truthy(set["REPL_SPEC_T.spawn"])
    assert.truthy(set["REPL_SPEC_T.repl"])
  end)
end)

describe("the REPL's C module", function()
  local C = require "rill._repl"

  it("rejects misuse before changing anything", function()
    local f = function() end
    assert.has_error(function() C.open() end, "bad argument #1 to 'open' (table expected, got no value)")
    assert.has_error(function() C.open({}) end, "bad argument #1 to 'open' (on_line must be a function)")
    assert.has_error(function() C.open({ on_line = f }) end,
      "bad argument #1 to 'open' (on_interrupt must be a function)")
    assert.has_error(function() C.open({ on_line = f, on_interrupt = f, complete = 1 }) end,
      "bad argument #1 to 'open' (complete must be a function)")
    assert.has_error(function() C.open({ on_line = f, on_interrupt = f, history = {} }) end)
    assert.has_error(function() C.read("> ") end, "the REPL is not open")
    assert.has_error(function() C.running() end, "the REPL is not open")
    assert.has_error(function() C.write("x", 3) end,
      "bad argument #2 to 'write' (1 (stdout) or 2 (stderr) expected)")
    assert.has_error(function() C.write({}) end)
  end)

  it("reports error values with their traceback", function()
    assert.equals("msg", C.errstring("msg"))
    assert.equals("(error object is a nil value)", C.errstring(nil))
    local e = setmetatable({ traceback = "stack traceback:\n\tx" }, { __tostring = function() return "E" end })
    assert.equals("E\nstack traceback:\n\tx", C.errstring(e))
    assert.is_false(C.is_exit("x"))
    assert.truthy(C.columns() > 0)
  end)
end)

describe("the rill command without a terminal", function()
  local script
  before_each(function()
    script = os.tmpname() .. ".lua"
    write_file(script, 'from_script = "yes"\n')
  end)
  after_each(function() os.remove(script) end)

  it("runs -i's REPL on piped stdin: lines, continuations, errors, then exits at EOF", function()
    local out, err, code = helper.cli({ "-i", script },
      'from_script\nfor i = 1, 2 do\nprint(i)\nend\nerror("boom")\nrill.sleep(5) return "slept"\n')
    assert.equals(0, code)
    assert.matches("^rill %S+ %(Lua 5%.4%); Ctrl%-D exits, Ctrl%-C interrupts\n", out)
    assert.matches('\n> "yes"\n> >> >> 1\n2\n> > "slept"\n> \n$', out)
    assert.matches("stdin:1: boom\nstack traceback:\n\t%[C%]: in function 'error'", err)
  end)

  it("shows rill.stdout writes before the result and the next prompt", function()
    local out, _, code = helper.cli({ "-i", script }, 'rill.stdout:write("one\\n") return "two"\n')
    assert.equals(0, code)
    assert.matches('\n> one\n"two"\n> \n$', out)
  end)

  -- rill -i script with input piped in (helper.cli gives a regular file); returns stdout, status.
  local function piped(input)
    local out = os.tmpname()
    local ok, how, code = os.execute(string.format("printf '%%s' %s | %s -i %s >%s 2>&1",
      shell_quote(input), shell_quote(helper.bin), shell_quote(script), shell_quote(out)))
    local s = slurp(out)
    os.remove(out)
    return s, how == "exit" and code or 128 + code
  end

  it("reads no further than each line of a pipe: what follows is there for the code", function()
    -- a child reads the next line, then the REPL goes on with the one after
    local out, code = piped("return os.execute(\"sh -c 'read x; echo got $x'\")\nfor the child\n1+1\n")
    assert.equals(0, code, out)
    assert.matches('\n> got for the child\ntrue%s+"exit"%s+0\n> 2\n> \n$', out)
    -- rill.stdin has the rest of the input, until it ends; then the REPL sees the end
    out, code = piped("return rill.stdin:read():tostring()\nabc\n1+1\n")
    assert.equals(0, code, out)
    assert.matches('\n> "abc\\n1%+1\\n"\n> \n$', out)
  end)

  it("ends an unfinished chunk at EOF with its <eof> error", function()
    local _, err, code = helper.cli({ "-i", script }, "for i = 1, 2 do\n")
    assert.equals(0, code)
    assert.matches("stdin:1: 'end' expected near <eof>", err)
  end)

  it("runs a piped stdin as a script with no prompts, exiting with its status", function()
    local out, _, code = helper.cli({}, "print('piped')\nrill.exit(3)\n")
    assert.equals(3, code)
    assert.equals("piped\n", out)
    local _, err
    out, err, code = helper.cli({}, "error('fails')\n")
    assert.equals(1, code)
    assert.equals("", out)
    assert.matches("fails", err)
  end)
end)

describe("the REPL in a terminal", function()
  local t
  after_each(function()
    if t then t:kill() end
    t = nil
  end)

  it("evaluates expressions and statements and prints values readably", function()
    t = Term.start()
    local s = t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    assert.matches("^rill %S+ %(Lua 5%.4%); Ctrl%-D exits, Ctrl%-C interrupts\n>$", s)
    assert.equals("2", t:run("1 + 1"))
    assert.equals("", t:run("x = 10"))
    assert.matches("^20%s+30$", t:run("x * 2, x * 3")) -- a tab on the screen
    assert.equals('{ 1, "two", { three = 3 }, f = false }', t:run('{1, "two", {three = 3}, f = false}'))
    assert.equals("<rill.buffer 2 bytes: 68 69 |hi|>", t:run('rill.buffer.from("hi")'))
    assert.equals("nil", t:run("nothing_here"))
    assert.equals('"slept"', t:run('rill.sleep(20) return "slept"'))
    t:key("C-d")
    assert.equals(0, (t:exit_status()))
  end)

  it("edits the line: cursor keys, Home and End, deletion", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send("x = 12")
    t:key("Left")
    t:send("9")
    t:wait(function(s) return last_line(s) == "> x = 192" end, "the insertion")
    t:key("C-a")
    t:send("y = 1 ")
    t:wait(function(s) return last_line(s) == "> y = 1 x = 192" end, "the insertion at the start")
    t:key("C-e")
    t:send("3")
    t:key("BSpace")
    t:key("BSpace")
    t:wait(function(s) return last_line(s) == "> y = 1 x = 19" end, "the deletion")
    t:key("Left")
    t:key("Left")
    t:key("C-k") -- kills to the end of the line
    t:wait(function(s) return last_line(s) == "> y = 1 x =" end, "the kill")
    t:send(" 7")
    local before = count_prompts(t:screen())
    t:key("Enter")
    t:wait_prompt(before)
    assert.equals("1\t7", (t:run("y, x"):gsub(" +", "\t")))
  end)

  it("prints cycles and stops at the depth limit at the prompt", function()
    t = Term.start()
    assert.equals("{ child = { parent = <cycle> }, self = <cycle> }",
      t:run("local t = {} t.self = t t.child = { parent = t } return t"))
    assert.equals("{ a = { b = { c = { d = {...} } } } }", t:run("{ a = { b = { c = { d = { e = {} } } } } }"))
  end)

  it("continues an unfinished chunk on the next line (case 96)", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send("for i = 1, 3 do")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == ">>" end, "the continuation prompt")
    t:send("print(i * 10)")
    t:key("Enter")
    t:wait(function(s) return select(2, s:gsub("\n>>", "")) == 2 and last_line(s) == ">>" end,
      "a second continuation prompt")
    local before = count_prompts(t:screen())
    t:send("end")
    t:key("Enter")
    local s = t:wait_prompt(before)
    assert.matches("> for i = 1, 3 do\n>> print%(i %* 10%)\n>> end\n10\n20\n30\n>$", s)
  end)

  it("at EOF inside a continuation prints the <eof> error and exits cleanly (case 96)", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send("for i=1,3 do")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == ">>" end, "the continuation prompt")
    t:key("C-d")
    local code, s = t:exit_status()
    assert.equals(0, code)
    assert.matches("stdin:1: 'end' expected near <eof>", s)
    assert.matches("%[tty sane%]", s)
  end)

  it("prints errors with their traceback and keeps going with its globals (case 97)", function()
    t = Term.start()
    assert.equals("", t:run("kept = 'still here'"))
    local out = t:run('error("boom")')
    assert.matches("^stdin:1: boom\nstack traceback:\n%s+%[C%]: in function 'error'\n%s+stdin:1: in main chunk$", out)
    out = t:run('error(setmetatable({}, {__tostring = function() return "custom message" end}))')
    assert.matches("^custom message\nstack traceback:\n", out)
    out = t:run('error({code = 7})')
    assert.matches("^%(error object is a table value%) { code = 7 }\nstack traceback:\n", out)
    out = t:run("local t = nil; return t.x")
    assert.matches("attempt to index a nil value", out)
    assert.equals('"still here"', t:run("kept"))
    -- an error in a callback while at the prompt is reported, and the prompt comes back
    out = t:run('rill.timeout(1, function() error("late") end) rill.sleep(30)')
    assert.matches("stdin:1: late\nstack traceback:", out)
    assert.equals('"still here"', t:run("kept"))
  end)

  it("Ctrl-C interrupts running code and keeps state; on a line it clears it (case 98)", function()
    t = Term.start()
    assert.equals("", t:run("a = 1001"))
    local s = t:interrupt('io.write("spinning\\n") while true do end', "spinning")
    assert.matches("interrupted!\nstack traceback:", s)
    assert.equals("42042", t:run("a*2*3*7"))

    -- a task waiting (not running Lua) is abandoned, and the prompt comes back
    s = t:interrupt('io.write("waiting\\n") rill.sleep(1e6) a = 0', "waiting")
    assert.matches("interrupted!", s)
    assert.equals("1001", t:run("a"))

    -- Ctrl-C on a typed line clears it
    t:send("abc")
    t:wait(function(s) return last_line(s) == "> abc" end, "the typed text")
    before = count_prompts(t:screen())
    t:key("C-c")
    s = t:wait_prompt(before)
    assert.matches("\n> abc%^C\n>$", s)
    assert.equals("7", t:run("7"))
    -- on an empty line, right after a longer one: the ^C goes after the prompt
    before = count_prompts(t:screen())
    t:key("C-c")
    s = t:wait_prompt(before)
    assert.matches("\n7\n> %^C\n>$", s)

    -- and inside a continuation it drops the unfinished chunk
    t:send("for i = 1, 2 do")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == ">>" end, "the continuation prompt")
    before = count_prompts(t:screen())
    t:key("C-c")
    t:wait_prompt(before)
    assert.equals("8", t:run("8"))

    t:key("C-d")
    local code, screen = t:exit_status()
    assert.equals(0, code)
    assert.matches("%[tty sane%]", screen)
  end)

  it("one Ctrl-C interrupts a timer callback spinning at the prompt", function()
    t = Term.start()
    local before = count_prompts(t:wait(function(s) return last_line(s) == ">" end, "the prompt"))
    -- the callback may start before the prompt is drawn: wait for it, not for the prompt
    t:send("kept = 5 rill.timeout(20, function() io.write('spin\\n') while true do end end)")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == "spin" end, "the callback to spin")
    t:key("C-c")
    local s = t:wait(function(s)
      return s:find("interrupted!", 1, true) ~= nil and count_prompts(s) > before
    end, "the interruption and the prompt")
    assert.matches("\ninterrupted!\nstack traceback:\n%s+stdin:1: in function <stdin:1>", s)
    assert.equals("6", t:run("kept + 1"))
    -- an impatient second Ctrl-C interrupts at once; it does not end the process
    before = count_prompts(t:screen())
    t:send("rill.timeout(20, function() io.write('spin again\\n') while true do end end)")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == "spin again" end, "the callback to spin")
    t:key("C-c")
    t:key("C-c")
    s = t:wait(function(s)
      return select(2, s:gsub("\ninterrupted!\n", "")) == 2 and last_line(s) == ">"
    end, "the second interruption and the prompt")
    assert.equals("7", t:run("kept + 2"))
    t:key("C-d")
    assert.equals(0, (t:exit_status()))
  end)

  it("Ctrl-C at the prompt clears the line without interrupting a busy callback", function()
    t = Term.start()
    -- the loop spends most of its time in this callback, so the Ctrl-C comes while it runs
    assert.equals("", t:run("n = 0 tk = rill.interval(1, function() n = n + 1 " ..
      "for i = 1, 1e6 do end end)"))
    t:send("abc")
    t:wait(function(s) return last_line(s) == "> abc" end, "the typed text")
    local before = count_prompts(t:screen())
    t:key("C-c")
    local s = t:wait_prompt(before)
    assert.matches("\n> abc%^C\n>$", s)
    assert.not_matches("interrupted", s)
    assert.equals("", t:run("seen = n"))
    assert.equals("true", t:run("rill.sleep(100) return n > seen"))
    assert.equals("", t:run("tk:stop()"))
  end)

  it("a Ctrl-C the Lua code never sees (a long C call) is followed by one that ends the process", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send("io.write('reading\\n') return io.read()") -- a blocking read: no Lua runs until it returns
    t:key("Enter")
    t:wait(function(s) return last_line(s) == "reading" end, "the read to start")
    t:key("C-c")
    t:key("C-c")
    local code, s = t:exit_status()
    assert.equals(130, code)
    assert.matches("%[tty sane%]", s)
  end)

  it("one Ctrl-C interrupts a stream's Lua hook spinning in a pooled task; other streams go on", function()
    t = Term.start()
    assert.equals("", t:run("spin = rill.stream.transform{ transform = function(self, c, push) " ..
      "io.write('spin\\n') while true do end end }"))
    assert.equals("", t:run("local _ = spin:on('error', function(_, e) print('spin failed: ' .. tostring(e)) end)"))
    assert.equals("", t:run("echo = rill.stream.transform{ transform = function(self, c, push) " ..
      "push(c) end }"))
    t:send("spin:write('x')")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == "spin" end, "the hook to spin")
    local before = count_prompts(t:screen())
    t:key("C-c")
    local s = t:wait(function(s)
      return s:find("spin failed", 1, true) ~= nil and count_prompts(s) > before
    end, "the stream's failure and the prompt")
    assert.matches("spin failed: [^\n]*interrupted!", s)
    assert.equals("true", t:run("spin.destroyed"))
    assert.equals('"y"', t:run("echo:write('y') return echo:read():tostring()"))
    -- the engine still runs Lua hooks in pooled tasks
    assert.equals('"Z"', t:run("local u = rill.stream.transform{ transform = function(self, c, push) " ..
      "push(c:tostring():upper()) end } u:write('z') return u:read():tostring()"))
  end)

  it("one Ctrl-C interrupts an evaluation waiting on a pipeline whose Lua hook spins", function()
    t = Term.start()
    local before = count_prompts(t:wait(function(s) return last_line(s) == ">" end, "the prompt"))
    t:send("local spin = rill.stream.transform{ transform = function(self, c, push) " ..
      "io.write('spin\\n') while true do end end } " ..
      "return rill.stream.pipeline(rill.stream.from{'a'}, spin, " ..
      "rill.stream.writable{ write = function(_, _, done) done() end })")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == "spin" end, "the hook to spin")
    t:key("C-c")
    local s = t:wait_prompt(before)
    -- the pipeline fails with the interruption, and the evaluation shows it
    assert.matches('\n%^C\nnil%s+"interrupted!\\nstack traceback:', s)
    assert.equals("3", t:run("1 + 2"))

    -- the code interrupted is not what the evaluation waits on: it is abandoned as well
    s = t:interrupt("rill.timeout(20, function() io.write('spin\\n') while true do end end) rill.sleep(1e6)", "spin")
    assert.matches("\ninterrupted!\nstack traceback:\n", s)
    assert.matches("\ninterrupted! %(the task goes on waiting in the background", s)
    assert.equals("4", t:run("2 + 2"))
  end)

  it("keeps timers firing while a line is typed, redrawing the line (case 99)", function()
    t = Term.start()
    local out = t:run('n = 0 tk = rill.interval(30, function() n = n + 1 print("tick " .. n) end)')
    assert.equals("", (out:gsub("tick %d+\n?", ""))) -- on a slow machine a tick may come first
    t:send('word = "hal')
    local s = t:wait(function(s) return last_line(s) == '> word = "hal' end, "the typed text")
    local seen = tonumber(s:match(".*tick (%d+)")) or 0
    -- three more ticks arrive while the line is half typed, and the line is still intact below
    s = t:wait(function(s)
      local n = tonumber(s:match(".*tick (%d+)")) or 0
      return n >= seen + 3 and last_line(s) == '> word = "hal'
    end, "ticks printed above the line being typed")
    assert.not_matches('hal"?tick', s)
    t:send('f"')
    t:key("Enter")
    t:wait(function(s) return s:find('\n> word = "half"\n') ~= nil end, "the finished line")
    t:run("tk:stop()")
    assert.equals('"half"', t:run("word"))
    assert.equals("true", t:run("n >= 3"))
  end)

  it("keeps the line intact around rill.stdout and rill.stderr writes from the loop", function()
    t = Term.start()
    local out = t:run('n = 0 tk = rill.interval(30, function() n = n + 1 ' ..
      'rill.stdout:write("out " .. n .. "\\n") rill.stderr:write("err " .. n .. "\\n") end)')
    assert.equals("", (out:gsub("%a+ %d+\n?", "")))
    t:send('word = "hal')
    local s = t:wait(function(s) return last_line(s) == '> word = "hal' end, "the typed text")
    local seen = tonumber(s:match(".*err (%d+)")) or 0
    s = t:wait(function(s)
      local n = tonumber(s:match(".*err (%d+)")) or 0
      return n >= seen + 3 and last_line(s) == '> word = "hal'
    end, "stream writes above the line being typed")
    assert.not_matches('hal"?out', s)
    assert.not_matches('hal"?err', s)
    -- each write came out whole, on its own line, the prompt never left among them
    local n = tonumber(s:match(".*err (%d+)"))
    for i = seen + 1, n do
      assert.matches("\nout " .. i .. "\nerr " .. i .. "\n", s)
    end
    -- a write that does not end its line: the prompt comes back on a fresh line below it
    t:send('f"')
    t:key("Enter")
    t:wait(function(s) return s:find('\n> word = "half"\n') ~= nil end, "the finished line")
    t:run("tk:stop()")
    out = t:run('rill.timeout(20, function() rill.stdout:write("no newline") end)')
    t:send("word")
    s = t:wait(function(s) return s:find("\nno newline\n> word$") ~= nil end,
      "the prompt below the unfinished line")
    t:key("Enter")
    t:wait('\n"half"\n')
    -- what the code wrote to the streams comes before what print and the REPL write after it
    assert.equals('first\nsecond\n"third"',
      t:run('rill.stdout:write("first\\n") print("second") return "third"'))
  end)

  local LENT = "[rill.stdin is reading the terminal: the prompt comes back when it ends " ..
      "(Ctrl-D ends it, Ctrl-C interrupts it)]"

  it("gives the terminal to rill.stdin while it reads, and the prompt back when it ends", function()
    t = Term.start()
    local before = count_prompts(t:wait(function(s) return last_line(s) == ">" end, "the prompt"))
    t:send("return rill.stdin:read()")
    t:key("Enter")
    t:wait_cooked()
    t:send("hello")
    t:key("Enter")
    -- the read got the line; the stream reads on, so the prompt steps aside
    local s = t:wait(LENT)
    assert.matches("\nhello\n<rill%.buffer 6 bytes: 68 65 6c 6c 6f 0a |hello%.|>\n", s)
    assert.equals(before, count_prompts(s))
    t:send("1+1")
    t:key("Enter")
    t:wait("\n1+1")
    t:key("C-d") -- ends rill.stdin, not the REPL
    t:wait_prompt(before)
    -- what was typed meanwhile went to rill.stdin, not to the REPL
    assert.equals('"1+1\\n"', t:run("return rill.stdin:read():tostring()"))
    assert.equals("nil", t:run("return rill.stdin:read()"))
    assert.equals("4", t:run("2+2"))
    -- fd 0 is still the terminal, as it was: for a child process, and for io.read
    local before2 = count_prompts(t:screen())
    t:send("return os.execute('head -n 1')")
    t:key("Enter")
    t:wait_cooked()
    t:send("to the child")
    t:key("Enter")
    local s2 = t:wait_prompt(before2)
    assert.matches('\nto the child\nto the child\ntrue%s+"exit"%s+0\n>$', s2)
    before2 = count_prompts(s2)
    t:send("return io.read()")
    t:key("Enter")
    t:wait_cooked()
    t:send("to io.read")
    t:key("Enter")
    s2 = t:wait_prompt(before2)
    assert.matches('\nto io.read\n"to io.read"\n>$', s2)
    t:key("C-d")
    assert.equals(0, (t:exit_status()))
    -- the history has the REPL's lines, not what was typed to the program
    local hist = slurp(t.home .. "/.rill_history")
    assert.matches("rill%.stdin:read%(%)", hist) -- libedit writes spaces as \040
    assert.not_matches("hello", hist)
    assert.not_matches("child\n", hist)
    assert.not_matches("1%+1", hist)
  end)

  it("steps aside for a reader of rill.stdin started from the loop", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    local before = count_prompts(t:screen())
    t:send("rill.timeout(20, function() rill.spawn(function() " ..
      "for l in rill.stdin:lines() do print('bg ' .. l) end print('bg done') end) end)")
    t:key("Enter")
    t:wait(LENT)
    t:send("x = 1")
    t:key("Enter")
    t:wait("\nbg x = 1")
    t:key("C-d")
    local s = t:wait_prompt(before)
    assert.matches("\nbg done\n>$", s)
    assert.equals("nil", t:run("x")) -- the line was rill.stdin's
  end)

  it("rill -i: a script reading rill.stdin has the terminal first, then the prompt", function()
    local script = os.tmpname() .. ".lua"
    write_file(script, "rill.spawn(function() for l in rill.stdin:lines() do " ..
      "print('script got ' .. l) end print('script done') end)\n")
    t = Term.start({ "-i", script })
    t:wait(LENT)
    t:send("one")
    t:key("Enter")
    t:wait("\nscript got one")
    t:key("C-d")
    local s = t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    os.remove(script)
    assert.matches("\none\nscript got one\nscript done\n>$", s)
    assert.equals("2", t:run("1+1"))
  end)

  it("Ctrl-C takes the terminal back from rill.stdin, which fails with interrupted", function()
    t = Term.start()
    -- the evaluation reads rill.stdin: it fails, and shows it
    local before = count_prompts(t:wait(function(s) return last_line(s) == ">" end, "the prompt"))
    t:send("for l in rill.stdin:lines() do print('got ' .. l) end")
    t:key("Enter")
    t:wait_cooked()
    t:send("a")
    t:key("Enter")
    t:wait("\ngot a")
    t:key("C-c")
    local s = t:wait_prompt(before)
    assert.matches("\ngot a\n%^C\nECANCELED: interrupted, read\nstack traceback:\n", s)
    assert.equals("true", t:run("rill.stdin.destroyed"))
    assert.equals("3", t:run("1+2"))
  end)

  it("Ctrl-C takes the terminal back from a reader in the background", function()
    t = Term.start()
    local before = count_prompts(t:wait(function(s) return last_line(s) == ">" end, "the prompt"))
    t:send("rill.spawn(function() local ok, err = rill.stdin:read() print('read: ' .. tostring(err)) end)")
    t:key("Enter")
    t:wait(LENT)
    t:key("C-c")
    local s = t:wait_prompt(before)
    assert.matches("\n%^C\nread: ECANCELED: interrupted, read\n>$", s)
    assert.equals("3", t:run("1+2"))
  end)

  it("goes on with an unfinished line of output where it left off", function()
    t = Term.start()
    local before = count_prompts(t:wait(function(s) return last_line(s) == ">" end, "the prompt"))
    t:send("io.write('par') rill.timeout(30, function() rill.stdout:write('tial') end) " ..
      "rill.timeout(60, function() io.write(' line\\n') end)")
    t:key("Enter")
    local s = t:wait(function(s) return s:find("\npartial line\n>$") ~= nil end, "the whole line")
    assert.equals(before + 1, count_prompts(s))
  end)

  it("keeps a progress bar on its own line above the prompt", function()
    -- The bytes come through a FIFO the spec feeds: the bar moves when the spec says, not when
    -- a timer happens to fire on a loaded machine.
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. helper.quote(fifo)))
    t = Term.start()
    assert.equals("", t:run("rill.stream.pipeline(rill.fs.reader('" .. fifo .. "'), " ..
      "rill.stream.progress{ total = 3000, label = 'copy', interval_ms = 20 }, " ..
      "rill.stream.writable{ write = function(_, _, d) d() end }, function() print('done') end)"))
    t:send('word = "ab')
    t:wait(function(s) return last_line(s) == '> word = "ab' end, "the line being typed")
    local f = assert(io.open(fifo, "wb")) -- meets the reader the pipeline opened
    f:write(string.rep("x", 300))
    f:flush()
    t:wait(function(s)
      local pct = tonumber(s:match("\ncopy %[[#.]+%] +(%d+)%%[^\n]*\n> word = \"ab$"))
      return pct == 10
    end, "the bar drawing above the line being typed")
    f:write(string.rep("x", 2700))
    f:close()
    local s = t:wait(function(s)
      return s:find("\ncopy %[#+%] 100%%[^\n]*\ndone\n") ~= nil and last_line(s) == '> word = "ab'
    end, "the finished bar above the line being typed")
    os.remove(fifo)
    local bars = select(2, s:gsub("\ncopy ", ""))
    assert.equals(1, bars)
  end)

  it("does not count what goes to a stderr that is not the terminal", function()
    local err = os.tmpname()
    t = Term.start(nil, nil, err)
    -- a bar forced onto stderr, a file here, while lines go to the terminal
    local out = t:run("n = 0 src = rill.stream.readable{ read = function() end } " ..
      "tk = rill.interval(30, function() n = n + 1 if n > 10 then tk:stop() src:push(nil) " ..
      "else print('tick ' .. n) src:push('x') end end) " ..
      "rill.stream.pipeline(src, rill.stream.progress{ total = 10, label = 'bar', force = true, " ..
      "interval_ms = 10 }, rill.stream.writable{ write = function(_, _, d) d() end }, " ..
      "function() rill.timeout(50, function() print('done') end) end)")
    assert.equals("", (out:gsub("tick %d+\n?", "")))
    local s = t:wait(function(s) return s:find("\ndone\n>$") ~= nil end, "done on its own line")
    assert.matches("\ntick 1\ntick 2\ntick 3\ntick 4\ntick 5\ntick 6\ntick 7\ntick 8\n" ..
      "tick 9\ntick 10\ndone\n>$", s)
    assert.matches("bar %[", slurp(err))
    os.remove(err)
  end)

  it("erases only the prompt's rows for output, after a line longer than the terminal", function()
    t = Term.start()
    local long = string.rep("a", 150) -- the terminal is 100 columns wide
    local out = t:run('rill.timeout(100, function() print("late") end) return "' .. long .. '"')
    assert.equals('"' .. long .. '"', (out:gsub("\nlate$", "")))
    local s = t:wait(function(s) return s:find("\nlate\n>$") ~= nil end, "the late output")
    assert.matches('\n"' .. long .. '"\nlate\n>$', s)
  end)

  it("keeps sockets and pipelines running at the prompt, their output above the line", function()
    t = Term.start()
    assert.equals("", t:run("srv = rill.net.listen{ host = '127.0.0.1', port = 0, " ..
      "on_connection = function(sock) rill.spawn(function() local c = sock:read() " ..
      "sock:write('echo ' .. c:tostring()) sock:close() end) end }"))
    -- each round: a TCP round trip printed, a child's output and a file piped natively to
    -- rill.stdout (a file would take the kernel's fast path to any other descriptor)
    local file = os.tmpname()
    write_file(file, "from the file\n")
    local out = t:run("n = 0 tk = rill.interval(100, function() n = n + 1 local k = n " ..
      "rill.fs.reader('" .. file .. "'):pipe(rill.stdout, { close = false }) " ..
      "rill.spawn(function() local c = rill.net.connect('127.0.0.1', srv.port) " ..
      "c:write('ping ' .. k) print(c:read():tostring()) c:close() end) " ..
      "local p = rill.process.spawn('sh', {'-c', 'echo child ' .. k}) " ..
      "p.stdout:pipe(rill.stdout, { close = false }) end)")
    assert.equals("", (out:gsub("[%a ]+%d*\n?", "")))
    t:send('word = "ty')
    local s = t:wait(function(s) return last_line(s) == '> word = "ty' end, "the typed text")
    local seen = tonumber(s:match(".*child (%d+)")) or 0
    local files = select(2, s:gsub("from the file", ""))
    s = t:wait(function(s)
      local e, c = tonumber(s:match(".*echo ping (%d+)")) or 0, tonumber(s:match(".*child (%d+)")) or 0
      return e >= seen + 2 and c >= seen + 2 and select(2, s:gsub("from the file", "")) >= files + 2
        and last_line(s) == '> word = "ty'
    end, "round trips, child output and the file above the line being typed")
    os.remove(file)
    assert.not_matches('ty"?echo', s)
    assert.not_matches('ty"?child', s)
    assert.not_matches('ty"?from', s)
    t:send('ped"')
    t:key("Enter")
    t:wait(function(s) return s:find('\n> word = "typed"\n') ~= nil end, "the finished line")
    t:run("tk:stop() srv:close()")
    assert.equals('"typed"', t:run("word"))
  end)

  it("completes globals, fields and methods with Tab", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send("stri")
    t:key("Tab")
    t:wait(function(s) return last_line(s) == "> string" end, "the completed global")
    t:send(".fo")
    t:key("Tab")
    t:wait(function(s) return last_line(s) == "> string.format" end, "the completed field")
    t:send('("%d", 7)')
    t:key("Enter")
    t:wait('\n"7"\n')
    assert.equals("", t:run('buf = rill.buffer.from("hey")'))
    t:send("buf:equ")
    t:key("Tab")
    t:wait(function(s) return last_line(s) == "> buf:equals" end, "the completed method")
    t:send("(buf)")
    t:key("Enter")
    t:wait("\ntrue\n")
    assert.equals("", t:run("obj = setmetatable({}, { __index = { greet = function() return 'hi' end } })"))
    t:send("obj:gr")
    t:key("Tab")
    t:wait(function(s) return last_line(s) == "> obj:greet" end, "the method through __index")
    t:send("()")
    t:key("Enter")
    t:wait('\n"hi"\n')
    t:send("table.")
    t:key("Tab")
    t:key("Tab")
    local s = t:wait("table.unpack", "the list of candidates")
    assert.matches("table%.concat", s)
  end)

  it("keeps history in ~/.rill_history across sessions", function()
    t = Term.start()
    assert.equals("", t:run("hist_marker = 42"))
    t:key("C-d")
    assert.equals(0, (t:exit_status()))
    local home = t.home
    t:kill()
    local hist = slurp(home .. "/.rill_history")
    assert.truthy(hist, "no history file")
    assert.matches("hist_marker", hist)
    assert.equals("600\n", (sh("stat -c %a " .. shell_quote(home .. "/.rill_history")))) -- private
    t = Term.start(nil, home)
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:key("Up")
    t:wait(function(s) return last_line(s) == "> hist_marker = 42" end, "the recalled line")
    t:key("Enter")
    assert.equals("42", t:run("hist_marker"))
  end)

  it("rill -i runs the script, then the prompt, with the script's work going on", function()
    local script = os.tmpname() .. ".lua"
    write_file(script, 'from_script = "yes"\nticks = 0\n' ..
      'rill.interval(10, function() ticks = ticks + 1 end)\n')
    t = Term.start({ "-i", script })
    assert.equals('"yes"', t:run("from_script"))
    t:run("rill.sleep(50)")
    assert.equals("true", t:run("ticks > 0"))
    os.remove(script)
    t:send("rill.exit(5)")
    t:key("Enter")
    assert.equals(5, (t:exit_status()))
  end)

  it("after Ctrl-Z and fg, the terminal is set up again and the typed line kept", function()
    t = Term.shell()
    t:wait(function(s) return last_line(s) == "$" end, "the shell's prompt")
    t:send(shell_quote(helper.bin))
    t:key("Enter")
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send('word = "sus')
    t:wait(function(s) return last_line(s) == '> word = "sus' end, "the typed text")
    t:key("C-z")
    t:wait(function(s) return s:find("Stopped") and last_line(s) == "$" end, "the stop")
    t:send("fg")
    t:key("Enter")
    t:wait(function(s) return last_line(s) == '> word = "sus' end, "the line drawn again")
    t:send('pended"')
    t:key("Enter")
    assert.equals('"suspended"', t:run("word"))
    t:key("C-d")
    t:wait(function(s) return last_line(s) == "$" end, "the shell's prompt")
    t:send("stty -a | grep -o -- '-*icanon'")
    t:key("Enter")
    local s = t:wait(function(s) return s:find("\n%-*icanon\n") end, "stty's answer")
    assert.matches("\nicanon\n", s)
  end)

  it("shows a stream's state at the prompt", function()
    t = Term.start()
    assert.equals("", t:run('r = rill.stream.readable{ read = function() end } r:push("abc")'))
    assert.matches('^<rill%.stream %(readable%): 0x%x+ { buffered = 3, destroyed = false, ' ..
      'ended = false, flowing = false, mode = "bytes" }>$', t:run("r"))
  end)

  it("rill.exit at the prompt exits with its status and gives the terminal back", function()
    t = Term.start()
    t:wait(function(s) return last_line(s) == ">" end, "the prompt")
    t:send("rill.exit(7)")
    t:key("Enter")
    local code, s = t:exit_status()
    assert.equals(7, code)
    assert.matches("%[tty sane%]", s)
  end)
end)
