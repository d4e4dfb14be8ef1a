-- scripts/log_shipper.lua: read log lines and POST them gzipped, in batches, to an HTTP endpoint.
-- usage: rill scripts/log_shipper.lua URL [LINES_PER_BATCH] [FILE]   (no FILE: stdin)
-- Each batch is one POST with "Content-Encoding: gzip"; a failed POST is retried three times
-- with a growing pause, then the shipper stops with exit 1 (lines are never dropped silently).
local fs, stream = rill.fs, rill.stream
local http = require "rill.http"
local zlib = require "rill.zlib"

local url = rill.argv[1]
local per_batch = tonumber(rill.argv[2] or "1000")
local file = rill.argv[3]
if not url or not per_batch or per_batch < 1 then
  rill.stderr:write("usage: rill scripts/log_shipper.lua URL [LINES_PER_BATCH] [FILE]\n")
  rill.exit(2)
end

local function gzip(text)
  local z = zlib.gzip{ level = 6 }
  z:write(text)
  z:close()
  return z:collect()
end

local shipped, batches = 0, 0

local function ship(lines)
  local body = gzip(table.concat(lines, "\n") .. "\n")
  local last
  for attempt = 1, 4 do
    local res, err = http.request{
      method = "POST", url = url, body = body, timeout = 10000,
      headers = { ["Content-Type"] = "text/plain", ["Content-Encoding"] = "gzip" },
    }
    if res then
      res:collect()
      if res.status >= 200 and res.status <= 299 then
        shipped, batches = shipped + #lines, batches + 1
        return
      end
      last = ("HTTP %d %s"):format(res.status, res.reason)
    else
      last = tostring(err)
    end
    if attempt < 4 then rill.sleep(100 * 2 ^ attempt) end
  end
  rill.stderr:write(("log_shipper: %s: %s (gave up after 4 tries)\n"):format(url, last))
  rill.exit(1)
end

local src = file and fs.reader(file) or rill.stdin
local batch = {}
for line in src:lines() do
  batch[#batch + 1] = line
  if #batch >= per_batch then
    ship(batch)
    batch = {}
  end
end
if #batch > 0 then ship(batch) end
rill.stderr:write(("log_shipper: %d lines in %d batches\n"):format(shipped, batches))
