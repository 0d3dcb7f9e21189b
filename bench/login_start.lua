-- wrk script: abandoned logins, each from a client address of its own (scale benchmark).
-- Usage: BENCH_LOGINS=100000 wrk -t1 -cC -s bench/login_start.lua http://127.0.0.1:PORT/auth/login/github
--
-- Every request is GET /auth/login/github with no cookie and the next address of 10.0.0.0/8
-- in X-Forwarded-For (the server trusts 127.0.0.1 as its proxy), so the per-address limit on
-- login starts never refuses one: each is a stored transaction and a 303 to the provider, and
-- none is ever completed. Once BENCH_LOGINS answers have come back the thread stops and
-- writes the file BENCH_DONE: wrk itself waits out its -d duration unless it is sent SIGINT,
-- which the benchmark then does.
local sent, answered = 0, 0
local limit = tonumber(os.getenv("BENCH_LOGINS"))
local offset = tonumber(os.getenv("BENCH_ADDRESS_OFFSET") or "0")
local done_file = os.getenv("BENCH_DONE")
local verified = false

function request()
  if not verified then
    verified = true -- wrk's check of the request it builds: never sent
    return wrk.format("GET", nil, { ["X-Forwarded-For"] = "10.255.255.255" }, nil)
  end
  sent = sent + 1
  local n = sent + offset
  local address = string.format(
    "10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256
  )
  return wrk.format("GET", nil, { ["X-Forwarded-For"] = address }, nil)
end

function response(status, headers, body)
  answered = answered + 1
  if answered == limit then
    wrk.thread:stop()
    local marker = io.open(done_file, "w")
    marker:write(tostring(answered))
    marker:close()
  end
end
