-- GET /auth/me with a valid access token (BENCH_TOKEN): the cost of
-- verifying a bearer token on every request.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. common.env("BENCH_TOKEN")

function done(summary, latency, requests)
  common.report(summary, latency)
end
