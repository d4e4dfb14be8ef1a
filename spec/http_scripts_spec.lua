-- spec/http_scripts_spec.lua: scripts/gzip, gunzip, static_server, download and log_shipper,
-- each run by the rill command against real peers (gzip, curl, python3 -m http.server).
local helper = require "spec.helper"

local quote = helper.quote
local CLEAN = "env -u LD_PRELOAD " -- tools must not inherit the sanitizer run's preload
local RILL = CLEAN .. quote(helper.bin) .. " "

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. quote(d)))
  return d
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Starts cmd in the background; returns its pid. Its stderr goes to errfile.
local function spawn(cmd, errfile)
  local pidfile = os.tmpname()
  os.execute("(exec " .. cmd .. " >/dev/null 2>" .. quote(errfile) .. ") & echo $! >" ..
             quote(pidfile))
  local pid = tonumber(read(pidfile))
  os.remove(pidfile)
  return pid
end

local function wait_for(fn)
  for _ = 1, 250 do
    local v = fn()
    if v then return v end
    os.execute("sleep 0.02")
  end
  error("timed out waiting")
end

local function free_port()
  return tonumber((sh(CLEAN .. "python3 -c 'import socket; s=socket.socket(); " ..
                      "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'")))
end

local text = {}
for i = 1, 30000 do text[i] = ("log line %d: something happened\n"):format(i) end
text = table.concat(text)

describe("scripts/gzip.lua and scripts/gunzip.lua", function()
  it("are filters that gzip agrees with", function()
    local d = tmpdir()
    write(d .. "/in.txt", text)
    local _, code = sh(RILL .. "scripts/gzip.lua -9 <" .. quote(d .. "/in.txt") .. " >" ..
                       quote(d .. "/out.gz"))
    assert.are.equal(0, code)
    assert.are.equal(text, (sh(CLEAN .. "gzip -dc " .. quote(d .. "/out.gz"))))
    sh(CLEAN .. "gzip -c " .. quote(d .. "/in.txt") .. " >" .. quote(d .. "/theirs.gz"))
    local out
    out, code = sh(RILL .. "scripts/gunzip.lua " .. quote(d .. "/theirs.gz"))
    assert.are.equal(0, code)
    assert.is_true(out == text)
    -- Corrupt input: an error and exit status 1.
    write(d .. "/bad.gz", "\31\139\8\0garbage")
    out, code = sh(RILL .. "scripts/gunzip.lua " .. quote(d .. "/bad.gz") .. " 2>&1")
    assert.are.equal(1, code)
    assert.matches("gunzip: ", out)
    os.execute("rm -rf " .. quote(d))
  end)
end)

describe("scripts/static_server.lua", function()
  it("serves files to curl with the right types and lengths, and nothing outside", function()
    local d = tmpdir()
    write(d .. "/index.html", "<h1>home</h1>\n")
    write(d .. "/data.txt", text)
    local port = free_port()
    local err = d .. ".err"
    local pid = spawn(RILL .. "scripts/static_server.lua " .. quote(d) .. " " .. port, err)
    local ok, e = pcall(function()
      wait_for(function() return (read(err) or ""):find("serving", 1, true) end)
      local base = "http://127.0.0.1:" .. port
      local curl = CLEAN .. "curl -s --max-time 10 "
      assert.are.equal("<h1>home</h1>\n", (sh(curl .. base .. "/")))
      assert.is_true(sh(curl .. base .. "/data.txt") == text)
      local head = sh(curl .. "-I " .. base .. "/data.txt")
      assert.matches("Content%-Length: " .. #text .. "\r\n", head)
      assert.matches("Content%-Type: text/plain", head)
      assert.matches("^HTTP/1.1 404", (sh(curl .. "-i " .. base .. "/missing")))
      assert.matches("^HTTP/1.1 403", (sh(curl .. "-i --path-as-is " .. base .. "/../etc/passwd")))
      assert.matches("^HTTP/1.1 405", (sh(curl .. "-i -X DELETE " .. base .. "/data.txt")))
    end)
    os.execute("kill " .. pid)
    os.execute("rm -rf " .. quote(d) .. " " .. quote(err))
    assert(ok, e)
  end)
end)

describe("scripts/download.lua", function()
  it("downloads from python3 -m http.server, and fails cleanly on 404 and refused", function()
    local d = tmpdir()
    write(d .. "/file.txt", text)
    local port = free_port()
    local err = d .. ".err"
    local pid = spawn("sh -c " .. quote("cd " .. quote(d) .. " && exec " .. CLEAN ..
                      "python3 -m http.server " .. port .. " --bind 127.0.0.1"), err)
    local ok, e = pcall(function()
      local base = "http://127.0.0.1:" .. port
      wait_for(function()
        return select(2, sh(CLEAN .. "curl -s -o /dev/null " .. base .. "/")) == 0
      end)
      local _, code = sh(RILL .. "scripts/download.lua " .. base .. "/file.txt " ..
                         quote(d .. "/copy.txt"))
      assert.are.equal(0, code)
      assert.is_true(read(d .. "/copy.txt") == text)
      local out
      out, code = sh(RILL .. "scripts/download.lua " .. base .. "/nope " .. quote(d .. "/x") ..
                     " 2>&1")
      assert.are.equal(1, code)
      assert.matches("HTTP 404", out)
      assert.is_nil(read(d .. "/x"))
      out, code = sh(RILL .. "scripts/download.lua http://127.0.0.1:1/ 2>&1")
      assert.are.equal(1, code)
      assert.matches("ECONNREFUSED", out)
    end)
    os.execute("kill " .. pid)
    os.execute("rm -rf " .. quote(d) .. " " .. quote(err))
    assert(ok, e)
  end)
end)

describe("scripts/log_shipper.lua", function()
  it("POSTs every line, gzipped, in batches", function()
    local d = tmpdir()
    write(d .. "/app.log", text)
    -- A receiver that gunzips each POST and appends it to a file.
    write(d .. "/recv.lua", [[
local http, zlib, stream = require "rill.http", require "rill.zlib", rill.stream
local out = assert(io.open(rill.argv[1], "ab"))
local posts = 0
local srv = assert(http.listen{port = 0, handler = function(req, res)
  assert(req.method == "POST" and req.headers["content-encoding"] == "gzip")
  local parts = {}
  assert(stream.pipeline(req, zlib.gunzip(), stream.writable{write = function(_, c, done)
    parts[#parts + 1] = tostring(c)
    done()
  end}))
  out:write(table.concat(parts))
  out:flush()
  posts = posts + 1
  res:close("ok")
end})
local f = assert(io.open(rill.argv[2], "w"))
f:write(srv.port)
f:close()
rill.timeout(30000, function() srv:close() end)
]])
    local err = d .. ".err"
    local pid = spawn(RILL .. quote(d .. "/recv.lua") .. " " .. quote(d .. "/got.log") .. " " ..
                      quote(d .. "/port"), err)
    local ok, e = pcall(function()
      local port = wait_for(function() return tonumber(read(d .. "/port") or "") end)
      local out, code = sh(RILL .. "scripts/log_shipper.lua http://127.0.0.1:" .. port ..
                           "/ingest 7000 " .. quote(d .. "/app.log") .. " 2>&1")
      assert.are.equal(0, code)
      assert.matches("30000 lines in 5 batches", out)
      assert.is_true(read(d .. "/got.log") == text)
      -- Nobody listening: retries, then exit 1 with the reason.
      out, code = sh(RILL .. "scripts/log_shipper.lua http://127.0.0.1:1/ 10 " ..
                     quote(d .. "/app.log") .. " 2>&1")
      assert.are.equal(1, code)
      assert.matches("ECONNREFUSED", out)
    end)
    os.execute("kill " .. pid)
    os.execute("rm -rf " .. quote(d) .. " " .. quote(err))
    assert(ok, e)
  end)
end)
