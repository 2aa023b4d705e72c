-- The miss path, shared by read and claim_many: a live claim by another reader means wait;
-- otherwise claim the rehydration and return the generation the fill must still find.
local function claim(ctl, token, claim_ms)
  local c = redis.call('HMGET', ctl, 'r', 'rx', 'g')
  if c[1] and tonumber(c[2]) > now then return {@FILLING} end
  local g = c[3] or token
  redis.call('HSET', ctl, 'g', g, 'r', token, 'rx', now + claim_ms)
  -- an empty claim lives briefly: unknown ids must not pile up in memory
  if redis.call('HEXISTS', ctl, 'v') == 0 then redis.call('PEXPIRE', ctl, claim_ms * 5) end
  return {@CLAIMED, g}
end
