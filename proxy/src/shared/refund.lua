-- Gives back part of what one request spent, by its receipt: each of its budget
-- windows gets back at most what it took, from the bucket it took it from if that
-- bucket is still in the window. A receipt left with nothing is deleted, so a
-- refund is never given twice.
--
-- KEYS: the receipt.
-- ARGV: the notional to give back (millionths), the orders to give back.
local text = redis.call('GET', KEYS[1])
if not text then
  return 0
end
local receipt = cjson.decode(text)
local left = 0
for _, entry in ipairs(receipt) do
  local h, field, amount = entry[1], entry[2], tonumber(entry[3])
  local wanted = entry[4] == 'n' and ARGV[1] or ARGV[2]
  local part = math.min(tonumber(wanted) or 0, amount)
  if part > 0 then
    local bucket = tonumber(redis.call('HGET', h, field))
    if bucket then
      local taken = math.min(part, bucket)
      redis.call('HINCRBY', h, field, string.format('%d', -taken))
      redis.call('HINCRBY', h, 'total', string.format('%d', -taken))
    end
    amount = amount - part
    entry[3] = string.format('%d', amount)
  end
  left = left + amount
end
if left > 0 then
  redis.call('SET', KEYS[1], cjson.encode(receipt), 'KEEPTTL')
else
  redis.call('DEL', KEYS[1])
end
return 1
