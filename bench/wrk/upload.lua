-- POST of a pre-built multipart/form-data body (BENCH_BODY, a file written by
-- bench/make_upload.py with the boundary BENCH_BOUNDARY). Every request sends
-- the same bytes. BENCH_TOKEN, when set, goes in the Authorization header
-- (docflow needs it; the nginx baseline ignores it).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local f = assert(io.open(common.env("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. common.env("BENCH_BOUNDARY")
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
