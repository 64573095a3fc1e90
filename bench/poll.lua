-- wrk script for bench/api_bench.py: each connection polls, then waits about POLL_INTERVAL_MS
-- (uniformly 0.5x..1.5x, so 50 connections do not poll in lockstep); 0 = back to back.
-- At the end it prints one JSON line with the counts and latency percentiles.
local interval_ms = tonumber(os.getenv("POLL_INTERVAL_MS") or "0")

function delay()
  if interval_ms == 0 then return 0 end
  return math.floor(interval_ms * (0.5 + math.random()))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "errors": %d, "non_2xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
