-- KEYS: ctl, data   ARGV: '1' for the payload too. The cached {version, payload} (or
-- {version}) as a read would serve it, without touching anything; nil when it would not.
local h = redis.call('HMGET', KEYS[1], 'v', 'e')
if not h[1] or h[2] ~= epoch then return nil end
if ARGV[1] ~= '1' then return {h[1]} end
local d = redis.call('GET', KEYS[2])
if not d then return nil end
return {h[1], d}
