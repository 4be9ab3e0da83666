-- wrk script: POST the JSON body stored in the file named by the first script argument,
-- with any further arguments sent as extra headers ("Name: value"), then print one
-- machine-readable line the harness parses.
--   wrk -t2 -c8 -d5s -s bench/post.lua http://127.0.0.1:8000/predict -- body.json ["X-Request-ID: ..."]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.body = file:read("*a")
   file:close()
   for i = 2, #args do
      local name, value = args[i]:match("^([^:]+):%s*(.*)$")
      wrk.headers[name] = value
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
      "not_ok=%d socket_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
