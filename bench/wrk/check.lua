-- GET /api/rbac/check-permission/{own id}/users:read with many users' access tokens: `tokens`
-- and `paths` (each token's own path; set by run.sh). The users hold a custom role with
-- `users:read`, so every answer is {allowed: true}, read from the grants cache.
local i = 0
function request()
  i = i + 1
  local k = (i % #tokens) + 1
  return wrk.format("GET", paths[k], { ["Authorization"] = "Bearer " .. tokens[k] })
end
