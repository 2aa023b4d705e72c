-- KEYS: ctl   ARGV: token. Safe to repeat: only this reader's own claim is released.
if redis.call('HGET', KEYS[1], 'r') == ARGV[1] then redis.call('HDEL', KEYS[1], 'r', 'rx') end
return 0
