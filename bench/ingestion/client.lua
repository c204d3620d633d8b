-- The wrk client of the ingestion benchmark (bench/ingestion/wrk.py runs it).
--
-- One fixed request per connection, sent again as soon as its answer arrives (keep-alive),
-- configured by environment variables so that one script serves every part:
--   LMS_WRK_METHOD   GET or POST
--   LMS_WRK_BODY     file holding the request body (already compressed for gzip), or unset
--   LMS_WRK_TYPE     its Content-Type;  LMS_WRK_ENCODING  its Content-Encoding, or unset
--   LMS_WRK_TOKEN    sent as "Authorization: Bearer <token>", or unset
--   LMS_WRK_STATUS   the status every answer must have (202 for ingestion)
--   LMS_WRK_EXPECT   a string every answer's body must contain (`"accepted":1000,`), or unset
-- An answer is counted as good only if both hold; done() prints one JSON line, prefixed
-- LMS_WRK, with the counts and the latency percentiles in microseconds.

local function env(name)
  local value = os.getenv(name)
  if value == "" then return nil end
  return value
end

wrk.method = env("LMS_WRK_METHOD") or "GET"
local body_file = env("LMS_WRK_BODY")
if body_file then
  local file = assert(io.open(body_file, "rb"))
  wrk.body = file:read("*a")
  file:close()
end
wrk.headers["Content-Type"] = env("LMS_WRK_TYPE")
wrk.headers["Content-Encoding"] = env("LMS_WRK_ENCODING")
local token = env("LMS_WRK_TOKEN")
if token then wrk.headers["Authorization"] = "Bearer " .. token end

local expected_status = tonumber(env("LMS_WRK_STATUS") or "200")
local expected_text = env("LMS_WRK_EXPECT")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(_args)
  good = 0
  bad = 0
  bad_status = 0
  bad_body = ""
end

function response(status, _headers, body)
  if status == expected_status and (not expected_text or string.find(body, expected_text, 1, true)) then
    good = good + 1
  else
    bad = bad + 1
    bad_status = status
    bad_body = string.sub(body or "", 1, 300)
  end
end

local function quote(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, _requests)
  local total_good, total_bad, last_status, last_body = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    total_good = total_good + thread:get("good")
    local thread_bad = thread:get("bad")
    if thread_bad > 0 then
      total_bad = total_bad + thread_bad
      last_status = thread:get("bad_status")
      last_body = thread:get("bad_body")
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'LMS_WRK {"duration_us":%d,"requests":%d,"good":%d,"bad":%d,"bad_status":%d,'
      .. '"bad_body":%s,"connect_errors":%d,"read_errors":%d,"write_errors":%d,'
      .. '"timeouts":%d,"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d}}\n',
    summary.duration, summary.requests, total_good, total_bad, last_status, quote(last_body),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
