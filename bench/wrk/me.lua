-- GET /api/auth/me with many users' access tokens (tokens.lua defines `tokens`).
local i = 0
function request()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("GET", "/api/auth/me", { ["Authorization"] = "Bearer " .. t })
end
