-- spec/net_spec.lua: rill.net: TCP servers and connections as duplex streams.
local helper = require "spec.helper"
local io_helper = require "spec.io_helper"
local rill = helper.rill
local net = require "rill.net"
local stream = require "rill.stream"

local run = helper.run

local function collect(r)
  local parts = {}
  for c in r:chunks() do parts[#parts + 1] = tostring(c) end
  return table.concat(parts)
end

-- An echo server: each connection's bytes come back, then its end.
local function echo_server()
  return assert(net.listen {
    port = 0,
    on_connection = function(sock)
      -- a client that vanishes (reset) only ends its own connection
      if pcall(function() for c in sock:chunks() do sock:write(c) end end) then sock:close() end
    end,
  })
end

-- A port nobody listens on (bound then closed).
local function closed_port()
  local s = assert(net.listen { port = 0, on_connection = function() end })
  local p = s.port
  s:close()
  return p
end

describe("rill.net", function()
  it("listens on port 0, connects, echoes; sockets know their addresses", function()
    run(function()
      local srv = echo_server()
      assert.is_true(srv.port > 0)
      assert.are.equal("127.0.0.1", srv.host)
      local sock = assert(net.connect("127.0.0.1", srv.port))
      assert.are.equal("127.0.0.1", sock.remote_address)
      assert.are.equal(srv.port, sock.remote_port)
      assert.is_true(sock.local_port > 0)
      sock:write("hello ")
      sock:close("world")
      assert.are.equal("hello world", collect(sock))
      srv:close()
    end)
  end)

  it("connects by name (localhost)", function()
    run(function()
      local srv = echo_server()
      local sock = assert(net.connect("localhost", srv.port))
      sock:close("x")
      assert.are.equal("x", collect(sock))
      srv:close()
    end)
  end)

  it("half-closes: after our end, the peer's data still arrives; close comes after both",
    function()
      run(function()
        local srv = assert(net.listen {
          port = 0,
          half_open = true,
          on_connection = function(sock)
            local got = collect(sock) -- until our peer's end
            rill.sleep(20)
            sock:close("reply to " .. got)
          end,
        })
        local sock = assert(net.connect("127.0.0.1", srv.port, { half_open = true }))
        local events = {}
        sock:on("finish", function() events[#events + 1] = "finish" end)
        sock:on("end", function() events[#events + 1] = "end" end)
        sock:on("close", function() events[#events + 1] = "close" end)
        sock:close("question")
        assert.are.equal("reply to question", collect(sock))
        while not sock.closed do rill.sleep(1) end
        assert.are.same({ "finish", "end", "close" }, events)
        srv:close()
      end)
    end)

  it("serves many connections at once, each byte exact", function()
    run(function()
      local srv = echo_server()
      local tasks = {}
      for i = 1, 40 do
        tasks[i] = rill.spawn(function()
          local sock = assert(net.connect("127.0.0.1", srv.port))
          local payload = string.rep(string.char(65 + i % 26), 50000 + i)
          local reader = rill.spawn(collect, sock)
          for k = 1, #payload, 8192 do sock:write(payload:sub(k, k + 8191)) end
          sock:close()
          return reader:join() == payload
        end)
      end
      for i = 1, 40 do assert.is_true(tasks[i]:join()) end
      srv:close()
    end)
  end)

  it("server:close() stops accepting; a closed port is ECONNREFUSED with address and port",
    function()
      run(function()
        local srv = echo_server()
        local port = srv.port
        local closed = false
        srv:close(function() closed = true end)
        while not closed do rill.sleep(1) end
        local sock, err = net.connect("127.0.0.1", port)
        assert.is_nil(sock)
        assert.are.equal("ECONNREFUSED", err.code)
        assert.are.equal("127.0.0.1", err.address)
        assert.are.equal(port, err.port)
        assert.are.equal("connect", err.syscall)
      end)
    end)

  it("a socket destroyed while connecting closes without hanging", function()
    run(function()
      -- outside a task's wait: the connecting socket is returned at once
      local sock
      rill.next_tick(function()
        sock = net.connect("10.255.255.1", 9)
      end)
      rill.sleep(1)
      local closed = false
      sock:on("close", function() closed = true end)
      sock:destroy()
      for _ = 1, 200 do
        if closed then break end
        rill.sleep(1)
      end
      assert.is_true(closed)
    end)
  end)

  it("a peer reset fails that stream only, once", function()
    run(function()
      local srv = assert(net.listen {
        port = 0,
        on_connection = function(sock)
          sock:read()
          sock:reset()
        end,
      })
      local other = assert(net.connect("127.0.0.1", srv.port))
      local sock = assert(net.connect("127.0.0.1", srv.port))
      local calls, got = 0, nil
      stream.pipeline(sock, stream.writable { write = function(_, _, done) done() end },
        function(err)
          calls = calls + 1
          got = err
        end)
      sock:write("x")
      for _ = 1, 500 do
        if calls > 0 then break end
        rill.sleep(1)
      end
      rill.sleep(10)
      assert.are.equal(1, calls)
      assert.are.equal("ECONNRESET", got.code)
      assert.is_false(other.destroyed)
      other:destroy()
      srv:close()
    end)
  end)

  it("writing to a peer that is gone fails within a bounded time", function()
    run(function()
      local srv = assert(net.listen {
        port = 0,
        on_connection = function(sock)
          rill.sleep(10)
          sock:reset()
        end,
      })
      local sock = assert(net.connect("127.0.0.1", srv.port))
      local err
      sock:on("error", function(_, e) err = e end)
      rill.sleep(20)
      for _ = 1, 100 do
        if err then break end
        sock:write(string.rep("x", 65536))
        rill.sleep(2)
      end
      assert.is_not_nil(err)
      assert.is_truthy(err.code == "EPIPE" or err.code == "ECONNRESET")
      srv:close()
    end)
  end)

  it("backpressure: a paused reader makes the writer wait; every byte arrives in order",
    function()
      run(function()
        local total = 16 * 1024 * 1024
        local saw_false = false
        local srv = assert(net.listen {
          port = 0,
          on_connection = function(sock)
            local chunk = string.rep("0123456789abcdef", 4096)
            -- In a task, write waits while the socket is full: "drain" shows it had to.
            sock:on("drain", function() saw_false = true end)
            for _ = 1, total // #chunk do
              sock:write(chunk)
              assert(sock.writable_length <= 2 * 65536, "writer buffer bounded")
            end
            sock:close()
          end,
        })
        local sock = assert(net.connect("127.0.0.1", srv.port))
        sock:pause()
        rill.sleep(300)
        local n, ok = 0, true
        for c in sock:chunks() do
          local s = tostring(c)
          local off = n % 16
          if s:sub(1, 16 - off) ~= ("0123456789abcdef"):sub(off + 1) then ok = false end
          n = n + #s
        end
        assert.are.equal(total, n)
        assert.is_true(ok)
        assert.is_true(saw_false)
        srv:close()
      end)
    end)

  it("leaves no descriptor behind after a thousand refused connects and dropped sockets",
    function()
      local port
      run(function() port = closed_port() end)
      collectgarbage()
      io_helper.settle()
    local before = io_helper.fds()
      run(function()
        for _ = 1, 1000 do
          local s, err = net.connect("127.0.0.1", port)
          assert.is_nil(s)
          assert.are.equal("ECONNREFUSED", err.code)
        end
        local srv = echo_server()
        for _ = 1, 50 do
          local s = assert(net.connect("127.0.0.1", srv.port))
          s:write("dropped without close")
        end
        rill.sleep(20)
        collectgarbage()
        collectgarbage()
        rill.sleep(20)
        srv:close()
      end)
      collectgarbage()
      collectgarbage()
      run(function() rill.sleep(10) end)
      assert.are.same({}, io_helper.leaked(before))
    end)

  it("stays up through EMFILE and serves again once descriptors are free", function()
    local script = [[
      local net = rill.net
      local errors = 0
      local served = 0
      local srv = assert(net.listen{port = 0,
        on_error = function(e) errors = errors + 1 end,
        on_connection = function(s) served = served + 1; s:close("ok") end})
      local socks, refused = {}, 0
      for i = 1, 100 do
        local s, e = net.connect("127.0.0.1", srv.port)
        if s then socks[#socks + 1] = s else refused = refused + 1 end
      end
      rill.sleep(50)
      for _, s in ipairs(socks) do s:destroy() end
      socks = nil
      collectgarbage(); collectgarbage()
      rill.sleep(50)
      local s = assert(net.connect("127.0.0.1", srv.port))
      local reply = s:read()
      io.write(refused > 0 and "refused " or "none refused ", tostring(reply), "\n")
      srv:close()
    ]]
    local p = io.popen("bash -c " .. helper.quote("ulimit -n 40; " .. helper.quote(helper.bin)
      .. " -e " .. helper.quote(script) .. " 2>&1"))
    local out = p:read("a")
    p:close()
    assert.are.equal("refused ok\n", out)
  end)

  it("echoes through sock:pipe(sock): a duplex piped into itself, with backpressure", function()
    run(function()
      local piped, unpiped, drained = 0, 0, 0
      local srv = assert(net.listen {
        port = 0,
        on_connection = function(sock)
          sock:on("drain", function() drained = drained + 1 end) -- the echo had to wait
          sock:on("pipe", function(src) if src == sock then piped = piped + 1 end end)
          sock:on("unpipe", function(src) if src == sock then unpiped = unpiped + 1 end end)
          assert.are.equal(sock, sock:pipe(sock))
        end,
      })
      local function exchange(size, pause_ms)
        local sock = assert(net.connect("127.0.0.1", srv.port))
        local payload = {}
        for i = 1, size // 64 do payload[i] = ("%063d\n"):format(i) end
        payload = table.concat(payload)
        -- With a late reader the echo fills up: the server must stop reading until we drain.
        local reader = rill.spawn(function()
          if pause_ms then rill.sleep(pause_ms) end
          return collect(sock)
        end)
        for k = 1, #payload, 65536 do sock:write(payload:sub(k, k + 65535)) end
        sock:close() -- our end: the echo ends its side after the last byte
        return reader:join() == payload
      end
      assert.is_true(exchange(64))
      assert.is_true(exchange(32 * 1024 * 1024, 200))
      assert.is_true(drained > 0)
      local many = {}
      for i = 1, 10 do many[i] = rill.spawn(exchange, 256 * 1024 + i * 64) end
      for i = 1, 10 do assert.is_true(many[i]:join()) end
      srv:close()
      assert.are.equal(12, piped)
      assert.are.equal(12, unpiped)
    end)
  end)

  it("lines() of a socket: pieces arriving slowly, CRLF cut between them, a line per piece",
    function()
      run(function()
        local pieces = { "al", "pha\r", "\nbeta\n", "", "gam", "ma\r\n\n", "last" }
        local srv = assert(net.listen {
          port = 0,
          on_connection = function(sock)
            for _, p in ipairs(pieces) do
              rill.sleep(5) -- each piece is its own read: the iterator waits between them
              if p ~= "" then sock:write(p) end
            end
            sock:close()
          end,
        })
        local sock = assert(net.connect("127.0.0.1", srv.port))
        local got = {}
        for line in sock:lines() do got[#got + 1] = line end
        assert.same({ "alpha", "beta", "gamma", "", "last" }, got)
        srv:close()
      end)
    end)

  it("lines() raises the socket's error when the peer resets mid-line", function()
    run(function()
      local srv = assert(net.listen {
        port = 0,
        on_connection = function(sock)
          sock:write("one\ntwo\nthr")
          assert(sock:read()) -- the peer's bytes are arriving: more wait unread behind this one
          sock:destroy() -- with unread data on our side this is a reset for the peer
        end,
      })
      local sock = assert(net.connect("127.0.0.1", srv.port))
      -- Queued without waiting (outside the task): far more than the server reads, so its
      -- close finds unread data, whatever the timing.
      rill.next_tick(function() sock:write(string.rep("x", 4 * 1024 * 1024)) end)
      local got = {}
      local ok, err = pcall(function()
        for line in sock:lines() do got[#got + 1] = line end
      end)
      assert.same({ "one", "two" }, got)
      assert.is_false(ok)
      assert.are.equal("ECONNRESET", err.code)
      srv:close()
    end)
  end)

  -- Sockets as sources of the native fast path (splice through a pipe of its own).
  local function payload(n)
    local t = {}
    for i = 1, n // 64 do t[i] = ("%063d\n"):format(i) end
    return table.concat(t)
  end

  it("a socket piped into a file or another socket: every byte, ends as the plain pipe does",
    function()
      local fs = require "rill.fs"
      local out = os.tmpname()
      local data = payload(4 * 1024 * 1024)
      run(function()
        -- socket -> file
        local done
        local srv = assert(net.listen {
          port = 0,
          on_connection = function(sock)
            sock:write("hello") -- writes still work while the reads are lent
            done = { stream.pipeline(sock, fs.writer(out)) }
          end,
        })
        local c = assert(net.connect("127.0.0.1", srv.port))
        for k = 1, #data, 65536 do c:write(data:sub(k, k + 65535)) end
        c:close()
        assert.are.equal("hello", collect(c))
        while done == nil do rill.sleep(2) end
        assert.is_true(done[1])
        local f = assert(io.open(out, "rb"))
        assert.is_true(f:read("a") == data)
        f:close()
        srv:close()
        -- socket -> socket: a proxy in front of an echo server, both directions piped
        local echo = echo_server()
        local proxy = assert(net.listen {
          port = 0,
          half_open = true, -- each direction ends on its own, as scripts/proxy.lua
          on_connection = function(a)
            local b = assert(net.connect("127.0.0.1", echo.port, { half_open = true }))
            stream.pipeline(a, b, function() end)
            stream.pipeline(b, a, function() end)
          end,
        })
        local p = assert(net.connect("127.0.0.1", proxy.port))
        local reader = rill.spawn(collect, p)
        for k = 1, #data, 65536 do p:write(data:sub(k, k + 65535)) end
        p:close()
        assert.is_true(reader:join() == data)
        proxy:close()
        echo:close()
      end)
      os.remove(out)
    end)

  it("a peer reset while its socket is piped into a file fails the pipeline with ECONNRESET",
    function()
      local fs = require "rill.fs"
      local out = os.tmpname()
      run(function()
        local result
        local srv = assert(net.listen {
          port = 0,
          on_connection = function(sock)
            sock:write(string.rep("y", 65536)) -- the client never reads it: its close resets
            result = { stream.pipeline(sock, fs.writer(out)) }
          end,
        })
        local c = assert(net.connect("127.0.0.1", srv.port))
        c:write(payload(256 * 1024))
        rill.sleep(50)
        c:destroy()
        while result == nil do rill.sleep(2) end
        assert.is_nil(result[1])
        assert.are.equal("ECONNRESET", result[2].code)
        srv:close()
      end)
      os.remove(out)
    end)

  it("destroying a socket while the fast path copies it ends the copy at once", function()
    run(function()
      local accepted, result
      local srv = assert(net.listen {
        port = 0,
        on_connection = function(sock)
          accepted = sock
          result = { stream.pipeline(sock, require("rill.fs").writer("/dev/null")) }
        end,
      })
      local c = assert(net.connect("127.0.0.1", srv.port))
      c:write(payload(64 * 1024)) -- the peer stays open: only the destroy can end the copy
      while accepted == nil do rill.sleep(2) end
      rill.sleep(20)
      local t0 = os.time()
      accepted:destroy()
      while result == nil do rill.sleep(2) end
      assert.is_true(os.time() - t0 <= 15) -- prompt, not timed: a hang would never get here
      assert.is_nil(result[1])
      c:destroy()
      srv:close()
    end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() net.listen() end)
    assert.has_error(function() net.listen { port = 1 } end)
    assert.has_error(function() net.listen { port = 70000, on_connection = print } end)
    assert.has_error(function() net.connect("127.0.0.1") end)
    assert.has_error(function() net.connect("127.0.0.1", 0) end)
  end)
end)
