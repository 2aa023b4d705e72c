-- KEYS: reconcile lock, lease   ARGV: token, ttl_ms
if redis.call('EXISTS', KEYS[2]) == 1 then return {@LEASED, now} end
local won = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if won then return {@RECONCILING, now} end
return {@WAIT, now}
