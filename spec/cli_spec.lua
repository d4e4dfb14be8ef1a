-- spec/cli_spec.lua: the rill command: scripts, -e, stdin, exit statuses, errors.
local helper = require "spec.helper"
local cli = helper.cli

local function tmpfile(content)
  local p = os.tmpname() .. ".lua"
  local f = assert(io.open(p, "wb"))
  f:write(content)
  f:close()
  return p
end

describe("the rill command", function()
  it("--version and --help", function()
    local out, _, code = cli({ "--version" })
    assert.equals(0, code)
    assert.matches("^rill %d+%.%d+%.%d+\n$", out)
    out, _, code = cli({ "--help" })
    assert.equals(0, code)
    assert.matches("usage:", out)
  end)

  it("runs a script with arguments, then the loop", function()
    local p = tmpfile([[
      rill.timeout(5, function() print("later", rill.argv[1], rill.argv[2], arg[0] ~= nil) end)
      rill.sleep(1)
      print("first", #rill.argv)
    ]])
    local out, err, code = cli({ p, "a", "b c" })
    os.remove(p)
    assert.equals("", err)
    assert.equals(0, code)
    assert.equals("first\t2\nlater\ta\tb c\ttrue\n", out)
  end)

  it("-e runs a string", function()
    local out, _, code = cli({ "-e", "print(1 + 1)" })
    assert.equals(0, code)
    assert.equals("2\n", out)
  end)

  it("- and a piped stdin run the script from stdin", function()
    local out, _, code = cli({ "-", "x" }, "print('stdin', rill.argv[1])")
    assert.equals(0, code)
    assert.equals("stdin\tx\n", out)
    out, _, code = cli({}, "print('piped')")
    assert.equals(0, code)
    assert.equals("piped\n", out)
  end)

  it("an uncaught error prints message and traceback and exits 1", function()
    local p = tmpfile("local x = 1\nerror('boom')\n")
    local out, err, code = cli({ p })
    os.remove(p)
    assert.equals(1, code)
    assert.equals("", out)
    assert.matches(":2: boom\nstack traceback:", err)
  end)

  it("an error after a wait is uncaught too", function()
    local _, err, code = cli({ "-e", "rill.sleep(1) error('late')" })
    assert.equals(1, code)
    assert.matches("late", err)
  end)

  it("error values that are not strings are reported without crashing", function()
    local cases = {
      { "error(setmetatable({}, {__tostring = function() return 'TS' end}))", "TS" },
      { "error({})", "error object is a table value" },
      { "error(nil)", "error object is a nil value" },
      { "error(42)", "42" },
      { "error(io.stdout)", "file" },
      { "error(setmetatable({}, {__tostring = function() error('bad tostring') end}))",
        "(error object is a table value whose __tostring failed)" },
      { "rill.sleep(1) error(setmetatable({}, {__tostring = function() return {} end}))",
        "error object is a table value" },
    }
    for _, c in ipairs(cases) do
      local _, err, code = cli({ "-e", c[1] })
      assert.equals(1, code)
      assert.matches(c[2], err, 1, true)
    end
  end)

  it("an error inside the uncaught hook exits 1 without recursion", function()
    local _, err, code = cli({ "-e", [[
      rill.on("uncaught", function(e) error("hook failed") end)
      rill.timeout(1, function() error("first") end)
    ]] })
    assert.equals(1, code)
    assert.matches("hook failed", err)
  end)

  it("a syntax error names the file and line", function()
    local p = tmpfile("local a =\n\n = 3\n")
    local _, err, code = cli({ p })
    os.remove(p)
    assert.equals(1, code)
    assert.matches(p:gsub("%p", "%%%0") .. ":3:", err)
  end)

  it("a missing script is a clear error", function()
    local _, err, code = cli({ "/nonexistent/script.lua" })
    assert.equals(1, code)
    assert.matches("cannot open /nonexistent/script.lua", err, 1, true)
  end)

  it("rill.exit sets the status and stops at once", function()
    local out, _, code = cli({ "-e", "print('a') rill.exit(3) print('b')" })
    assert.equals(3, code)
    assert.equals("a\n", out)
    _, _, code = cli({ "-e", "rill.timeout(1, function() rill.exit(5) end) rill.interval(1000, print)" })
    assert.equals(5, code)
    _, _, code = cli({ "-e", "rill.exit()" })
    assert.equals(0, code)
  end)

  it("rejects unknown options and missing arguments", function()
    local _, err, code = cli({ "--nope" })
    assert.equals(1, code)
    assert.matches("unrecognized option", err)
    _, err, code = cli({ "-e" })
    assert.equals(1, code)
    assert.matches("needs an argument", err)
  end)
end)
