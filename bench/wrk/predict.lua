-- wrk script: POST /v1/models/sine/predict with 10 rows, x evenly spaced on [-4.5, 4.5] (the
-- body bench_http sends). Run by bench/bench_http.sh; the URL given to wrk names the route.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"x":[[-4.5],[-3.5],[-2.5],[-1.5],[-0.5],[0.5],[1.5],[2.5],[3.5],[4.5]]}'

-- done(): the result line, from report.lua beside this file
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "report.lua")
