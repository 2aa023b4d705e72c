-- KEYS: ctl, data, lease, seen   ARGV: id, token, claim_ms, keep_ms, known version
if redis.call('EXISTS', KEYS[3]) == 0 then return {@NO_LEASE} end
local h = redis.call('HMGET', KEYS[1], 'v', 'm', 'mx', 's', 'e')
if h[2] then
  if tonumber(h[3]) > now then return {@BUSY} end
  redis.call('HDEL', KEYS[1], 'v', 'm', 'mx', 'me')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'g', ARGV[2], 'ge', epoch)
  h[1] = false
end
if h[1] and h[5] ~= epoch then
  redis.call('HDEL', KEYS[1], 'v')  -- stamped under another primary: a miss
  redis.call('DEL', KEYS[2])
  h[1] = false
end
if h[1] then
  local d = false
  if h[1] ~= ARGV[5] then d = redis.call('GET', KEYS[2]) end
  if h[1] == ARGV[5] or d then
    if not h[4] or tonumber(h[4]) + @SEEN_EVERY_MS <= now then
      redis.call('HSET', KEYS[1], 's', now)
      redis.call('ZADD', KEYS[4], now, ARGV[1])
      redis.call('PEXPIRE', KEYS[1], ARGV[4])
      redis.call('PEXPIRE', KEYS[2], ARGV[4])
    end
    if d then return {@HIT, d} end
    return {@HIT_SAME}
  end
  redis.call('HDEL', KEYS[1], 'v')  -- the payload was evicted on its own: a miss
end
return claim(KEYS[1], ARGV[2], tonumber(ARGV[3]))
