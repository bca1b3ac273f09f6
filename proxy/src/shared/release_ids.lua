-- Frees the client order ids one request holds, and only those: an id another
-- request took stays taken, and so does one this request never got (its admission
-- may have timed out before or after the script ran, or found the id taken).
--
-- KEYS: the client order id keys. ARGV: the request's holder name, as the
-- admission wrote it.
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
  end
end
return 0
