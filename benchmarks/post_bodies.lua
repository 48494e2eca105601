-- wrk script for benchmarks/side_by_side.py: POST pre-generated bodies round-robin.
-- args: <file of bodies, one JSON per line> <path>; prints one RESULT line at the end.
local requests = {}
local idx = 0
c200, c503, cother = 0, 0, 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    requests[#requests + 1] = wrk.format("POST", args[2], {["Content-Type"] = "application/json"}, line)
  end
  f:close()
  idx = math.random(#requests)
end

function request()
  idx = idx % #requests + 1
  return requests[idx]
end

function response(status, headers, body)
  if status == 200 then c200 = c200 + 1
  elseif status == 503 then c503 = c503 + 1
  else cother = cother + 1 end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("c200"); b = b + t:get("c503"); c = c + t:get("cother")
  end
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\n", a, b, c, summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
