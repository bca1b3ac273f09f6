-- Checks and spends every shared limit of one request, all or none, in one round
-- trip: the rate limits (GCRA, as governor keeps them) and the rolling budgets
-- (a window cut into 1,440 buckets with a running total, as keyward's local ledger
-- keeps it). Times are the Redis server's, so replicas whose clocks differ still
-- agree; all amounts are integers (notional in millionths of the quote currency).
-- Each window's hash also notes its list's first and newest buckets, and keys get
-- their expiry once per bucket or counter window: each Redis call here costs a few
-- microseconds, and the script runs for every request of every replica.
--
-- KEYS: the account's exchange pause, the bot JWT's replay key, the C client order
-- id keys, the R rate keys, then two keys per budget window (its buckets hash, its
-- bucket list), then the receipt key, then two keys per exchange
-- counter (the account's, the bot's share), then, when O is not 0, the open-order
-- holds (which are also the marks of requests in flight), their totals, their
-- deadlines and the account's journal of settled orders.
-- ARGV: R, W, enforce ("1" or "0"), receipt lifetime (s), the bot JWT's expiry (s
-- since the epoch; 0: the request carries none), C, the client order id window
-- (ms), E, the request's holder name (what its client order id keys hold, so
-- that only it frees them), then per rate: emission interval (us), tolerance (us: the interval
-- times the burst less one, as governor's), cells; then per
-- window: length (us), limit, amount, kind ("n" notional, "o" orders); then per
-- exchange counter: window (ms), ceiling, the exchange's own report for this
-- window (0 when none), the bot's share of the ceiling (0: no share applies),
-- amount; then O (0: the request touches no order; 1: it opens orders under an
-- open-order limit; 2: it places, amends or cancels orders, marked in flight
-- until settled) and, if 1, the request's hold name, the bot, its new orders, the
-- bot's and the account's max_open_orders (0: none), the open orders this
-- replica's record holds for each, the journal entry that record reflects, this
-- replica's id, how long a hold outlives its replica (ms); if 2, the request's
-- mark, the bot, how long the mark outlives its replica (ms).
-- Returns {"ok"} or {"ok", j, used} (shadow: window j would have refused), or
-- {"paused", wait_ms, banned} or {"replay"} or {"duplicate", c} or
-- {"rate", i, wait_us} or {"budget", j, used} or {"exchange", e, wait_ms} or
-- {"share", e, wait_ms} or {"open", scope (1 bot, 2 account), open, limit} or
-- {"behind"} (this replica has too much of the journal left to apply), and
-- {"ok-open", scope, open, limit} in shadow mode.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local enforce = ARGV[3] == '1'
-- Passed on to Redis as written: a number would be formatted back into text.
local receipt_ttl = ARGV[4]
local jwt_expiry = ARGV[5]
local c = tonumber(ARGV[6])
local client_window = ARGV[7]
local e = tonumber(ARGV[8])
local holder = ARGV[9]
local a = 10
-- Where the rate keys start: after the pause, the JWT key and the client ids.
local k = 2 + c
local BUCKETS = 1440

local function int(x)
  return string.format('%d', x)
end

-- A 429 or 418 another replica received pauses this one too.
local pause = redis.call('GET', KEYS[1])
if pause then
  return {'paused', int(math.max(redis.call('PTTL', KEYS[1]), 1)), pause}
end

-- A bot JWT is good for one request on any replica, as on one. Kept at least a
-- second, so that a JWT Redis's clock thinks expired is still remembered.
if jwt_expiry ~= '0' then
  local expiry = math.max(tonumber(jwt_expiry), math.floor(now / 1000000) + 1)
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EXAT', int(expiry)) then
    return {'replay'}
  end
end

local tats = {}
-- A client order id another replica holds or placed within the window.
for i = 1, c do
  if redis.call('EXISTS', KEYS[2 + i]) == 1 then
    return {'duplicate', i}
  end
end

for i = 1, r do
  local per, tau, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local tat = tonumber(redis.call('GET', KEYS[k + i])) or now
  -- tau is governor's tolerance, the burst less one cell: a burst of exactly the
  -- count passes, as on one keyward.
  local extra = per * (n - 1)
  if extra > tau then
    -- More cells than the whole burst: they never pass.
    return {'rate', i, int(tau + per)}
  end
  local earliest = tat + extra - tau
  if now < earliest then
    return {'rate', i, int(earliest - now)}
  end
  tats[i] = math.max(tat, now) + per * n
end

local windows = {}
local would = nil
for j = 1, w do
  -- Amounts and lengths are compared and stored as the text keyward sent (its
  -- integers' one spelling): each conversion between text and number costs.
  local length_text, amount_text = ARGV[a], ARGV[a + 2]
  local length, limit, amount = tonumber(length_text), tonumber(ARGV[a + 1]), tonumber(amount_text)
  local kind = ARGV[a + 3]
  a = a + 4
  local h, l = KEYS[k + r + 2 * j - 1], KEYS[k + r + 2 * j]
  local width = math.ceil(length / BUCKETS)
  local index = math.floor(now / width)
  local field = int(index)
  -- One read for what a spend needs; 'newest' and 'first' (the list's last and
  -- first buckets) spare reading the list, and are absent from windows an older
  -- keyward wrote, which read the list instead.
  local stored = redis.call('HMGET', h, 'len', 'total', 'newest', 'first', field)
  local stored_length = stored[1]
  local used = tonumber(stored[2]) or 0
  -- The newest bucket is read as a number only when it is not this one.
  local newest_text, first = stored[3], tonumber(stored[4])
  local bucket = tonumber(stored[5]) or 0
  -- Whether the window's first or newest bucket must be written again.
  local moved = newest_text ~= field
  if stored_length ~= length_text then
    moved = true
    if stored_length then
      -- The window's length changed: what was spent counts for a whole new window.
      redis.call('DEL', h, l)
      bucket, first, newest_text = 0, nil, nil
      if used > 0 then
        bucket, first, newest_text = used, index, field
        redis.call('RPUSH', l, field)
        local keep = math.ceil((length + 2 * width) / 1000)
        redis.call('PEXPIRE', l, keep)
      end
    end
    redis.call('HSET', h, 'len', length_text, 'total', int(used), field, int(bucket))
  end
  local oldest = index - BUCKETS
  if not first or first < oldest then
    local expired = false
    while true do
      local head = redis.call('LINDEX', l, 0)
      first = tonumber(head)
      if not head or first >= oldest then
        break
      end
      used = used - (tonumber(redis.call('HGET', h, head)) or 0)
      redis.call('HDEL', h, head)
      redis.call('LPOP', l)
      expired = true
    end
    if expired then
      -- Written at once: a refusal below must not leave the total counting
      -- buckets that are gone.
      redis.call('HSET', h, 'total', int(used))
      moved = true
    end
  end
  if used + amount > limit then
    if enforce then
      return {'budget', j, int(used)}
    end
    if not would then
      would = {j, used}
    end
  end
  windows[j] = {h, l, index, amount, width, length, kind, used, newest_text, first, bucket, field,
    amount_text, moved}
end

-- The exchange's fixed windows (aligned to the epoch, as the exchange counts):
-- what every replica sent in the current one, or what the exchange last reported
-- to this replica, whichever is more, must stay under the ceiling; and the bot's
-- own sending under its share of it.
local counters = {}
-- The receipt key; the exchange counters' keys follow it.
local receipt_key = k + r + 2 * w + 1
local now_ms = math.floor(now / 1000)
for i = 1, e do
  local window, ceiling, reported = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local share, amount_text = tonumber(ARGV[a + 3]), ARGV[a + 4]
  local amount = tonumber(amount_text)
  a = a + 5
  local start = now_ms - now_ms % window
  local start_text = int(start)
  local wait = math.max(start + window - now_ms, 1)
  local used = {}
  local fresh = {}
  for side = 1, 2 do
    used[side] = 0
    if side == 1 or share > 0 then
      local key = KEYS[receipt_key + 2 * i - 2 + side]
      local stored = redis.call('HMGET', key, 'start', 'used')
      fresh[side] = stored[1] ~= start_text
      if not fresh[side] then
        used[side] = tonumber(stored[2]) or 0
      end
    end
  end
  if math.max(used[1], reported) + amount > ceiling then
    return {'exchange', i, int(wait)}
  end
  if share > 0 and used[2] + amount > share then
    return {'share', i, int(wait)}
  end
  counters[i] = {start_text, used, amount_text, window, share, fresh}
end

-- Gives back a hold: its room, once.
local function release(holds, totals, deadlines, member)
  local held = redis.call('HGET', holds, member)
  if held then
    local n, bot = string.match(held, '^(%d+) (.*)$')
    redis.call('HINCRBY', totals, 'bot:' .. bot, -tonumber(n))
    redis.call('HINCRBY', totals, 'all', -tonumber(n))
    redis.call('HDEL', holds, member)
  end
  redis.call('ZREM', deadlines, member)
end

-- Open orders: what this replica's record holds, what every replica holds for
-- requests in flight, and what other replicas settled that this one has not
-- applied yet.
local o = tonumber(ARGV[a])
a = a + 1
local opening = nil
local would_open = nil
local first_open = receipt_key + 2 * e + 1
local holds, totals = KEYS[first_open], KEYS[first_open + 1]
local deadlines, journal = KEYS[first_open + 2], KEYS[first_open + 3]
if o > 0 then
  -- The holds of a replica that died before the exchange answered it.
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now_ms, 'LIMIT', 0, 16)) do
    release(holds, totals, deadlines, gone)
  end
end
if o == 2 then
  local member, bot, hold_ms = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  opening = {holds, totals, deadlines, member, bot, 0, now_ms + hold_ms}
elseif o == 1 then
  local member, bot, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local bot_limit, account_limit = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local bot_open, account_open = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local applied, instance, hold_ms = ARGV[a + 7], ARGV[a + 8], tonumber(ARGV[a + 9])
  a = a + 10
  local unseen = redis.call('XRANGE', journal, '(' .. applied, '+', 'COUNT', 10000)
  if #unseen == 10000 then
    return {'behind'}
  end
  for _, entry in ipairs(unseen) do
    local fields, from, who, opened = entry[2], nil, nil, 0
    for f = 1, #fields, 2 do
      local name, value = fields[f], fields[f + 1]
      if name == 'from' then
        from = value
      elseif name == 'bot' then
        who = value
      elseif name == 'opened' then
        opened = tonumber(value) or 0
      end
    end
    if from ~= instance then
      account_open = account_open + opened
      if who == bot then
        bot_open = bot_open + opened
      end
    end
  end
  bot_open = bot_open + (tonumber(redis.call('HGET', totals, 'bot:' .. bot)) or 0)
  account_open = account_open + (tonumber(redis.call('HGET', totals, 'all')) or 0)
  for scope, check in ipairs({{bot_open, bot_limit}, {account_open, account_limit}}) do
    local open, limit = check[1], check[2]
    if limit > 0 and n > 0 and open + n > limit then
      if enforce then
        return {'open', scope, int(open), int(limit)}
      end
      if not would_open then
        would_open = {scope, open, limit}
      end
    end
  end
  opening = {holds, totals, deadlines, member, bot, n, now_ms + hold_ms}
end

for i = 1, r do
  local ttl = math.max(1, math.ceil((tats[i] - now) / 1000))
  redis.call('SET', KEYS[k + i], int(tats[i]), 'PX', ttl)
end
for i = 1, c do
  redis.call('SET', KEYS[2 + i], holder, 'PX', client_window)
end
if opening then
  local holds, totals, deadlines, member, bot, n, deadline = unpack(opening)
  redis.call('HSET', holds, member, int(n) .. ' ' .. bot)
  if n > 0 then
    redis.call('HINCRBY', totals, 'bot:' .. bot, n)
    redis.call('HINCRBY', totals, 'all', n)
  end
  redis.call('ZADD', deadlines, int(deadline), member)
end
for i = 1, e do
  local start_text, used, amount_text, window, share, fresh = unpack(counters[i])
  for side = 1, 2 do
    if side == 1 or share > 0 then
      local key = KEYS[receipt_key + 2 * i - 2 + side]
      if fresh[side] then
        redis.call('HSET', key, 'start', start_text, 'used', amount_text)
        -- Set once per window: the counter is no use after it.
        redis.call('PEXPIRE', key, window + 1000)
      else
        redis.call('HINCRBY', key, 'used', amount_text)
      end
    end
  end
end

local receipt = {}
for j = 1, w do
  local h, l, index, amount, width, length, kind, used, newest_text, first, bucket, field,
    amount_text, moved = unpack(windows[j])
  local newest = nil
  if moved then
    newest = tonumber(newest_text) or tonumber(redis.call('LINDEX', l, -1))
  end
  if not moved then
    -- A spend in the bucket of the window's last one: its first and newest stand.
    redis.call('HSET', h, field, int(bucket + amount), 'total', int(used + amount))
  elseif newest and newest > index then
    -- The server's clock went back: the newest bucket, which leaves the window later.
    field = int(newest)
    redis.call('HINCRBY', h, field, int(amount))
    redis.call('HSET', h, 'total', int(used + amount), 'newest', field)
  else
    redis.call('HSET', h, field, int(bucket + amount), 'total', int(used + amount),
      'newest', field, 'first', int(first or index))
    if not newest or newest < index then
      redis.call('RPUSH', l, field)
      -- Set with each new bucket: a window's keys outlive its last spend by the
      -- window and two buckets whichever spend in the bucket was last.
      local keep = math.ceil((length + 2 * width) / 1000)
      redis.call('PEXPIRE', h, keep)
      redis.call('PEXPIRE', l, keep)
    end
  end
  -- As text: cjson writes numbers with 14 significant digits.
  receipt[j] = {h, field, amount_text, kind}
end
if w > 0 then
  redis.call('SET', KEYS[receipt_key], cjson.encode(receipt), 'EX', receipt_ttl)
end
if would then
  return {'ok', would[1], int(would[2])}
end
if would_open then
  return {'ok-open', would_open[1], int(would_open[2]), int(would_open[3])}
end
return {'ok'}
