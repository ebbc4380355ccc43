-- Drops a tenant's ownership of ids; ids another tenant owns are left alone. With no
-- fields given, drops every id the tenant owns (offboarding). Replies how many.
-- KEYS[1]: the ids hash; KEYS[2]: the tenant's set; KEYS[3]: the owners' channel.
-- ARGV[1]: tenant, then fields.
local fields = {}
if #ARGV == 1 then
  fields = redis.call('SMEMBERS', KEYS[2])
else
  for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
end
local dropped = {}
for _, field in ipairs(fields) do
  if redis.call('HGET', KEYS[1], field) == ARGV[1] then
    redis.call('HDEL', KEYS[1], field)
    dropped[#dropped + 1] = field
  end
  redis.call('SREM', KEYS[2], field)
end
if #dropped > 0 then
  redis.call('PUBLISH', KEYS[3], cjson.encode({disown = dropped}))
end
return #dropped
