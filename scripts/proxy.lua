-- scripts/proxy.lua: a TCP proxy: every connection to LISTEN_PORT is relayed to HOST:PORT.
-- usage: rill scripts/proxy.lua LISTEN_PORT HOST PORT       (LISTEN_PORT 0: any free port)
-- Prints "listening on ADDRESS:PORT" once ready. Bytes are piped natively in both directions,
-- with backpressure: a slow side slows the other, memory stays bounded.
local net, stream = rill.net, rill.stream

local lport, host, port = tonumber(rill.argv[1]), rill.argv[2], tonumber(rill.argv[3])
if not (lport and host and port) then
  rill.stderr:write("usage: proxy.lua LISTEN_PORT HOST PORT\n")
  rill.exit(2)
end

local server = assert(net.listen {
  host = "127.0.0.1",
  port = lport,
  half_open = true,
  on_connection = function(client)
    local upstream, err = net.connect(host, port, { half_open = true })
    if not upstream then
      rill.stderr:write(("proxy: %s\n"):format(tostring(err)))
      client:destroy()
      return
    end
    -- Each direction ends on its own (half-close); an error on either side tears both down.
    local function relay(a, b)
      stream.pipeline(a, b, function(e)
        if e then
          client:destroy()
          upstream:destroy()
        end
      end)
    end
    relay(client, upstream)
    relay(upstream, client)
  end,
})
rill.stdout:write(("listening on %s:%d\n"):format(server.host, server.port))
