-- Store a rehydrated state only if the generation is the one claimed (under this primary),
-- no writer holds the lock and nothing as new is cached (under this primary). Shared by fill and fill_many. No
-- lease check: a reconcile that must drop this cart deletes its control hash, and with it
-- the generation.
local function fill(ctl, data, seen, id, gen, token, version, payload, keep)
  local h = redis.call('HMGET', ctl, 'v', 'g', 'm', 'mx', 'r', 'e', 'ge')
  local mine = h[5] == token
  if h[3] then
    if tonumber(h[4]) <= now then
      redis.call('HDEL', ctl, 'v', 'm', 'mx', 'me', 'r', 'rx')
      redis.call('DEL', data)
      redis.call('HSET', ctl, 'g', token, 'ge', epoch)
    elseif mine then
      redis.call('HDEL', ctl, 'r', 'rx')
    end
    return 0
  end
  local newer = h[1] and h[6] == epoch and tonumber(h[1]) >= tonumber(version)
  if h[2] ~= gen or h[7] ~= epoch or newer then
    if mine then redis.call('HDEL', ctl, 'r', 'rx') end
    return 0
  end
  redis.call('HSET', ctl, 'v', version, 's', now, 'e', epoch)
  redis.call('SET', data, payload, 'PX', keep)
  if mine then redis.call('HDEL', ctl, 'r', 'rx') end
  redis.call('PEXPIRE', ctl, keep)
  redis.call('ZADD', seen, now, id)
  return 1
end
