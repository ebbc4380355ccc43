-- One admission of one tenant, atomically, on the Redis clock (TIME), so every
-- replica charges the same bucket and no replica's clock matters.
-- KEYS[1]: the bucket, one string "tat interval" (one GET and one SET PX: each
-- call in a script costs, and this runs once per request); KEYS[2]: the tenant's
-- usage hash of today.
-- ARGV: interval_us (0: no rate), burst, cost, max_wait_us (-1: no queue),
--       soft (-1: none), quota_room (-1: none), then the batch this replica is writing:
--       its units for the tenant, this replica's field and the batch's number (its
--       units are counted unless the row says that batch has landed).
-- Reply {verdict, us, remaining, full_in_us, units}: verdict 0 allowed, 1 reserved
-- (us: the wait), 2 denied (us: retry in), 3 degrade, 4 over quota, 5 no rate.
local soft = tonumber(ARGV[5])
local room = tonumber(ARGV[6])
local units = 0
if soft >= 0 or room >= 0 then
  -- Usage is read only for a cap: a plan with a rate alone costs no read.
  local row = redis.call('HMGET', KEYS[2], 'units', ARGV[8])
  units = tonumber(row[1] or '0')
  local landing = tonumber(ARGV[7])
  if landing > 0 and tonumber(row[2] or '0') < tonumber(ARGV[9]) then
    units = units + landing
  end
  if soft >= 0 and units >= soft then return {3, 0, 0, 0, units} end
  if room >= 0 and units >= room then return {4, 0, 0, 0, units} end
end
local interval = tonumber(ARGV[1])
if interval <= 0 then return {5, 0, 0, 0, units} end
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = interval * burst
local allowance = 0
if max_wait >= 0 then allowance = max_wait end
local tat, charged = 0, 0
local state = redis.call('GET', KEYS[1])
if state then
  local sep = string.find(state, ' ', 1, true)
  if sep then
    tat = tonumber(string.sub(state, 1, sep - 1)) or 0
    charged = tonumber(string.sub(state, sep + 1)) or 0
  end
end
local rescaled = charged > 0 and charged ~= interval
if rescaled then
  -- A reload changed the rate: the debt is kept in tokens, at most a full bucket.
  local debt = math.max(tat - now, 0) * interval / charged
  tat = now + math.min(debt, window + allowance)
end
local owed = math.min(tat, now + window + allowance)
local new_tat = math.max(owed, now) + interval * cost
local fits_at = new_tat - window
local function level(at_tat, at)
  local used = math.max(at_tat - at, 0)
  return math.floor(math.max(window - used, 0) / interval), math.ceil(used)
end
local function keep(value, ttl_from)
  local ttl = math.ceil(math.max(value - ttl_from, 0) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.3f ', value) .. ARGV[1], 'PX', ttl)
end
if fits_at <= now then
  keep(new_tat, now)
  local remaining, full_in = level(new_tat, now)
  return {0, 0, remaining, full_in, units}
end
if max_wait >= 0 and fits_at - now <= max_wait then
  keep(new_tat, now)
  local remaining, full_in = level(new_tat, fits_at)
  return {1, math.ceil(fits_at - now), remaining, full_in, units}
end
if rescaled then keep(tat, now) end
local remaining, full_in = level(owed, now)
return {2, math.ceil(fits_at - now), remaining, full_in, units}
