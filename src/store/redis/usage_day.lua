-- Adds one day of a flushed batch to the day's index of tenants (a sorted set by
-- units) and to the project's totals, once per batch.
-- KEYS[1]: the day's index; KEYS[2]: the project's hash of the day; KEYS[3]: marker.
-- ARGV: marker_ttl_secs, events, units, bytes_in, bytes_out, last_at, then
--       tenant, units pairs.
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[2], 'events', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'units', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'bytes_in', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'bytes_out', ARGV[5])
local last = tonumber(redis.call('HGET', KEYS[2], 'last_at') or '0')
if tonumber(ARGV[6]) > last then redis.call('HSET', KEYS[2], 'last_at', ARGV[6]) end
for i = 7, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
end
return 1
