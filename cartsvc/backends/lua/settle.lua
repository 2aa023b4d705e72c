-- KEYS: ctl, data, seen, wake   ARGV: id, token, mode, version, payload, keep_ms
local h = redis.call('HMGET', KEYS[1], 'm', 'mx', 'me')
if h[1] == ARGV[2] and h[3] ~= epoch then
  -- our lock, but taken under another primary: what it fenced may be lost with that primary
  -- (a later writer's publish); publish nothing, drop the entry, release the lock
  redis.call('HDEL', KEYS[1], 'v', 'm', 'mx', 'me')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'g', ARGV[2], 'ge', epoch)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return 0
end
if h[1] ~= ARGV[2] then
  if ARGV[3] ~= 'keep' and not (h[1] and tonumber(h[2]) > now) then
    redis.call('HDEL', KEYS[1], 'v', 'm', 'mx', 'me')
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'g', ARGV[2], 'ge', epoch)
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
  end
  return 0
end
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 's', now, 'e', epoch)
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
  redis.call('ZADD', KEYS[3], now, ARGV[1])
elseif ARGV[3] == 'drop' then
  redis.call('HDEL', KEYS[1], 'v')
  redis.call('DEL', KEYS[2])
end
redis.call('HDEL', KEYS[1], 'm', 'mx', 'me')
-- hand the lock over: wake one waiter now instead of letting it sleep out its backoff
local waiting = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
if waiting > 0 then
  redis.call('HINCRBY', KEYS[1], 'w', -1)
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('PEXPIRE', KEYS[4], 1000)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
