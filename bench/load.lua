-- One wrk script for every row of the bench. Its inputs come after `--` as key=value:
--   mode      signup | peer_signup | login | login_wrong | login_unknown | refresh | bearer
--             | cookie | get
--   path      the request path
--   tag       makes this run's generated emails unique
--   password  the password of every account
--   file      one item a line: emails (login*), refresh tokens, access tokens or cookies
--   threads   wrk's thread count (refresh splits its tokens between threads)
-- done() prints one line, "BENCHJSON {...}", that bench/load.py reads.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local opts = {}
local items = {}
local counter = 0
local queue = {}
local json_headers = { ["Content-Type"] = "application/json" }

local function read_lines(name)
  local lines = {}
  for line in io.lines(name) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  return lines
end

local function next_email(prefix)
  counter = counter + 1
  return string.format("%s-%s-%d-%d@example.com", prefix, opts.tag, tid, counter)
end

local function pick()
  counter = counter + 1
  return items[(counter + tid * 7919) % #items + 1]
end

local function credentials(email, password)
  return string.format('{"email":"%s","password":"%s"}', email, password)
end

local builders = {
  signup = function()
    return wrk.format("POST", opts.path, json_headers,
      credentials(next_email("s"), opts.password))
  end,
  peer_signup = function()
    local email = next_email("s")
    return wrk.format("POST", opts.path, json_headers, string.format(
      '{"email":"%s","password":"%s","name":"bench"}', email, opts.password))
  end,
  login = function()
    return wrk.format("POST", opts.path, json_headers, credentials(pick(), opts.password))
  end,
  login_wrong = function()
    return wrk.format("POST", opts.path, json_headers,
      credentials(pick(), opts.password .. "-wrong"))
  end,
  login_unknown = function()
    return wrk.format("POST", opts.path, json_headers,
      credentials(next_email("nobody"), opts.password))
  end,
  refresh = function()
    -- Each token is spent once: take one from this thread's queue, put its successor back
    -- in response(). An empty queue (a failed refresh lost its chain) reuses the last token,
    -- which the service refuses, so the loss shows up as errors rather than as speed.
    local token = table.remove(queue) or opts.last_token
    opts.last_token = token
    return wrk.format("POST", opts.path, json_headers,
      string.format('{"refresh_token":"%s"}', token))
  end,
  bearer = function()
    return wrk.format("GET", opts.path, { ["Authorization"] = "Bearer " .. pick() })
  end,
  cookie = function()
    return wrk.format("GET", opts.path, { ["Cookie"] = pick() })
  end,
  get = function()
    return wrk.format("GET", opts.path)
  end,
}

local function refresh_response(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then table.insert(queue, 1, token) end
  end
end

function init(args)
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then opts[key] = value end
  end
  if opts.file and #opts.file > 0 then items = read_lines(opts.file) end
  if opts.mode == "refresh" then
    local step = tonumber(opts.threads)
    for i = tid, #items, step do queue[#queue + 1] = items[i] end
    -- wrk reads (and discards) one request from the first thread to check the script.
    response = refresh_response
  end
  request = builders[opts.mode]
  if request == nil then error("unknown mode " .. tostring(opts.mode)) end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
