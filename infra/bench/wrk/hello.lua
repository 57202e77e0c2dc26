-- The same shape of request as send.lua, to the axum hello (which ignores it).
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"service":"2FA","from":"Twofa","to":"+14155%06d","body":"{code}"}', n % 1000000)
  return wrk.format("POST", "/2fa/send", {["Content-Type"] = "application/json", ["Authorization"] = "Basic eDp5"}, body)
end
