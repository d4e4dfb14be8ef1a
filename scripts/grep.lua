-- scripts/grep.lua: print the lines that contain a fixed string, like `grep -F`.
-- usage: rill scripts/grep.lua [-v] [-c] [-n] [-i] PATTERN [FILE...]   ("-" or no FILE: stdin)
-- Exit status: 0 when a line was selected, 1 when none was, 2 on an error (as grep).
local fs = rill.fs

local opts, args = {}, {}
for _, a in ipairs(rill.argv) do
  if #args == 0 and a:match("^%-[vcni]+$") then
    for f in a:gmatch("[vcni]") do opts[f] = true end
  else
    args[#args + 1] = a
  end
end
local pattern = table.remove(args, 1)
if pattern == nil then
  rill.stderr:write("usage: grep.lua [-v] [-c] [-n] [-i] PATTERN [FILE...]\n")
  rill.exit(2)
end
if #args == 0 then args[1] = "-" end
local many = #args > 1
local needle = opts.i and pattern:lower() or pattern
local out = rill.stdout
local status = 1

for _, f in ipairs(args) do
  local src = f == "-" and rill.stdin or fs.reader(f)
  local name = f == "-" and "(standard input)" or f
  local prefix = many and name .. ":" or ""
  local count, n = 0, 0
  -- Records end at "\n" only: a "\r" before it stays part of the line, as grep keeps it.
  local records = src:pipe(rill.stream.split("\n"))
  src:on("error", function(_, e) records:destroy(e) end) -- a missing file fails the loop below
  local ok, err = pcall(function()
    for line in records:chunks() do
      n = n + 1
      local hay = opts.i and line:lower() or line
      local hit = hay:find(needle, 1, true) ~= nil
      if hit ~= (opts.v == true) then
        count = count + 1
        if not opts.c then
          if opts.n then
            out:write(prefix .. n .. ":" .. line .. "\n")
          else
            out:write(prefix .. line .. "\n")
          end
        end
      end
    end
  end)
  if not ok then
    local why = type(err) == "table" and err.message or tostring(err)
    rill.stderr:write(("grep: %s: %s\n"):format(f, (why:gsub("^%l", string.upper))))
    status = 2
  else
    if opts.c then out:write(prefix .. count .. "\n") end
    if count > 0 and status ~= 2 then status = 0 end
  end
end
rill.exit(status)
