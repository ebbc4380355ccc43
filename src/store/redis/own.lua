-- Records owners of opaque ids, all or nothing: if any id is already another
-- tenant's, nothing is written and the reply is how many (the first owner wins,
-- across every replica).
-- KEYS[1]: the ids hash (kind:id -> tenant); KEYS[2]: the channel every replica's
-- view of the owners follows. ARGV[1]: the prefix of the per-tenant
-- sets (same cluster slot), then field, tenant pairs.
local taken = 0
for i = 2, #ARGV, 2 do
  local owner = redis.call('HGET', KEYS[1], ARGV[i])
  if owner and owner ~= ARGV[i + 1] then taken = taken + 1 end
end
if taken > 0 then return taken end
local rows = {}
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('SADD', ARGV[1] .. ARGV[i + 1], ARGV[i])
  rows[#rows + 1] = {ARGV[i], ARGV[i + 1]}
end
-- Every replica's view of the owners follows this channel.
if #rows > 0 then redis.call('PUBLISH', KEYS[2], cjson.encode({own = rows})) end
return 0
