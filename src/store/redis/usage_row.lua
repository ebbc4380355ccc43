-- Adds one (tenant, day) row of a flushed batch, once: replaying the batch after a
-- lost reply finds the marker and adds nothing.
-- KEYS[1]: the row's hash; KEYS[2]: the tenant's set of days; KEYS[3]: the marker.
-- ARGV: day, events, units, bytes_in, bytes_out, last_at, marker_ttl_secs.
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[7]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'events', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'units', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'bytes_in', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'bytes_out', ARGV[5])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_at') or '0')
if tonumber(ARGV[6]) > last then redis.call('HSET', KEYS[1], 'last_at', ARGV[6]) end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
