-- scripts/gunzip.lua: decompress gzip from stdin (or a file) to stdout, like `gzip -dc`.
-- usage: rill scripts/gunzip.lua [FILE]
-- Concatenated members all come out; corrupt or truncated input is an error (exit 1).
local fs, stream, zlib = rill.fs, rill.stream, rill.zlib or require "rill.zlib"

local file = rill.argv[1]
local src = (file == nil or file == "-") and rill.stdin or fs.reader(file)
local ok, err = stream.pipeline(src, zlib.gunzip(), rill.stdout)
if not ok then
  rill.stderr:write("gunzip: " .. tostring(err) .. "\n")
  rill.exit(1)
end
