-- bench/io_grep.lua SRC DST: the issue's per-line Lua filter, as a user writes it.
local out = rill.fs.writer(rill.argv[2])
for line in rill.fs.reader(rill.argv[1]):lines() do
  if line:find("ERROR", 1, true) then out:write(line .. "\n") end
end
out:close()
