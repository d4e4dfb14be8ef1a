-- lua/rill/http.lua: rill.http: HTTP/1.1 server and client (native, core/http*.c).
local rill = require "rill"
local core = require "rill._http"

local M = {}

-- http.listen{host, port, handler = fn(req, res), max_header_size, headers_timeout,
-- keepalive_timeout} -> server, or nil, err. Timeouts are in ms (defaults 60000 and 5000).
-- req is the request body (a readable) with method, path, headers (lower-case names),
-- http_version, remote_address and remote_port; res is the response body (a writable) with
-- res:status(code) and res:header(name, value); a Date header is added unless set. A head that
-- is not complete within headers_timeout is answered 408 and the connection closed; an idle
-- keep-alive connection closes quietly after keepalive_timeout. A file piped straight into a
-- response whose Content-Length is set goes out with sendfile. An error in the handler destroys
-- the response (500 when nothing was sent yet) and is reported as uncaught.
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

local function is_bytes(x)
  if type(x) == "string" then return true end
  local ok, buffer = pcall(require, "rill.buffer")
  return ok and buffer.is(x)
end

-- "http://host[:port]/path?query" -> host, port, path
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    error("bad argument #1 to 'request' (url must be http://host[:port]/path)", 3)
  end
  if scheme:lower() ~= "http" then
    error("bad argument #1 to 'request' (only http:// urls are supported)", 3)
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then error("bad argument #1 to 'request' (no host in url)", 3) end
  port = port ~= "" and tonumber(port) or 80
  return host, port, path
end

-- http.agent{idle_timeout = ms, max_idle = n} -> agent: keeps idle keep-alive connections per
-- host and port for later requests (defaults: 4000 ms, 64). agent:idle() counts them,
-- agent:close() closes them. Idle connections do not keep the loop running.
function M.agent(o)
  if o ~= nil and type(o) ~= "table" then error("bad argument #1 to 'agent' (table expected)", 2) end
  o = o or {}
  return core.agent(o.idle_timeout, o.max_idle)
end

local default_agent

local function is_agent(x)
  local mt = getmetatable(x)
  return type(x) == "userdata" and mt ~= nil and mt.__name == "rill.http_agent"
end

-- The agent requests use unless they name another (one per engine).
function M.default_agent()
  default_agent = default_agent or core.agent()
  return default_agent
end

-- http.request{method = "GET", url, headers = {name = value}, body = string|buffer|readable,
-- timeout = ms, agent = agent|false} -> response, or nil, err. Connections are reused through
-- the default agent (or the one given); agent = false, or a "Connection: close" header, gives
-- the request a connection of its own. Waits (in a task) for the response head; the response
-- is a readable of the body with status, reason, headers (lower-case names) and http_version.
-- A readable body is sent chunked. Connection errors come back as err (ECONNREFUSED,
-- ETIMEDOUT, ...); a body cut short fails the response stream instead of ending it early.
function M.request(o)
  if type(o) == "string" then o = { url = o } end
  if type(o) ~= "table" or type(o.url) ~= "string" then
    error("bad argument #1 to 'request' (table with url expected)", 2)
  end
  local host, port, path = parse_url(o.url)
  local method = (o.method or "GET"):upper()
  local body, len = o.body, nil
  if body == nil then
    len = (method == "POST" or method == "PUT" or method == "PATCH") and 0 or -2
  elseif is_bytes(body) then
    len = #body
  elseif type(body) == "userdata" or type(body) == "table" then
    len = -1
  else
    error("bad argument #1 to 'request' (body must be a string, buffer or readable)", 2)
  end
  local list = {}
  for k, v in pairs(o.headers or {}) do
    list[#list + 1] = tostring(k)
    list[#list + 1] = tostring(v)
  end
  local agent = o.agent
  if agent == nil then
    agent = M.default_agent()
  elseif agent == false then
    agent = nil
  elseif not is_agent(agent) then
    error("bad argument #1 to 'request' (agent must be an http.agent or false)", 2)
  end
  local req, waiter = core.request(method, host, port, path, list, len, o.timeout or 0, agent)
  if not req then return nil, waiter end
  if len == -1 then
    body:pipe(req)
  else
    if len > 0 then req:write(body) end
    req:close()
  end
  return waiter:wait()
end

return M
