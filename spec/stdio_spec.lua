-- spec/stdio_spec.lua: rill.stdin, rill.stdout, rill.stderr over files, pipes and closed fds;
-- flushing at exit; EPIPE on stdout.
local helper = require "spec.helper"

local q = helper.quote
local bin = helper.bin

-- Runs a bash command line; returns its stdout and the exit status.
local function sh(cmd)
  local p = io.popen("bash -c " .. q(cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local function rill_e(code)
  return q(bin) .. " -e " .. q(code)
end

local tmp = os.tmpname()

describe("rill.stdout", function()
  teardown(function() os.remove(tmp) end)

  it("writes to a file, with small writes kept in order", function()
    local out, err, status = helper.cli({ "-e", [[
      for i = 1, 20000 do rill.stdout:write(i .. "\n") end
      rill.stdout:write("end\n")
    ]] })
    assert.are.equal(0, status)
    assert.are.equal("", err)
    local want = {}
    for i = 1, 20000 do want[i] = i .. "\n" end
    assert.is_true(out == table.concat(want) .. "end\n")
  end)

  it("writes to a pipe, large chunks too", function()
    local out, status = sh(rill_e([[
      local s = string.rep("0123456789", 100000)
      for i = 1, 20 do rill.stdout:write(s) end
    ]]) .. " | wc -c; exit ${PIPESTATUS[0]}")
    assert.are.equal(0, status)
    assert.are.equal(20000000, tonumber(out))
  end)

  it("is flushed by rill.exit, with the exit status kept", function()
    local out, status = sh(rill_e([[
      rill.stdout:write(string.rep("a", 300000))
      for i = 1, 1000 do rill.stdout:write("x") end
      rill.stdout:write("tail\n")
      rill.exit(3)
    ]]) .. " | tail -c 5; exit ${PIPESTATUS[0]}")
    assert.are.equal(3, status)
    assert.are.equal("tail\n", out)
  end)

  it("is flushed before an uncaught error ends the process", function()
    local out, err, status = helper.cli({ "-e", [[
      rill.stdout:write("before\n")
      error("boom")
    ]] })
    assert.are.equal(1, status)
    assert.are.equal("before\n", out)
    assert.matches("boom", err)
  end)

  it("ends quietly with status 0 when the reader goes away (EPIPE)", function()
    local t0 = os.time()
    local out, status = sh("( " .. rill_e('for i=1,1e7 do rill.stdout:write("x\\n") end')
      .. " 2>" .. q(tmp) .. " | head -1 ); exit ${PIPESTATUS[0]}")
    assert.are.equal("x\n", out)
    assert.are.equal(0, status)
    local f = io.open(tmp)
    assert.are.equal("", f:read("a"))
    f:close()
    assert.is_true(os.time() - t0 < 10, "EPIPE must end the process, not finish the loop")
  end)

  it("goes to /dev/null when fd 1 is closed (as in Node), never to another descriptor", function()
    local out, status = sh(rill_e([[
      rill.stdout:on("error", function(_, e) io.stderr:write(e.code, "\n") end)
      for i = 1, 1000 do rill.stdout:write("x") end
      io.stderr:write("done\n")
    ]]) .. " 2>&1 >&-")
    assert.are.equal(0, status)
    assert.are.equal("done\n", out)
  end)

  -- print goes through C stdio, rill.stdout through its own writer: both reach fd 1 in the
  -- order the program wrote them, to a file and to a pipe, large writes and timers included.
  local interleaved = [[
    io.write("io.write first\n") -- C stdio's buffer goes out when rill.stdout opens
    local big = string.rep("b", 300000) .. "\n"
    for i = 1, 3 do
      rill.stdout:write("w" .. i .. "\n")
      print("p" .. i)
      rill.stdout:write(big)
      print("q" .. i, i)
    end
    rill.timeout(1, function()
      rill.stdout:write("timer write\n")
      print("timer print")
    end)
  ]]
  local function expected()
    local want = { "io.write first\n" }
    for i = 1, 3 do
      want[#want + 1] = "w" .. i .. "\np" .. i .. "\n" .. string.rep("b", 300000) .. "\nq" .. i
        .. "\t" .. i .. "\n"
    end
    want[#want + 1] = "timer write\ntimer print\n"
    return table.concat(want)
  end

  it("and print keep program order when stdout is a file", function()
    local out, err, status = helper.cli({ "-e", interleaved })
    assert.are.equal(0, status)
    assert.are.equal("", err)
    assert.is_true(out == expected())
  end)

  it("and print keep program order when stdout is a pipe", function()
    local out, status = sh(rill_e(interleaved) .. " | cat; exit ${PIPESTATUS[0]}")
    assert.are.equal(0, status)
    assert.is_true(out == expected())
  end)

  it("leaves a print the script set alone; print's errors still raise", function()
    local out, err, status = helper.cli({ "-e", [[
      local n = 0
      print = function(...) n = n + 1; io.write("mine ", ..., "\n") end
      rill.stdout:write("w\n")
      print("x")
      rill.stdout:write("calls " .. n .. "\n")
    ]] })
    assert.are.equal(0, status)
    assert.are.equal("", err)
    assert.matches("mine x\n", out, 1, true)
    assert.matches("calls 1\n", out, 1, true)
    out, err, status = helper.cli({ "-e", [[
      rill.stdout:write("w\n")
      print(setmetatable({}, { __tostring = function() error("no string for you") end }))
    ]] })
    assert.are.equal(1, status)
    assert.are.equal("w\n", out)
    assert.matches("no string for you", err, 1, true)
  end)

  it("warn() is off until warn('@on'), as in the stand-alone interpreter", function()
    local out, err, status = helper.cli({ "-e", [[
      warn("hidden")
      warn("@on")
      warn("shown ", "in pieces")
      warn("@off")
      warn("hidden again")
    ]] })
    assert.are.equal(0, status)
    assert.are.equal("", out)
    assert.are.equal("Lua warning: shown in pieces\n", err)
  end)

  it("stderr is a stream too", function()
    local out, err, status = helper.cli({ "-e", 'rill.stderr:write("to stderr\\n")' })
    assert.are.equal(0, status)
    assert.are.equal("", out)
    assert.are.equal("to stderr\n", err)
  end)
end)

describe("rill.stdin", function()
  local prog = [[
    local n, parts = 0, {}
    for c in rill.stdin:chunks() do n = n + #c; parts[#parts + 1] = tostring(c) end
    local s = table.concat(parts)
    rill.stdout:write(n .. " " .. (s:sub(1, 5)) .. "\n")
  ]]

  it("reads a redirected file", function()
    local f = io.open(tmp, "wb")
    f:write(string.rep("hello", 100000))
    f:close()
    local out, status = sh(rill_e(prog) .. " < " .. q(tmp))
    assert.are.equal(0, status)
    assert.are.equal("500000 hello\n", out)
  end)

  it("reads a pipe", function()
    local out, status = sh("head -c 3000000 /dev/zero | tr '\\0' 'a' | " .. rill_e(prog))
    assert.are.equal(0, status)
    assert.are.equal("3000000 aaaaa\n", out)
  end)

  it("gives lines", function()
    local out, err, status = helper.cli({ "-e", [[
      local n = 0
      for l in rill.stdin:lines() do n = n + 1; rill.stdout:write(n .. ":" .. l .. "\n") end
    ]] }, "a\r\nb\n\nc")
    assert.are.equal(0, status)
    assert.are.equal("1:a\n2:b\n3:\n4:c\n", out)
  end)

  it("is empty when fd 0 is closed or /dev/null", function()
    local out, status = sh(rill_e(prog) .. " <&-")
    assert.are.equal(0, status)
    assert.are.equal("0 \n", out)
    out, status = sh(rill_e(prog) .. " < /dev/null")
    assert.are.equal(0, status)
    assert.are.equal("0 \n", out)
  end)

  it("pipes natively into stdout", function()
    local out, status = sh("seq 1 100000 | " .. rill_e("rill.stream.pipeline(rill.stdin, rill.stdout)")
      .. " | md5sum")
    local want = sh("seq 1 100000 | md5sum")
    assert.are.equal(0, status)
    assert.are.equal(want, out)
  end)
end)
