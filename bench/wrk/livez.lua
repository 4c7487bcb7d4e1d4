-- wrk script: GET /livez, the constant reply that is the ceiling predict is compared against.
-- Run by bench/bench_http.sh; the URL given to wrk names the route.
wrk.method = "GET"

-- done(): the result line, from report.lua beside this file
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
