-- bench/io_tcp_client.lua FILE PORT: streams FILE to 127.0.0.1:PORT and counts the bytes echoed
-- back (as ../shared/anchors/node_tcp_client.js does).
local file, port = rill.argv[1], tonumber(rill.argv[2])
local size = rill.fs.stat(file).size
local sock = assert(rill.net.connect("127.0.0.1", port))
rill.fs.reader(file):pipe(sock, { close = false })
local got = 0
for c in sock:chunks() do
  got = got + #c
  if got >= size then break end
end
assert(got == size, "short " .. got)
