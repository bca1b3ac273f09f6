-- Takes one use of each of keyward's allowances per address with a venue (links
-- opened, messages the venue counts without a login) for every replica sharing
-- the namespace, or of none: each allowance is a log of its uses over its rolling
-- window, exact however the venue cuts its own windows.
--
-- KEYS: the allowances' logs. ARGV: a name for this use unique among the
-- replicas, then each log's window (milliseconds) and count. Returns, for each
-- log, 0 if it had room, else the milliseconds until it has; the uses were taken
-- only if every one is 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local waits, full = {}, false
for i = 1, #KEYS do
  local window, count = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local held = redis.call('ZCARD', KEYS[i])
  waits[i] = 0
  if held >= count then
    -- Room comes when the use that puts the log at its count leaves the window.
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', '+inf', 'WITHSCORES', 'LIMIT', held - count, 1)
    waits[i] = math.max(tonumber(oldest[2]) + window - now, 1)
    full = true
  end
end
if not full then
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], now, ARGV[1])
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return waits
