-- Adds one (tenant, day) row of a flushed batch, once. A replica writes its batches
-- in order, replaying a failed one before any newer, so the row keeps, per replica,
-- the number of the last batch that added to it: a batch at or below it has landed,
-- and its replay (after a lost reply) adds nothing. One field per replica process
-- that wrote the row, instead of one key per batch.
-- KEYS[1]: the row's hash; KEYS[2]: the tenant's set of days.
-- ARGV: day, events, units, bytes_in, bytes_out, last_at, replica field, batch.
local done = tonumber(redis.call('HGET', KEYS[1], ARGV[7]) or '0')
if tonumber(ARGV[8]) <= done then return 0 end
redis.call('HINCRBY', KEYS[1], 'events', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'units', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'bytes_in', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'bytes_out', ARGV[5])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_at') or '0')
if tonumber(ARGV[6]) > last then redis.call('HSET', KEYS[1], 'last_at', ARGV[6]) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[7], ARGV[8])
return 1
