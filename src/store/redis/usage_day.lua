-- Adds one day of a flushed batch to the day's index of tenants (a sorted set by
-- units) and to the project's totals, once per batch: the project's hash keeps the
-- last batch of each replica, as the tenant rows do.
-- KEYS[1]: the day's index; KEYS[2]: the project's hash of the day.
-- ARGV: replica field, batch, events, units, bytes_in, bytes_out, last_at, then
--       tenant, units pairs.
local done = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= done then return 0 end
redis.call('HINCRBY', KEYS[2], 'events', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'units', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'bytes_in', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'bytes_out', ARGV[6])
local last = tonumber(redis.call('HGET', KEYS[2], 'last_at') or '0')
if tonumber(ARGV[7]) > last then redis.call('HSET', KEYS[2], 'last_at', ARGV[7]) end
for i = 8, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
