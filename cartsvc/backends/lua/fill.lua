-- KEYS: ctl, data, seen   ARGV: id, gen, token, version, payload, keep_ms
return fill(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
