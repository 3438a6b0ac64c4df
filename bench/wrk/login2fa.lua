-- Two-step sign-in: POST /api/auth/login with the password, then POST /api/auth/2fa/verify with
-- the mfa_token and the authenticator code. run.sh sets FIRST and ACCOUNTS (this run signs in as
-- PREFIX<FIRST>..PREFIX<FIRST+ACCOUNTS-1>, all with an authenticator app on one shared secret),
-- PREFIX, PASSWORD, THREADS, and CODES (the code of each 30-second step, keyed by step number).
--
-- Each thread owns one connection, so a response always belongs to the thread's last request, and
-- every THREADS-th account of the range. The server accepts each account's step once, and a code
-- of the current or the next step, so an account signs in at most once per step here (the current
-- step if unused, else the next): with enough accounts per thread no code is refused. What an
-- account used lives in this run's Lua state only, so every run gets accounts of its own.
local id = 0
local threads = {}
function setup(thread)
  id = id + 1
  thread:set("slot", id)
  table.insert(threads, thread)
end

function init(args)
  mine = {}
  for n = FIRST + slot - 1, FIRST + ACCOUNTS - 1, THREADS do mine[#mine + 1] = n end
  last = {}        -- last step used, per account
  cursor = 0
  pending = nil    -- the mfa_token waiting for its code
  code = nil
  sign_ins = 0     -- completed two-step sign-ins
  exhausted = 0    -- password steps sent with no unused step left (would be refused)
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  if pending then
    return wrk.format("POST", "/api/auth/2fa/verify", headers,
      '{"mfa_token":"' .. pending .. '","code":"' .. code .. '"}')
  end
  local now = math.floor(os.time() / 30)
  local pick, step
  for _ = 1, #mine do
    cursor = cursor % #mine + 1
    local n = mine[cursor]
    local s = math.max((last[n] or 0) + 1, now)
    if s <= now + 1 then pick, step = n, s break end
  end
  if not pick then
    -- Every account of this thread spent both steps: sign in anyway; the code will be refused
    -- and show as an error (raise the number of accounts).
    exhausted = exhausted + 1
    cursor = cursor % #mine + 1
    pick, step = mine[cursor], now + 1
  end
  last[pick] = step
  code = CODES[step]
  return wrk.format("POST", "/api/auth/login", headers,
    '{"username_or_email":"' .. PREFIX .. pick .. '","password":"' .. PASSWORD .. '"}')
end

function response(status, headers, body)
  if pending then
    pending = nil
    if status == 200 then sign_ins = sign_ins + 1 end
  elseif status == 200 then
    pending = body:match('"mfa_token"%s*:%s*"([^"]+)"')
  end
end

-- Replaces common.lua's: requests per second (two per sign-in) and sign-ins per second.
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local total, short = 0, 0
  for _, t in ipairs(threads) do
    total = total + t:get("sign_ins")
    short = short + t:get("exhausted")
  end
  io.write(string.format(
    '{"requests":%d,"rps":%.1f,"sign_ins":%d,"sign_ins_per_sec":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"non_2xx":%d,"socket_errors":%d,"exhausted":%d}\n',
    summary.requests, summary.requests / secs, total, total / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout, short))
end
