-- Shared by the wrk scripts of bench/run.sh: one machine-readable line at the
-- end of a run, read by bench/report.py. Loaded with
--   local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
-- Latencies are wrk's (microseconds), printed in milliseconds.
local M = {}

function M.report(summary, latency, extra)
  local e = summary.errors
  io.write(string.format('BENCH_RESULT {"duration_s": %.6f, "requests": %d, "bytes_read": %d, '
    .. '"non_2xx_3xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
    .. '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f%s}\n',
    summary.duration / 1e6, summary.requests, summary.bytes,
    e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, extra or ""))
end

-- What every script does: the bearer token BENCH_TOKEN on each request when
-- set (docflow checks it; nginx ignores it but receives the same bytes), and
-- the report when wrk is done.
function M.setup()
  local token = os.getenv("BENCH_TOKEN")
  if token ~= nil and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  done = function(summary, latency, requests)
    M.report(summary, latency)
  end
end

function M.env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then error("bench: " .. name .. " is not set") end
  return v
end

return M
