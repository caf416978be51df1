-- wrk script for bench/gateway_wrk.py: POST /begin?id=<run>-<thread>-<n>, a fresh id per
-- request (so every request creates a promise; none re-attaches), body n (noop(x) returns x + 1).
--   RUN=<prefix> wrk -t2 -c64 -d10s --latency -s bench/wrk/begin.lua http://127.0.0.1:PORT
-- done() prints one line "WRKJSON {...}" with the counts and latency percentiles (µs).

local run = os.getenv("RUN") or tostring(os.time())
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local n, headers  -- `tid` is a global, set per thread by setup()
function init(args)
  n = 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  n = n + 1
  local path = "/begin?id=" .. run .. "-" .. tostring(tid) .. "-" .. tostring(n)
  return wrk.format("POST", path, headers, tostring(n))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
    '"lat_p50_us": %d, "lat_p90_us": %d, "lat_p99_us": %d, "lat_max_us": %d, "lat_mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
