-- bench/io_tcp_echo.lua [PORT]: a TCP echo server; prints its port.
local srv = assert(rill.net.listen { host = "127.0.0.1", port = tonumber(rill.argv[1]) or 0,
  on_connection = function(sock)
    pcall(function() for c in sock:chunks() do sock:write(c) end end)
    sock:destroy()
  end })
rill.stdout:write(srv.port .. "\n")
