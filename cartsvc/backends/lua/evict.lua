-- KEYS: ctl, data, seen   ARGV: id, idle_before_ms or ''
local h = redis.call('HMGET', KEYS[1], 'm', 'mx')
if h[1] and tonumber(h[2]) > now then return 0 end
if ARGV[2] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if seen and tonumber(seen) > tonumber(ARGV[2]) then return 0 end
end
local had = redis.call('HEXISTS', KEYS[1], 'v')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2])
return had
