-- bench/parallel.lua: stream.parallel: speed-up of 2 workers over 1 on a CPU-bound Lua transform,
-- and items/s of a trivial fn through parallel(2, fn) against a plain map(fn).
-- Run: build/rill bench/parallel.lua [runs]
-- Prints "name value unit" lines. Times are wall-clock seconds (other engineers may load the
-- machine: the speed-up is given as the best and the median of the runs, next to what two
-- independent lua5.4 processes got from the machine in the same runs).
local rill = rawget(_G, "rill") or require "rill"
local stream = require "rill.stream"

local RUNS = tonumber(arg and arg[1]) or 5
local CPU_ITEMS = 400       -- CPU-bound items, about 2.5 ms of Lua each
local TRIVIAL_ITEMS = 200000

-- Wall clock (rill has no clock of its own yet): date(1) costs about a millisecond, far below
-- the lengths measured here.
local function now()
  local p = assert(io.popen("date +%s.%N"))
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

local function figure(name, value, unit)
  print(("%s %.2f %s"):format(name, value, unit))
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- Runs items through the transform into a counting sink; returns wall seconds.
local function timed(items, transform)
  local count = 0
  local t0 = now()
  local task = rill.spawn(function()
    return stream.pipeline(stream.from(items), transform, stream.writable { object_mode = true,
      write = function(_, _, done)
        count = count + 1
        done()
      end })
  end)
  rill.run()
  local dt = now() - t0
  assert(task:join())
  return dt, count
end

-- A CPU-bound transform: arithmetic and string work, no I/O.
local function cpu(x)
  local h = x
  for i = 1, 120000 do h = (h * 31 + i) % 1000003 end
  return h
end

local function median(t)
  t = { table.unpack(t) }
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function best_of(t)
  local b = math.huge
  for _, v in ipairs(t) do b = math.min(b, v) end
  return b
end

-- Runs alternate (1 worker, 2 workers, 1, 2, ...) so that a burst of load from elsewhere hits
-- both alike; each speed-up is a ratio of best times, or of median times.
-- The reference: what two independent lua5.4 processes get from the machine at the same time
-- (the same loop as cpu, for as many iterations as one worker runs in a run).
local SPIN = ("local h = 0 for i = 1, %d do h = (h * 31 + i) %% 1000003 end"):format(CPU_ITEMS * 120000)
local function processes(k)
  local cmd = {}
  for i = 1, k do cmd[i] = "lua5.4 -e '" .. SPIN .. "' &" end
  local t0 = now()
  assert(os.execute("sh -c \"" .. table.concat(cmd, " ") .. " wait\""))
  return now() - t0
end

local items = range(CPU_ITEMS)
local t1s, t2s, used, p1s, p2s = {}, {}, {}, {}, {}
for r = 1, RUNS do
  local t1, c1 = timed(items, stream.parallel(1, cpu))
  local c0 = os.clock()
  local t2, c2 = timed(items, stream.parallel(2, cpu))
  used[r] = (os.clock() - c0) / t2 -- CPUs this process got during the 2-worker run
  assert(c1 == CPU_ITEMS and c2 == CPU_ITEMS)
  t1s[r], t2s[r] = t1, t2
  p1s[r], p2s[r] = processes(1), processes(2) / 2
end
figure("parallel_cpu_1_worker_best", best_of(t1s), "s")
figure("parallel_cpu_2_workers_best", best_of(t2s), "s")
figure("parallel_speedup_2_over_1_best", best_of(t1s) / best_of(t2s), "x")
figure("parallel_speedup_2_over_1_median", median(t1s) / median(t2s), "x")
figure("parallel_cpus_used_2_workers_median", median(used), "CPUs")
figure("machine_two_processes_speedup_best", best_of(p1s) / best_of(p2s), "x")
figure("machine_two_processes_speedup_median", median(p1s) / median(p2s), "x")
local single = {}
for r = 1, RUNS do single[r] = timed(items, stream.map(cpu)) end
figure("map_cpu_same_work_best", best_of(single), "s")

-- Per-item overhead: a trivial fn, through parallel(2, fn) and through map(fn).
local trivial = range(TRIVIAL_ITEMS)
local pr, mr = {}, {}
for r = 1, RUNS do
  pr[r] = TRIVIAL_ITEMS / timed(trivial, stream.parallel(2, function(x) return x + 1 end))
  mr[r] = TRIVIAL_ITEMS / timed(trivial, stream.map(function(x) return x + 1 end))
end
table.sort(pr)
table.sort(mr)
figure("parallel2_trivial_items_best", pr[#pr] / 1000, "k items/s")
figure("parallel2_trivial_items_median", median(pr) / 1000, "k items/s")
figure("map_trivial_items_best", mr[#mr] / 1000, "k items/s")
figure("map_trivial_items_median", median(mr) / 1000, "k items/s")
