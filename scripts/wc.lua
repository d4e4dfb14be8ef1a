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

-- Counts one stream. As wc does in the C locale, a word is a run of non-space bytes with at
-- least one printable character in it; a run that crosses a chunk boundary counts once.
local function count(stream)
  local lines, words, bytes = 0, 0, 0
  local in_word, counted = false, false
  for chunk in stream:chunks() do
    local s = tostring(chunk)
    bytes = bytes + #s
    local _, nl = s:gsub("\n", "\n")
    lines = lines + nl
    local pos = 1
    if in_word then
      local head = s:match("^%S+")
      if head then
        if not counted and head:find("[\33-\126]") then
          words = words + 1
          counted = true
        end
        pos = #head + 1
      else
        in_word = false
      end
    end
    for from, tok, to in s:gmatch("()(%S+)()", pos) do
      if from >= pos then
        counted = tok:find("[\33-\126]") ~= nil
        if counted then words = words + 1 end
        in_word = to > #s
      end
    end
    if pos <= #s and s:find("%s$") then in_word = false end
  end
  return lines, words, bytes
end

-- Column width as GNU wc chooses it: 1 for a single column; else wide enough for the total
-- size of the regular files, and at least 7 when some input is not a regular file (its size is
-- unknown); 1 when the first input cannot be opened.
local ncols = (want.l and 1 or 0) + (want.w and 1 or 0) + (want.c and 1 or 0)
local width, size_sum = 1, 0
local stats = {}
for i, f in ipairs(files) do stats[i] = fs.stat(f == "-" and "/dev/stdin" or f) or false end
if ncols > 1 and stats[1] then
  for _, st in ipairs(stats) do
    if st and st.is_file then
      size_sum = size_sum + st.size
    elseif st then
      width = 7
    end
  end
  width = math.max(width, #tostring(size_sum))
end

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
