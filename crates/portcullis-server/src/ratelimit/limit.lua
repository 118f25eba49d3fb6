-- Checks one request against every limit in KEYS and, when all admit it,
-- charges it to each. The GCRA formulas are those of gcra.rs.
--
-- KEYS[1..n]    the stored TAT of each limit (microseconds since the epoch)
-- KEYS[n + 1]   the use counter of a usage-limited key, when ARGV[2] > 0
-- ARGV[1]       n
-- ARGV[2]       the key's maximum uses, or 0 when it has no maximum
-- ARGV[3]       uses already recorded elsewhere; the counter never counts
--               below it, so a lost counter cannot hand out uses again
-- ARGV[2i + 2]  emission interval of limit i, in microseconds
-- ARGV[2i + 3]  burst of limit i
--
-- Reply: verdict (1 admitted, 0 limited, 2 uses exhausted), uses counted,
-- then for each limit: admits (1 or 0), remaining, reset, retry after,
-- how far the stored TAT was ahead of now.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local n = tonumber(ARGV[1])
local max_uses = tonumber(ARGV[2])

local verdict = 1
local reply = {0, 0}
local new_tats = {}
-- A key listed twice reads the TAT that its earlier entry would store.
local pending = {}
for i = 1, n do
  local emission = tonumber(ARGV[2 * i + 2])
  local burst = tonumber(ARGV[2 * i + 3])
  local stored = pending[KEYS[i]] or tonumber(redis.call('GET', KEYS[i])) or 0
  local tat = math.max(stored, now)
  local new_tat = tat + emission
  local window = emission * burst
  local ahead = new_tat - now
  local ahead_before = math.max(stored - now, 0)
  if ahead > window then
    verdict = 0
    for _, value in ipairs({0, 0, tat - now, ahead - window, ahead_before}) do
      table.insert(reply, value)
    end
  else
    new_tats[i] = new_tat
    pending[KEYS[i]] = new_tat
    local remaining = math.floor((window - ahead) / emission)
    for _, value in ipairs({1, remaining, ahead, 0, ahead_before}) do
      table.insert(reply, value)
    end
  end
end

local used = 0
if max_uses > 0 then
  used = math.max(tonumber(redis.call('GET', KEYS[n + 1])) or 0, tonumber(ARGV[3]))
  -- An exhausted key stays exhausted, so this wins over a rate limit.
  if used >= max_uses then
    verdict = 2
  end
end

if verdict == 1 then
  for i = 1, n do
    local ttl = math.max(math.ceil((new_tats[i] - now) / 1000), 1)
    redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', ttl)
  end
  if max_uses > 0 then
    used = used + 1
    redis.call('SET', KEYS[n + 1], string.format('%.0f', used))
  end
end

reply[1] = verdict
reply[2] = used
return reply
