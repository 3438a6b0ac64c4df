-- Private messages: a message from one seeded account to another (about 1 KiB of body, sealed
-- with a key of its own wrapped for both parties), then the recipient reads it (GET, which opens
-- the recipient's copy and marks it read), and again: half the requests are sends, half reads.
-- `tokens` holds the access tokens of bench0, bench1, ... in order. One connection per thread,
-- so that a response belongs to the thread's last request.
local id = 0
function setup(thread) id = id + 1; thread:set("tid", id) end
function init(args)
  tid = tid or 1
  n = 0
  pending = nil
  body = string.rep("Lorem ipsum dolor sit amet, consectetur. ", 25)
end
function request()
  if pending then
    local p = pending
    pending = nil
    return wrk.format("GET", "/api/messages/" .. p.id, { ["Authorization"] = "Bearer " .. tokens[p.to] })
  end
  n = n + 1
  local from = ((tid * 7919 + n) % #tokens) + 1
  local to = ((from + tid * 31 + n) % #tokens) + 1
  sent_to = to
  local payload = '{"to":"bench' .. (to - 1) .. '","subject":"Bench ' .. tid .. '/' .. n ..
    '","body":"' .. body .. '"}'
  return wrk.format("POST", "/api/messages",
    { ["Authorization"] = "Bearer " .. tokens[from], ["Content-Type"] = "application/json" }, payload)
end
function response(status, headers, resp)
  if status == 201 then
    local mid = resp:match('"id":"([0-9a-f%-]+)"')
    if mid then pending = { id = mid, to = sent_to } end
  end
end
