-- lua/rill/http.lua: rill.http: the HTTP/1.1 server (native, core/http.c); each request a task.
local rill = require "rill"
local core = require "rill._http"

local M = {}

-- http.listen{host, port, handler = fn(req, res), max_header_size, headers_timeout,
-- keepalive_timeout} -> server, or nil, err. Timeouts are in ms (defaults 60000 and 5000).
-- req is the request body (a readable) with method, path, headers (lower-case names) and
-- http_version; res is the response body (a writable) with res:status(code) and
-- res:header(name, value). An error in the handler destroys the response (500 when nothing
-- was sent yet) and is reported as uncaught.
function M.listen(o)
  if type(o) ~= "table" then error("bad argument #1 to 'listen' (table expected)", 2) end
  local handler = o.handler
  if type(handler) ~= "function" then
    error("bad argument #1 to 'listen' (handler must be a function)", 2)
  end
  return core.listen(o.host, o.port, function(req, res)
    rill.spawn(function()
      local ok, err = pcall(handler, req, res)
      if not ok then
        res:destroy(err)
        error(err, 0)
      end
    end)
  end, o.max_header_size, o.headers_timeout, o.keepalive_timeout)
end

return M
