-- KEYS: ctl, data, lease   ARGV: token, lock_ms, keep_ms, known version
if redis.call('EXISTS', KEYS[3]) == 0 then return {@NO_LEASE} end
local h = redis.call('HMGET', KEYS[1], 'v', 'm', 'mx', 'e')
if h[2] and h[2] ~= ARGV[1] then
  local left = tonumber(h[3]) - now
  if left > 0 then
    redis.call('HINCRBY', KEYS[1], 'w', 1)  -- one more waiter to wake on release
    return {@BUSY, left}
  end
  h[4] = false  -- a dead writer's lock: its entry can not be trusted
end
if h[1] and h[4] ~= epoch then  -- or stamped under another primary
  redis.call('HDEL', KEYS[1], 'v')
  redis.call('DEL', KEYS[2])
  h[1] = false
end
-- `me`: the lock's epoch (a lock taken under another primary publishes nothing, see settle)
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'mx', now + tonumber(ARGV[2]), 'me', epoch,
           'g', ARGV[1], 'ge', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if h[1] and h[1] == ARGV[4] then return {@ACQUIRED_SAME} end
if h[1] then
  local d = redis.call('GET', KEYS[2])
  if d then return {@ACQUIRED, h[1], d} end
end
return {@ACQUIRED_EMPTY}
