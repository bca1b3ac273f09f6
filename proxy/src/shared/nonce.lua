-- Draws the next nonce of one API key for every replica: strictly greater than any
-- drawn before by any of them, never below the drawing replica's own candidate
-- (its clock in microseconds and its own high-water mark), so it also keeps rising
-- if Redis lost the counter.
--
-- KEYS: the counter. ARGV: the replica's candidate.
local last = tonumber(redis.call('GET', KEYS[1])) or 0
local nonce = math.max(last + 1, tonumber(ARGV[1]))
local text = string.format('%d', nonce)
redis.call('SET', KEYS[1], text)
return text
