-- KEYS: ctl, data, lease   ARGV: token, lock_ms, keep_ms, known version, viewer
-- viewer: "" no check; "-" a visitor; else a user's id (base.visible_in_payload's rule)
if redis.call('EXISTS', KEYS[3]) == 0 then return {@NO_LEASE} end
local h = redis.call('HMGET', KEYS[1], 'v', 'm', 'mx', 'e')
local left = 0
if h[2] and h[2] ~= ARGV[1] then
  left = tonumber(h[3]) - now
  if left <= 0 then h[4] = false end  -- a dead writer's lock: its entry can not be trusted
end
local stale = false
if h[1] and h[4] ~= epoch then  -- or stamped under another primary
  h[1] = false
  stale = true
end
local d = false
if ARGV[5] ~= '' then
  -- Before anything is touched: a caller who may not see the cart leaves it as it was.
  if not h[1] then return {@UNSEEN} end
  d = redis.call('GET', KEYS[2])
  if not d then return {@UNSEEN} end
  local ok, state = pcall(cjson.decode, d)
  if not ok or type(state) ~= 'table' or state.st == nil then return {@UNSEEN} end
  if state.st == 'closed' then return {@HIDDEN} end
  local owner = state.o
  if owner ~= nil and owner ~= cjson.null
     and (ARGV[5] == '-' or owner ~= tonumber(ARGV[5])) then
    return {@HIDDEN}
  end
end
if left > 0 then
  redis.call('HINCRBY', KEYS[1], 'w', 1)  -- one more waiter to wake on release
  return {@BUSY, left}
end
if stale then  -- untrusted: dropped
  redis.call('HDEL', KEYS[1], 'v')
  redis.call('DEL', KEYS[2])
end
-- `me`: the lock's epoch (a lock taken under another primary publishes nothing, see settle)
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'mx', now + tonumber(ARGV[2]), 'me', epoch,
           'g', ARGV[1], 'ge', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if h[1] and h[1] == ARGV[4] then return {@ACQUIRED_SAME} end
if h[1] then
  d = d or redis.call('GET', KEYS[2])
  if d then return {@ACQUIRED, h[1], d} end
end
return {@ACQUIRED_EMPTY}
