-- POST /2fa/send to a new number each time: +1 <AREA> 5xx xxxx (AREA from the environment).
local area = os.getenv("BENCH_AREA") or "415"
local auth = os.getenv("BENCH_AUTH")
local n = 0
request = function()
  n = n + 1
  local to = string.format("+1%s5%06d", area, n % 1000000)
  local body = '{"service":"2FA","from":"Twofa","to":"' .. to .. '","body":"{code}"}'
  return wrk.format("POST", "/2fa/send", {["Content-Type"] = "application/json", ["Authorization"] = "Basic " .. auth}, body)
end
