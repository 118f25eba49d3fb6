-- Gives one request back to every limit in KEYS, for a request that
-- limit.lua admitted and charged and that was rejected afterwards. The
-- formula is Gcra::refund in gcra.rs.
--
-- KEYS[i]  the stored TAT of limit i (microseconds since the epoch)
-- ARGV[i]  the emission interval of limit i, in microseconds
--
-- A key listed twice gets two requests back, as it was charged twice. A
-- key that is gone has a full allowance already and stays gone.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

for i = 1, #KEYS do
  local stored = tonumber(redis.call('GET', KEYS[i]))
  if stored then
    local tat = stored - tonumber(ARGV[i])
    if tat > now then
      local ttl = math.max(math.ceil((tat - now) / 1000), 1)
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', ttl)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return #KEYS
