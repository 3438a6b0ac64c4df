-- Rotation chains: each thread owns one connection and one session, and always presents the
-- newest refresh token it received (`refresh_tokens` is set by run.sh, one per thread).
local id = 0
function setup(thread) id = id + 1; thread:set("slot", id) end
function init(args) current = refresh_tokens[slot] end
function request()
  return wrk.format("POST", "/refresh", { ["Content-Type"] = "application/json" },
    '{"refresh":"' .. current .. '"}')
end
function response(status, headers, body)
  if status == 200 then
    local next = body:match('"refresh"%s*:%s*"([^"]+)"')
    if next then current = next end
  end
end
