-- spec/scripts_spec.lua: the scripts in scripts/, each checked against its coreutils equivalent.
local helper = require "spec.helper"

local q = helper.quote
local bin = helper.bin

-- Runs a bash command line; returns stdout+stderr and the exit status.
local function sh(cmd)
  local p = io.popen("bash -c " .. q(cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local function script(name, args)
  return q(bin) .. " scripts/" .. name .. ".lua " .. (args or "")
end

-- Both command lines give the same output and status.
local function same(ours, theirs)
  local a, sa = sh(ours)
  local b, sb = sh(theirs)
  assert.are.equal(b, a)
  assert.are.equal(sb, sa)
end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local function path(n) return dir .. "/" .. n end

-- Inputs: text with CRLF, blank lines, no final newline, tabs, a big file, an empty file.
local f = io.open(path("a.txt"), "wb")
f:write("alpha beta\r\n\n  gamma\tdelta  \nERROR one\nlast line without newline")
f:close()
f = io.open(path("big.txt"), "wb")
for i = 1, 60000 do
  f:write(("%d %s line %d\n"):format(i, i % 7 == 0 and "ERROR" or "INFO", i * 31))
end
f:close()
io.open(path("empty.txt"), "wb"):close()

describe("scripts", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("wc.lua counts like wc", function()
    local env = "LC_ALL=C "
    same(script("wc", path("a.txt")), env .. "wc " .. path("a.txt"))
    same(script("wc", path("big.txt")), env .. "wc " .. path("big.txt"))
    same(script("wc", path("empty.txt")), env .. "wc " .. path("empty.txt"))
    same(script("wc", "-l " .. path("big.txt")), env .. "wc -l " .. path("big.txt"))
    same(script("wc", "-w -c " .. path("a.txt") .. " " .. path("big.txt")),
      env .. "wc -w -c " .. path("a.txt") .. " " .. path("big.txt"))
    same(script("wc", path("a.txt") .. " " .. path("missing")),
      env .. "wc " .. path("a.txt") .. " " .. path("missing"))
    same(script("wc", "< " .. path("big.txt")), env .. "wc < " .. path("big.txt"))
    same("cat " .. path("big.txt") .. " | " .. script("wc"), "cat " .. path("big.txt") .. " | wc")
  end)

  it("wc.lua runs the README's first command", function()
    same(script("wc", "README.md"), "LC_ALL=C wc README.md")
  end)

  it("cat.lua concatenates like cat", function()
    same(script("cat", path("big.txt")) .. " | md5sum", "cat " .. path("big.txt") .. " | md5sum")
    same(script("cat", path("a.txt") .. " " .. path("empty.txt") .. " " .. path("big.txt"))
      .. " | md5sum", "cat " .. path("a.txt") .. " " .. path("empty.txt") .. " "
      .. path("big.txt") .. " | md5sum")
    same(script("cat", path("a.txt") .. " " .. path("missing")),
      "cat " .. path("a.txt") .. " " .. path("missing"))
    same("cat " .. path("big.txt") .. " | " .. script("cat") .. " | md5sum",
      "cat " .. path("big.txt") .. " | md5sum")
    same(script("cat", "- < " .. path("a.txt")), "cat - < " .. path("a.txt"))
  end)

  it("grep.lua selects lines like grep -F", function()
    same(script("grep", "ERROR " .. path("big.txt")), "grep -F ERROR " .. path("big.txt"))
    same(script("grep", "-v ERROR " .. path("a.txt")), "grep -F -v ERROR " .. path("a.txt"))
    same(script("grep", "-c ERROR " .. path("big.txt")), "grep -F -c ERROR " .. path("big.txt"))
    same(script("grep", "-n -i error " .. path("a.txt") .. " " .. path("big.txt")),
      "grep -F -n -i error " .. path("a.txt") .. " " .. path("big.txt"))
    same(script("grep", "nothing-matches " .. path("a.txt")),
      "grep -F nothing-matches " .. path("a.txt"))
    same(script("grep", "x " .. path("missing")), "grep -F x " .. path("missing"))
    same("cat " .. path("big.txt") .. " | " .. script("grep", "'9 INFO'"),
      "cat " .. path("big.txt") .. " | grep -F '9 INFO'")
  end)

  it("tee.lua copies stdin to stdout and every file like tee", function()
    local out = sh("cat " .. path("big.txt") .. " | " .. script("tee", path("t1") .. " " .. path("t2"))
      .. " | md5sum")
    local want = sh("md5sum < " .. path("big.txt"))
    assert.are.equal(want, out)
    assert.are.equal(want, (sh("md5sum < " .. path("t1"))))
    assert.are.equal(want, (sh("md5sum < " .. path("t2"))))
    sh("echo more | " .. script("tee", "-a " .. path("t1")))
    sh("echo more | tee -a " .. path("t2"))
    assert.are.equal(sh("md5sum < " .. path("t2")), sh("md5sum < " .. path("t1")))
    local o, code = sh("{ echo x | " .. script("tee", path("no/dir/x")) .. " >/dev/null; }")
    assert.are.equal(1, code)
    assert.matches("tee: .*no/dir/x: No such file or directory", o)
  end)

  it("proxy.lua relays TCP both ways, byte for byte, like a direct connection", function()
    -- a target that answers with the md5 of what it got, then the bytes reversed in size
    local target = [[
      local s = assert(rill.net.listen{port = 0, on_connection = function(c)
        local n = 0
        for chunk in c:chunks() do n = n + #chunk; c:write(chunk) end
        c:close("\n" .. n .. "\n")
      end})
      io.write(s.port, "\n"); io.flush()
    ]]
    -- Background processes write what they print to files; their pids come from $!.
    local function start(cmd, out)
      local p = io.popen(cmd .. " > " .. q(out) .. " 2>&1 & echo $!")
      local pid = p:read("l")
      p:close()
      for _ = 1, 200 do
        local h = io.open(out)
        local l = h and h:read("l")
        if h then h:close() end
        if l then return pid, l end
        os.execute("sleep 0.02")
      end
      return pid, nil
    end
    local tpid, tline = start(q(bin) .. " -e " .. q(target), path("target.out"))
    local tport = tonumber(tline)
    assert.is_truthy(tport)
    local ppid, line = start(script("proxy", "0 127.0.0.1 " .. tport), path("proxy.out"))
    local pport = tonumber(line and line:match(":(%d+)$"))
    if not pport then os.execute("kill " .. tpid .. " " .. ppid) end
    assert.is_truthy(pport)
    local client = [[
      local port = rill.argv[1]
      local s = assert(rill.net.connect("127.0.0.1", tonumber(port)))
      local r = rill.spawn(function()
        local parts = {}
        for c in s:chunks() do parts[#parts + 1] = tostring(c) end
        return table.concat(parts)
      end)
      for c in rill.fs.reader(]] .. ("%q"):format(path("big.txt")) .. [[):chunks() do s:write(c) end
      s:close()
      io.write(r:join())
    ]]
    local via = sh(q(bin) .. " -e " .. q(client) .. " " .. pport .. " | md5sum")
    local direct = sh(q(bin) .. " -e " .. q(client) .. " " .. tport .. " | md5sum")
    local want = sh("( cat " .. path("big.txt") .. "; printf '\\n%d\\n' $(stat -c %s "
      .. path("big.txt") .. ") ) | md5sum")
    os.execute("kill " .. tpid .. " " .. ppid)
    assert.are.equal(want, direct)
    assert.are.equal(want, via)
  end)
end)
