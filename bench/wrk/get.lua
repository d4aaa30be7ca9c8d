-- GET of the URL wrk is given, with the bearer token BENCH_TOKEN when it is
-- set (docflow checks it on every request; nginx's static file ignores it,
-- but receives the same header bytes).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "GET"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
