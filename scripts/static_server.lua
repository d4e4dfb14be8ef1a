-- scripts/static_server.lua: serve the files of a directory over HTTP (GET and HEAD).
-- usage: rill scripts/static_server.lua [DIR] [PORT] [HOST]
-- Each file is piped from disk into the response without entering Lua: with its length set,
-- the kernel sends it (sendfile, the head just before it); a client that goes away destroys
-- the response, which closes the file.
local fs, stream = rill.fs, rill.stream
local http = require "rill.http"

local root = rill.argv[1] or "."
local port = tonumber(rill.argv[2] or "8080")
local host = rill.argv[3] or "127.0.0.1"

local types = {
  html = "text/html; charset=utf-8", txt = "text/plain; charset=utf-8", css = "text/css",
  js = "text/javascript", json = "application/json", png = "image/png", jpg = "image/jpeg",
  gz = "application/gzip", svg = "image/svg+xml",
}

-- stat results are kept for a second (nginx's open_file_cache does the same): a stat is a
-- threadpool round trip, as costly as the rest of a small file's request.
local stat_cache, stat_time = {}, 0
local function cached_stat(file)
  local now = os.time()
  if now ~= stat_time then
    stat_cache, stat_time = {}, now
  end
  local st = stat_cache[file]
  if st == nil then
    st = fs.stat(file) or false
    stat_cache[file] = st
  end
  return st or nil
end

local function fail(res, code, text)
  res:status(code)
  res:header("Content-Type", "text/plain; charset=utf-8")
  res:header("Content-Length", #text)
  res:close(text)
end

local srv = assert(http.listen{ host = host, port = port, handler = function(req, res)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    res:header("Allow", "GET, HEAD")
    return fail(res, 405, "method not allowed\n")
  end
  local path = req.path:gsub("%?.*", ""):gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end)
  -- No way out of the root: no "..", no NUL.
  if path:find("%.%.") or path:find("%z") then return fail(res, 403, "forbidden\n") end
  if path:sub(-1) == "/" then path = path .. "index.html" end
  local file = root .. path
  local st = cached_stat(file)
  if not st or st.type ~= "file" then return fail(res, 404, "not found\n") end
  res:header("Content-Type", types[file:match("%.(%w+)$") or ""] or "application/octet-stream")
  res:header("Content-Length", st.size)
  if req.method == "HEAD" then return res:close() end
  stream.pipeline(fs.reader(file), res)
end })
rill.stderr:write(("serving %s on http://%s:%d/\n"):format(root, host, srv.port))
