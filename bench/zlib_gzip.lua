-- bench/zlib_gzip.lua: gzip a file at level 6 through the native pipeline (the node_gzip.js job).
-- usage: rill bench/zlib_gzip.lua IN OUT [THREADS]   (THREADS: zlib.gzip{threads = n})
local fs = require "rill.fs"
local stream = require "rill.stream"
local zlib = require "rill.zlib"

local src, dst, threads = rill.argv[1], rill.argv[2], tonumber(rill.argv[3])
assert(src and dst, "usage: rill bench/zlib_gzip.lua IN OUT [THREADS]")
assert(stream.pipeline(fs.reader(src), zlib.gzip{ level = 6, threads = threads }, fs.writer(dst)))
