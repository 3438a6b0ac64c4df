-- GET /api/auth/me with many users' access tokens (tokens.lua defines `tokens`). The baseline
-- runs the same script with ME_PATH = "/", so both sides cost wrk the same.
local path = ME_PATH or "/api/auth/me"
local i = 0
function request()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t })
end
