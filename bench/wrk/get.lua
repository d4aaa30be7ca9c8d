-- GET of the URL wrk is given, with the bearer token (common.setup).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "GET"
common.setup()
