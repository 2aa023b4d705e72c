-- KEYS: lease, then (ctl, data) of each cart, all of one bucket   ARGV: token, claim_ms
-- Per cart: {HIT, version} already cached | {CLAIMED, gen} | {BUSY} write in flight |
-- {FILLING} another reader is filling it. {NO_LEASE} alone when there is no lease.
if redis.call('EXISTS', KEYS[1]) == 0 then return {@NO_LEASE} end
local out = {}
for i = 2, #KEYS, 2 do
  local ctl, data = KEYS[i], KEYS[i + 1]
  local position = i / 2 + 1  -- the cart's place in the call, from 2 (see ImageStore)
  local h = redis.call('HMGET', ctl, 'v', 'm', 'mx', 'e')
  if h[2] and tonumber(h[3]) > now then
    out[#out + 1] = {@BUSY}
  else
    if h[2] or (h[1] and h[4] ~= epoch) then
      -- a dead writer's lock, or an entry stamped under another primary: not trusted
      redis.call('HDEL', ctl, 'v', 'm', 'mx', 'me')
      redis.call('DEL', data)
      if h[2] then redis.call('HSET', ctl, 'g', ARGV[1] .. ':' .. position, 'ge', epoch) end
      h[1] = false
    end
    if h[1] then
      out[#out + 1] = {@HIT, h[1]}
    else
      out[#out + 1] = claim(ctl, ARGV[1] .. ':' .. position, tonumber(ARGV[2]))
    end
  end
end
return out
