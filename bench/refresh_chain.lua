-- wrk script: refresh-token rotation chains (the token endpoint benchmark).
-- Usage: wrk -t1 ... -s bench/refresh_chain.lua URL -- TOKENS_FILE AUTHORIZATION
--
-- TOKENS_FILE holds one refresh token per line, one per family, at least as many as
-- connections. Each request takes a token from the pool; each 200 answer puts the rotated
-- token it carries back. With as many families as connections, every family has exactly one
-- request in flight and every request is a rotation of the latest token of its family.
-- A request finding the pool empty sends a made-up token (answered 400, counted by wrk as
-- a non-2xx response): the run is then invalid, never silently easier.
local pool = {}
local first, last = 1, 0
local authorization
local verified = false

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      last = last + 1
      pool[last] = line
    end
  end
  authorization = args[2]
end

local function format(token)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = authorization,
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function request()
  if not verified then
    -- wrk calls request() once before the run, to check the request it builds (never sent):
    -- that call must not take a token from the pool.
    verified = true
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

function response(status, headers, body)
  if status == 200 then
    local token = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
    if token then
      last = last + 1
      pool[last] = token
    end
  end
end
