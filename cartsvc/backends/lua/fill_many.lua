-- KEYS: seen, then (ctl, data) per cart   ARGV: keep_ms, then (id, gen, token, version,
-- payload) per cart. Returns how many were stored, then 1/0 per cart.
local out, stored = {}, 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  local a = 2 + i * 5
  local ok = fill(KEYS[2 + i * 2], KEYS[3 + i * 2], KEYS[1], ARGV[a], ARGV[a + 1],
                  ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[1])
  stored = stored + ok
  out[#out + 1] = ok
end
return {stored, out}
