-- scripts/cat.lua: concatenate files (or stdin) to stdout, like `cat`.
-- usage: rill scripts/cat.lua [FILE...]      ("-" or no FILE: stdin)
-- A single file goes through a native pipeline: the bytes never enter Lua (and the kernel
-- moves them itself where it can).
local fs, stream = rill.fs, rill.stream

local files = #rill.argv > 0 and rill.argv or { "-" }
local status = 0

local function complain(f, err)
  local why = type(err) == "table" and err.message or tostring(err)
  rill.stderr:write(("cat: %s: %s\n"):format(f, (why:gsub("^%l", string.upper))))
  status = 1
end

for i, f in ipairs(files) do
  local src = f == "-" and rill.stdin or fs.reader(f)
  if #files == 1 then
    local ok, err = stream.pipeline(src, rill.stdout)
    if not ok then complain(f, err) end
  else
    -- Several inputs share stdout, which must stay open between them: copy chunk by chunk.
    local ok, err = pcall(function()
      for chunk in src:chunks() do rill.stdout:write(chunk) end
    end)
    if not ok then complain(f, err) end
  end
end
rill.exit(status)
