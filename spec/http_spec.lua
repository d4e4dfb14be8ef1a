-- spec/http_spec.lua: rill.http server in its own rill process, driven by curl and raw sockets
-- (python3), covering keep-alive, pipelining, chunked bodies, HEAD, 100-continue, 400/431.
local helper = require "spec.helper"

local quote = helper.quote
-- Tools run from the specs must not inherit the sanitizer run's LD_PRELOAD of libasan (curl
-- hangs with it).
local CLEAN = "env -u LD_PRELOAD "

-- The server under test. Routes:
--   /echo         body back (chunked: no length set)
--   /len          body back with Content-Length
--   /status/N     empty response with status N
--   /headers      the request's method, path, version and headers, one per line
--   /big/N        N KiB of "x" written in 16 KiB pieces
--   /peer         the client's address and port (the same port: the same connection)
--   /close        the same, with "Connection: close"
--   /shortlen     "abc" with a Content-Length of 10
--   /date         sets its own Date header
--   /ignore       answers without reading the body
--   /fail         the handler raises
--   /count        how many requests this process handled so far
local SERVER = [[
local http = require "rill.http"
local count = 0
local srv = assert(http.listen{port = 0, max_header_size = 2048, headers_timeout = 1000,
                               keepalive_timeout = 1000, handler = function(req, res)
  count = count + 1
  local path = req.path
  if path == "/echo" then
    res:close(tostring(req:collect()))
  elseif path == "/len" then
    local body = tostring(req:collect())
    res:header("Content-Length", #body)
    res:close(body)
  elseif path:match("^/status/") then
    res:status(tonumber(path:match("%d+")))
    res:close()
  elseif path:match("^/headers") then
    req:collect()
    local lines = { req.method, req.path, req.http_version }
    local names = {}
    for k in pairs(req.headers) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do lines[#lines + 1] = k .. "=" .. req.headers[k] end
    res:header("Content-Type", "text/plain")
    res:close(table.concat(lines, "\n") .. "\n")
  elseif path:match("^/big/") then
    local piece = string.rep("x", 16384)
    for _ = 1, tonumber(path:match("%d+")) // 16 do res:write(piece) end
    res:close()
  elseif path == "/peer" then
    req:collect()
    res:close(req.remote_address .. ":" .. req.remote_port)
  elseif path == "/close" then
    req:collect()
    res:header("Connection", "close")
    res:close(req.remote_address .. ":" .. req.remote_port)
  elseif path == "/shortlen" then
    res:header("Content-Length", 10)
    res:close("abc")
  elseif path == "/date" then
    res:header("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
    res:close("dated")
  elseif path == "/ignore" then
    res:close("ignored")
  elseif path == "/fail" then
    error("handler failed")
  elseif path == "/count" then
    req:collect()
    res:close(tostring(count))
  else
    res:status(404)
    res:close("no route\n")
  end
end})
rill.on("uncaught", function() end)
local f = assert(io.open(rill.argv[1], "w"))
f:write(srv.port)
f:close()
rill.timeout(tonumber(rill.argv[2]), function() srv:close(); rill.exit(0) end)
]]

local server = {}

local function start_server()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  local portfile = os.tmpname()
  os.remove(portfile)
  local pidfile = os.tmpname()
  os.execute(CLEAN .. quote(helper.bin) .. " " .. quote(script) .. " " .. quote(portfile) ..
             " 60000 >/dev/null 2>" .. quote(os.getenv("RILL_HTTP_SERVER_LOG") or "/dev/null") ..
             " & echo $! >" .. quote(pidfile))
  local pf = assert(io.open(pidfile))
  server.pid = pf:read("n")
  pf:close()
  for _ = 1, 200 do
    local p = io.open(portfile)
    if p then
      server.port = p:read("n")
      p:close()
      if server.port then break end
    end
    os.execute("sleep 0.02")
  end
  assert(server.port, "the server did not start")
  server.files = { script, portfile, pidfile }
end

local function stop_server()
  if server.pid then os.execute("kill " .. server.pid .. " 2>/dev/null") end
  for _, p in ipairs(server.files or {}) do os.remove(p) end
end

local function url(path)
  return "http://127.0.0.1:" .. server.port .. path
end

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

-- curl with the given arguments; returns the output (headers included with -i).
local function curl(args)
  return sh(CLEAN .. "curl -s --max-time 10 " .. args)
end

-- Sends raw bytes (in the given pieces, with a pause between them) and returns everything the
-- server sends back until it closes or goes quiet for `quiet` seconds.
local PY = [[
import socket, sys, time, json
port = int(sys.argv[1]); pieces = json.loads(sys.argv[2]); quiet = float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
for p in pieces:
    s.sendall(p.encode("latin-1"))
    time.sleep(0.01)
s.settimeout(quiet)
out = b""
try:
    while True:
        d = s.recv(65536)
        if not d: out += b"<EOF>"; break
        out += d
except socket.timeout:
    pass
sys.stdout.buffer.write(out)
]]

local function json_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function raw(pieces, quiet)
  if type(pieces) == "string" then pieces = { pieces } end
  local js = {}
  for i, p in ipairs(pieces) do js[i] = json_str(p) end
  return sh(CLEAN .. "python3 -c " .. quote(PY) .. " " .. server.port .. " " ..
            quote("[" .. table.concat(js, ",") .. "]") .. " " .. (quiet or 0.5))
end

-- Splits a raw response stream into {status, headers (lower-case names), body} records.
local function responses(s)
  local list = {}
  local at = 1
  while true do
    local hs, he = s:find("\r\n\r\n", at, true)
    if not hs then break end
    local head = s:sub(at, hs - 1)
    local status = tonumber(head:match("^HTTP/1%.%d (%d+)"))
    local h = {}
    for k, v in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do h[k:lower()] = v end
    local body = ""
    at = he + 1
    if h["content-length"] then
      local n = tonumber(h["content-length"])
      body = s:sub(at, at + n - 1)
      at = at + n
    elseif h["transfer-encoding"] == "chunked" then
      local parts = {}
      while true do
        local ls, le, hex = s:find("^(%x+)\r\n", at)
        if not ls then break end
        local n = tonumber(hex, 16)
        at = le + 1
        if n == 0 then
          at = at + 2
          break
        end
        parts[#parts + 1] = s:sub(at, at + n - 1)
        at = at + n + 2
      end
      body = table.concat(parts)
    end
    list[#list + 1] = { status = status, headers = h, body = body }
  end
  return list, s:sub(at)
end

describe("rill.http server", function()
  setup(start_server)
  teardown(stop_server)

  it("answers with a chunked body when no length is set, and with one when it is", function()
    local out = curl("-i -d hello " .. url("/echo"))
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("Transfer%-Encoding: chunked\r\n", out)
    assert.matches("\r\n\r\nhello$", out)
    out = curl("-i -d hi " .. url("/len"))
    assert.matches("Content%-Length: 2\r\n", out)
    assert.matches("\r\n\r\nhi$", out)
    assert.matches("^HTTP/1.1 404 Not Found", curl("-i " .. url("/nothing")))
    assert.matches("^HTTP/1.1 204 No Content", curl("-i " .. url("/status/204")))
  end)

  it("gives the handler method, path, version and lower-cased headers", function()
    local out = curl("-H 'X-Custom-Thing: Some Value' -H 'X-Twice: a' -H 'X-Twice: b' " ..
                     "-X PUT -d body " .. quote(url("/headers?q=1&r=2")))
    -- curl sends "Host", "User-Agent", "Accept", "Content-Length", "Content-Type" as well.
    assert.matches("^PUT\n/headers%?q=1&r=2\n1%.1\n", out)
    assert.matches("\nx%-custom%-thing=Some Value\n", out)
    assert.matches("\nx%-twice=a, b\n", out)
    assert.matches("\ncontent%-length=4\n", out)
  end)

  it("streams request bodies in content-length and chunked encoding", function()
    local big = string.rep("0123456789abcdef", 65536) -- 1 MiB
    local file = os.tmpname()
    local f = assert(io.open(file, "wb"))
    f:write(big)
    f:close()
    local out = curl("--data-binary @" .. quote(file) .. " " .. url("/len"))
    assert.are.equal(#big, #out)
    assert.is_true(out == big)
    out = curl("-H 'Transfer-Encoding: chunked' --data-binary @" .. quote(file) .. " " ..
               url("/len"))
    assert.is_true(out == big)
    os.remove(file)
  end)

  it("streams large response bodies", function()
    local out = curl(url("/big/4096"))
    assert.are.equal(4096 * 1024, #out)
    assert.is_nil(out:find("[^x]"))
  end)

  it("keeps connections alive and answers pipelined requests in order (CASES 34)", function()
    local reqs = "GET /count HTTP/1.1\r\nHost: a\r\n\r\n" ..
                 "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" ..
                 "POST /len HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                 "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" ..
                 "GET /status/202 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    for _, cut in ipairs{ { #reqs }, { 1, 20, 47, 90, 150 }, { 33, 34, 35 } } do
      local pieces, at = {}, 1
      for _, c in ipairs(cut) do
        pieces[#pieces + 1] = reqs:sub(at, c)
        at = c + 1
      end
      pieces[#pieces + 1] = reqs:sub(at)
      local out = raw(pieces)
      local list, rest = responses(out)
      assert.are.equal(4, #list)
      assert.matches("^%d+$", list[1].body)
      assert.are.equal("hello", list[2].body)
      assert.are.equal("abcde", list[3].body)
      assert.are.equal(202, list[4].status)
      assert.are.equal("close", list[4].headers.connection)
      assert.are.equal("<EOF>", rest)
    end
  end)

  it("closes the connection after a body shorter than its Content-Length", function()
    local out = raw({ "GET /shortlen HTTP/1.1\r\nHost: a\r\n\r\n" ..
                      "GET /len HTTP/1.1\r\nHost: a\r\n\r\n" }, 2)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("Content%-Length: 10\r\n", out)
    -- The three bytes, then the close: the pipelined request after it is not answered.
    assert.matches("\r\n\r\nabc<EOF>$", out)
    -- A HEAD of the same keeps the connection.
    out = raw({ "HEAD /shortlen HTTP/1.1\r\nHost: a\r\n\r\n" ..
                "GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" })
    local list, rest = responses(out:gsub("Content%-Length: 10", "Content-Length: 0", 1))
    assert.are.equal(2, #list)
    assert.are.equal("<EOF>", rest)
  end)

  it("sends the head only for HEAD", function()
    local out = raw("HEAD /len HTTP/1.1\r\nHost: a\r\n\r\nGET /len HTTP/1.1\r\nHost: a\r\n" ..
                    "Content-Length: 2\r\nConnection: close\r\n\r\nok")
    local list, rest = responses(out)
    assert.are.equal(2, #list)
    assert.are.equal("0", list[1].headers["content-length"])
    assert.are.equal("ok", list[2].body)
    assert.are.equal("<EOF>", rest)
  end)

  it("answers Expect: 100-continue when the body is read", function()
    local out = raw({ "POST /len HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n" ..
                      "Content-Length: 4\r\nConnection: close\r\n\r\n", "body" })
    assert.matches("^HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\n\r\nbody<EOF>$", out)
    local curl_out = curl("-H 'Expect: 100-continue' -d data " .. url("/len"))
    assert.are.equal("data", curl_out)
  end)

  it("drains a body the handler did not read before the next request", function()
    local out = raw("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789" ..
                    "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    local list, rest = responses(out)
    assert.are.equal(2, #list)
    assert.are.equal("ignored", list[1].body)
    assert.are.equal(200, list[2].status)
    assert.are.equal("<EOF>", rest)
  end)

  it("answers HTTP/1.0 and closes unless asked to keep alive", function()
    local out = raw("GET /echo HTTP/1.0\r\n\r\n")
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("Connection: close\r\n", out)
    assert.matches("<EOF>$", out)
    out = raw("GET /len HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0.3)
    assert.matches("Connection: keep%-alive\r\n", out)
    assert.is_nil(out:find("<EOF>", 1, true))
  end)

  it("rejects malformed requests with 400 and closes (CASES 83-86)", function()
    local smuggled = "GET /count HTTP/1.1\r\nHost: x\r\n\r\n"
    local bad = {
      "POST /len HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST /len HTTP/1.1\r\nTransfer-Encoding: eee, chunked\r\n\r\n0\r\n\r\n",
      "POST /len HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
      "POST /len HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n\r\n",
      "POST /len HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n",
      "GET / HTTP/1.1\nHost: a\n\n",
      "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
      "GET / HTTP/1.7\r\n\r\n",
      "FOO / HTTP/1.1\r\n\r\n",
      "POST /len HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST /len HTTP/1.1\r\nContent-Length: -3\r\n\r\nabc",
      "POST /len HTTP/1.1\r\nContent-Length: abc\r\n\r\nabc",
    }
    for _, req in ipairs(bad) do
      local out = raw(req .. smuggled)
      local list, rest = responses(out)
      assert.are.equal(1, #list, req)
      assert.are.equal(400, list[1].status, req)
      assert.are.equal("close", list[1].headers.connection)
      assert.are.equal("<EOF>", rest, req)
    end
  end)

  it("answers 431 to a head one byte over the limit, 200 at the limit (CASES 82)", function()
    local function req_of(size)
      local pre = "GET /echo HTTP/1.1\r\nConnection: close\r\nX-Pad: "
      return pre .. string.rep("p", size - #pre - 4) .. "\r\n\r\n"
    end
    local ok = raw(req_of(2048))
    assert.matches("^HTTP/1.1 200 OK", ok)
    local over = raw(req_of(2049))
    assert.matches("^HTTP/1.1 431 Request Header Fields Too Large\r\n", over)
    assert.matches("Connection: close\r\n", over)
    assert.matches("<EOF>$", over)
  end)

  it("answers 500 when the handler fails, and keeps serving", function()
    assert.matches("^HTTP/1.1 500 Internal Server Error", curl("-i " .. url("/fail")))
    assert.matches("^%d+$", curl(url("/count")))
  end)

  it("answers 408 and closes when a head arrives too slowly, serving others meanwhile " ..
     "(CASES 87)", function()
    local PY_SLOW = [=[
import socket, sys, time, subprocess, select
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
t0 = time.time()
at = None
for b in b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n\r\n":
    try:
        s.sendall(bytes([b]))
    except OSError:
        break
    time.sleep(0.05)
    if b % 7 == 0:
        # Another client is served while the slow one trickles.
        out = subprocess.run(["curl", "-s", "--max-time", "2",
                              "http://127.0.0.1:%d/count" % port], capture_output=True)
        assert out.stdout.isdigit(), out
    if select.select([s], [], [], 0)[0]:
        at = time.time() - t0
        break
got = b""
s.settimeout(3)
try:
    while True:
        d = s.recv(100)
        if not d: break
        got += d
except OSError:
    pass
ok = at is not None and at > 0.8 and got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
print("408" if ok else "no 408 %r %r" % (at, got))
]=]
    assert.are.equal("408\n", sh(CLEAN .. "python3 -c " .. quote(PY_SLOW) .. " " .. server.port))
    -- A connection that sends nothing at all gets the same answer.
    local out = raw({ "" }, 2.5)
    assert.matches("^HTTP/1.1 408 Request Timeout\r\n", out)
    assert.matches("Connection: close\r\n", out)
    assert.matches("<EOF>$", out)
  end)

  it("closes a rejected connection whose client stays, after a short linger", function()
    local PY_LINGER = [=[
import socket, sys, time, os
port, pid = int(sys.argv[1]), sys.argv[2]
def fds(): return len(os.listdir("/proc/%s/fd" % pid))
time.sleep(0.2)
before = fds()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET / HTTP/1.7\r\n\r\n")
got = b""
while True:
    d = s.recv(100)
    if not d: break
    got += d
time.sleep(0.2)
held = fds()
# The socket stays open on this side all along; the server lets go after its linger (1 s).
deadline = time.time() + 20
while fds() != before and time.time() < deadline:
    time.sleep(0.1)
after = fds()
print(got.split(b"\r\n")[0].decode(), held - before, after - before)
]=]
    assert.are.equal("HTTP/1.1 400 Bad Request 1 0\n",
                     sh(CLEAN .. "python3 -c " .. quote(PY_LINGER) .. " " .. server.port .. " " ..
                        server.pid))
  end)

  it("sends a Date header unless the handler set one", function()
    local out = curl("-i " .. url("/len"))
    local dates = 0
    for d in out:gmatch("\r\nDate: ([^\r]*)") do
      dates = dates + 1
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", d)
      -- The same instant as the clock here, give or take the time curl took.
      local now = os.time(os.date("!*t"))
      local day, mon, year, h, m, sec = d:match("(%d+) (%a+) (%d+) (%d+):(%d+):(%d+)")
      local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                       Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
      local t = os.time{ year = tonumber(year), month = months[mon], day = tonumber(day),
                         hour = tonumber(h), min = tonumber(m), sec = tonumber(sec) }
      assert.is_true(math.abs(now - t) <= 5, d)
    end
    assert.are.equal(1, dates)
    out = curl("-i " .. url("/date"))
    local list = { out:match("\r\nDate: ([^\r]*)\r\n(.*)$") }
    assert.are.equal("Thu, 01 Jan 1970 00:00:00 GMT", list[1])
    assert.is_nil(list[2]:find("\r\nDate:", 1, true))
  end)

  it("closes idle keep-alive connections quietly after keepalive_timeout", function()
    local out = raw("GET /len HTTP/1.1\r\nHost: a\r\n\r\n", 2.5)
    local list, rest = responses(out)
    assert.are.equal(1, #list) -- no 408: the connection was idle, not slow
    assert.are.equal(200, list[1].status)
    assert.are.equal("<EOF>", rest)
    -- ...and not before: a second request within the timeout is served on the same connection.
    out = raw({ "GET /len HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" })
    local list, rest = responses(out)
    assert.are.equal(2, #list)
    assert.are.equal("<EOF>", rest)
  end)

  it("survives clients that go away mid-request and mid-response, closing their fds (CASES 88)",
     function()
    local function fds()
      return tonumber((sh("ls /proc/" .. server.pid .. "/fd | wc -l")))
    end
    assert.matches("^%d+$", curl(url("/count")))
    os.execute("sleep 0.2")
    local before = fds()
    for _ = 1, 5 do
      raw({ "POST /len HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial" }, 0.05)
      sh(CLEAN .. "curl -s --max-time 0.2 " .. url("/big/65536") .. " >/dev/null")
    end
    assert.matches("^%d+$", curl(url("/count")))
    -- The server closes each as it notices (at once natively, later under valgrind): wait up
    -- to 20 s for the count to come back.
    for _ = 1, 200 do
      if fds() == before then break end
      os.execute("sleep 0.1")
    end
    assert.are.equal(before, fds())
  end)
end)

describe("rill.http client", function()
  local http = require "rill.http"
  local net = require "rill.net"
  local stream = require "rill.stream"
  local run = helper.run

  setup(start_server)
  teardown(stop_server)

  -- A TCP server that answers every connection with the given bytes, then closes (or, with
  -- silent, never answers). Returns its port and a stop function.
  local function canned(bytes, silent)
    local socks = {}
    local srv = assert(net.listen{ port = 0, on_connection = function(sock)
      socks[#socks + 1] = sock
      if silent then return end
      sock:write(bytes)
      sock:close()
    end })
    return srv.port, function()
      for _, s in ipairs(socks) do s:destroy() end
      srv:close()
    end
  end

  it("sends requests with string, buffer and streamed bodies, and reads the responses", function()
    run(function()
      local r = assert(http.request(url("/echo")))
      assert.are.equal(200, r.status)
      assert.are.equal("OK", r.reason)
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.are.equal("", tostring(r:collect()))
      r = assert(http.request{ method = "post", url = url("/len"), body = "hello" })
      assert.are.equal("5", r.headers["content-length"])
      assert.are.equal("hello", tostring(r:collect()))
      local big = string.rep("abcdefgh", 200000)
      r = assert(http.request{ method = "PUT", url = url("/len"), body = stream.from(big) })
      assert.is_true(tostring(r:collect()) == big)
      r = assert(http.request{ url = url("/headers?a=b"), headers = { ["X-Test"] = "yes" } })
      local text = tostring(r:collect())
      assert.matches("^GET\n/headers%?a=b\n1%.1\n", text)
      assert.matches("\nx%-test=yes\n", text)
      assert.matches("\nhost=127%.0%.0%.1:" .. server.port .. "\n", text)
      r = assert(http.request{ method = "HEAD", url = url("/len") })
      assert.are.equal("0", r.headers["content-length"])
      assert.are.equal("", tostring(r:collect()))
      r = assert(http.request(url("/big/2048")))
      assert.are.equal(2048 * 1024, #r:collect())
      r = assert(http.request(url("/nothing")))
      assert.are.equal(404, r.status)
    end)
  end)

  it("reuses an idle connection for the next request to the same host and port", function()
    run(function()
      local agent = http.agent()
      local function peer(o)
        o.url = url(o.path or "/peer")
        o.agent = o.agent == nil and agent or o.agent
        local r = assert(http.request(o))
        assert.are.equal(200, r.status)
        return tostring(r:collect())
      end
      local first = peer{}
      assert.matches("^127%.0%.0%.1:%d+$", first)
      assert.are.equal(1, agent:idle())
      -- GET, POST with a body, a streamed body, HEAD: all on the first connection.
      assert.are.equal(first, peer{})
      assert.are.equal(first, peer{ method = "POST", body = "some body" })
      assert.are.equal(first, peer{ method = "PUT", body = stream.from(string.rep("z", 100000)) })
      local r = assert(http.request{ method = "HEAD", url = url("/len"), agent = agent })
      r:collect()
      assert.are.equal(first, peer{})
      assert.are.equal(1, agent:idle())
      -- Two at once need two connections; both go back to the pool.
      local t1 = helper.rill.spawn(peer, {})
      local t2 = helper.rill.spawn(peer, {})
      local a, b = t1:join(), t2:join()
      assert.are_not.equal(a, b)
      assert.is_true(a == first or b == first)
      assert.are.equal(2, agent:idle())
      agent:close()
      assert.are.equal(0, agent:idle())
      local second = peer{}
      assert.are_not.equal(first, second)
      -- "Connection: close" from us: a connection of its own, not pooled.
      local own = peer{ headers = { Connection = "close" } }
      assert.are_not.equal(second, own)
      assert.are.equal(1, agent:idle())
      -- ...and from the server: the pooled connection is used once more, then dropped.
      assert.are.equal(second, peer{ path = "/close" })
      assert.are.equal(0, agent:idle())
      -- agent = false: never pooled.
      local lone = peer{ agent = false }
      assert.are.equal(0, agent:idle())
      assert.are_not.equal(lone, peer{ agent = false })
      -- The default agent is used when none is named.
      local d = http.default_agent()
      d:close()
      r = assert(http.request(url("/peer")))
      r:collect()
      assert.are.equal(1, d:idle())
    end)
  end)

  it("closes idle connections after the idle timeout, or when the server closes them", function()
    run(function()
      local agent = http.agent{ idle_timeout = 150 }
      local function peer()
        local r = assert(http.request{ url = url("/peer"), agent = agent })
        return tostring(r:collect())
      end
      -- Waits (at most 20 s: a loaded machine is slow) until the agent holds no idle connection.
      local function until_idle_gone()
        for _ = 1, 400 do
          if agent:idle() == 0 then return end
          helper.rill.sleep(50)
        end
      end
      local first = peer()
      assert.are.equal(1, agent:idle())
      helper.rill.sleep(150)
      until_idle_gone()
      assert.are.equal(0, agent:idle())
      assert.are_not.equal(first, peer())
      -- The server's keepalive_timeout is 1000 ms: it closes first, and the agent notices.
      agent = http.agent{ idle_timeout = 60000 }
      first = peer()
      assert.are.equal(1, agent:idle())
      helper.rill.sleep(1000)
      until_idle_gone()
      assert.are.equal(0, agent:idle())
      assert.are_not.equal(first, peer())
      agent:close()
    end)
  end)

  it("does not keep the loop running for idle connections", function()
    local code = "local http = require 'rill.http'\n" ..
                 "local agent = http.agent{ idle_timeout = 60000 }\n" ..
                 "local r = assert(http.request{ url = " .. string.format("%q", url("/peer")) ..
                 ", agent = agent })\n" ..
                 "r:collect()\n" ..
                 "assert(agent:idle() == 1)\n" ..
                 "print('done')"
    -- A connection that kept the loop alive would hold it for the 60 s of its idle timeout.
    local out = sh(CLEAN .. "timeout 20 " .. quote(helper.bin) .. " -e " .. quote(code) ..
                   " 2>&1; echo status $?")
    assert.are.equal("done\nstatus 0\n", out)
  end)

  it("sends an idempotent request again, once, when the server closed the reused connection",
     function()
    run(function()
      -- Each connection answers one request ("ok:" and its body), then closes on reading the
      -- next one: what a server does when its keep-alive timeout strikes as the request
      -- arrives.
      local conns = 0
      local socks = {}
      -- The body of the request at the front of buf and where it ends, or nil when incomplete.
      local function body_of(buf)
        local e = buf:find("\r\n\r\n", 1, true)
        if not e then return nil end
        local head = buf:sub(1, e)
        local len = tonumber(head:match("[Cc]ontent%-[Ll]ength: (%d+)"))
        if len then
          if #buf < e + 3 + len then return nil end
          return buf:sub(e + 4, e + 3 + len), e + 3 + len
        end
        if not head:find("chunked", 1, true) then return "", e + 3 end
        local parts, at = {}, e + 4
        while true do
          local ls, le, hex = buf:find("^(%x+)\r\n", at)
          if not ls then return nil end
          local n = tonumber(hex, 16)
          if n == 0 then
            if #buf < le + 2 then return nil end
            return table.concat(parts), le + 2
          end
          if #buf < le + n + 2 then return nil end
          parts[#parts + 1] = buf:sub(le + 1, le + n)
          at = le + n + 3
        end
      end
      local srv = assert(net.listen{ port = 0, on_connection = function(sock)
        conns = conns + 1
        socks[#socks + 1] = sock
        helper.rill.spawn(pcall, function() -- (destroyed at the end: a premature close)
          local buf, served = "", 0
          for chunk in sock:chunks() do
            buf = buf .. tostring(chunk)
            local body, stop = body_of(buf)
            if body then
              buf = buf:sub(stop + 1)
              served = served + 1
              if served == 2 then
                sock:destroy()
                return
              end
              sock:write("HTTP/1.1 200 OK\r\nContent-Length: " .. (3 + #body) .. "\r\n\r\nok:" ..
                         body)
            end
          end
        end)
      end })
      local agent = http.agent()
      local u = "http://127.0.0.1:" .. srv.port .. "/"
      local function req(o)
        o.url, o.agent = u, agent
        local r, err = http.request(o)
        if not r then return nil, err end
        return tostring(r:collect())
      end
      assert.are.equal("ok:", req{})
      assert.are.equal(1, conns)
      -- GET on the pooled connection: the server closes it; sent again on a new one.
      assert.are.equal("ok:", req{})
      assert.are.equal(2, conns)
      -- POST is not idempotent: the failure is the caller's to see.
      local out, err = req{ method = "POST", body = "x" }
      assert.is_nil(out)
      assert.are.equal("ECONNRESET", err.code)
      assert.are.equal(2, conns)
      assert.are.equal("ok:", req{})
      assert.are.equal(3, conns)
      -- PUT and DELETE are idempotent: sent again with their bodies (kept up to 64 KiB).
      assert.are.equal("ok:put body", req{ method = "PUT", body = "put body" })
      assert.are.equal(4, conns)
      local streamed = string.rep("s", 50000)
      assert.are.equal("ok:" .. streamed, req{ method = "PUT", body = stream.from(streamed) })
      assert.are.equal(5, conns)
      assert.are.equal("ok:", req{ method = "DELETE" })
      assert.are.equal(6, conns)
      -- A body too large to keep is not sent again.
      out, err = req{ method = "PUT", body = string.rep("b", 70000) }
      assert.is_nil(out)
      assert.are.equal("ECONNRESET", err.code)
      assert.are.equal(6, conns)
      agent:close()
      for _, s in ipairs(socks) do s:destroy() end
      srv:close()
    end)
  end)

  it("downloads from python3 -m http.server", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. quote(dir))
    local data = {}
    for i = 1, 20000 do data[i] = ("line %d\n"):format(i) end
    data = table.concat(data)
    local f = assert(io.open(dir .. "/file.txt", "wb"))
    f:write(data)
    f:close()
    -- A free port: bind, read it, release it for python.
    local port = tonumber(sh(CLEAN .. "python3 -c 'import socket; s=socket.socket(); " ..
                             "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'"))
    -- Under strace when there is one, to count the connections the server accepts.
    local have_strace = os.execute("command -v strace >/dev/null 2>&1")
    local trace = dir .. ".trace"
    local pre = have_strace and ("strace -f -qq -e trace=accept,accept4 -o " .. quote(trace) ..
                                 " ") or ""
    os.execute("(cd " .. quote(dir) .. " && exec " .. CLEAN .. pre .. "python3 -m http.server " ..
               port .. " --bind 127.0.0.1 >/dev/null 2>&1) & echo $! >" .. quote(dir .. ".pid"))
    local pf = assert(io.open(dir .. ".pid"))
    local pid = pf:read("n")
    pf:close()
    local ok, err = pcall(run, function()
      local r
      for _ = 1, 100 do
        r = http.request("http://127.0.0.1:" .. port .. "/file.txt")
        if r then break end
        helper.rill.sleep(50)
      end
      assert(r, "python3 -m http.server did not start")
      assert.are.equal(200, r.status)
      assert.are.equal(tostring(#data), r.headers["content-length"])
      assert.is_true(tostring(r:collect()) == data)
      -- HTTP/1.0 answers without keep-alive: nothing goes back to the pool.
      local agent = http.agent()
      for _ = 1, 2 do
        r = assert(http.request{ url = "http://127.0.0.1:" .. port .. "/missing", agent = agent })
        assert.are.equal(404, r.status)
        assert.are.equal("1.0", r.http_version)
        r:collect()
        assert.are.equal(0, agent:idle())
      end
    end)
    -- Under strace, the server is strace's child: ending it ends strace (which ignores a
    -- plain kill while it traces).
    if have_strace then os.execute("pkill -P " .. pid) end
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.execute("sleep 0.1")
    local accepted
    if have_strace then
      accepted = 0
      for line in io.lines(trace) do
        if line:match("accept4?%(.*%) = %d+$") then accepted = accepted + 1 end
      end
    end
    os.execute("rm -rf " .. quote(dir) .. " " .. quote(dir .. ".pid") .. " " .. quote(trace))
    assert(ok, err)
    -- One connection per request: three requests, three connections.
    if accepted then assert.are.equal(3, accepted) end
  end)

  it("fails with ECONNREFUSED and ETIMEDOUT", function()
    run(function()
      local port, stop = canned("", true)
      stop() -- nothing listens there any more
      local r, err = http.request("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(r)
      assert.are.equal("ECONNREFUSED", err.code)
      local port2, stop2 = canned("", true)
      r, err = http.request{ url = "http://127.0.0.1:" .. port2 .. "/", timeout = 200 }
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", err.code)
      stop2()
    end)
  end)

  it("rejects a bad status line and never gives a silently short body (CASES 89)", function()
    run(function()
      local port, stop = canned("HTTP/1.1 2000 Oops\r\n\r\n")
      local r, err = http.request("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(r)
      assert.are.equal("HPE_INVALID", err.code)
      stop()
      port, stop = canned("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
      r = assert(http.request("http://127.0.0.1:" .. port .. "/"))
      local body, berr = r:collect()
      assert.is_nil(body)
      assert.are.equal("HPE_INVALID", berr.code)
      stop()
      port, stop = canned("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
      r = assert(http.request("http://127.0.0.1:" .. port .. "/"))
      body, berr = r:collect()
      assert.is_nil(body)
      assert.is_not_nil(berr)
      stop()
      -- Without a length, the body is whatever comes before the close.
      port, stop = canned("HTTP/1.1 200 OK\r\n\r\nto the end")
      r = assert(http.request("http://127.0.0.1:" .. port .. "/"))
      assert.are.equal("to the end", tostring(r:collect()))
      stop()
      -- A connection closed before any answer.
      port, stop = canned("")
      r, err = http.request("http://127.0.0.1:" .. port .. "/")
      assert.is_nil(r)
      assert.are.equal("ECONNRESET", err.code)
      stop()
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() http.request{ url = "ftp://x/" } end)
    assert.has_error(function() http.request{ url = "nohost" } end)
    assert.has_error(function() http.request{ url = "http://x/", body = 42 } end)
    assert.has_error(function() http.request{ url = "http://x/a b" } end)
    assert.has_error(function() http.request{ url = "http://x/", agent = {} } end,
                     "bad argument #1 to 'request' (agent must be an http.agent or false)")
    assert.has_error(function() http.agent("x") end)
    assert.has_error(function() http.agent{ idle_timeout = -1 } end)
    local spare = http.agent()
    assert.has_error(function() http.request{ url = "http://x/", agent = io.stdout } end)
    spare:close()
    assert.are.equal(0, spare:idle()) -- still usable after close
    assert.has_error(function() http.listen{ port = 0 } end)
    assert.has_error(function() http.listen("x") end)
  end)
end)

describe("rill.http server sending files", function()
  -- A file piped straight into a response with a length goes out with sendfile: watched with
  -- strace (the system calls of the server process), with RILL_NO_FASTPATH=1 as the control.
  local FILE_SERVER = [[
local http, fs, stream = require "rill.http", rill.fs, rill.stream
local file = rill.argv[2]
local size = fs.stat(file).size
local srv = assert(http.listen{ port = 0, handler = function(req, res)
  local p = req.path
  if p == "/pipe" then
    res:header("Content-Length", size)
    fs.reader(file):pipe(res)
  elseif p == "/pipeline" then
    res:header("Content-Length", size)
    assert(stream.pipeline(fs.reader(file), res))
  elseif p == "/range" then -- bytes 1001..3000
    res:header("Content-Length", 2000)
    fs.reader(file, { start = 1001, stop = 3000 }):pipe(res)
  elseif p == "/short" then -- a length below the file's: no more than that is sent
    res:header("Content-Length", 100)
    fs.reader(file):pipe(res)
  elseif p == "/chunked" then -- no length: chunks, through the plain pipe
    fs.reader(file):pipe(res)
  else
    res:status(404)
    res:close()
  end
end })
local f = assert(io.open(rill.argv[1], "w"))
f:write(srv.port)
f:close()
]]

  local dir, data, script
  local have_strace = os.execute("command -v strace >/dev/null 2>&1")

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. quote(dir))
    local parts = {}
    for i = 1, 40000 do parts[i] = ("%08d some line of text\n"):format(i) end
    data = table.concat(parts) -- about 1.1 MB
    local f = assert(io.open(dir .. "/data.txt", "wb"))
    f:write(data)
    f:close()
    script = dir .. "/server.lua"
    f = assert(io.open(script, "w"))
    f:write(FILE_SERVER)
    f:close()
  end)

  teardown(function()
    os.execute("rm -rf " .. quote(dir))
  end)

  -- Runs the server (under strace when trace is set, with env before it), calls fn(port), then
  -- stops the server; returns the system calls strace saw (sendfile and writes), one per line.
  local function with_server(env, trace, fn)
    local portfile = dir .. "/port"
    os.remove(portfile)
    local tfile = dir .. "/trace"
    os.remove(tfile)
    local pre = trace and ("strace -f -qq -e trace=sendfile,writev,write,sendto,sendmsg -o " ..
                           quote(tfile) .. " ") or ""
    os.execute("(exec " .. CLEAN .. env .. " " .. pre .. quote(helper.bin) .. " " ..
               quote(script) .. " " .. quote(portfile) .. " " .. quote(dir .. "/data.txt") ..
               " >/dev/null 2>" .. quote(dir .. "/err") .. ") & echo $! >" ..
               quote(dir .. "/pid"))
    local pf = assert(io.open(dir .. "/pid"))
    local pid = pf:read("n")
    pf:close()
    local port
    for _ = 1, 300 do
      local p = io.open(portfile)
      if p then
        port = p:read("n")
        p:close()
        if port then break end
      end
      os.execute("sleep 0.02")
    end
    local ok, err = pcall(fn, port)
    -- Under strace, the server is strace's child: ending it ends strace.
    if trace then os.execute("pkill -P " .. pid) end
    os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.1")
    assert(port, "the server did not start")
    assert(ok, err)
    local t = io.open(tfile)
    local calls = t and t:read("a") or ""
    if t then t:close() end
    return calls
  end

  local function get(port, path)
    return sh(CLEAN .. "curl -s --max-time 10 http://127.0.0.1:" .. port .. path)
  end

  local function check_bodies(port)
    assert.is_true(get(port, "/pipe") == data)
    assert.is_true(get(port, "/pipeline") == data)
    assert.is_true(get(port, "/range") == data:sub(1001, 3000))
    assert.is_true(get(port, "/chunked") == data)
    -- Several on one connection (curl reuses it for URLs given together).
    local many = sh(CLEAN .. "curl -s --max-time 10 http://127.0.0.1:" .. port .. "/pipe" ..
                    " http://127.0.0.1:" .. port .. "/range http://127.0.0.1:" .. port ..
                    "/pipeline")
    assert.is_true(many == data .. data:sub(1001, 3000) .. data)
  end

  it("uses sendfile when the response has a length", function()
    if not have_strace then
      pending("strace is not installed")
      return
    end
    local calls = with_server("", true, check_bodies)
    local sent = 0
    for n in calls:gmatch("sendfile%([^\n]-%) = (%d+)") do sent = sent + tonumber(n) end
    -- /pipe, /pipeline, /range, then /pipe, /range, /pipeline: every byte of theirs, and none
    -- of /chunked's.
    assert.are.equal(4 * #data + 2 * 2000, sent)
    -- The head goes with MSG_MORE, joined to the first segment of the body.
    assert.matches("sendto%([^\n]*HTTP/1%.1 200 OK[^\n]*MSG_MORE", calls)
  end)

  it("falls back to the plain pipe, with the same bytes, when the fast path is off", function()
    if not have_strace then
      pending("strace is not installed")
      return
    end
    local calls = with_server("RILL_NO_FASTPATH=1", true, check_bodies)
    assert.is_nil(calls:find("sendfile(", 1, true))
  end)

  it("sends no more than the length, and keeps the connection usable", function()
    with_server("", false, function(port)
      local out = sh(CLEAN .. "curl -s --max-time 10 http://127.0.0.1:" .. port .. "/short" ..
                     " http://127.0.0.1:" .. port .. "/range")
      assert.is_true(out == data:sub(1, 100) .. data:sub(1001, 3000))
    end)
  end)

  it("closes the file and the connection when the client goes away mid-file", function()
    with_server("", false, function(port)
      local pid = tonumber((sh("cat " .. quote(dir .. "/pid"))))
      local function fds() return tonumber((sh("ls /proc/" .. pid .. "/fd | wc -l"))) end
      get(port, "/pipe")
      os.execute("sleep 0.2")
      local before = fds()
      -- A reader that takes 64 KiB, then hangs up while most of the file is unsent.
      local PY = [=[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(b"GET /pipe HTTP/1.1\r\nHost: a\r\n\r\n")
got = 0
while got < 65536:
    d = s.recv(4096)
    if not d: break
    got += len(d)
s.close()
print(got >= 65536)
]=]
      for _ = 1, 3 do
        assert.are.equal("True\n", sh(CLEAN .. "python3 -c " .. quote(PY) .. " " .. port))
      end
      os.execute("sleep 0.5")
      assert.are.equal(before, fds())
      assert.is_true(get(port, "/pipe") == data)
    end)
  end)
end)
