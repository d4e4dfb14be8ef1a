-- scripts/wc.lua: count lines, words and bytes of files (or stdin), like `wc`.
-- usage: rill scripts/wc.lua [-l] [-w] [-c] [FILE...]      ("-" or no FILE: stdin)
-- Each file is a stream read chunk by chunk: memory stays flat whatever the size.
local fs = rill.fs

local want, files = {}, {}
for _, a in ipairs(rill.argv) do
  if a:match("^%-[lwc]+$") then
    for f in a:gmatch("[lwc]") do want[f] = true end
  else
    files[#files + 1] = a
  end
end
if not (want.l or want.w or want.c) then want = { l = true, w = true, c = true } end
if #files == 0 then files[1] = "-" end

-- Counts one stream. A word is a run of non-space bytes; a run that crosses a chunk boundary
-- counts once.
local function count(stream)
  local lines, words, bytes, in_word = 0, 0, 0, false
  for chunk in stream:chunks() do
    local s = tostring(chunk)
    bytes = bytes + #s
    local _, nl = s:gsub("\n", "\n")
    lines = lines + nl
    for _ in s:gmatch("%S+") do words = words + 1 end
    if in_word and s:find("^%S") then words = words - 1 end
    in_word = s:find("%S$") ~= nil
  end
  return lines, words, bytes
end

-- Column width as GNU wc chooses it: wide enough for the total size of the regular files,
-- and at least 7 when some input is not a regular file (its size is unknown).
local width, size_sum = 1, 0
for _, f in ipairs(files) do
  local st = fs.stat(f == "-" and "/dev/stdin" or f)
  if st and st.is_file then
    size_sum = size_sum + st.size
  elseif st then
    width = 7
  end
end
width = math.max(width, #tostring(size_sum))

local function show(l, w, c, name)
  local cols = {}
  if want.l then cols[#cols + 1] = ("%" .. width .. "d"):format(l) end
  if want.w then cols[#cols + 1] = ("%" .. width .. "d"):format(w) end
  if want.c then cols[#cols + 1] = ("%" .. width .. "d"):format(c) end
  if name then cols[#cols + 1] = name end
  rill.stdout:write(table.concat(cols, " ") .. "\n")
end

local status, tl, tw, tc = 0, 0, 0, 0
for _, f in ipairs(files) do
  local stream = f == "-" and rill.stdin or fs.reader(f)
  local ok, l, w, c = pcall(count, stream)
  if ok then
    tl, tw, tc = tl + l, tw + w, tc + c
    show(l, w, c, f ~= "-" and f or (#files > 1 and "-" or nil))
  else
    local err = l
    local why = type(err) == "table" and err.message or tostring(err)
    rill.stderr:write(("wc: %s: %s\n"):format(f, why:gsub("^%l", string.upper)))
    status = 1
  end
end
if #files > 1 then show(tl, tw, tc, "total") end
rill.exit(status)
