-- Pauses an account's requests on every replica after the exchange answered one
-- of them 429 or 418: never shortens a pause already set, and never turns a ban
-- into a rate limit.
--
-- KEYS: the account's pause. ARGV: how long (ms), "banned" or "limited".
local left = redis.call('PTTL', KEYS[1])
local current = redis.call('GET', KEYS[1])
local wanted = tonumber(ARGV[1])
local kind = ARGV[2]
if current == 'banned' then
  kind = 'banned'
end
if left < wanted then
  redis.call('SET', KEYS[1], kind, 'PX', wanted)
elseif kind ~= current then
  redis.call('SET', KEYS[1], kind, 'KEEPTTL')
end
return 1
