-- scripts/tee.lua: copy stdin to stdout and to every FILE, like `tee`.
-- usage: rill scripts/tee.lua [-a] FILE...
-- stdin is piped natively into all the destinations at once; the slowest sets the pace, so
-- memory stays bounded whatever the input size.
local fs, stream = rill.fs, rill.stream

local append, files = false, {}
for _, a in ipairs(rill.argv) do
  if a == "-a" then append = true else files[#files + 1] = a end
end

local status, pending = 0, 0
local me = coroutine.running()
local function done(name)
  return function(err)
    if err then
      local why = type(err) == "table" and err.message or tostring(err)
      rill.stderr:write(("tee: %s: %s\n"):format(name, (why:gsub("^%l", string.upper))))
      status = 1
    end
    pending = pending - 1
  end
end

local sinks = { rill.stdout }
local names = { "standard output" }
for _, f in ipairs(files) do
  sinks[#sinks + 1] = fs.writer(f, { append = append })
  names[#names + 1] = f
end
for i, w in ipairs(sinks) do
  pending = pending + 1
  stream.finished(w, done(names[i]))
  -- A destination that fails is dropped; the others go on (tee does the same).
  w:on("error", function() end)
  rill.stdin:pipe(w)
end
while pending > 0 do rill.sleep(5) end
rill.exit(status)
