-- bench/io_chunks.lua SRC DST: 4 KiB chunks through a Lua transform that counts bytes (as
-- ../shared/anchors/node_chunks.js does).
local stream, fs = rill.stream, rill.fs
local n = 0
local count = stream.transform { transform = function(self, c, push) n = n + #c; push(c) end }
assert(stream.pipeline(fs.reader(rill.argv[1], { chunk_size = 4096 }), count, fs.writer(rill.argv[2])))
io.stderr:write(n, "\n")
