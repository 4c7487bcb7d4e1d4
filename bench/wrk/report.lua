-- Shared by the wrk scripts of bench/bench_http.sh: after the run, prints one line
-- "wrk_result {...}" with the figures the script reads (wrk's own text report stays above it).
-- Errors are every failed request: connect, read, write and timeout errors, and replies whose
-- status is not 2xx or 3xx.
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'wrk_result {"requests":%d,"duration_s":%.3f,"errors":%d,"non_2xx":%d}\n',
        summary.requests, summary.duration / 1e6,
        e.connect + e.read + e.write + e.timeout + e.status, e.status))
end
