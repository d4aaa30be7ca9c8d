-- POST /auth/login with correct credentials (BENCH_USER, BENCH_PASSWORD).
-- Counts answers by status: 200 is a login, 503 means every argon2id slot
-- (DOCFLOW_MAX_CONCURRENT_HASHES) was busy.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"username":"%s","password":"%s"}',
  common.env("BENCH_USER"), common.env("BENCH_PASSWORD"))

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {} -- global: done() reads it from each thread with thread:get
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  common.report(summary, latency, ', "statuses": {' .. table.concat(parts, ", ") .. "}")
end
