-- Takes one use of each of keyward's allowances per address with a venue (links
-- opened, messages the venue counts without a login) for every replica sharing
-- the namespace, or of none: each allowance is a log of its uses over its rolling
-- window, exact however the venue cuts its own windows.
--
-- KEYS: the allowances' logs. ARGV: a name for this use unique among the
-- replicas, then each log's window (milliseconds) and count. Returns 0 when every
-- use was taken, else the milliseconds until each log has room.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for i = 1, #KEYS do
  local window, count = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local held = redis.call('ZCARD', KEYS[i])
  if held >= count then
    -- Room comes when the use that puts the log at its count leaves the window.
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', '+inf', 'WITHSCORES', 'LIMIT', held - count, 1)
    wait = math.max(wait, tonumber(oldest[2]) + window - now, 1)
  end
end
if wait > 0 then
  return wait
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
end
return 0
