-- wrk script for bench/run.sh: POST a small chat-completion request, and at the end print one
-- machine-readable line that run.sh parses (latencies in microseconds):
--   BENCH rps=... p50_us=... p90_us=... p99_us=... p999_us=... max_us=... requests=... duration_us=...
--         err_connect=... err_read=... err_write=... err_status=... err_timeout=...
-- err_status counts answers with a status >= 400 (wrk's definition); they still count in rps.
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"qwen3-32b","messages":[{"role":"system","content":"You are a helpful assistant."},'
  .. '{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32,"temperature":0.7}'

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d requests=%d duration_us=%d "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
