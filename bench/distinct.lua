-- wrk script: every request carries the next bearer token from a file (one per line).
-- Usage: wrk ... -s bench/distinct.lua URL -- TOKENS_FILE [START_INDEX]
local tokens = {}
local index = 0

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
  if #tokens == 0 then
    error("no tokens in " .. tostring(path))
  end
  index = tonumber(args[2] or "0") % #tokens
end

function request()
  index = index + 1
  if index > #tokens then
    index = 1
  end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[index] })
end
