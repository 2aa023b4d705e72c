-- The miss path, shared by read and claim_many: a live claim by another reader means wait;
-- otherwise claim the rehydration and return the generation the fill must still find. A
-- generation set under another primary (`ge`) is not kept: a writer's newer one may have
-- been lost with that primary, so a reader that loaded the database before it could fill.
local function claim(ctl, token, claim_ms)
  local c = redis.call('HMGET', ctl, 'r', 'rx', 'g', 'ge')
  if c[1] and tonumber(c[2]) > now then return {@FILLING} end
  local g = token
  if c[3] and c[4] == epoch then g = c[3] end
  redis.call('HSET', ctl, 'g', g, 'ge', epoch, 'r', token, 'rx', now + claim_ms)
  -- an empty claim lives briefly: unknown ids must not pile up in memory
  if redis.call('HEXISTS', ctl, 'v') == 0 then redis.call('PEXPIRE', ctl, claim_ms * 5) end
  return {@CLAIMED, g}
end
