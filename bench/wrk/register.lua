-- POST /api/auth/register with a unique account per request.
local counter = 0
local id = 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args) tid = tid or 0; stamp = os.time() end
function request()
  counter = counter + 1
  local name = "reg" .. stamp .. "t" .. tid .. "n" .. counter
  local body = '{"username":"' .. name .. '","email":"' .. name .. '@bench.invalid","password":"' .. PASSWORD .. '"}'
  return wrk.format("POST", "/api/auth/register", { ["Content-Type"] = "application/json" }, body)
end
