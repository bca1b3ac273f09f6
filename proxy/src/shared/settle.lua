-- Settles a request's orders for every replica: gives back the open-order room it
-- held and clears its mark in flight (once, whichever replica or sweep comes
-- first), and appends what the exchange did with it to the account's journal,
-- which the other replicas apply. Both at once: a replica that no longer finds the
-- mark finds the entry.
--
-- KEYS: the holds (hash: member -> "n bot"), their totals ("bot:NAME", "all"),
-- their deadlines (sorted set), the journal (stream).
-- ARGV: the request's member, this replica's id, the bot ("": nothing to append),
-- the orders it left open, the settlement (JSON), the journal's length.
-- Returns the journal entry's id, or "".
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local n, bot = string.match(held, '^(%d+) (.*)$')
  n = tonumber(n)
  if n > 0 then
    redis.call('HINCRBY', KEYS[2], 'bot:' .. bot, -n)
    redis.call('HINCRBY', KEYS[2], 'all', -n)
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] == '' then
  return ''
end
return redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*',
  'from', ARGV[2], 'bot', ARGV[3], 'opened', ARGV[4], 'e', ARGV[5])
