-- The requests of one bot that other replicas have sent to the exchange and not
-- settled yet, and a page of the account's journal read in the same instant: a
-- request found in flight here is in a later page once it settles (settling
-- clears the mark and appends the entry in one script).
--
-- KEYS: the marks (hash: member -> "n bot"), their totals (unused here), their
-- deadlines (sorted set), the journal (stream).
-- ARGV: the journal entry read up to, the page's length, the bot, this replica's
-- prefix of its members.
-- Returns {members in flight, entries}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bot, own = ARGV[3], ARGV[4]
local pending = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now_ms, '+inf')
for first = 1, #live, 1000 do
  local chunk = {}
  for i = first, math.min(first + 999, #live) do
    chunk[#chunk + 1] = live[i]
  end
  local held = redis.call('HMGET', KEYS[1], unpack(chunk))
  for i, member in ipairs(chunk) do
    local value = held[i]
    if value and string.sub(member, 1, #own) ~= own then
      local _, whose = string.match(value, '^(%d+) (.*)$')
      if whose == bot then
        pending[#pending + 1] = member
      end
    end
  end
end
local page = redis.call('XRANGE', KEYS[4], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
return {pending, page}
