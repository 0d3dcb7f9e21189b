-- wrk script: the same form POST on every request (the token endpoint benchmark).
-- Usage: wrk ... -s bench/token_post.lua URL -- BODY AUTHORIZATION
local request_text

function init(args)
  request_text = wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = args[2],
  }, args[1])
end

function request()
  return request_text
end
