-- wrk script: refresh-token rotation chains spread over several instances (scale benchmark).
-- Usage: BENCH_PORTS=8001,8002,8003 BENCH_TOKENS=/path/chains \
--        wrk -tT -cC -s bench/refresh_spread.lua http://127.0.0.1:8001/oauth/token -- AUTHORIZATION
--
-- Thread i (1-based) connects to port i of BENCH_PORTS (round-robin when there are more
-- threads than ports) and rotates the families of the file BENCH_TOKENS .. "-" .. i, one
-- refresh token per line, at least as many as its connections: every thread has families of
-- its own, every family at most one request in flight, every request a rotation of the
-- latest token of its family (as in refresh_chain.lua). A request finding its pool empty
-- sends a made-up token (answered 400, counted by wrk as a non-2xx response): the run is then
-- invalid, never silently easier.
local count = 0

function setup(thread)
  count = count + 1
  local ports = {}
  for port in string.gmatch(os.getenv("BENCH_PORTS"), "%d+") do
    ports[#ports + 1] = port
  end
  local port = ports[(count - 1) % #ports + 1]
  thread.addr = wrk.lookup("127.0.0.1", port)[1]
  thread:set("tokens_file", os.getenv("BENCH_TOKENS") .. "-" .. count)
  -- wrk checks the request its script builds by calling request() once, in the first
  -- thread only, before the run (never sent): that call must not take a token from the pool.
  thread:set("check_pending", count == 1)
end

local pool = {}
local first, last = 1, 0
local authorization

function init(args)
  authorization = args[1]
  for line in io.lines(tokens_file) do
    if #line > 0 then
      last = last + 1
      pool[last] = line
    end
  end
end

local function format(token)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = authorization,
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function request()
  if check_pending then
    check_pending = false
    return format(pool[first] or "abrt_pool_empty")
  end
  local token = "abrt_pool_empty"
  if first <= last then
    token = pool[first]
    pool[first] = nil
    first = first + 1
  end
  return format(token)
end

local refused = 0

function response(status, headers, body)
  if status ~= 200 then
    -- The first refusals of each thread, for the benchmark's error message (the first is
    -- the cause: after it, its connection's family is lost and the pool runs dry).
    refused = refused + 1
    if refused <= 3 then
      io.stderr:write(tokens_file .. ": " .. status .. " " .. body:sub(1, 300) .. "\n")
    end
  end
  if status == 200 then
    local token = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
    if token then
      last = last + 1
      pool[last] = token
    end
  end
end
