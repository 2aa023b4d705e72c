-- KEYS: lease, then ctl of each cart   ARGV: token, claim_ms
-- Per cart: {HIT, version} already cached | {CLAIMED, gen} | {BUSY} write in flight |
-- {FILLING} another reader is filling it. {NO_LEASE} alone when there is no lease.
if redis.call('EXISTS', KEYS[1]) == 0 then return {@NO_LEASE} end
local out = {}
for i = 2, #KEYS do
  local ctl = KEYS[i]
  local h = redis.call('HMGET', ctl, 'v', 'm', 'mx')
  if h[2] and tonumber(h[3]) > now then
    out[#out + 1] = {@BUSY}
  else
    if h[2] then
      -- a dead writer's lock: its entry can not be trusted (the payload key goes too, by
      -- name: the control key with ':c:' replaced by ':d:')
      redis.call('HDEL', ctl, 'v', 'm', 'mx')
      redis.call('DEL', (string.gsub(ctl, ':c:([^:]*)$', ':d:%1')))
      redis.call('HSET', ctl, 'g', ARGV[1] .. ':' .. i)
      h[1] = false
    end
    if h[1] then
      out[#out + 1] = {@HIT, h[1]}
    else
      out[#out + 1] = claim(ctl, ARGV[1] .. ':' .. i, tonumber(ARGV[2]))
    end
  end
end
return out
