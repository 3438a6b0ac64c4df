-- POST /auth as random seeded users (USERS and PASSWORD are set by run.sh).
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
function request()
  local n = math.random(0, USERS - 1)
  local body = '{"login":"bench' .. n .. '","password":"' .. PASSWORD .. '"}'
  return wrk.format("POST", "/auth", { ["Content-Type"] = "application/json" }, body)
end
