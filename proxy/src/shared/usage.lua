-- What each budget window has spent now, for metrics and `keyward explain`,
-- without changing anything: the running total less the buckets that have left
-- the window since the last spend expired them.
--
-- KEYS: per window, its buckets hash and its bucket list.
-- ARGV: per window, its length (us).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for j = 1, #ARGV do
  local h, l = KEYS[2 * j - 1], KEYS[2 * j]
  local length = tonumber(ARGV[j])
  local total = tonumber(redis.call('HGET', h, 'total')) or 0
  local stored = tonumber(redis.call('HGET', h, 'len'))
  if not stored or stored == length then
    local width = math.ceil(length / 1440)
    local oldest = math.floor(now / width) - 1440
    local i = 0
    while true do
      local first = redis.call('LINDEX', l, i)
      if not first or tonumber(first) >= oldest then
        break
      end
      total = total - (tonumber(redis.call('HGET', h, first)) or 0)
      i = i + 1
    end
  end
  out[j] = string.format('%d', math.max(total, 0))
end
return out
