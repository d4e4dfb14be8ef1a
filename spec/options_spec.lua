-- spec/options_spec.lua: numeric options out of range are argument errors that name the option,
-- its range and the function, and open nothing.
local helper = require "spec.helper"
local rill = helper.rill
local fs = rill.fs
local stream = require "rill.stream"

local function errmsg(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return tostring(e)
end

describe("numeric options", function()
  local cases = {
    { "fs.reader", function(o) return fs.reader("/dev/null", o) end, "chunk_size", -1, 1 << 31, "0 to 1073741824" },
    { "fs.reader", function(o) return fs.reader("/dev/null", o) end, "poll_ms", -5, 3600001, "0 to 3600000" },
    { "fs.reader", function(o) return fs.reader("/dev/null", o) end, "high_water_mark", -1, nil, "0 to" },
    { "fs.writer", function(o) return fs.writer("/dev/null", o) end, "mode", -1, 4096, "0 to 4095" },
    { "fs.writer", function(o) return fs.writer("/dev/null", o) end, "high_water_mark", -1, nil, "0 to" },
    { "progress", function(o) return stream.progress(o) end, "width", -1, 1001, "0 to 1000" },
    { "progress", function(o) return stream.progress(o) end, "interval_ms", -1, 3600001, "0 to 3600000" },
    { "progress", function(o) return stream.progress(o) end, "total", -1, nil, "0 to" },
  }
  for _, c in ipairs(cases) do
    local fname, make, key, low, high, range = c[1], c[2], c[3], c[4], c[5], c[6]
    it(fname .. " rejects " .. key .. " out of range, both sides", function()
      local before = helper.fd_count()
      for _, v in ipairs({ low, high }) do
        local m = errmsg(make, { [key] = v })
        assert.matches("bad argument", m, 1, true)
        assert.matches(key .. " out of range (" .. range, m, 1, true)
      end
      assert.matches("option '" .. key .. "' must be an integer", errmsg(make, { [key] = 1.5 }), 1, true)
      assert.are.equal(before, helper.fd_count())
    end)
  end

  it("takes the bounds themselves", function()
    helper.run(function()
      local r = fs.reader("/dev/null", { chunk_size = 1 << 30, poll_ms = 0 })
      assert.are.equal(0, #r:collect())
      local w = fs.writer("/dev/null", { mode = 4095 })
      assert.is_true(stream.pipeline(stream.from("x"), w))
    end)
  end)
end)
