-- spec/io_helper.lua: descriptor accounting for the I/O specs: a leak is a descriptor open
-- after a run that was not open before it (descriptors that earlier specs were still closing
-- may go away meanwhile; that is not a leak).
local helper = require "spec.helper"

local io_helper = {}

-- The set of open descriptors of this process: {["fd"] = "target"}.
function io_helper.fds()
  local dir = "/proc/" .. helper.pid() .. "/fd"
  local p = io.popen("cd " .. dir .. " && for f in *; do echo \"$f $(readlink $f)\"; done")
  local set = {}
  for line in p:lines() do
    local fd, target = line:match("^(%d+) (.*)$")
    if fd and target ~= "" then set[fd] = target end -- "": the listing's own, gone
  end
  p:close()
  return set
end

-- Lets pending closes finish: two collections and a short run of the loop.
function io_helper.settle()
  collectgarbage()
  collectgarbage()
  helper.run(function() helper.rill.sleep(10) end)
end

-- The descriptors open now that were not in before (a list of "fd -> target"). The listing's
-- own pipe is open in both snapshots (under a new inode each time): one new pipe is expected.
function io_helper.leaked(before)
  io_helper.settle()
  local out, skipped = {}, false
  for fd, target in pairs(io_helper.fds()) do
    if before[fd] ~= target then
      if target:match("^pipe:") and not skipped then
        skipped = true
      else
        out[#out + 1] = fd .. " -> " .. target
      end
    end
  end
  table.sort(out)
  return out
end

return io_helper
