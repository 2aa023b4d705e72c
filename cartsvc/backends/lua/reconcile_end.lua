-- KEYS: reconcile lock, lease, seen, (ctl, data)...   ARGV: token, lease_until_ms, id...
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 3, #ARGV do redis.call('ZREM', KEYS[3], ARGV[i]) end
if tonumber(ARGV[2]) > now then redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
