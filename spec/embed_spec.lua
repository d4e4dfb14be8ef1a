-- spec/embed_spec.lua: embedding as a host sees it: `cmake --install` into a fresh prefix, the
-- examples built with `cc $(pkg-config --cflags --libs rill)` and run, only public symbols
-- exported, and stock lua5.4 requiring the installed module.
local helper = require "spec.helper"
local q = helper.quote

local function dirname(p)
  return p:match("^(.*)/[^/]*$") or "."
end

local build = dirname(helper.bin)

-- Runs a shell command; returns its stdout+stderr and whether it exited 0.
local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

local function must(cmd)
  local out, ok = sh(cmd)
  assert(ok, "failed: " .. cmd .. "\n" .. out)
  return out
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The build's sanitizer setting decides how hosts must be compiled and whether valgrind applies.
local cache = io.open(build .. "/CMakeCache.txt") and must("cat " .. q(build .. "/CMakeCache.txt")) or ""
local sanitized = cache:find("RILL_SANITIZE:BOOL=ON", 1, true) ~= nil
-- The sources the build was made from (examples and Lua files are compared against them).
local root = cache:match("rill_SOURCE_DIR:STATIC=([^\n]+)") or "."
local cflags = "-Wall -Wextra -Werror -O1 -pthread" .. (sanitized and " -fsanitize=address,undefined" or "")
local have_valgrind = not sanitized and select(2, sh("command -v valgrind"))

local prefix = os.tmpname()
os.remove(prefix)
local pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig") .. " pkg-config"
local env = "LD_LIBRARY_PATH=" .. q(prefix .. "/lib") .. " "

-- Compiles examples/<name>.c against the installed prefix, as a host would.
local function build_example(name)
  local exe = prefix .. "/" .. name
  must(("cc %s %s -o %s $(%s --cflags --libs rill)"):format(cflags, q(root .. "/examples/" .. name .. ".c"),
    q(exe), pc))
  return exe
end

describe("cmake --install", function()
  setup(function()
    must("cmake --install " .. q(build) .. " --prefix " .. q(prefix))
  end)
  teardown(function()
    sh("rm -rf " .. q(prefix))
  end)

  it("puts the header, both libraries, rill.pc, the Lua module and the Lua files under the prefix", function()
    for _, f in ipairs { "include/rill.h", "lib/librill.so", "lib/librill.a", "lib/pkgconfig/rill.pc",
      "lib/lua/5.4/rill.so", "bin/rill" } do
      assert.is_true(exists(prefix .. "/" .. f), f)
    end
    for name in must("ls " .. q(root .. "/lua/rill")):gmatch("[^\n]+%.lua") do
      assert.is_true(exists(prefix .. "/share/lua/5.4/rill/" .. name), name)
    end
  end)

  it("writes the install prefix into rill.pc", function()
    assert.equals("-I" .. prefix .. "/include", must(pc .. " --cflags-only-I rill"):match("^(%S+)"))
    local libs = must(pc .. " --libs rill")
    assert.matches("-L" .. prefix:gsub("%p", "%%%0") .. "/lib", libs)
    assert.matches("%-lrill", libs)
    assert.matches("%-llua5%.4", libs)
    assert.matches("%-luv", libs)
    assert.matches("%-lz", must(pc .. " --static --libs rill"))
  end)

  it("exports only rill_* and luaopen_rill from librill.so and librill.a", function()
    local function globals(cmd)
      local bad = {}
      for sym in must(cmd):gmatch("[^\n]+") do
        if not (sym:match("^rill_[%w_]+$") and not sym:match("^rill__")) and sym ~= "luaopen_rill" then
          bad[#bad + 1] = sym
        end
      end
      return bad
    end
    -- defined global symbols only (T/D/B/R...), names alone
    assert.same({}, globals("nm -D --defined-only " .. q(prefix .. "/lib/librill.so") .. " | awk '{print $3}'"))
    assert.same({}, globals("nm -g --defined-only " .. q(prefix .. "/lib/librill.a")
      .. " | awk 'NF == 3 {print $3}'"))
    assert.same({}, globals("nm -D --defined-only " .. q(prefix .. "/lib/lua/5.4/rill.so") .. " | awk '{print $3}'"))
    assert.matches("rill_new_ex", must("nm -D --defined-only " .. q(prefix .. "/lib/librill.so")))
  end)

  it("installs a rill.so that leaves liblua to the interpreter", function()
    local needed = must("readelf -d " .. q(prefix .. "/lib/lua/5.4/rill.so") .. " | grep NEEDED || true")
    assert.is_nil(needed:find("liblua", 1, true), needed)
  end)

  it("lets stock lua5.4 require rill from the prefix and run a timer", function()
    local cpath = "LUA_CPATH=" .. q(prefix .. "/lib/lua/5.4/?.so") .. " LUA_PATH=" .. q(prefix .. "/share/lua/5.4/?.lua")
    local code = [[
      local rill = require "rill"
      local n = 0
      rill.timeout(5, function() n = n + 1 end)
      rill.spawn(function() rill.sleep(1); n = n + 1 end)
      rill.run()
      print("ran", n)
      rill.timeout(60000, print)          -- still live when the interpreter closes its state
      rill.interval(10, print)
      rill.spawn(function() rill.sleep(60000) end)
    ]]
    assert.equals("ran\t2\n", must(cpath .. " lua5.4 -e " .. q(code)))
    if have_valgrind then
      must(cpath .. " valgrind -q --leak-check=full --error-exitcode=1 lua5.4 -e " .. q(code))
    end
  end)

  describe("examples built with cc $(pkg-config --cflags --libs rill)", function()
    it("host runs a script like the rill command, with its exit code", function()
      local exe = build_example("host")
      local out, ok = sh(env .. q(exe) .. " -e " .. q("print('hi'); rill.sleep(2); print('later'); rill.exit(3)"))
      assert.is_false(ok)
      assert.equals("hi\nlater\n", out)
      assert.equals("3", must(env .. q(exe) .. " -e 'rill.exit(3)' ; echo $?"):match("%d+"))
      out = sh(env .. q(exe) .. " -e " .. q("rill.timeout(1, function() error('boom') end)"))
      assert.matches("boom", out)
      assert.matches("stack traceback", out)
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write("print(#rill.argv, rill.argv[1])")
      f:close()
      assert.equals("1\tx\n", must(env .. q(exe) .. " " .. q(script) .. " x"))
      os.remove(script)
    end)

    it("host_loop runs the engine on the host's loop next to its own timers; uv_loop_close gives 0", function()
      local out = must(env .. q(build_example("host_loop")))
      assert.matches("engine: task step 3\n", out)
      assert.matches("engine: timeout, interval ran\ttrue\n", out)
      assert.matches("host: engine still has work: yes\n", out)
      assert.matches("host: uv_loop_close: 0\n", out)
    end)

    it("threads runs engines in four threads at once", function()
      assert.equals("4 engines in 4 threads: ok\n", must(env .. q(build_example("threads"))))
    end)

    it("sandbox denies what reaches the system and caps memory and run time", function()
      local exe = build_example("sandbox")
      local function run(code)
        return (sh(env .. q(exe) .. " " .. q(code)))
      end
      assert.matches("rill.fs: denied by the engine's sandbox", run("local fs = rill.fs"))
      assert.matches("io.open: denied by the engine's sandbox", run("io.open('/etc/passwd')"))
      assert.matches("os.execute: denied by the engine's sandbox", run("os.execute('true')"))
      assert.matches("instruction cap reached", run("while true do end"))
      assert.matches("memory cap reached", run("local t = {} while true do t[#t + 1] = {} end"))
      assert.matches("^2\nmemory in use: %d+ bytes\n$", run("print(1 + 1)"))
    end)

    it("engine_cost measures an engine's cost", function()
      local out = must(env .. q(build_example("engine_cost")) .. " 20")
      assert.matches("rill_new %+ rill_free, own loop: +[%d.]+ ms", out)
      assert.matches("Lua heap: +[%d.]+ KiB", out)
    end)

    it("link statically against librill.a", function()
      local exe = prefix .. "/host_static"
      must(("cc %s %s -o %s $(%s --cflags rill) %s $(%s --static --libs rill | sed 's/-lrill//')"):format(cflags,
        q(root .. "/examples/host.c"), q(exe), pc, q(prefix .. "/lib/librill.a"), pc))
      assert.equals("static\n", must(q(exe) .. " -e \"print('static')\""))
    end)
  end)
end)
