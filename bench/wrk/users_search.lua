-- GET /api/users?q=<prefix>&per_page=20 as an administrator (TOKEN set by run.sh). Prefixes are
-- "bench" and a random number below 100,000: mostly five digits (about 11 of the seeded accounts
-- match), a tenth four digits (111), fewer shorter ones (up to 111,111 for one digit).
math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
function request()
  local q = "bench" .. math.random(0, 99999)
  return wrk.format("GET", "/api/users?q=" .. q .. "&per_page=20",
    { ["Authorization"] = "Bearer " .. TOKEN })
end
