-- spec/udp_spec.lua: rill.udp: bind, send, and the object-mode readable of messages.
local helper = require "spec.helper"
local io_helper = require "spec.io_helper"
local rill = helper.rill
local udp = require "rill.udp"
local buffer = require "rill.buffer"

local run = helper.run

describe("rill.udp", function()
  it("binds to port 0, sends and receives {data, host, port} messages", function()
    run(function()
      local a = assert(udp.bind { host = "127.0.0.1", port = 0 })
      local b = assert(udp.bind { host = "127.0.0.1", port = 0 })
      assert.is_true(a.port > 0)
      assert.are.equal("127.0.0.1", a.address)
      assert.is_true(a.readable_object_mode)
      assert.is_true(b:send("hello", "127.0.0.1", a.port))
      assert.is_true(b:send(buffer.from("world"), "localhost", a.port))
      local m1 = a:read()
      local m2 = a:read()
      assert.is_true(buffer.is(m1.data))
      assert.are.equal("hello", tostring(m1.data))
      assert.are.equal("world", tostring(m2.data))
      assert.are.equal("127.0.0.1", m1.host)
      assert.are.equal(b.port, m1.port)
      assert.is_true(b:send("", "127.0.0.1", a.port)) -- an empty datagram is a message too
      assert.are.equal(0, #a:read().data)
      a:destroy()
      b:destroy()
      while not (a.closed and b.closed) do rill.sleep(1) end
    end)
  end)

  it("delivers many messages as data events, in order on loopback", function()
    run(function()
      local a = assert(udp.bind {})
      local b = assert(udp.bind {})
      local got = {}
      a:on("data", function(_, m) got[#got + 1] = tostring(m.data) end)
      for i = 1, 200 do b:send("m" .. i, "127.0.0.1", a.port) end
      for _ = 1, 500 do
        if #got == 200 then break end
        rill.sleep(1)
      end
      assert.are.equal(200, #got)
      assert.are.equal("m1", got[1])
      assert.are.equal("m200", got[200])
      a:destroy()
      b:destroy()
    end)
  end)

  it("gives EMSGSIZE for a datagram too big, and keeps working", function()
    run(function()
      local a = assert(udp.bind {})
      local b = assert(udp.bind {})
      local ok, err = b:send(string.rep("x", 70000), "127.0.0.1", a.port)
      assert.is_nil(ok)
      assert.are.equal("EMSGSIZE", err.code)
      assert.is_true(b:send("still", "127.0.0.1", a.port))
      assert.are.equal("still", tostring(a:read().data))
      a:destroy()
      b:destroy()
    end)
  end)

  it("reports a port in use as nil, err", function()
    run(function()
      local a = assert(udp.bind {})
      local b, err = udp.bind { port = a.port }
      assert.is_nil(b)
      assert.are.equal("EADDRINUSE", err.code)
      a:destroy()
    end)
  end)

  it("a closed socket cannot send, and leaves no descriptor", function()
    -- let whatever earlier specs left closing finish first
    collectgarbage()
    collectgarbage()
    run(function() rill.sleep(10) end)
    io_helper.settle()
    local before = io_helper.fds()
    run(function()
      for _ = 1, 200 do
        local s = assert(udp.bind {})
        s:destroy()
        while not s.closed do rill.sleep(1) end
        local ok, err = s:send("x", "127.0.0.1", 9)
        assert.is_nil(ok)
        assert.are.equal("EBADF", err.code)
      end
      for _ = 1, 100 do udp.bind {} end -- dropped without close
    end)
    collectgarbage()
    collectgarbage()
    run(function() rill.sleep(5) end)
    assert.are.same({}, io_helper.leaked(before))
  end)

  it("raises on misuse", function()
    run(function()
      local a = assert(udp.bind {})
      assert.has_error(function() a:send("x") end)
      assert.has_error(function() a:send("x", "127.0.0.1", 0) end)
      assert.has_error(function() a:send({}, "127.0.0.1", 9) end)
      assert.has_error(function() udp.bind { port = -1 } end)
      a:destroy()
    end)
  end)
end)
