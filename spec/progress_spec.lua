-- spec/progress_spec.lua: stream.progress: a pass-through that draws rate and ETA on a terminal.
local helper = require "spec.helper"
local rill = helper.rill
local stream = require "rill.stream"

describe("stream.progress", function()
  it("passes the bytes through untouched", function()
    helper.run(function()
      local data = string.rep("0123456789", 100000)
      local p = stream.progress { total = #data }
      local out = {}
      local sink = stream.writable { write = function(_, c, done) out[#out + 1] = tostring(c); done() end }
      assert.is_true(stream.pipeline(stream.from(data), p, sink))
      assert.is_true(table.concat(out) == data)
    end)
  end)

  it("draws nothing when stderr is not a terminal", function()
    local out, err, status = helper.cli({ "-e", [[
      local p = rill.stream.progress { total = 100 }
      rill.stream.pipeline(rill.stream.from(string.rep("x", 100)), p, rill.stdout)
    ]] })
    assert.are.equal(0, status)
    assert.are.equal(string.rep("x", 100), out)
    assert.are.equal("", err)
  end)

  it("draws the label, the share done, the rate and the ETA, and ends the line", function()
    local out, err, status = helper.cli({ "-e", [[
      local p = rill.stream.progress { total = 300000, label = "copying", force = true,
        interval_ms = 1, width = 80 }
      local n = 0
      local src = rill.stream.readable { read = function(self)
        n = n + 1
        if n > 30 then self:push(nil) return end
        rill.sleep(2)
        self:push(string.rep("y", 10000))
      end }
      rill.stream.pipeline(src, p, rill.fs.writer("/dev/null"))
    ]] })
    assert.are.equal(0, status)
    local lines = {}
    for l in err:gmatch("\r([^\r]*)") do lines[#lines + 1] = l end
    assert.is_true(#lines >= 3, "drawn " .. #lines .. " times")
    local last = lines[#lines]
    assert.matches("^copying %[#+%] 100%% 293%.0 KiB .*/s ETA 0:00\27%[K\n$", last)
    assert.matches("%%", lines[1])
    assert.is_true(#last <= 80 + 5)
  end)

  it("without a total shows the bytes and the rate", function()
    local _, err = helper.cli({ "-e", [[
      rill.stream.pipeline(rill.stream.from(string.rep("z", 5000)),
        rill.stream.progress { force = true }, rill.fs.writer("/dev/null"))
    ]] })
    assert.matches("\r4%.9 KiB [%d.]+ %a?i?B/s\27%[K\n$", err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() stream.progress(5) end)
    assert.has_error(function() stream.progress { total = -1 } end)
    assert.has_error(function() stream.progress { label = 5 } end)
  end)
end)
