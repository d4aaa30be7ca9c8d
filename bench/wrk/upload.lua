-- POST of a pre-built multipart/form-data body (BENCH_BODY, a file written by
-- bench/make_upload.py with the boundary BENCH_BOUNDARY). Every request sends
-- the same bytes, with the bearer token (common.setup).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local f = assert(io.open(common.env("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. common.env("BENCH_BOUNDARY")
common.setup()
