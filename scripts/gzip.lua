-- scripts/gzip.lua: compress stdin (or a file) to stdout, like `gzip -c`.
-- usage: rill scripts/gzip.lua [-1..-9] [FILE]
-- The whole pipeline is native: the bytes never enter Lua.
local fs, stream, zlib = rill.fs, rill.stream, rill.zlib or require "rill.zlib"

local level, file = 6, nil
for _, a in ipairs(rill.argv) do
  local l = a:match("^%-(%d)$")
  if l then level = tonumber(l) else file = a end
end
local src = (file == nil or file == "-") and rill.stdin or fs.reader(file)
local ok, err = stream.pipeline(src, zlib.gzip{ level = level }, rill.stdout)
if not ok then
  rill.stderr:write("gzip: " .. tostring(err) .. "\n")
  rill.exit(1)
end
