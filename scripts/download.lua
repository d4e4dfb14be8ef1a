-- scripts/download.lua: fetch a URL over HTTP into a file (or stdout), like `curl -o`.
-- usage: rill scripts/download.lua URL [FILE]
-- The body streams from the socket to the file without entering Lua; a status other than 2xx,
-- a connection error or a body cut short is an error (exit 1), and a partial file is removed.
local fs, stream = rill.fs, rill.stream
local http = require "rill.http"

local url, file = rill.argv[1], rill.argv[2]
if not url then
  rill.stderr:write("usage: rill scripts/download.lua URL [FILE]\n")
  rill.exit(2)
end

local res, err = http.request{ url = url, timeout = 30000 }
if not res then
  rill.stderr:write(("download: %s: %s\n"):format(url, tostring(err)))
  rill.exit(1)
end
if res.status < 200 or res.status > 299 then
  res:destroy()
  rill.stderr:write(("download: %s: HTTP %d %s\n"):format(url, res.status, res.reason))
  rill.exit(1)
end
local ok, perr = stream.pipeline(res, file and fs.writer(file) or rill.stdout)
if not ok then
  if file then os.remove(file) end
  rill.stderr:write(("download: %s: %s\n"):format(url, tostring(perr)))
  rill.exit(1)
end
