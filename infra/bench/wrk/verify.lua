-- POST /2fa/verify with the right code of each OTP in $BENCH_PAIRS ("requestID code" lines).
local auth = os.getenv("BENCH_AUTH")
local pairs_ = {}
for line in io.lines(os.getenv("BENCH_PAIRS")) do
  local sid, code = line:match("(%S+) (%S+)")
  pairs_[#pairs_ + 1] = '{"requestId":"' .. sid .. '","code":"' .. code .. '"}'
end
local i = 0
request = function()
  i = i % #pairs_ + 1
  return wrk.format("POST", "/2fa/verify", {["Content-Type"] = "application/json", ["Authorization"] = "Basic " .. auth}, pairs_[i])
end
