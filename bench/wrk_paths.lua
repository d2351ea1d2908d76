-- wrk script for bench/bench_load.py: GET random paths from a file with one fixed auth header.
--   wrk ... -s bench/wrk_paths.lua <url> -- <paths file> <header name> <header value>
-- Prints one line `WRKJSON {...}` with requests, errors and latency percentiles (microseconds).

local paths = {}

init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  if args[2] and args[3] then
    wrk.headers[args[2]] = args[3]
  end
  -- each thread has its own Lua state; seed each differently
  math.randomseed(os.time() + math.floor(os.clock() * 1000000) + #tostring({}))
end

request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
